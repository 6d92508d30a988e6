//! Slots of a visit day (R-SLOT-1..5): which (visit day, half-day, position) a request may
//! take, ranked for the operator, and why nothing fits when nothing does.
//!
//! Pure functions over the state of the days: the same [`check`] runs for the ranked list and,
//! again, inside the writing transaction with the half-day locked (see `bookings`), so an
//! offer and a booking can never disagree about a rule.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

use super::rules::BookingRules;
use super::travel::{Place, TravelModel};
use super::{BookingKind, HalfDay, VisitDayKind};

/// One slot: a visit day, a half-day and the visit's position in it (1-based, visit order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SlotRef {
    /// The visit day (Asia/Tokyo civil date).
    pub date: NaiveDate,
    /// Morning or afternoon.
    pub half_day: HalfDay,
    /// 1 = first visit of the half-day.
    pub position: u8,
}

impl std::fmt::Display for SlotRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.date, self.half_day, self.position)
    }
}

/// A visit already holding a slot, as the rules see it (no personal data).
#[derive(Debug, Clone, PartialEq)]
pub struct Occupant {
    /// The booking.
    pub booking_id: i64,
    /// Position in the half-day.
    pub position: u8,
    /// Home, facility or pre-meeting.
    pub kind: BookingKind,
    /// Applicants of the household or facility.
    pub applicants: u32,
    /// Takes the whole half-day (6+ household, facility, pre-meeting).
    pub whole: bool,
    /// Where it is, when its town is known.
    pub place: Option<Place>,
    /// The operator's travel estimate, for an address whose town is not in the list.
    pub manual_minutes: Option<u32>,
}

/// A visit day with what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct DayState {
    /// The date.
    pub date: NaiveDate,
    /// Home or facility day.
    pub kind: VisitDayKind,
    /// The manager opened the 3rd afternoon visit for this day (R-SLOT-1).
    pub pm_extra_open: bool,
    /// Live bookings of the morning, by position.
    pub am: Vec<Occupant>,
    /// Live bookings of the afternoon, by position.
    pub pm: Vec<Occupant>,
}

impl DayState {
    /// An empty day.
    pub fn new(date: NaiveDate, kind: VisitDayKind, pm_extra_open: bool) -> Self {
        DayState {
            date,
            kind,
            pm_extra_open,
            am: Vec::new(),
            pm: Vec::new(),
        }
    }

    /// The live bookings of a half-day.
    pub fn half(&self, h: HalfDay) -> &[Occupant] {
        match h {
            HalfDay::Am => &self.am,
            HalfDay::Pm => &self.pm,
        }
    }

    /// Adds a booking to the state (for tests and simulations).
    pub fn push(&mut self, h: HalfDay, o: Occupant) {
        let v = match h {
            HalfDay::Am => &mut self.am,
            HalfDay::Pm => &mut self.pm,
        };
        v.push(o);
        v.sort_by_key(|o| o.position);
    }
}

/// What the caller wants (R-SLOT-5): a period, weekdays and a half-day, each optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Wish {
    /// Earliest wished date.
    #[serde(default)]
    pub from: Option<NaiveDate>,
    /// Latest wished date.
    #[serde(default)]
    pub to: Option<NaiveDate>,
    /// Wished weekdays (empty: any).
    #[serde(default)]
    pub weekdays: Vec<Weekday>,
    /// Wished half-day (none: either).
    #[serde(default)]
    pub half_day: Option<HalfDay>,
}

/// A request for a slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Home visit or facility visit.
    pub kind: BookingKind,
    /// Applicants of the household or facility.
    pub applicants: u32,
    /// Where, when the town is known.
    pub place: Option<Place>,
    /// The operator's travel estimate when the town is not known.
    pub manual_minutes: Option<u32>,
    /// The caller's wish.
    pub wish: Wish,
    /// A booking being moved: its own slot does not count against it.
    pub moving: Option<i64>,
}

/// Why a slot cannot be taken, in words an operator can repeat to the caller.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    /// Not a visit day of the right kind.
    WrongDay,
    /// Inside the lead time: the first date that may be booked.
    LeadTime { earliest: NaiveDate },
    /// The slot or the half-day is taken.
    Full,
    /// The 3rd afternoon visit is not opened for this day, or the first two are not booked.
    ExtraClosed,
    /// A move between consecutive visits would be too long.
    TooFar { minutes: u32, limit: u32 },
    /// A 6+ household needs an empty half-day.
    NeedsEmptyHalfDay,
}

