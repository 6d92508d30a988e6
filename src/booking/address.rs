//! Addresses: matching what the caller says to a 町丁目 of the city (R-BOOK-3 a), with the
//! reference data shipped in the profile (towns with representative points, postal codes;
//! sources and licences in the profile's `ATTRIBUTION.md`).
//!
//! [`Gazetteer::lookup`] never fails: it says what it decided ([`AddressMatch`]) and why, in
//! Japanese an operator can read out. The rules, in order:
//!
//! 1. The input is normalised: full-width letters and digits to half-width, half-width kana to
//!    full-width, every dash-like character (`－ ‐ − ― ー` between digits …) to `-`, spaces
//!    removed, `ヶ` to `ケ`. Hiragana and katakana compare alike.
//! 2. A leading postal code (`〒047-0032`, `047-0032`, `0470032`) that is not one of the city's
//!    is refused as outside the city; one of the city's names the town when the text does not.
//! 3. The prefecture and the city name are optional. Another prefecture, a name ending in
//!    市・郡・村・区 before the town, or a listed neighbouring 町 is outside the city.
//! 4. The town is the longest known name at the start: kanji (`稲穂`, `梅ケ枝町`/`梅が枝町`,
//!    `住ノ江`/`住の江`) or the reading (`いなほ`, `イナホ`), as the data writes it.
//! 5. For a town with 丁目, the 丁目 follows as `二丁目`, `2丁目` or `2-` (`稲穂2-1-1` is
//!    稲穂二丁目, rest `1-1`); a bare trailing number (`稲穂2`) is taken as the 丁目 with a
//!    warning.
//! 6. **Decision for a town with 丁目 given without one** (`稲穂`, `稲穂 1番地`), or with one
//!    the town does not have (`稲穂九丁目`): [`AddressMatch::UnknownTown`] — inside the city, so
//!    the booking is taken, but no representative point is guessed: the 丁目 of a hill or
//!    coastal town lie kilometres apart and a wrong point would pass or fail the travel rule
//!    (R-SLOT-4) wrongly. The 丁目 are listed in `candidates` for the operator to ask about;
//!    when the caller cannot say, the operator gives the travel estimate by hand.
//! 7. Nothing matched and no other municipality named: [`AddressMatch::UnknownTown`] with the
//!    same warning (the list may lack a new town; the caller said nothing of another city).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use super::rules::AddressRules;
use super::travel::Place;
use super::AddressMatch;

/// The longest address [`Gazetteer::lookup`] is asked about, in characters.
pub const MAX_ADDRESS_CHARS: usize = 200;

/// The warning of every address without a representative point.
pub const MANUAL_TRAVEL_WARNING: &str =
    "町丁目を特定できないため、移動時間を自動で見積もれません。担当者が移動時間を手入力してください。";

/// The 47 prefectures, for telling another prefecture at the start of an address.
const PREFECTURES: [&str; 47] = [
    "北海道",
    "青森県",
    "岩手県",
    "宮城県",
    "秋田県",
    "山形県",
    "福島県",
    "茨城県",
    "栃木県",
    "群馬県",
    "埼玉県",
    "千葉県",
    "東京都",
    "神奈川県",
    "新潟県",
    "富山県",
    "石川県",
    "福井県",
    "山梨県",
    "長野県",
    "岐阜県",
    "静岡県",
    "愛知県",
    "三重県",
    "滋賀県",
    "京都府",
    "大阪府",
    "兵庫県",
    "奈良県",
    "和歌山県",
    "鳥取県",
    "島根県",
    "岡山県",
    "広島県",
    "山口県",
    "徳島県",
    "香川県",
    "愛媛県",
    "高知県",
    "福岡県",
    "佐賀県",
    "長崎県",
    "熊本県",
    "大分県",
    "宮崎県",
    "鹿児島県",
    "沖縄県",
];

/// One 町丁目 of the city with its representative point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Town {
    /// The 町丁目 as the data writes it, e.g. `稲穂二丁目`, `相生町`.
    pub town: String,
    /// The town without its 丁目, e.g. `稲穂`.
    pub base_town: String,
    /// The 丁目 number, when the town has 丁目.
    pub chome: Option<u32>,
    /// Full-width katakana reading of `base_town`.
    pub kana: String,
    /// Latitude of the representative point (WGS84).
    pub lat: f64,
    /// Longitude of the representative point (WGS84).
    pub lng: f64,
    /// 7-digit postal code of `base_town`.
    pub postcode: String,
}

impl Town {
    /// The town as a place for travel estimates.
    pub fn place(&self) -> Place {
        Place {
            town: Some(self.town.clone()),
            lat: self.lat,
            lng: self.lng,
        }
    }
}

/// What [`Gazetteer::lookup`] decided about an address, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AddressLookup {
    /// The input, normalised (width, dashes, spaces).
    pub input: String,
    /// Town, unknown town (inside the city) or outside the city.
    pub matched: AddressMatch,
    /// The 町丁目, when one was matched.
    pub town: Option<Town>,
    /// The rest of the address after the 町丁目 (番地, building), e.g. `1-1`.
    pub rest: String,
    /// The postal code given in the input (7 digits), if any.
    pub postcode: Option<String>,
    /// The 町丁目 to ask the caller about when the 丁目 is missing or unknown.
    pub candidates: Vec<String>,
    /// Why, in Japanese for the operator.
    pub reason: String,
    /// What the operator must check or do.
    pub warnings: Vec<String>,
}

