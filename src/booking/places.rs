//! Where visits are and how far apart (R-BOOK-3 a, R-SLOT-4): the city's town list and the
//! travel model with the manager's corrections, as one handle the booking core and the web
//! side share.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::privacy::Actor;
use crate::store::Db;

use super::address::{AddressLookup, Gazetteer, Town, MANUAL_TRAVEL_WARNING, MAX_ADDRESS_CHARS};
use super::rules::TravelRules;
use super::travel::{
    Place, StraightLine, TravelEstimate, TravelModel, TravelOverride, TravelOverrides,
    WithOverrides,
};
use super::{AddressMatch, BookingError};

/// The town list and the travel model. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Places {
    gazetteer: Arc<Gazetteer>,
    model: Arc<WithOverrides<StraightLine>>,
}

/// What `GET /api/travel` shows: both addresses as matched, and the minutes and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TravelAnswer {
    /// The first address.
    pub from: AddressLookup,
    /// The second address.
    pub to: AddressLookup,
    /// Minutes between them; none when either has no 町丁目 (the operator gives them).
    pub minutes: Option<u32>,
    /// The straight-line distance, km.
    pub straight_km: Option<f64>,
    /// How the minutes were reached, or why there are none.
    pub how: String,
    /// Whether the manager's correction for the pair applied.
    pub overridden: bool,
    /// The model's own minutes, without the correction.
    pub model_minutes: Option<u32>,
}

/// A correction with the model's minutes beside it, for the manager's screen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverrideView {
    /// The correction.
    #[serde(flatten)]
    pub correction: TravelOverride,
    /// What the model says without it.
    pub model_minutes: u32,
}

impl Places {
    /// The profile's towns and travel figures; no corrections until [`Places::load`].
    pub fn new(gazetteer: Arc<Gazetteer>, rules: TravelRules) -> Self {
        let model = WithOverrides::new(StraightLine::new(rules), TravelOverrides::new());
        Places {
            gazetteer,
            model: Arc::new(model),
        }
    }

    /// Reads the manager's corrections from the database (at start).
    pub async fn load(&self, db: &Db) -> Result<(), BookingError> {
        self.model.overrides().reload(db).await
    }

    /// The city's towns and postal codes.
    pub fn gazetteer(&self) -> &Gazetteer {
        &self.gazetteer
    }

    /// The travel model with the corrections (synchronous and cheap: for the slot search).
    pub fn travel(&self) -> &WithOverrides<StraightLine> {
        &self.model
    }

    /// Minutes from `a` to `b`, corrections applied.
    pub fn estimate(&self, a: &Place, b: &Place) -> TravelEstimate {
        self.model.estimate(a, b)
    }

    /// Matches an address (R-BOOK-3 a); an empty or overlong input is refused.
    pub fn lookup(&self, input: &str) -> Result<AddressLookup, BookingError> {
        if input.trim().is_empty() {
            return Err(BookingError::Invalid("住所を入力してください。".into()));
        }
        if input.chars().count() > MAX_ADDRESS_CHARS {
            return Err(BookingError::Invalid(format!(
                "住所は{MAX_ADDRESS_CHARS}文字以内で入力してください。"
            )));
        }
        Ok(self.gazetteer.lookup(input))
    }

    /// Both addresses and the minutes between them, with what was decided and why.
    pub fn travel_between(&self, from: &str, to: &str) -> Result<TravelAnswer, BookingError> {
        let from = self.lookup(from)?;
        let to = self.lookup(to)?;
        let (Some(a), Some(b)) = (from.place(), to.place()) else {
            let side = |l: &AddressLookup, name: &str| match l.matched {
                AddressMatch::Town => None,
                AddressMatch::OutsideCity => Some(format!("{name}は市外です（{}）", l.reason)),
                AddressMatch::UnknownTown => {
                    Some(format!("{name}の町丁目が特定できません（{}）", l.reason))
                }
            };
            let mut why: Vec<String> = [side(&from, "出発地"), side(&to, "到着地")]
                .into_iter()
                .flatten()
                .collect();
            why.push(MANUAL_TRAVEL_WARNING.into());
            return Ok(TravelAnswer {
                from,
                to,
                minutes: None,
                straight_km: None,
                how: why.join(" "),
                overridden: false,
                model_minutes: None,
            });
        };
        let model = self.model.inner().estimate(&a, &b);
        let overridden = self.model.override_for(&a, &b).is_some();
        let e = self.model.estimate(&a, &b);
        Ok(TravelAnswer {
            from,
            to,
            minutes: Some(e.minutes),
            straight_km: e.straight_km,
            how: e.how,
            overridden,
            model_minutes: Some(model.minutes),
        })
    }