impl Refusal {
    /// The Japanese sentence for the operator.
    pub fn say(&self) -> String {
        match self {
            Refusal::WrongDay => "この日はこの種類の訪問日ではありません。".into(),
            Refusal::LeadTime { earliest } => format!(
                "準備期間が必要なため、{}以降の日程でのご案内になります。",
                ja_date(*earliest)
            ),
            Refusal::Full => "この枠は埋まっています。".into(),
            Refusal::ExtraClosed => {
                "午後3件目の枠は、この日は開いていません（午後の2件が埋まり、管理者が開いた日のみ）。"
                    .into()
            }
            Refusal::TooFar { minutes, limit } => format!(
                "同じ時間帯の他の訪問先から移動に約{minutes}分かかり、上限の{limit}分を超えます。"
            ),
            Refusal::NeedsEmptyHalfDay => {
                "6名以上のご家庭は半日（午前または午後）を貸し切るため、空いている半日が必要です。"
                    .into()
            }
        }
    }
}

/// `2026年7月1日(水)`.
pub fn ja_date(d: NaiveDate) -> String {
    const W: [&str; 7] = ["月", "火", "水", "木", "金", "土", "日"];
    format!(
        "{}年{}月{}日({})",
        d.year(),
        d.month(),
        d.day(),
        W[d.weekday().num_days_from_monday() as usize]
    )
}

/// The slot layout of a half-day for a kind of booking: (regular positions, extra position).
fn layout(rules: &BookingRules, day: &DayState, h: HalfDay, kind: BookingKind) -> (u8, Option<u8>) {
    match (day.kind, kind) {
        (VisitDayKind::Home, BookingKind::Home) => match h {
            HalfDay::Am => (rules.home_am_windows.len() as u8, None),
            HalfDay::Pm => {
                let n = rules.home_pm_windows.len() as u8;
                (n, day.pm_extra_open.then_some(n + 1))
            }
        },
        (VisitDayKind::Facility, BookingKind::Facility | BookingKind::PreMeeting) => (1, None),
        _ => (0, None),
    }
}

/// The window announced to the citizen for a slot (R-SLOT-3).
pub fn window(rules: &BookingRules, kind: VisitDayKind, slot: SlotRef) -> String {
    let i = usize::from(slot.position.max(1)) - 1;
    match (kind, slot.half_day) {
        (VisitDayKind::Home, HalfDay::Am) => rules.home_am_windows.get(i).cloned(),
        (VisitDayKind::Home, HalfDay::Pm) => rules.home_pm_windows.get(i).cloned().or_else(|| {
            (i == rules.home_pm_windows.len()).then(|| rules.home_pm_extra_window.clone())
        }),
        (VisitDayKind::Facility, HalfDay::Am) => Some(rules.facility_am_window.clone()),
        (VisitDayKind::Facility, HalfDay::Pm) => Some(rules.facility_pm_window.clone()),
    }
    .unwrap_or_default()
}

/// Minutes between two visits: the model between known towns, otherwise the operator's
/// estimate (the larger of the two when both gave one).
fn minutes_between(
    model: &dyn TravelModel,
    a: (&Option<Place>, Option<u32>),
    b: (&Option<Place>, Option<u32>),
) -> u32 {
    match (a.0, b.0) {
        (Some(pa), Some(pb)) => model.estimate(pa, pb).minutes,
        _ => a.1.into_iter().chain(b.1).max().unwrap_or(u32::MAX),
    }
}