impl AddressLookup {
    /// The place for travel estimates, when a 町丁目 was matched.
    pub fn place(&self) -> Option<Place> {
        self.town.as_ref().map(Town::place)
    }

    /// Whether the address is outside the city (refused).
    pub fn is_outside(&self) -> bool {
        self.matched == AddressMatch::OutsideCity
    }
}

/// A reference file that cannot be used; `Display` names the file and the line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: line {line}: {message}")]
pub struct GazetteerError {
    /// The file's path.
    pub file: String,
    /// 1-based line; 0 when the file could not be read at all.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A town name without its 丁目 and the 町丁目 under it.
#[derive(Debug, Clone, Default)]
struct Base {
    name: String,
    kana: String,
    /// 丁目 number → index in `towns`.
    chome: BTreeMap<u32, usize>,
    /// The town without 丁目 (`相生町`), if the data has one.
    plain: Option<usize>,
}

/// How a name key was written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyKind {
    Name,
    Reading,
}

/// The city's towns and postal codes, for matching addresses.
#[derive(Default)]
pub struct Gazetteer {
    city: String,
    prefecture: String,
    others: Vec<String>,
    towns: Vec<Town>,
    by_name: HashMap<String, usize>,
    bases: Vec<Base>,
    /// (folded key, base index, kind), longest key first.
    keys: Vec<(Vec<char>, usize, KeyKind)>,
    /// postcode → base town it names (None for 以下に掲載がない場合).
    postcodes: HashMap<String, Option<String>>,
}

impl std::fmt::Debug for Gazetteer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gazetteer")
            .field("city", &self.city)
            .field("towns", &self.towns.len())
            .field("postcodes", &self.postcodes.len())
            .finish()
    }
}

impl Gazetteer {
    /// Reads `rules.towns_file` and `rules.postcodes_file` in the profile directory `dir`;
    /// `city` is the city's name (`[city] name_ja`).
    pub fn load(dir: &Path, city: &str, rules: &AddressRules) -> Result<Gazetteer, GazetteerError> {
        let towns_path = dir.join(&rules.towns_file);
        let post_path = dir.join(&rules.postcodes_file);
        let towns = read_csv(&towns_path)?;
        let posts = read_csv(&post_path)?;
        Gazetteer::from_rows(city, rules, &towns, &posts)
    }

