//! Domain codes as types: one macro gives every code enum the same shape.
//!
//! A code (an end cause, an outcome, a role …) is declared once, with its stored and wire
//! name and its Japanese label side by side, so a new code cannot exist in one place and not
//! another: serde, the database (sqlx `Any`), `FromStr`/`Display`, the list of every variant
//! and the label table the UI is served (`GET /api/labels`) all come from that declaration.
//! SQL that needs a code as a literal builds it with [`sql_list`], never by hand.
//!
//! This module is a leaf: it knows no domain.

use std::fmt;

/// A domain code: a closed set of variants, each with a stored name and a Japanese label.
pub trait Code: Copy + Eq + fmt::Debug + Send + Sync + 'static {
    /// The kind's name in the label table, e.g. `end_cause`.
    const KIND: &'static str;
    /// Every variant, in display order.
    const ALL: &'static [Self];
    /// The stored and wire name, e.g. `no_answer`.
    fn as_str(self) -> &'static str;
    /// The label users see, e.g. `応答なし`.
    fn label_ja(self) -> &'static str;
}

/// A text that is not one of a kind's codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} '{code}' (expected one of {expected})")]
pub struct UnknownCode {
    /// Which kind of code was expected.
    pub kind: &'static str,
    /// What came instead (capped, so a hostile value cannot bloat an error).
    pub code: String,
    /// The valid codes, comma-separated.
    pub expected: String,
}

impl UnknownCode {
    /// The error for `code` not being a `C`.
    pub fn of<C: Code>(code: &str) -> Self {
        UnknownCode {
            kind: C::KIND,
            code: code.chars().take(64).collect(),
            expected: C::ALL
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Parses `s` as a `C` (the `FromStr` of every code enum).
pub fn parse<C: Code>(s: &str) -> Result<C, UnknownCode> {
    C::ALL
        .iter()
        .copied()
        .find(|c| c.as_str() == s)
        .ok_or_else(|| UnknownCode::of::<C>(s))
}

/// `'a', 'b'` for an SQL `IN (…)`: the one place a code becomes an SQL literal. Codes are
/// `[a-z_]` by construction (checked by a test), so quoting cannot be broken.
pub fn sql_list<C: Code>(codes: &[C]) -> String {
    codes
        .iter()
        .map(|c| format!("'{}'", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The label table of one kind, in display order: `(code, label)`.
pub fn labels<C: Code>() -> Vec<(&'static str, &'static str)> {
    C::ALL.iter().map(|c| (c.as_str(), c.label_ja())).collect()
}

/// Declares a code enum: `Variant = "stored_name" / "日本語ラベル"` per variant.
///
/// ```
/// madoguchi::code_enum! {
///     /// A colour.
///     pub enum Colour: "colour" {
///         /// Red.
///         Red = "red" / "赤",
///         /// Blue.
///         Blue = "blue" / "青",
///     }
/// }
/// use madoguchi::codes::Code;
/// assert_eq!("blue".parse::<Colour>().unwrap(), Colour::Blue);
/// assert_eq!(Colour::Red.label_ja(), "赤");
/// assert_eq!(serde_json::to_string(&Colour::Red).unwrap(), "\"red\"");
/// ```
#[macro_export]
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $kind:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal / $label:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $crate::codes::Code for $name {
            const KIND: &'static str = $kind;
            const ALL: &'static [Self] = $name::ALL;
            fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $code ),+ }
            }
            fn label_ja(self) -> &'static str {
                match self { $( $name::$variant => $label ),+ }
            }
        }

        impl $name {
            /// Every variant, in display order.
            pub const ALL: &'static [Self] = &[ $( $name::$variant ),+ ];
            /// The stored and wire name.
            pub fn as_str(self) -> &'static str {
                <Self as $crate::codes::Code>::as_str(self)
            }
            /// The label users see.
            pub fn label_ja(self) -> &'static str {
                <Self as $crate::codes::Code>::label_ja(self)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::codes::UnknownCode;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::codes::parse::<$name>(s)
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }

        impl ::sqlx::Type<::sqlx::Any> for $name {
            fn type_info() -> ::sqlx::any::AnyTypeInfo {
                <&str as ::sqlx::Type<::sqlx::Any>>::type_info()
            }
            fn compatible(ty: &::sqlx::any::AnyTypeInfo) -> bool {
                <&str as ::sqlx::Type<::sqlx::Any>>::compatible(ty)
            }
        }

        impl<'q> ::sqlx::Encode<'q, ::sqlx::Any> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut <::sqlx::Any as ::sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<::sqlx::encode::IsNull, ::sqlx::error::BoxDynError> {
                <&str as ::sqlx::Encode<'q, ::sqlx::Any>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl<'r> ::sqlx::Decode<'r, ::sqlx::Any> for $name {
            fn decode(
                value: <::sqlx::Any as ::sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, ::sqlx::error::BoxDynError> {
                let s = <&str as ::sqlx::Decode<'r, ::sqlx::Any>>::decode(value)?;
                Ok(s.parse::<$name>()?)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::code_enum! {
        /// A test kind.
        pub enum Sample: "sample" {
            /// One.
            One = "one" / "一",
            /// Two words.
            TwoWords = "two_words" / "二",
        }
    }

    #[test]
    fn parse_display_and_unknown() {
        assert_eq!("two_words".parse::<Sample>(), Ok(Sample::TwoWords));
        assert_eq!(Sample::One.to_string(), "one");
        let e = "three".parse::<Sample>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown sample 'three' (expected one of one, two_words)"
        );
        assert_eq!(sql_list(Sample::ALL), "'one', 'two_words'");
        assert_eq!(labels::<Sample>(), vec![("one", "一"), ("two_words", "二")]);
        assert_eq!(Sample::TwoWords.label_ja(), "二");
    }

    #[test]
    fn serde_refuses_unknown_codes() {
        assert_eq!(
            serde_json::from_str::<Sample>("\"one\"").unwrap(),
            Sample::One
        );
        assert!(serde_json::from_str::<Sample>("\"One\"").is_err());
        assert_eq!(serde_json::to_value(Sample::TwoWords).unwrap(), "two_words");
    }
}