/// Whether `req` may take `slot` on `day`, given today's date (Asia/Tokyo).
///
/// On success, the longest move the visit adds to its half-day (0 when alone).
pub fn check(
    rules: &BookingRules,
    model: &dyn TravelModel,
    today: NaiveDate,
    day: &DayState,
    slot: SlotRef,
    req: &Request,
) -> Result<u32, Refusal> {
    let kind = req.kind;
    let (regular, extra) = layout(rules, day, slot.half_day, kind);
    if regular == 0 || slot.date != day.date {
        return Err(Refusal::WrongDay);
    }
    let is_facility = kind == BookingKind::Facility;
    let lead = i64::from(rules.lead_days(is_facility, req.applicants));
    let earliest = today + chrono::Duration::days(lead);
    if kind != BookingKind::PreMeeting && slot.date < earliest {
        return Err(Refusal::LeadTime { earliest });
    }
    let others: Vec<&Occupant> = day
        .half(slot.half_day)
        .iter()
        .filter(|o| Some(o.booking_id) != req.moving)
        .collect();
    let is_extra = Some(slot.position) == extra;
    if slot.position == 0 || (slot.position > regular && !is_extra) {
        return Err(
            if slot.position == regular + 1 && kind == BookingKind::Home {
                Refusal::ExtraClosed
            } else {
                Refusal::Full
            },
        );
    }
    if others
        .iter()
        .any(|o| o.whole || o.position == slot.position)
    {
        return Err(Refusal::Full);
    }
    let whole = kind != BookingKind::Home || req.applicants >= rules.whole_half_day_applicants;
    if whole {
        if !others.is_empty() {
            return Err(Refusal::NeedsEmptyHalfDay);
        }
        if slot.position != 1 {
            return Err(Refusal::Full);
        }
        return Ok(0);
    }
    if is_extra && others.iter().filter(|o| o.position <= regular).count() < regular as usize {
        return Err(Refusal::ExtraClosed);
    }
    // Travel between consecutive visits, in visit order, with the new one in its place.
    let me = (&req.place, req.manual_minutes);
    let before = others
        .iter()
        .filter(|o| o.position < slot.position)
        .max_by_key(|o| o.position);
    let after = others
        .iter()
        .filter(|o| o.position > slot.position)
        .min_by_key(|o| o.position);
    let limit_to = |pos: u8| {
        if Some(pos) == extra && pos > regular {
            rules.extra_travel_limit_minutes
        } else {
            rules.travel_limit_minutes
        }
    };
    let mut longest = 0;
    if let Some(b) = before {
        let m = minutes_between(model, (&b.place, b.manual_minutes), me);
        let limit = limit_to(slot.position);
        if m > limit {
            return Err(Refusal::TooFar { minutes: m, limit });
        }
        longest = longest.max(m);
    }
    if let Some(a) = after {
        let m = minutes_between(model, me, (&a.place, a.manual_minutes));
        let limit = limit_to(a.position);
        if m > limit {
            return Err(Refusal::TooFar { minutes: m, limit });
        }
        longest = longest.max(m);
    }
    Ok(longest)
}

/// One offer of the ranked list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Offer {
    /// The slot.
    pub slot: SlotRef,
    /// The window announced to the citizen (R-SLOT-3).
    pub window: String,
    /// Days outside the wished period (0 = inside).
    pub days_off_wish: i64,
    /// The weekday or half-day is not the wished one.
    pub off_wish: bool,
    /// The longest move the visit adds to its half-day, minutes.
    pub travel_minutes: u32,
    /// Opens an empty half-day (rather than joining visits already there).
    pub opens_half_day: bool,
    /// The 3rd afternoon visit.
    pub extra: bool,
}

/// The ranked list, or why nothing fits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Search {
    /// Feasible slots, best first.
    pub offers: Vec<Offer>,
    /// When there are no offers: why, in sentences an operator can repeat.
    pub why_none: Vec<String>,
}

/// How an offer ranks: days off the wish, off the wished weekday/half-day, capacity cost,
/// travel minutes, then the slot itself (earlier first).
type RankKey = (i64, bool, u8, u32, SlotRef);