    fn from_rows(
        city: &str,
        rules: &AddressRules,
        towns: &Csv,
        posts: &Csv,
    ) -> Result<Gazetteer, GazetteerError> {
        let mut g = Gazetteer {
            city: city.to_string(),
            prefecture: rules.prefecture_ja.clone(),
            others: rules.other_municipalities.clone(),
            ..Gazetteer::default()
        };
        let cols = posts.columns(&["postcode", "kind", "town"])?;
        for (line, row) in &posts.rows {
            let bad = |m: String| posts.error(*line, m);
            let code = &row[cols[0]];
            if code.len() != 7 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("postcode '{code}' is not 7 digits")));
            }
            if !matches!(row[cols[1]].as_str(), "area" | "office") {
                return Err(bad(format!(
                    "kind '{}' is neither area nor office",
                    row[cols[1]]
                )));
            }
            let town = Some(row[cols[2]].clone()).filter(|t| !t.is_empty());
            if g.postcodes.insert(code.clone(), town).is_some() {
                return Err(bad(format!("postcode {code} is listed twice")));
            }
        }
        let cols = towns.columns(&[
            "town",
            "base_town",
            "chome",
            "base_town_kana",
            "lat",
            "lng",
            "postcode",
        ])?;
        let mut base_index: HashMap<String, usize> = HashMap::new();
        for (line, row) in &towns.rows {
            let bad = |m: String| towns.error(*line, m);
            let f = |i: usize| row[cols[i]].trim().to_string();
            let (name, base, kana, postcode) = (f(0), f(1), f(3), f(6));
            if name.is_empty() || base.is_empty() {
                return Err(bad("town and base_town must not be empty".into()));
            }
            let chome = match f(2).as_str() {
                "" => None,
                c => match c.parse::<u32>() {
                    Ok(n @ 1..=99) => Some(n),
                    _ => return Err(bad(format!("chome '{c}' is not a number 1–99"))),
                },
            };
            let expected = match chome {
                Some(n) => format!("{base}{}丁目", kanji_number(n)),
                None => base.clone(),
            };
            if name != expected {
                return Err(bad(format!(
                    "town '{name}' does not match base_town and chome (expected '{expected}')"
                )));
            }
            if kana.is_empty() || !kana.chars().all(|c| is_katakana(c) || c == 'ー') {
                return Err(bad(format!(
                    "base_town_kana '{kana}' is not full-width katakana"
                )));
            }
            let coord = |i: usize, what: &str, range: std::ops::RangeInclusive<f64>| {
                f(i).parse::<f64>()
                    .ok()
                    .filter(|v| range.contains(v))
                    .ok_or_else(|| bad(format!("{what} '{}' is not a valid coordinate", f(i))))
            };
            let lat = coord(4, "lat", -90.0..=90.0)?;
            let lng = coord(5, "lng", -180.0..=180.0)?;
            if !g.postcodes.contains_key(&postcode) {
                return Err(bad(format!(
                    "postcode '{postcode}' is not in {}",
                    posts.file
                )));
            }
            let idx = g.towns.len();
            if g.by_name.insert(name.clone(), idx).is_some() {
                return Err(bad(format!("town '{name}' is listed twice")));
            }
            let b = *base_index.entry(base.clone()).or_insert_with(|| {
                g.bases.push(Base {
                    name: base.clone(),
                    kana: kana.clone(),
                    ..Base::default()
                });
                g.bases.len() - 1
            });
            if g.bases[b].kana != kana {
                return Err(bad(format!(
                    "base_town_kana '{kana}' differs from the earlier '{}' of {base}",
                    g.bases[b].kana
                )));
            }
            match chome {
                Some(n) => {
                    g.bases[b].chome.insert(n, idx);
                }
                None => g.bases[b].plain = Some(idx),
            }
            g.towns.push(Town {
                town: name,
                base_town: base,
                chome,
                kana,
                lat,
                lng,
                postcode,
            });
        }
        if g.towns.is_empty() {
            return Err(towns.error(1, "no towns listed".into()));
        }
        g.build_keys();
        Ok(g)
    }

    /// Every spelling a base town is matched by, longest first.
    fn build_keys(&mut self) {
        let mut keys = Vec::new();
        for (i, b) in self.bases.iter().enumerate() {
            let mut names = vec![b.name.clone()];
            // 梅ケ枝町 is also written 梅ヶ枝町 (normalised) and 梅が枝町; 住ノ江 as 住の江
            // (hiragana folds to katakana, so ノ covers の).
            if b.name.contains('ケ') {
                names.push(b.name.replace('ケ', "ガ"));
            }
            for n in names {
                keys.push((fold(&n), i, KeyKind::Name));
            }
            keys.push((fold(&b.kana), i, KeyKind::Reading));
            // あいおい町 for 相生町 (アイオイチョウ)
            if b.name.ends_with('町') {
                for suffix in ["チョウ", "マチ"] {
                    if let Some(stem) = b.kana.strip_suffix(suffix) {
                        keys.push((fold(&format!("{stem}町")), i, KeyKind::Reading));
                    }
                }
            }
        }
        keys.sort_by_key(|k| std::cmp::Reverse(k.0.len()));
        keys.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        self.keys = keys;
    }

    /// The city's name (`小樽市`).
    pub fn city(&self) -> &str {
        &self.city
    }

    /// Every 町丁目, in the data's order.
    pub fn towns(&self) -> &[Town] {
        &self.towns
    }

    /// The 町丁目 of this exact name (`稲穂二丁目`).
    pub fn town(&self, name: &str) -> Option<&Town> {
        self.by_name.get(name).map(|&i| &self.towns[i])
    }

    /// Whether `postcode` (7 digits) is one of the city's.
    pub fn is_city_postcode(&self, postcode: &str) -> bool {
        self.postcodes.contains_key(postcode)
    }

    /// Matches an address to a 町丁目 of the city (R-BOOK-3 a); see the module's rules.
    pub fn lookup(&self, input: &str) -> AddressLookup {
        let norm = normalize(input);
        let mut out = AddressLookup {
            input: norm.clone(),
            matched: AddressMatch::UnknownTown,
            town: None,
            rest: String::new(),
            postcode: None,
            candidates: Vec::new(),
            reason: String::new(),
            warnings: Vec::new(),
        };
        let city = self.city.as_str();
        if norm.is_empty() {
            out.reason = "住所が入力されていません。".into();
            out.warnings.push(MANUAL_TRAVEL_WARNING.into());
            return out;
        }
        // The postal code is split off before spaces go: `〒047-0032 2丁目` is not 8 digits.
        let spaced = normalize_chars(input);
        let (postcode, after_code) = split_postcode(spaced.trim_start());
        let after_code: String = after_code.chars().filter(|c| !c.is_whitespace()).collect();
        let mut s = after_code.as_str();
        let mut postcode_base: Option<String> = None;
        if let Some(code) = &postcode {
            out.postcode = Some(code.clone());
            match self.postcodes.get(code) {
                None => {
                    return self.outside(
                        out,
                        format!(
                            "〒{}-{} は{city}の郵便番号ではないため、{city}外の住所として受付できません（郵便番号と住所をご確認ください）。",
                            &code[..3],
                            &code[3..]
                        ),
                    );
                }
                Some(base) => postcode_base = base.clone(),
            }
        }
        if let Some(r) = s.strip_prefix(self.prefecture.as_str()) {
            s = r;
        } else if let Some(p) = PREFECTURES.iter().find(|p| s.starts_with(*p)) {
            return self.outside(out, format!("{p}は{city}外のため受付できません。"));
        }
        let city_given = match s.strip_prefix(city) {
            Some(r) => {
                s = r;
                true
            }
            None => false,
        };
        let hit = self.match_base(s);
        if !city_given {
            if let Some(other) = self.other_municipality(s, hit.map_or(0, |h| h.1)) {
                return self.outside(out, format!("{other}は{city}外のため受付できません。"));
            }
        }
        let (base_idx, after, how) = match hit {
            Some((b, len, kind)) => {
                let written: String = s.chars().take(len).collect();
                let how = match kind {
                    KeyKind::Reading => format!(
                        "町名は読み「{}」から{}と判定",
                        self.bases[b].kana, self.bases[b].name
                    ),
                    KeyKind::Name if written == self.bases[b].name => {
                        format!("町名「{}」", self.bases[b].name)
                    }
                    KeyKind::Name => {
                        format!("町名「{written}」を{}と判定", self.bases[b].name)
                    }
                };
                let after: String = s.chars().skip(len).collect();
                if let Some(pb) = &postcode_base {
                    if *pb != self.bases[b].name {
                        out.warnings.push(format!(
                            "郵便番号（{pb}）と町名（{}）が一致しません。確認してください。",
                            self.bases[b].name
                        ));
                    }
                }
                (b, after, how)
            }
            None => {
                let from_postcode = postcode_base
                    .as_ref()
                    .and_then(|pb| self.bases.iter().position(|b| b.name == *pb));
                match from_postcode {
                    Some(b) => (
                        b,
                        s.to_string(),
                        format!("町名は郵便番号から{}と判定", self.bases[b].name),
                    ),
                    None => {
                        out.rest = s.to_string();
                        out.reason = format!("{city}の町名一覧にある町名が見つかりません。");
                        if !city_given && postcode.is_none() {
                            out.reason.push_str(&format!(
                                "他の市町村名もないため、{city}内の住所として扱います。"
                            ));
                        }
                        out.warnings.push(
                            "町名を確認してください（読み間違い・新しい町名の可能性）。".into(),
                        );
                        out.warnings.push(MANUAL_TRAVEL_WARNING.into());
                        return out;
                    }
                }
            }
        };
        self.resolve_chome(out, base_idx, &after, how)
    }

    /// The 町丁目 under base `b` from what follows the town name.
    fn resolve_chome(
        &self,
        mut out: AddressLookup,
        b: usize,
        after: &str,
        how: String,
    ) -> AddressLookup {
        let base = &self.bases[b];
        if base.chome.is_empty() {
            let idx = base.plain.expect("a base has a plain town or 丁目");
            out.rest = trim_rest(after);
            return self.found(out, idx, how);
        }
        match parse_chome(after) {
            Some((n, rest, style)) => {
                out.rest = trim_rest(rest);
                match base.chome.get(&n) {
                    Some(&idx) => {
                        let how = match style {
                            ChomeStyle::Written => format!("{how}、丁目は「{n}丁目」"),
                            ChomeStyle::Dash => {
                                format!("{how}、「{n}-」の先頭の数字を丁目と解釈")
                            }
                            ChomeStyle::Bare => {
                                out.warnings.push(format!(
                                    "町名の後の「{n}」を{n}丁目と解釈しました。番地でないか確認してください。"
                                ));
                                format!("{how}、末尾の数字「{n}」を丁目と解釈")
                            }
                        };
                        self.found(out, idx, how)
                    }
                    None => {
                        out.candidates = self.chome_names(base);
                        out.reason = format!(
                            "{how}。{}に{}丁目はありません（{}）。",
                            base.name,
                            kanji_number(n),
                            out.candidates.join("・")
                        );
                        out.warnings.push("丁目を確認してください。".to_string());
                        out.warnings.push(MANUAL_TRAVEL_WARNING.into());
                        out
                    }
                }
            }
            None => {
                out.rest = trim_rest(after);
                out.candidates = self.chome_names(base);
                out.reason = format!(
                    "{how}。{}は{}に分かれていますが、丁目が分かりません。",
                    base.name,
                    out.candidates.join("・")
                );
                out.warnings
                    .push("丁目をお客様に確認してください。".to_string());
                out.warnings.push(MANUAL_TRAVEL_WARNING.into());
                out
            }
        }
    }

    fn chome_names(&self, base: &Base) -> Vec<String> {
        base.chome
            .values()
            .map(|&i| self.towns[i].town.clone())
            .collect()
    }

    fn found(&self, mut out: AddressLookup, idx: usize, how: String) -> AddressLookup {
        let t = self.towns[idx].clone();
        out.matched = AddressMatch::Town;
        out.reason = format!("{}{}と判定しました（{how}）。", self.city, t.town);
        out.town = Some(t);
        out
    }

    fn outside(&self, mut out: AddressLookup, reason: String) -> AddressLookup {
        out.matched = AddressMatch::OutsideCity;
        out.reason = reason;
        out
    }

    /// The longest base-town key at the start of `s`: (base, chars matched, kind).
    fn match_base(&self, s: &str) -> Option<(usize, usize, KeyKind)> {
        let folded = fold(s);
        self.keys
            .iter()
            .find(|(k, _, _)| folded.starts_with(k))
            .map(|(k, b, kind)| (*b, k.len(), *kind))
    }

    /// Another municipality named at the start of `s` (before the town matched there, which
    /// spans `town_len` characters): a listed neighbour, or a name ending in 市・郡・村・区.
    fn other_municipality(&self, s: &str, town_len: usize) -> Option<String> {
        if let Some(o) = self.others.iter().find(|o| s.starts_with(o.as_str())) {
            return Some(o.clone());
        }
        let chars: Vec<char> = s.chars().collect();
        let head = chars
            .iter()
            .position(|c| c.is_ascii_digit() || *c == '-')
            .unwrap_or(chars.len())
            .min(8);
        for i in 1..head {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            if c == '市' && next == Some('郡') {
                continue; // 余市郡: the 郡 names it
            }
            let marker = match c {
                // 市営住宅, 市立病院, 市役所 … are not a city's name.
                '市' => !matches!(next, Some('営' | '立' | '役' | '民' | '場' | '内' | '道')),
                '郡' | '村' | '区' => true,
                _ => false,
            };
            if !marker || i < town_len {
                continue;
            }
            let mut end = i + 1;
            // 余市郡余市町, 余市町: the whole name.
            if c == '郡' {
                if let Some(j) =
                    (end..chars.len().min(end + 6)).find(|&j| matches!(chars[j], '町' | '村'))
                {
                    end = j + 1;
                }
            } else if c == '市' && matches!(next, Some('町' | '村')) {
                end += 1;
            }
            let name: String = chars[..end].iter().collect();
            if name == self.city {
                return None;
            }
            return Some(name);
        }
        None
    }
}