    /// The 町丁目 an override names: the exact name, or an address that matches one.
    fn town_for_override(&self, input: &str) -> Result<Town, BookingError> {
        if let Some(t) = self.gazetteer.town(input.trim()) {
            return Ok(t.clone());
        }
        let l = self.lookup(input)?;
        l.town.ok_or_else(|| {
            BookingError::Invalid(format!(
                "「{}」は町丁目として特定できません。{}",
                input.trim(),
                l.reason
            ))
        })
    }

    fn view(&self, correction: TravelOverride) -> OverrideView {
        let place = |name: &str| self.gazetteer.town(name).map(Town::place);
        let model_minutes = match (place(&correction.town_a), place(&correction.town_b)) {
            (Some(a), Some(b)) => self.model.inner().estimate(&a, &b).minutes,
            _ => 0,
        };
        OverrideView {
            correction,
            model_minutes,
        }
    }

    /// The manager's corrections, by town pair, with the model's minutes beside each.
    pub fn overrides(&self) -> Vec<OverrideView> {
        self.model
            .overrides()
            .list()
            .into_iter()
            .map(|o| self.view(o))
            .collect()
    }

    /// Sets the minutes between two 町丁目 (names or addresses that match one), audited.
    pub async fn set_override(
        &self,
        db: &Db,
        actor: &Actor,
        from: &str,
        to: &str,
        minutes: u32,
        at: DateTime<Utc>,
    ) -> Result<OverrideView, BookingError> {
        let a = self.town_for_override(from)?;
        let b = self.town_for_override(to)?;
        let o = self
            .model
            .overrides()
            .set(db, actor, &a.town, &b.town, minutes, at)
            .await?;
        Ok(self.view(o))
    }

    /// Removes the correction between two 町丁目, audited; NotFound when there is none.
    pub async fn delete_override(
        &self,
        db: &Db,
        actor: &Actor,
        from: &str,
        to: &str,
        at: DateTime<Utc>,
    ) -> Result<TravelOverride, BookingError> {
        // A stored pair may name a town a later profile dropped: exact names first.
        let name = |s: &str| -> Result<String, BookingError> {
            let s = s.trim();
            if self
                .model
                .overrides()
                .list()
                .iter()
                .any(|o| o.town_a == s || o.town_b == s)
            {
                return Ok(s.to_string());
            }
            Ok(self.town_for_override(s)?.town)
        };
        let (a, b) = (name(from)?, name(to)?);
        self.model.overrides().delete(db, actor, &a, &b, at).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::AddressRules;
    use std::path::Path;

    fn places() -> Places {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/otaru-2026");
        let g = Gazetteer::load(&dir, "小樽市", &AddressRules::default()).unwrap();
        Places::new(Arc::new(g), TravelRules::default())
    }

    /// R-SLOT-4: the estimate between two matched addresses, and none (by hand) otherwise.
    #[test]
    fn travel_between_addresses_says_how_or_why_not() {
        let p = places();
        let t = p.travel_between("稲穂2-1-1", "いなほ2丁目").unwrap();
        assert_eq!(t.minutes, Some(5), "same 町丁目: the allowance only");
        assert!(!t.overridden);
        let t = p.travel_between("稲穂2丁目", "銭函5丁目").unwrap();
        assert!(t.minutes.unwrap() > 30, "{t:?}");
        assert!(t.how.contains("直線距離"), "{}", t.how);
        let t = p
            .travel_between("稲穂2丁目", "札幌市中央区北1条西2丁目")
            .unwrap();
        assert_eq!(t.minutes, None);
        assert!(t.how.contains("到着地は市外です"), "{}", t.how);
        let t = p.travel_between("稲穂", "緑1丁目").unwrap();
        assert_eq!(t.minutes, None);
        assert!(t.how.contains("手入力"), "{}", t.how);
        assert!(matches!(
            p.travel_between("", "緑1丁目"),
            Err(BookingError::Invalid(_))
        ));
        assert!(matches!(
            p.lookup(&"あ".repeat(MAX_ADDRESS_CHARS + 1)),
            Err(BookingError::Invalid(_))
        ));
    }

    #[test]
    fn an_override_must_name_a_town() {
        let p = places();
        assert_eq!(p.town_for_override("稲穂2丁目").unwrap().town, "稲穂二丁目");
        assert_eq!(p.town_for_override("相生町").unwrap().town, "相生町");
        assert!(matches!(
            p.town_for_override("稲穂"),
            Err(BookingError::Invalid(m)) if m.contains("特定できません")
        ));
    }
}