/// Every feasible slot for `req` over `days`, best first (R-SLOT-5): closest to the wish, then
/// the one that keeps the most capacity for later callers (join a half-day with a visit
/// nearby before opening an empty one; keep empty half-days for 6+ households when few
/// remain; the 3rd afternoon visit last), then the shorter move, then the earlier date.
pub fn search(
    rules: &BookingRules,
    model: &dyn TravelModel,
    today: NaiveDate,
    days: &[DayState],
    req: &Request,
) -> Search {
    let day_kind = match req.kind {
        BookingKind::Home => VisitDayKind::Home,
        _ => VisitDayKind::Facility,
    };
    let empty_half_days = days
        .iter()
        .filter(|d| d.kind == day_kind && d.date >= today)
        .map(|d| usize::from(d.am.is_empty()) + usize::from(d.pm.is_empty()))
        .sum::<usize>();
    // Few empty half-days left: opening one for a small household costs more.
    let scarce = empty_half_days <= 4;
    let mut ranked: Vec<(RankKey, Offer)> = Vec::new();
    let mut refusals: BTreeMap<u8, Refusal> = BTreeMap::new();
    let mut last_full: Option<NaiveDate> = None;
    let mut any_day = false;
    for day in days.iter().filter(|d| d.kind == day_kind) {
        any_day = true;
        for h in HalfDay::ALL.iter().copied() {
            let (regular, extra) = layout(rules, day, h, req.kind);
            let top = extra.unwrap_or(regular).max(regular + 1);
            for position in 1..=top {
                let slot = SlotRef {
                    date: day.date,
                    half_day: h,
                    position,
                };
                match check(rules, model, today, day, slot, req) {
                    Ok(travel) => {
                        let days_off = days_off(&req.wish, day.date);
                        let off_wish = !req.wish.weekdays.is_empty()
                            && !req.wish.weekdays.contains(&day.date.weekday())
                            || req.wish.half_day.is_some_and(|w| w != h);
                        let others = day
                            .half(h)
                            .iter()
                            .filter(|o| Some(o.booking_id) != req.moving)
                            .count();
                        let opens = others == 0;
                        let is_extra = Some(position) == extra && position > regular;
                        let small = req.applicants < rules.whole_half_day_applicants
                            && req.kind == BookingKind::Home;
                        let cost = match (opens, is_extra) {
                            (_, true) => 3,
                            (true, _) if small && scarce => 2,
                            (true, _) => 1,
                            (false, false) => 0,
                        };
                        let offer = Offer {
                            slot,
                            window: window(rules, day.kind, slot),
                            days_off_wish: days_off,
                            off_wish,
                            travel_minutes: travel,
                            opens_half_day: opens,
                            extra: is_extra,
                        };
                        ranked.push(((days_off, off_wish, cost, travel, slot), offer));
                    }
                    Err(r) => {
                        let key = match r {
                            Refusal::LeadTime { .. } => 0,
                            Refusal::TooFar { .. } => 1,
                            Refusal::NeedsEmptyHalfDay => 2,
                            Refusal::Full => 3,
                            Refusal::ExtraClosed => 4,
                            Refusal::WrongDay => 5,
                        };
                        if matches!(r, Refusal::Full | Refusal::NeedsEmptyHalfDay) {
                            last_full = Some(last_full.map_or(day.date, |d| d.max(day.date)));
                        }
                        refusals.entry(key).or_insert(r);
                    }
                }
            }
        }
    }
    ranked.sort_by_key(|r| r.0);
    // One offer per half-day: the operator picks a time, not a position number.
    let mut seen = std::collections::HashSet::new();
    let offers: Vec<Offer> = ranked
        .into_iter()
        .map(|(_, o)| o)
        .filter(|o| seen.insert((o.slot.date, o.slot.half_day)))
        .collect();
    let mut why_none = Vec::new();
    if offers.is_empty() {
        if !any_day {
            why_none.push("訪問日程がまだ登録されていません。".to_string());
        }
        if let Some(r @ Refusal::LeadTime { .. }) = refusals.get(&0) {
            why_none.push(r.say());
        }
        if let Some(r) = refusals.get(&1) {
            why_none.push(format!(
                "空いている時間帯は、既に予約のある訪問先から遠すぎます（{}）",
                r.say()
            ));
        }
        if let Some(r) = refusals.get(&2) {
            why_none.push(r.say());
        }
        if let Some(d) = last_full {
            why_none.push(format!("{}まで予約枠が埋まっています。", ja_date(d)));
        }
        if why_none.is_empty() {
            why_none.push("訪問期間内に空いている枠がありません。".to_string());
        }
    }
    Search { offers, why_none }
}