/// How the 丁目 was written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ChomeStyle {
    /// `二丁目`, `2丁目`
    Written,
    /// `2-1-1`
    Dash,
    /// `稲穂2` (nothing after)
    Bare,
}

/// The 丁目 at the start of `s`: number, what follows, how it was written.
fn parse_chome(s: &str) -> Option<(u32, &str, ChomeStyle)> {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    let (n, after) = if !digits.is_empty() {
        (digits.parse::<u32>().ok()?, &s[digits.len()..])
    } else {
        let kanji: String = s
            .chars()
            .take_while(|c| kanji_digit(*c).is_some())
            .collect();
        if kanji.is_empty() {
            return None;
        }
        (parse_kanji_number(&kanji)?, &s[kanji.len()..])
    };
    for marker in ["丁目", "丁", "チョウメ", "ちょうめ"] {
        if let Some(rest) = after.strip_prefix(marker) {
            return Some((n, rest, ChomeStyle::Written));
        }
    }
    if digits.is_empty() {
        return None; // 二 alone is not a 丁目
    }
    if let Some(rest) = after.strip_prefix('-') {
        return Some((n, rest, ChomeStyle::Dash));
    }
    if after.is_empty() {
        return Some((n, after, ChomeStyle::Bare));
    }
    None
}

fn trim_rest(s: &str) -> String {
    s.trim_start_matches(['-', 'の', 'ノ']).to_string()
}