/// Days between `date` and the wished period (0 inside it); with only a start, distance to it.
fn days_off(w: &Wish, date: NaiveDate) -> i64 {
    match (w.from, w.to) {
        (Some(f), Some(_)) if date < f => (f - date).num_days(),
        (Some(_), Some(t)) if date > t => (date - t).num_days(),
        (Some(_), Some(_)) => 0,
        (Some(f), None) => (date - f).num_days().abs(),
        (None, Some(t)) if date > t => (date - t).num_days(),
        (None, _) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::travel::StraightLine;
    use crate::booking::TravelRules;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn place(lat: f64, lng: f64) -> Option<Place> {
        Some(Place {
            town: None,
            lat,
            lng,
        })
    }

    fn home(id: i64, position: u8, applicants: u32, p: Option<Place>) -> Occupant {
        Occupant {
            booking_id: id,
            position,
            kind: BookingKind::Home,
            applicants,
            whole: applicants >= 6,
            place: p,
            manual_minutes: None,
        }
    }

    fn req(applicants: u32, p: Option<Place>) -> Request {
        Request {
            kind: BookingKind::Home,
            applicants,
            place: p,
            manual_minutes: None,
            wish: Wish::default(),
            moving: None,
        }
    }

    const TODAY: &str = "2026-06-01";

    fn slot(date: &str, h: HalfDay, position: u8) -> SlotRef {
        SlotRef {
            date: d(date),
            half_day: h,
            position,
        }
    }

    #[test]
    fn a_far_second_home_is_refused_with_the_minutes() {
        // R-SLOT-4: 11 km apart → about 43 minutes with the shipped model.
        let rules = BookingRules::default();
        let m = StraightLine::new(TravelRules::default());
        let mut day = DayState::new(d("2026-07-01"), VisitDayKind::Home, false);
        day.push(HalfDay::Am, home(1, 1, 1, place(43.19, 141.0)));
        let far = req(1, place(43.29, 141.0));
        let r = check(
            &rules,
            &m,
            d(TODAY),
            &day,
            slot("2026-07-01", HalfDay::Am, 2),
            &far,
        );
        assert_eq!(
            r,
            Err(Refusal::TooFar {
                minutes: 43,
                limit: 30
            })
        );
        let near = req(1, place(43.20, 141.0));
        assert!(check(
            &rules,
            &m,
            d(TODAY),
            &day,
            slot("2026-07-01", HalfDay::Am, 2),
            &near
        )
        .is_ok());
        // The afternoon of the same day is free for the far one.
        let s = search(&rules, &m, d(TODAY), &[day], &far);
        assert_eq!(s.offers.len(), 1);
        assert_eq!(s.offers[0].slot.half_day, HalfDay::Pm);
    }

    #[test]
    fn six_applicants_take_the_whole_half_day() {
        let rules = BookingRules::default();
        let m = StraightLine::new(TravelRules::default());
        let mut day = DayState::new(d("2026-07-01"), VisitDayKind::Home, true);
        let big = req(6, place(43.19, 141.0));
        assert_eq!(
            check(
                &rules,
                &m,
                d(TODAY),
                &day,
                slot("2026-07-01", HalfDay::Am, 1),
                &big
            ),
            Ok(0)
        );
        day.push(HalfDay::Am, home(1, 1, 6, place(43.19, 141.0)));
        let small = req(1, place(43.19, 141.0));
        assert_eq!(
            check(
                &rules,
                &m,
                d(TODAY),
                &day,
                slot("2026-07-01", HalfDay::Am, 2),
                &small
            ),
            Err(Refusal::Full)
        );
        day.push(HalfDay::Pm, home(2, 2, 1, place(43.19, 141.0)));
        assert_eq!(
            check(
                &rules,
                &m,
                d(TODAY),
                &day,
                slot("2026-07-01", HalfDay::Pm, 1),
                &big
            ),
            Err(Refusal::NeedsEmptyHalfDay)
        );
    }

    #[test]
    fn the_third_afternoon_visit_needs_the_switch_two_visits_and_15_minutes() {
        let rules = BookingRules::default();
        let m = StraightLine::new(TravelRules::default());
        let base = place(43.19, 141.0);
        let mut day = DayState::new(d("2026-07-01"), VisitDayKind::Home, false);
        day.push(HalfDay::Pm, home(1, 1, 1, base.clone()));
        day.push(HalfDay::Pm, home(2, 2, 1, base.clone()));
        let third = slot("2026-07-01", HalfDay::Pm, 3);
        let near = req(1, place(43.195, 141.0));
        assert_eq!(
            check(&rules, &m, d(TODAY), &day, third, &near),
            Err(Refusal::ExtraClosed)
        );
        day.pm_extra_open = true;
        assert!(check(&rules, &m, d(TODAY), &day, third, &near).is_ok());
        // ~3.3 km: about 17 minutes, within 30 but not within 15.
        let medium = req(1, place(43.22, 141.0));
        assert_eq!(
            check(&rules, &m, d(TODAY), &day, third, &medium),
            Err(Refusal::TooFar {
                minutes: 17,
                limit: 15
            })
        );
        // With only one visit, the 3rd position is not offered.
        let mut one = DayState::new(d("2026-07-01"), VisitDayKind::Home, true);
        one.push(HalfDay::Pm, home(1, 1, 1, base));
        assert_eq!(
            check(&rules, &m, d(TODAY), &one, third, &near),
            Err(Refusal::ExtraClosed)
        );
    }

    #[test]
    fn lead_times_hold_for_homes_and_large_facilities() {
        let rules = BookingRules::default();
        let m = StraightLine::new(TravelRules::default());
        let today = d("2026-07-01");
        let home_day = DayState::new(d("2026-07-14"), VisitDayKind::Home, false);
        let r = check(
            &rules,
            &m,
            today,
            &home_day,
            slot("2026-07-14", HalfDay::Am, 1),
            &req(1, None),
        );
        assert_eq!(
            r,
            Err(Refusal::LeadTime {
                earliest: d("2026-07-15")
            })
        );
        let ok_day = DayState::new(d("2026-07-15"), VisitDayKind::Home, false);
        let mut r1 = req(1, place(43.19, 141.0));
        assert!(check(
            &rules,
            &m,
            today,
            &ok_day,
            slot("2026-07-15", HalfDay::Am, 1),
            &r1
        )
        .is_ok());
        let fac_day = DayState::new(d("2026-07-29"), VisitDayKind::Facility, false);
        r1.kind = BookingKind::Facility;
        r1.applicants = 12;
        assert_eq!(
            check(
                &rules,
                &m,
                today,
                &fac_day,
                slot("2026-07-29", HalfDay::Am, 1),
                &r1
            ),
            Err(Refusal::LeadTime {
                earliest: d("2026-07-31")
            })
        );
        let s = search(&rules, &m, today, &[home_day], &req(1, place(43.19, 141.0)));
        assert!(s.offers.is_empty());
        assert!(
            s.why_none[0].contains("2026年7月15日(水)以降"),
            "{:?}",
            s.why_none
        );
    }

    #[test]
    fn ranking_prefers_the_wish_then_joining_a_nearby_visit() {
        let rules = BookingRules::default();
        let m = StraightLine::new(TravelRules::default());
        let mut a = DayState::new(d("2026-07-01"), VisitDayKind::Home, false);
        let b = DayState::new(d("2026-07-02"), VisitDayKind::Home, false);
        let c = DayState::new(d("2026-07-08"), VisitDayKind::Home, false);
        a.push(HalfDay::Pm, home(1, 1, 1, place(43.19, 141.0)));
        let mut r = req(1, place(43.191, 141.0));
        r.wish.from = Some(d("2026-07-01"));
        r.wish.to = Some(d("2026-07-03"));
        let s = search(&rules, &m, d(TODAY), &[a.clone(), b.clone(), c.clone()], &r);
        // Inside the wish both days are equally close: join the afternoon with a visit nearby.
        assert_eq!(s.offers[0].slot, slot("2026-07-01", HalfDay::Pm, 2));
        assert!(!s.offers[0].opens_half_day);
        assert_eq!(s.offers.last().unwrap().slot.date, d("2026-07-08"));
        // A wish for Wednesday the 8th puts that day first.
        r.wish.from = Some(d("2026-07-08"));
        r.wish.to = Some(d("2026-07-08"));
        let s = search(&rules, &m, d(TODAY), &[a, b, c], &r);
        assert_eq!(s.offers[0].slot.date, d("2026-07-08"));
    }
}