/// A leading postal code (`〒047-0032`, `047-0032`, `0470032`, `〒0470032`) as 7 digits, and
/// what follows it.
fn split_postcode(s: &str) -> (Option<String>, &str) {
    let (marked, t) = match s.strip_prefix('〒') {
        Some(t) => (true, t.trim_start()),
        None => (false, s),
    };
    let b = t.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let not_digit_after = |i: usize| !digit(i);
    if (0..3).all(digit) && b.get(3) == Some(&b'-') && (4..8).all(digit) && not_digit_after(8) {
        return (Some(format!("{}{}", &t[..3], &t[4..8])), &t[8..]);
    }
    if (0..7).all(digit) && not_digit_after(7) {
        return (Some(t[..7].to_string()), &t[7..]);
    }
    if marked {
        // 〒 with something that is no postal code: leave it to the town match.
        return (None, t);
    }
    (None, s)
}

/// Normalises an address as typed or heard: width, kana, dashes and spaces (rule 1).
pub fn normalize(input: &str) -> String {
    normalize_chars(input)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// [`normalize`] keeping the spaces (as ASCII spaces).
fn normalize_chars(input: &str) -> String {
    let mut chars: Vec<char> = Vec::with_capacity(input.len());
    for c in input.chars() {
        match c {
            '\u{FF01}'..='\u{FF5E}' => {
                chars.push(char::from_u32(c as u32 - 0xFEE0).unwrap_or(c));
            }
            '\u{FF9E}' | '\u{FF9F}' => {
                // half-width (semi-)voiced mark: combine with the kana before it
                let semi = c == '\u{FF9F}';
                match chars.last().copied().and_then(|p| voiced(p, semi)) {
                    Some(v) => *chars.last_mut().expect("checked") = v,
                    None => chars.push(if semi { '゜' } else { '゛' }),
                }
            }
            '\u{FF61}'..='\u{FF9D}' => chars.push(half_width_kana(c)),
            'ヶ' => chars.push('ケ'),
            _ => chars.push(c),
        }
    }
    let mut out = String::with_capacity(input.len());
    for (i, &c) in chars.iter().enumerate() {
        if c.is_whitespace() {
            out.push(' ');
            continue;
        }
        let digit_near = |j: Option<usize>| {
            j.and_then(|j| chars.get(j))
                .is_some_and(|d| d.is_ascii_digit())
        };
        let dash = matches!(
            c,
            '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE63}' | '\u{2043}' | '\u{30A0}'
        ) || (matches!(c, 'ー' | '\u{FF70}' | '～' | '〜')
            && (digit_near(i.checked_sub(1)) || digit_near(Some(i + 1))));
        out.push(if dash { '-' } else { c });
    }
    out
}

/// Hiragana folded to katakana, for comparing readings.
fn fold(s: &str) -> Vec<char> {
    s.chars()
        .map(|c| match c {
            '\u{3041}'..='\u{3096}' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
            _ => c,
        })
        .collect()
}

fn is_katakana(c: char) -> bool {
    ('\u{30A1}'..='\u{30FA}').contains(&c)
}

fn half_width_kana(c: char) -> char {
    const FULL: &str = "。「」、・ヲァィゥェォャュョッーアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン";
    let i = (c as u32 - 0xFF61) as usize;
    FULL.chars().nth(i).unwrap_or(c)
}

fn voiced(c: char, semi: bool) -> Option<char> {
    const VOICED: &str =
        "カガキギクグケゲコゴサザシジスズセゼソゾタダチヂツヅテデトドハバヒビフブヘベホボウヴ";
    const SEMI: &str = "ハパヒピフプヘペホポ";
    let table: Vec<char> = if semi { SEMI } else { VOICED }.chars().collect();
    table
        .chunks(2)
        .find(|pair| pair[0] == c)
        .map(|pair| pair[1])
}

fn kanji_digit(c: char) -> Option<u32> {
    "〇一二三四五六七八九十"
        .chars()
        .position(|k| k == c)
        .map(|p| p as u32)
}

/// 一 … 九十九 (十 = 10).
fn parse_kanji_number(s: &str) -> Option<u32> {
    let ds: Vec<u32> = s.chars().map(kanji_digit).collect::<Option<_>>()?;
    match ds.as_slice() {
        [d] if *d >= 1 && *d <= 10 => Some(*d),
        [10, u] if (1..=9).contains(u) => Some(10 + u),
        [t, 10] if (2..=9).contains(t) => Some(t * 10),
        [t, 10, u] if (2..=9).contains(t) && (1..=9).contains(u) => Some(t * 10 + u),
        _ => None,
    }
}

/// 1 → 一, 12 → 十二, 20 → 二十 (as the data writes 丁目).
fn kanji_number(n: u32) -> String {
    let d = |x: u32| {
        "〇一二三四五六七八九"
            .chars()
            .nth(x as usize)
            .unwrap_or('〇')
    };
    match n {
        1..=9 => d(n).to_string(),
        10 => "十".into(),
        11..=19 => format!("十{}", d(n - 10)),
        _ if n.is_multiple_of(10) => format!("{}十", d(n / 10)),
        _ => format!("{}十{}", d(n / 10), d(n % 10)),
    }
}

/// A parsed CSV file: header and rows with their 1-based line numbers.
struct Csv {
    file: String,
    header: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
}

impl Csv {
    fn error(&self, line: usize, message: String) -> GazetteerError {
        GazetteerError {
            file: self.file.clone(),
            line,
            message,
        }
    }

    /// The index of each named column; a missing one is an error on line 1.
    fn columns(&self, names: &[&str]) -> Result<Vec<usize>, GazetteerError> {
        names
            .iter()
            .map(|n| {
                self.header
                    .iter()
                    .position(|h| h == n)
                    .ok_or_else(|| self.error(1, format!("header has no column '{n}'")))
            })
            .collect()
    }
}

/// Reads a small UTF-8 CSV (optional BOM, LF or CRLF, RFC 4180 quotes within a line).
fn read_csv(path: &Path) -> Result<Csv, GazetteerError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| GazetteerError {
        file: file.clone(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    parse_csv(file, &text)
}

fn parse_csv(file: String, text: &str) -> Result<Csv, GazetteerError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut csv = Csv {
        file,
        header: Vec::new(),
        rows: Vec::new(),
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        let fields = split_csv_line(raw).map_err(|m| csv.error(line, m))?;
        if csv.header.is_empty() {
            csv.header = fields.iter().map(|f| f.trim().to_string()).collect();
            continue;
        }
        if fields.len() != csv.header.len() {
            return Err(csv.error(
                line,
                format!(
                    "{} fields where the header has {}",
                    fields.len(),
                    csv.header.len()
                ),
            ));
        }
        csv.rows.push((line, fields));
    }
    if csv.header.is_empty() {
        return Err(csv.error(1, "the file is empty (no header row)".into()));
    }
    Ok(csv)
}

fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                    if !matches!(chars.peek(), None | Some(',')) {
                        return Err("text after a closing quote".into());
                    }
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' if at_start => {
                quoted = true;
                at_start = false;
            }
            ',' => {
                fields.push(std::mem::take(&mut cur));
                at_start = true;
            }
            _ => {
                cur.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("unclosed quote".into());
    }
    fields.push(cur);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Gazetteer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/otaru-2026");
        let rules = AddressRules {
            other_municipalities: vec!["余市町".into(), "仁木町".into()],
            ..AddressRules::default()
        };
        Gazetteer::load(&dir, "小樽市", &rules).expect("shipped reference data")
    }

    fn town_of(g: &Gazetteer, input: &str) -> Option<String> {
        let l = g.lookup(input);
        l.town.map(|t| t.town)
    }

    #[test]
    fn shipped_data_loads_with_every_town() {
        let g = shipped();
        assert_eq!(g.towns().len(), 144);
        let t = g.town("稲穂二丁目").unwrap();
        assert_eq!((t.base_town.as_str(), t.chome), ("稲穂", Some(2)));
        assert_eq!(t.kana, "イナホ");
        assert_eq!(t.postcode, "0470032");
        assert!(g.is_city_postcode("0613271") && g.is_city_postcode("0482561"));
    }

    /// R-BOOK-3 a, issue 14 acceptance: the three spellings resolve alike.
    #[test]
    fn the_acceptance_spellings_resolve_alike() {
        let g = shipped();
        for input in [
            "小樽市稲穂２丁目",
            "稲穂2-1-1",
            "いなほ2丁目",
            "北海道小樽市稲穂二丁目1番1号",
            "イナホ２－１－１",
            "ｲﾅﾎ2丁目",
            "  小樽市　稲穂 ２ 丁目 ",
            "稲穂2ー1ー1",
            "稲穂2−1‐1",
            "〒047-0032 稲穂2丁目",
            "〒０４７－００３２小樽市稲穂二丁目",
        ] {
            let l = g.lookup(input);
            assert_eq!(l.matched, AddressMatch::Town, "{input}: {}", l.reason);
            assert_eq!(town_of(&g, input).as_deref(), Some("稲穂二丁目"), "{input}");
            assert!(l.warnings.is_empty(), "{input}: {:?}", l.warnings);
        }
        let l = g.lookup("稲穂2-1-1");
        assert_eq!(l.rest, "1-1");
        assert!(l.reason.contains("稲穂二丁目"), "{}", l.reason);
        assert_eq!(g.lookup("稲穂二丁目1番1号").rest, "1番1号");
        let l = g.lookup("いなほ2丁目");
        assert!(l.reason.contains("イナホ"), "{}", l.reason);
        assert_eq!(
            g.lookup("〒047-0032 稲穂2丁目").postcode.as_deref(),
            Some("0470032")
        );
    }

    #[test]
    fn the_longest_town_name_wins() {
        let g = shipped();
        assert_eq!(
            town_of(&g, "朝里川温泉2丁目").as_deref(),
            Some("朝里川温泉二丁目")
        );
        assert_eq!(town_of(&g, "朝里2丁目").as_deref(), Some("朝里二丁目"));
        assert_eq!(town_of(&g, "新光町10-1").as_deref(), Some("新光町"));
        assert_eq!(town_of(&g, "新光5-9-6").as_deref(), Some("新光五丁目"));
        assert_eq!(
            town_of(&g, "あさりがわおんせん1丁目").as_deref(),
            Some("朝里川温泉一丁目")
        );
    }

    #[test]
    fn towns_without_chome_and_variant_spellings() {
        let g = shipped();
        let l = g.lookup("小樽市相生町5-12");
        assert_eq!(l.town.as_ref().unwrap().town, "相生町");
        assert_eq!(l.rest, "5-12");
        assert_eq!(town_of(&g, "築港11").as_deref(), Some("築港"));
        assert_eq!(town_of(&g, "梅ヶ枝町3").as_deref(), Some("梅ケ枝町"));
        assert_eq!(town_of(&g, "梅が枝町3").as_deref(), Some("梅ケ枝町"));
        assert_eq!(town_of(&g, "住の江1丁目").as_deref(), Some("住ノ江一丁目"));
        assert_eq!(town_of(&g, "松ヶ枝2丁目").as_deref(), Some("松ケ枝二丁目"));
        assert_eq!(town_of(&g, "ぜにばこ3-190").as_deref(), Some("銭函三丁目"));
        assert_eq!(town_of(&g, "あいおい町5").as_deref(), Some("相生町"));
        assert_eq!(
            town_of(&g, "オタモイ1丁目").as_deref(),
            Some("オタモイ一丁目")
        );
    }

    /// R-BOOK-3 a: an address outside the city is refused with the reason.
    #[test]
    fn other_cities_and_prefectures_are_outside_with_the_reason() {
        let g = shipped();
        for (input, named) in [
            ("札幌市中央区北1条西2丁目", "札幌市"),
            ("北海道札幌市手稲区稲穂2条", "札幌市"),
            ("東京都千代田区丸の内1-1", "東京都"),
            ("大阪府大阪市北区", "大阪府"),
            ("余市郡余市町黒川町1", "余市郡余市町"),
            ("余市町黒川町1", "余市町"),
            ("仁木町大江", "仁木町"),
            ("赤井川村都", "赤井川村"),
            ("桜井市1-2", "桜井市"),
            ("千代田区丸の内1-1", "千代田区"),
        ] {
            let l = g.lookup(input);
            assert_eq!(
                l.matched,
                AddressMatch::OutsideCity,
                "{input}: {}",
                l.reason
            );
            assert!(l.town.is_none());
            assert_eq!(
                l.reason,
                format!("{named}は小樽市外のため受付できません。"),
                "{input}"
            );
        }
        let l = g.lookup("〒060-0001 稲穂2丁目");
        assert_eq!(l.matched, AddressMatch::OutsideCity);
        assert!(l.reason.contains("〒060-0001"), "{}", l.reason);
        // A city hall building is no other city.
        assert_eq!(g.lookup("稲穂2丁目市営住宅").matched, AddressMatch::Town);
        assert_eq!(g.lookup("小樽市桜1丁目").matched, AddressMatch::Town);
    }

    /// R-BOOK-3 a, R-SLOT-4: inside the city but no 町丁目 → accepted, travel by hand.
    #[test]
    fn unknown_towns_are_accepted_with_the_manual_travel_warning() {
        let g = shipped();
        let l = g.lookup("小樽市架空町1-2");
        assert_eq!(l.matched, AddressMatch::UnknownTown, "{}", l.reason);
        assert!(l.town.is_none() && l.place().is_none());
        assert!(l.warnings.iter().any(|w| w == MANUAL_TRAVEL_WARNING));
        assert_eq!(l.rest, "架空町1-2");
        assert_eq!(g.lookup("かくう1-2").matched, AddressMatch::UnknownTown);
    }

    /// The documented decision: a base town with 丁目 but none given is not guessed.
    #[test]
    fn a_town_with_chome_given_without_one_lists_the_candidates() {
        let g = shipped();
        for input in ["稲穂", "小樽市稲穂 1番地", "いなほ"] {
            let l = g.lookup(input);
            assert_eq!(l.matched, AddressMatch::UnknownTown, "{input}");
            assert_eq!(l.candidates.len(), 5, "{input}");
            assert_eq!(l.candidates[0], "稲穂一丁目");
            assert!(l.warnings.iter().any(|w| w == MANUAL_TRAVEL_WARNING));
            assert!(l.reason.contains("丁目が分かりません"), "{}", l.reason);
        }
        let l = g.lookup("稲穂九丁目");
        assert_eq!(l.matched, AddressMatch::UnknownTown);
        assert!(
            l.reason.contains("稲穂に九丁目はありません"),
            "{}",
            l.reason
        );
        // The postal code names the town: with a 丁目 it is found, without one it is asked.
        assert_eq!(
            town_of(&g, "〒047-0032 2丁目1-1").as_deref(),
            Some("稲穂二丁目")
        );
        assert_eq!(town_of(&g, "〒047-0028").as_deref(), Some("相生町"));
    }

    #[test]
    fn a_bare_number_is_taken_as_the_chome_with_a_warning() {
        let g = shipped();
        let l = g.lookup("稲穂2");
        assert_eq!(l.town.as_ref().unwrap().town, "稲穂二丁目");
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    }

    #[test]
    fn a_postcode_of_another_town_of_the_city_is_a_warning() {
        let g = shipped();
        let l = g.lookup("〒047-0001 稲穂2丁目");
        assert_eq!(l.matched, AddressMatch::Town);
        assert!(l.warnings[0].contains("一致しません"), "{:?}", l.warnings);
        // 銭函 has two postal codes; an office code names its town too.
        assert!(g.lookup("〒061-3271 銭函3丁目").warnings.is_empty());
        assert!(g.lookup("〒047-8660 花園2丁目12-1").warnings.is_empty());
    }

    #[test]
    fn empty_input_is_no_town() {
        let g = shipped();
        let l = g.lookup("  　");
        assert_eq!(l.matched, AddressMatch::UnknownTown);
        assert_eq!(l.input, "");
    }

    #[test]
    fn normalisation_of_width_kana_and_dashes() {
        assert_eq!(normalize("ＡＢ１２３－４"), "AB123-4");
        assert_eq!(normalize("ｶﾞｷﾞﾊﾟ ｳﾞ"), "ガギパヴ");
        assert_eq!(normalize("1ー2 ーー スーパー"), "1-2ーースーパー");
        assert_eq!(normalize("2―1―1"), "2-1-1");
        assert_eq!(parse_kanji_number("二十三"), Some(23));
        assert_eq!(kanji_number(23), "二十三");
        assert_eq!(kanji_number(10), "十");
    }

    fn rules() -> AddressRules {
        AddressRules::default()
    }

    #[test]
    fn a_broken_csv_names_the_file_and_line() {
        let posts = parse_csv(
            "postcodes.csv".into(),
            "postcode,kind,town\n0470032,area,稲穂\n",
        )
        .unwrap();
        let bad = |text: &str| {
            let towns = parse_csv("towns.csv".into(), text).unwrap();
            Gazetteer::from_rows("小樽市", &rules(), &towns, &posts)
                .unwrap_err()
                .to_string()
        };
        let header = "town,base_town,chome,base_town_kana,lat,lng,postcode\n";
        let ok = "稲穂一丁目,稲穂,1,イナホ,43.19,141.0,0470032\n";
        let e = bad(&format!(
            "{header}{ok}稲穂二丁目,稲穂,2,イナホ,north,141.0,0470032\n"
        ));
        assert_eq!(
            e,
            "towns.csv: line 3: lat 'north' is not a valid coordinate"
        );
        let e = bad(&format!(
            "{header}{ok}稲穂三丁目,稲穂,2,イナホ,43.1,141.0,0470032\n"
        ));
        assert!(e.starts_with("towns.csv: line 3: town '稲穂三丁目'"), "{e}");
        let e = bad(&format!(
            "{header}稲穂一丁目,稲穂,1,イナホ,43.19,141.0,0600001\n"
        ));
        assert!(e.contains("line 2") && e.contains("0600001"), "{e}");
        let e = bad("town,base_town\n");
        assert!(e.contains("line 1") && e.contains("chome"), "{e}");
        let e = parse_csv("x.csv".into(), "a,b\n1,2,3\n")
            .err()
            .unwrap()
            .to_string();
        assert_eq!(e, "x.csv: line 2: 3 fields where the header has 2");
        let e = parse_csv("x.csv".into(), "a,b\n\"1,2\n")
            .err()
            .unwrap()
            .to_string();
        assert_eq!(e, "x.csv: line 2: unclosed quote");
        let q = parse_csv("x.csv".into(), "\u{FEFF}a,b\r\n\"1,\"\"2\"\"\",3\r\n").unwrap();
        assert_eq!(q.rows[0].1, vec!["1,\"2\"".to_string(), "3".to_string()]);
        let missing = Gazetteer::load(Path::new("/nonexistent"), "小樽市", &rules()).unwrap_err();
        assert_eq!(missing.line, 0);
        assert!(missing.file.ends_with("towns.csv"));
    }
}
