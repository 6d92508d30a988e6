//! Opening hours and closing days of the call center (R-HOURS-1, R-PERIOD-1).
//!
//! Every rule is decided in the profile's timezone (Asia/Tokyo by default), never in UTC:
//! a call at 23:30 UTC on a Sunday is a Monday-morning call in Otaru.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Years for which the national-holiday rules (incl. the equinox formula) are trusted.
const HOLIDAY_YEARS: std::ops::RangeInclusive<i32> = 1980..=2099;

/// Upper bound on days scanned by `next_opening`, so a pathological profile cannot stall
/// the SIP path; a real profile opens again within a couple of weeks.
const MAX_SCAN_DAYS: i64 = 1000;

/// A configuration error, naming the offending key so that the operator can fix the profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// A time of day is not `HH:MM` (or `HH:MM:SS`).
    #[error("`{key}`: {value:?} is not a time of day (expected \"HH:MM\", e.g. \"09:00\")")]
    BadTime { key: &'static str, value: String },
    /// The closing time is not after the opening time.
    #[error("`close_time` ({close}) must be after `open_time` ({open}); closing is exclusive")]
    CloseNotAfterOpen { open: String, close: String },
    /// The timezone is not an IANA name known to chrono-tz.
    #[error("`timezone`: {0:?} is not an IANA timezone name (e.g. \"Asia/Tokyo\")")]
    BadTimezone(String),
    /// A month-day is not `MM-DD` or names no real day.
    #[error("`{key}`: {value:?} is not a month-day (expected \"MM-DD\", e.g. \"12-29\")")]
    BadMonthDay { key: &'static str, value: String },
    /// The period ends before it starts.
    #[error("`period_end` ({end}) is before `period_start` ({start})")]
    PeriodEndsBeforeStart { start: NaiveDate, end: NaiveDate },
    /// No weekday is open.
    #[error("`open_weekdays` is empty: the line would never open")]
    NoOpenWeekday,
    /// The same date is both an extra closed and an extra open day.
    #[error("{0} is listed in both `extra_closed_days` and `extra_open_days`")]
    ConflictingExtraDay(NaiveDate),
    /// An extra open day lies outside the call-center period, where it could never apply.
    #[error("`extra_open_days`: {date} is outside the period {start}..={end}")]
    ExtraOpenOutsidePeriod {
        date: NaiveDate,
        start: NaiveDate,
        end: NaiveDate,
    },
    /// National holidays are requested for a year the rules do not cover.
    #[error(
        "`national_holidays`: the period {start}..={end} reaches beyond the years with known \
         holiday rules (1980-2099); set `national_holidays = false` and list closures in \
         `extra_closed_days`"
    )]
    HolidayYearsUnsupported { start: NaiveDate, end: NaiveDate },
}

/// Opening-hours section of a city profile; every default is the Otaru 2026 spec value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HoursConfig {
    /// Weekdays on which the line opens ("Mon", "Tuesday", ...).
    pub open_weekdays: Vec<Weekday>,
    /// Opening time, "HH:MM", inclusive.
    pub open_time: String,
    /// Closing time, "HH:MM", exclusive: a call at exactly this time is closed.
    pub close_time: String,
    /// IANA timezone every rule is decided in.
    pub timezone: String,
    /// First day of the call-center period (inclusive).
    #[serde(deserialize_with = "de_date")]
    pub period_start: NaiveDate,
    /// Last day of the call-center period (inclusive).
    #[serde(deserialize_with = "de_date")]
    pub period_end: NaiveDate,
    /// First day of the year-end closure, "MM-DD".
    pub year_end_start: String,
    /// Last day of the year-end closure, "MM-DD" (may be in the next year).
    pub year_end_end: String,
    /// Whether Japanese national holidays (incl. 振替休日 and 国民の休日) close the line.
    pub national_holidays: bool,
    /// Dates closed in addition to the rules.
    #[serde(deserialize_with = "de_dates")]
    pub extra_closed_days: Vec<NaiveDate>,
    /// Dates opened despite the rules (weekend, holiday, year-end); must lie in the period.
    #[serde(deserialize_with = "de_dates")]
    pub extra_open_days: Vec<NaiveDate>,
}

impl Default for HoursConfig {
    fn default() -> Self {
        Self {
            open_weekdays: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            open_time: "09:00".into(),
            close_time: "17:00".into(),
            timezone: "Asia/Tokyo".into(),
            period_start: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap_or_default(),
            period_end: NaiveDate::from_ymd_opt(2026, 12, 24).unwrap_or_default(),
            year_end_start: "12-29".into(),
            year_end_end: "01-03".into(),
            national_holidays: true,
            extra_closed_days: Vec::new(),
            extra_open_days: Vec::new(),
        }
    }
}

impl HoursConfig {
    /// Checks every key and reports the first bad one.
    pub fn validate(&self) -> Result<(), CalendarError> {
        self.parse().map(|_| ())
    }

    fn parse(&self) -> Result<OpeningHours, CalendarError> {
        let open = parse_time("open_time", &self.open_time)?;
        let close = parse_time("close_time", &self.close_time)?;
        if close <= open {
            return Err(CalendarError::CloseNotAfterOpen {
                open: self.open_time.clone(),
                close: self.close_time.clone(),
            });
        }
        let tz = Tz::from_str(self.timezone.trim())
            .map_err(|_| CalendarError::BadTimezone(self.timezone.clone()))?;
        if self.period_end < self.period_start {
            return Err(CalendarError::PeriodEndsBeforeStart {
                start: self.period_start,
                end: self.period_end,
            });
        }
        let year_end_start = parse_month_day("year_end_start", &self.year_end_start)?;
        let year_end_end = parse_month_day("year_end_end", &self.year_end_end)?;
        if self.open_weekdays.is_empty() {
            return Err(CalendarError::NoOpenWeekday);
        }
        if let Some(d) = self
            .extra_open_days
            .iter()
            .find(|d| self.extra_closed_days.contains(d))
        {
            return Err(CalendarError::ConflictingExtraDay(*d));
        }
        if let Some(d) = self
            .extra_open_days
            .iter()
            .find(|d| **d < self.period_start || **d > self.period_end)
        {
            return Err(CalendarError::ExtraOpenOutsidePeriod {
                date: *d,
                start: self.period_start,
                end: self.period_end,
            });
        }
        if self.national_holidays
            && !(HOLIDAY_YEARS.contains(&self.period_start.year())
                && HOLIDAY_YEARS.contains(&self.period_end.year()))
        {
            return Err(CalendarError::HolidayYearsUnsupported {
                start: self.period_start,
                end: self.period_end,
            });
        }
        Ok(OpeningHours {
            open_weekdays: self.open_weekdays.clone(),
            open,
            close,
            tz,
            period_start: self.period_start,
            period_end: self.period_end,
            year_end_start,
            year_end_end,
            national_holidays: self.national_holidays,
            extra_closed_days: self.extra_closed_days.clone(),
            extra_open_days: self.extra_open_days.clone(),
        })
    }
}

/// Why a date is a closing day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HolidayKind {
    /// A national holiday, including 振替休日 and 国民の休日.
    National,
    /// Inside the year-end closure (12/29-1/3 by default).
    YearEnd,
    /// Listed in `extra_closed_days`.
    ExtraClosed,
}

crate::code_enum! {
    /// Why the line is closed at an instant.
    pub enum ClosedReason: "closed_reason" {
        /// An open day, but before the opening or at/after the closing time.
        OutsideHours = "outside_hours" / "受付時間外（夜間）",
        /// A day that is not in `open_weekdays`.
        Weekend = "weekend" / "土日",
        /// A national holiday.
        NationalHoliday = "national_holiday" / "祝日",
        /// The year-end closure.
        YearEnd = "year_end" / "年末年始",
        /// Before the period starts or after it ends.
        OutsidePeriod = "outside_period" / "受付期間外",
        /// Listed in `extra_closed_days`.
        ExtraClosed = "extra_closed" / "臨時休業日",
    }
}

/// Whether the line takes calls at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OpenState {
    /// Calls are offered to operators.
    Open,
    /// Calls get the "closed" answer, for this reason.
    Closed {
        /// The first rule that closed the line.
        reason: ClosedReason,
    },
}

impl OpenState {
    /// True when calls are offered to operators.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Open)
    }
}

/// The validated opening-hours rules of one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpeningHours {
    open_weekdays: Vec<Weekday>,
    open: NaiveTime,
    close: NaiveTime,
    tz: Tz,
    period_start: NaiveDate,
    period_end: NaiveDate,
    year_end_start: (u32, u32),
    year_end_end: (u32, u32),
    national_holidays: bool,
    extra_closed_days: Vec<NaiveDate>,
    extra_open_days: Vec<NaiveDate>,
}

impl TryFrom<&HoursConfig> for OpeningHours {
    type Error = CalendarError;

    fn try_from(config: &HoursConfig) -> Result<Self, Self::Error> {
        config.parse()
    }
}

impl OpeningHours {
    /// Builds the rules from a profile section, validating it first.
    pub fn new(config: &HoursConfig) -> Result<Self, CalendarError> {
        config.parse()
    }

    /// The timezone the rules are decided in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// Why `date` is a closing day, if it is one; weekends and the period are left to `is_open_at`.
    pub fn is_holiday(&self, date: NaiveDate) -> Option<HolidayKind> {
        if self.extra_closed_days.contains(&date) {
            return Some(HolidayKind::ExtraClosed);
        }
        // An explicit opening is the city's decision and beats every calendar rule.
        if self.extra_open_days.contains(&date) {
            return None;
        }
        if self.national_holidays && is_national_holiday(date) {
            return Some(HolidayKind::National);
        }
        if self.in_year_end(date) {
            return Some(HolidayKind::YearEnd);
        }
        None
    }

    /// Whether the line is open at `at`, and if not, the first rule that closes it.
    pub fn is_open_at(&self, at: DateTime<Utc>) -> OpenState {
        let Some(local) = self.to_local(at) else {
            // Only instants at the very edge of chrono's range get here: no period covers them.
            return OpenState::Closed {
                reason: ClosedReason::OutsidePeriod,
            };
        };
        match self.day_closed(local.date()) {
            Some(reason) => OpenState::Closed { reason },
            None if self.within_hours(local.time()) => OpenState::Open,
            None => OpenState::Closed {
                reason: ClosedReason::OutsideHours,
            },
        }
    }

    /// The first instant at or after `now` when the line is open; `None` once the period has ended.
    // `now` itself when open; the scan is capped at MAX_SCAN_DAYS, beyond which it is also `None`.
    pub fn next_opening(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = self.to_local(now)?;
        let today = local.date();
        if today > self.period_end {
            return None;
        }
        if self.day_closed(today).is_none() && local.time() < self.close {
            if local.time() >= self.open {
                return Some(now);
            }
            if let Some(at) = self.local_to_utc(today.and_time(self.open)) {
                // A DST jump could move the local opening before `now`; never go back.
                return Some(at.max(now));
            }
        }
        let mut day = today.max(self.period_start);
        if day == today {
            day = day.succ_opt()?;
        }
        for _ in 0..MAX_SCAN_DAYS {
            if day > self.period_end {
                return None;
            }
            let opening = if self.is_open_day(day) {
                self.local_to_utc(day.and_time(self.open))
            } else {
                None
            };
            if opening.is_some() {
                return opening;
            }
            day = day.succ_opt()?;
        }
        None
    }

    /// Seconds until the next opening, rounded up, for a SIP `Retry-After` header.
    pub fn retry_after_secs(&self, now: DateTime<Utc>) -> Option<u64> {
        let next = self.next_opening(now)?;
        let delta = next.signed_duration_since(now);
        let secs = delta.num_seconds() + i64::from(delta.subsec_nanos() > 0);
        u64::try_from(secs).ok()
    }

    /// Whether `date` is a day the line opens at all (ignoring the time of day).
    pub fn is_open_day(&self, date: NaiveDate) -> bool {
        self.day_closed(date).is_none()
    }

    fn day_closed(&self, date: NaiveDate) -> Option<ClosedReason> {
        if date < self.period_start || date > self.period_end {
            return Some(ClosedReason::OutsidePeriod);
        }
        if let Some(kind) = self.is_holiday(date) {
            return Some(match kind {
                HolidayKind::National => ClosedReason::NationalHoliday,
                HolidayKind::YearEnd => ClosedReason::YearEnd,
                HolidayKind::ExtraClosed => ClosedReason::ExtraClosed,
            });
        }
        if self.extra_open_days.contains(&date) || self.open_weekdays.contains(&date.weekday()) {
            None
        } else {
            Some(ClosedReason::Weekend)
        }
    }

    fn within_hours(&self, time: NaiveTime) -> bool {
        self.open <= time && time < self.close
    }

    fn in_year_end(&self, date: NaiveDate) -> bool {
        let md = (date.month(), date.day());
        let (start, end) = (self.year_end_start, self.year_end_end);
        if start <= end {
            start <= md && md <= end
        } else {
            // The closure wraps over New Year (12-29..01-03).
            md >= start || md <= end
        }
    }

    fn to_local(&self, at: DateTime<Utc>) -> Option<NaiveDateTime> {
        // chrono's `naive_local` panics at the edges of its range; this one cannot.
        let offset = self.tz.offset_from_utc_datetime(&at.naive_utc()).fix();
        at.naive_utc()
            .checked_add_signed(Duration::seconds(i64::from(offset.local_minus_utc())))
    }

    fn local_to_utc(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        // In a DST gap the wall-clock opening does not exist; open at the first real
        // instant after it instead of skipping the whole day.
        let resolved = self.tz.from_local_datetime(&local).earliest().or_else(|| {
            let later = local.checked_add_signed(Duration::hours(1))?;
            self.tz.from_local_datetime(&later).earliest()
        })?;
        Some(resolved.with_timezone(&Utc))
    }
}

fn is_national_holiday(date: NaiveDate) -> bool {
    // yasumi's rules are only trusted for the years we validated; outside them "no holiday"
    // is the honest answer, and it keeps the crate away from extreme dates.
    HOLIDAY_YEARS.contains(&date.year()) && yasumi::is_holiday(date)
}

fn parse_time(key: &'static str, value: &str) -> Result<NaiveTime, CalendarError> {
    let v = value.trim();
    NaiveTime::parse_from_str(v, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(v, "%H:%M:%S"))
        .map_err(|_| CalendarError::BadTime {
            key,
            value: value.to_string(),
        })
}

fn parse_month_day(key: &'static str, value: &str) -> Result<(u32, u32), CalendarError> {
    let bad = || CalendarError::BadMonthDay {
        key,
        value: value.to_string(),
    };
    let (m, d) = value.trim().split_once('-').ok_or_else(bad)?;
    let digits = |s: &str| (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(m) || !digits(d) {
        return Err(bad());
    }
    let (m, d): (u32, u32) = (m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    // 2000 is a leap year, so "02-29" is accepted; it simply never matches in other years.
    NaiveDate::from_ymd_opt(2000, m, d).ok_or_else(bad)?;
    Ok((m, d))
}

/// Accepts a date as "YYYY-MM-DD" or as a native TOML date, which the toml crate hands
/// to serde as a one-entry map; without this, `period_start = 2026-06-01` would not load.
struct ConfigDate(NaiveDate);

impl<'de> Deserialize<'de> for ConfigDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DateVisitor;

        impl<'de> Visitor<'de> for DateVisitor {
            type Value = ConfigDate;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a date \"YYYY-MM-DD\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigDate, E> {
                NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
                    .map(ConfigDate)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConfigDate, A::Error> {
                let Some((_, value)) = map.next_entry::<de::IgnoredAny, String>()? else {
                    return Err(de::Error::invalid_length(0, &self));
                };
                if map.next_key::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(2, &self));
                }
                self.visit_str(&value)
            }
        }

        deserializer.deserialize_any(DateVisitor)
    }
}

fn de_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NaiveDate, D::Error> {
    ConfigDate::deserialize(deserializer).map(|d| d.0)
}

fn de_dates<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<NaiveDate>, D::Error> {
    Vec::<ConfigDate>::deserialize(deserializer).map(|v| v.into_iter().map(|d| d.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::value::{Error as DeError, MapDeserializer, SeqDeserializer};

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("valid test date")
    }

    /// An instant given as Asia/Tokyo wall-clock time.
    fn jst(y: i32, m: u32, day: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Tokyo
            .with_ymd_and_hms(y, m, day, h, min, s)
            .single()
            .expect("JST has no DST")
            .with_timezone(&Utc)
    }

    fn otaru() -> OpeningHours {
        OpeningHours::new(&HoursConfig::default()).expect("defaults are valid")
    }

    /// The Otaru profile with the period stretched to the contract end, so that the
    /// year-end rule (rather than the period) is what closes late December.
    fn otaru_to_contract_end() -> OpeningHours {
        OpeningHours::new(&HoursConfig {
            period_end: d(2027, 1, 8),
            ..HoursConfig::default()
        })
        .expect("valid")
    }

    fn closed(reason: ClosedReason) -> OpenState {
        OpenState::Closed { reason }
    }

    fn national_holidays_of(hours: &OpeningHours, year: i32) -> Vec<NaiveDate> {
        d(year, 1, 1)
            .iter_days()
            .take_while(|day| day.year() == year)
            .filter(|day| hours.is_holiday(*day) == Some(HolidayKind::National))
            .collect()
    }

    // R-HOURS-1: the 18 national holidays of 2026 per the Cabinet Office list, no more.
    #[test]
    fn national_holidays_2026_match_cabinet_office_list() {
        let expected: Vec<NaiveDate> = [
            (1, 1),
            (1, 12),
            (2, 11),
            (2, 23),
            (3, 20),
            (4, 29),
            (5, 3),
            (5, 4),
            (5, 5),
            (5, 6),
            (7, 20),
            (8, 11),
            (9, 21),
            (9, 22),
            (9, 23),
            (10, 12),
            (11, 3),
            (11, 23),
        ]
        .iter()
        .map(|&(m, day)| d(2026, m, day))
        .collect();
        assert_eq!(national_holidays_of(&otaru(), 2026), expected);
    }

    // R-HOURS-1: the 17 national holidays of 2027 per the Cabinet Office list, no more.
    #[test]
    fn national_holidays_2027_match_cabinet_office_list() {
        let expected: Vec<NaiveDate> = [
            (1, 1),
            (1, 11),
            (2, 11),
            (2, 23),
            (3, 21),
            (3, 22),
            (4, 29),
            (5, 3),
            (5, 4),
            (5, 5),
            (7, 19),
            (8, 11),
            (9, 20),
            (9, 23),
            (10, 11),
            (11, 3),
            (11, 23),
        ]
        .iter()
        .map(|&(m, day)| d(2027, m, day))
        .collect();
        assert_eq!(national_holidays_of(&otaru(), 2027), expected);
    }

    // R-HOURS-1: substitute holidays and 国民の休日 count, though the CSV only says 休日.
    #[test]
    fn substitute_and_citizens_holidays_are_holidays() {
        let hours = otaru();
        for day in [d(2026, 5, 6), d(2026, 9, 22), d(2027, 3, 22)] {
            assert_eq!(hours.is_holiday(day), Some(HolidayKind::National), "{day}");
        }
        assert_eq!(hours.is_holiday(d(2026, 9, 24)), None);
    }

    // R-HOURS-1 / R-PERIOD-1: exactly these weekdays inside 2026-06-01..12-24 are closed.
    #[test]
    fn weekday_closures_inside_the_period() {
        let hours = otaru();
        let closed_weekdays: Vec<NaiveDate> = d(2026, 6, 1)
            .iter_days()
            .take_while(|day| *day <= d(2026, 12, 24))
            .filter(|day| day.weekday().num_days_from_monday() < 5)
            .filter(|day| !hours.is_open_day(*day))
            .collect();
        let expected = vec![
            d(2026, 7, 20),
            d(2026, 8, 11),
            d(2026, 9, 21),
            d(2026, 9, 22),
            d(2026, 9, 23),
            d(2026, 10, 12),
            d(2026, 11, 3),
            d(2026, 11, 23),
        ];
        assert_eq!(closed_weekdays, expected);
    }

    // R-HOURS-1: 12/29-1/3 is a closing day even where the period would allow calls.
    #[test]
    fn year_end_closure_closes_dec_30() {
        let hours = otaru_to_contract_end();
        assert_eq!(
            hours.is_holiday(d(2026, 12, 30)),
            Some(HolidayKind::YearEnd)
        );
        assert_eq!(
            hours.is_open_at(jst(2026, 12, 30, 10, 0, 0)),
            closed(ClosedReason::YearEnd)
        );
        assert_eq!(hours.is_holiday(d(2027, 1, 3)), Some(HolidayKind::YearEnd));
        assert_eq!(hours.is_holiday(d(2026, 12, 28)), None);
        assert_eq!(hours.is_holiday(d(2027, 1, 4)), None);
        // With the shipped period, 12/30 is already after the end.
        assert_eq!(
            otaru().is_open_at(jst(2026, 12, 30, 10, 0, 0)),
            closed(ClosedReason::OutsidePeriod)
        );
    }

    // R-HOURS-1: open at 9:00:00, closed a second before, closed at 17:00 (exclusive).
    #[test]
    fn opening_and_closing_boundaries() {
        let hours = otaru();
        assert_eq!(hours.is_open_at(jst(2026, 6, 1, 9, 0, 0)), OpenState::Open);
        assert_eq!(
            hours.is_open_at(jst(2026, 6, 1, 8, 59, 59)),
            closed(ClosedReason::OutsideHours)
        );
        assert_eq!(
            hours.is_open_at(jst(2026, 6, 1, 16, 59, 59)),
            OpenState::Open
        );
        assert_eq!(
            hours.is_open_at(jst(2026, 6, 1, 17, 0, 0)),
            closed(ClosedReason::OutsideHours)
        );
    }

    // R-HOURS-1: each closed reason is reported for the day that causes it.
    #[test]
    fn closed_reasons_per_day() {
        let hours = otaru();
        assert_eq!(
            hours.is_open_at(jst(2026, 6, 6, 10, 0, 0)),
            closed(ClosedReason::Weekend)
        );
        assert_eq!(
            hours.is_open_at(jst(2026, 7, 20, 10, 0, 0)),
            closed(ClosedReason::NationalHoliday)
        );
        assert_eq!(
            hours.is_open_at(jst(2026, 5, 29, 10, 0, 0)),
            closed(ClosedReason::OutsidePeriod)
        );
        assert_eq!(
            hours.is_open_at(jst(2026, 12, 25, 10, 0, 0)),
            closed(ClosedReason::OutsidePeriod)
        );
        assert_eq!(
            hours.is_open_at(jst(2026, 12, 24, 16, 0, 0)),
            OpenState::Open
        );
        assert_eq!(ClosedReason::NationalHoliday.as_str(), "national_holiday");
    }

    // R-HOURS-1: the day is decided in Tokyo: Sunday 23:30 UTC is Monday 08:30 JST.
    #[test]
    fn day_and_time_are_decided_in_tokyo() {
        let hours = otaru();
        let sunday_utc = Utc.with_ymd_and_hms(2026, 6, 7, 23, 30, 0).unwrap();
        assert_eq!(
            hours.is_open_at(sunday_utc),
            closed(ClosedReason::OutsideHours)
        );
        let monday_0000_utc = Utc.with_ymd_and_hms(2026, 6, 8, 0, 0, 0).unwrap();
        assert_eq!(hours.is_open_at(monday_0000_utc), OpenState::Open);
    }

    // R-HOURS-1: after Friday's close the line reopens Monday 09:00 JST.
    #[test]
    fn next_opening_across_a_weekend() {
        let hours = otaru();
        assert_eq!(
            hours.next_opening(jst(2026, 6, 5, 17, 0, 0)),
            Some(jst(2026, 6, 8, 9, 0, 0))
        );
        assert_eq!(
            hours.next_opening(jst(2026, 6, 6, 12, 0, 0)),
            Some(jst(2026, 6, 8, 9, 0, 0))
        );
        // 64 hours, for the SIP Retry-After header.
        assert_eq!(
            hours.retry_after_secs(jst(2026, 6, 5, 17, 0, 0)),
            Some(64 * 3600)
        );
    }

    // R-HOURS-1: the 9/19-9/23 block (weekend + 敬老の日 + 国民の休日 + 秋分の日) ends 9/24.
    #[test]
    fn next_opening_across_silver_week() {
        let hours = otaru();
        let expected = Some(jst(2026, 9, 24, 9, 0, 0));
        assert_eq!(hours.next_opening(jst(2026, 9, 18, 17, 30, 0)), expected);
        assert_eq!(hours.next_opening(jst(2026, 9, 22, 10, 0, 0)), expected);
    }

    // R-HOURS-1: after the last working day of 2026 the line reopens on 2027-01-04.
    #[test]
    fn next_opening_across_year_end() {
        let hours = otaru_to_contract_end();
        assert_eq!(
            hours.next_opening(jst(2026, 12, 28, 17, 0, 0)),
            Some(jst(2027, 1, 4, 9, 0, 0))
        );
    }

    // R-HOURS-1 / R-PERIOD-1: no opening after the period, so no Retry-After either.
    #[test]
    fn next_opening_is_none_after_the_period() {
        let hours = otaru();
        assert_eq!(hours.next_opening(jst(2026, 12, 24, 17, 0, 0)), None);
        assert_eq!(hours.next_opening(jst(2026, 12, 25, 9, 0, 0)), None);
        assert_eq!(hours.next_opening(jst(2027, 6, 1, 9, 0, 0)), None);
        assert_eq!(hours.retry_after_secs(jst(2026, 12, 25, 9, 0, 0)), None);
    }

    // R-HOURS-1 / R-PERIOD-1: before the period the first opening is 2026-06-01 09:00.
    #[test]
    fn next_opening_before_the_period_and_same_day() {
        let hours = otaru();
        assert_eq!(
            hours.next_opening(jst(2026, 5, 20, 12, 0, 0)),
            Some(jst(2026, 6, 1, 9, 0, 0))
        );
        assert_eq!(
            hours.next_opening(jst(2026, 6, 2, 7, 15, 0)),
            Some(jst(2026, 6, 2, 9, 0, 0))
        );
        let open_now = jst(2026, 6, 2, 11, 0, 0);
        assert_eq!(hours.next_opening(open_now), Some(open_now));
        assert_eq!(hours.retry_after_secs(open_now), Some(0));
    }

    // R-HOURS-1: the city's exceptions override the calendar both ways.
    #[test]
    fn extra_closed_and_open_days() {
        let hours = OpeningHours::new(&HoursConfig {
            extra_closed_days: vec![d(2026, 8, 12)],
            extra_open_days: vec![d(2026, 9, 22), d(2026, 6, 6)],
            ..HoursConfig::default()
        })
        .expect("valid");
        assert_eq!(
            hours.is_holiday(d(2026, 8, 12)),
            Some(HolidayKind::ExtraClosed)
        );
        assert_eq!(
            hours.is_open_at(jst(2026, 8, 12, 10, 0, 0)),
            closed(ClosedReason::ExtraClosed)
        );
        assert_eq!(hours.is_holiday(d(2026, 9, 22)), None);
        assert_eq!(
            hours.is_open_at(jst(2026, 9, 22, 10, 0, 0)),
            OpenState::Open
        );
        assert_eq!(hours.is_open_at(jst(2026, 6, 6, 10, 0, 0)), OpenState::Open);
        // The hours still apply on an extra open day.
        assert_eq!(
            hours.is_open_at(jst(2026, 6, 6, 17, 0, 0)),
            closed(ClosedReason::OutsideHours)
        );
        assert_eq!(
            hours.next_opening(jst(2026, 8, 11, 12, 0, 0)),
            Some(jst(2026, 8, 13, 9, 0, 0))
        );
    }

    // R-HOURS-1: a profile for a place without Japanese holidays can switch them off.
    #[test]
    fn national_holidays_can_be_switched_off() {
        let hours = OpeningHours::new(&HoursConfig {
            national_holidays: false,
            ..HoursConfig::default()
        })
        .expect("valid");
        assert_eq!(hours.is_holiday(d(2026, 7, 20)), None);
        assert_eq!(
            hours.is_open_at(jst(2026, 7, 20, 10, 0, 0)),
            OpenState::Open
        );
    }

    // R-HOURS-1: the timezone key is honoured, not hard-wired to Tokyo.
    #[test]
    fn timezone_is_configurable() {
        let hours = OpeningHours::new(&HoursConfig {
            timezone: "UTC".into(),
            ..HoursConfig::default()
        })
        .expect("valid");
        let at = Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0).unwrap();
        assert_eq!(hours.is_open_at(at), OpenState::Open);
        assert_eq!(otaru().is_open_at(at), closed(ClosedReason::OutsideHours));
    }

    // R-HOURS-1: a bad profile is refused with an error that names the key.
    #[test]
    fn validate_names_the_bad_key() {
        let base = HoursConfig::default;
        let cases: Vec<(HoursConfig, &str)> = vec![
            (
                HoursConfig {
                    open_time: "17:00".into(),
                    close_time: "09:00".into(),
                    ..base()
                },
                "close_time",
            ),
            (
                HoursConfig {
                    close_time: "09:00".into(),
                    ..base()
                },
                "close_time",
            ),
            (
                HoursConfig {
                    open_time: "9am".into(),
                    ..base()
                },
                "open_time",
            ),
            (
                HoursConfig {
                    close_time: "25:00".into(),
                    ..base()
                },
                "close_time",
            ),
            (
                HoursConfig {
                    timezone: "Asia/Otaru".into(),
                    ..base()
                },
                "timezone",
            ),
            (
                HoursConfig {
                    year_end_start: "13-29".into(),
                    ..base()
                },
                "year_end_start",
            ),
            (
                HoursConfig {
                    year_end_end: "0103".into(),
                    ..base()
                },
                "year_end_end",
            ),
            (
                HoursConfig {
                    year_end_end: "02-30".into(),
                    ..base()
                },
                "year_end_end",
            ),
            (
                HoursConfig {
                    period_end: d(2026, 5, 1),
                    ..base()
                },
                "period_end",
            ),
            (
                HoursConfig {
                    open_weekdays: vec![],
                    ..base()
                },
                "open_weekdays",
            ),
            (
                HoursConfig {
                    extra_open_days: vec![d(2026, 8, 12)],
                    extra_closed_days: vec![d(2026, 8, 12)],
                    ..base()
                },
                "extra_closed_days",
            ),
            (
                HoursConfig {
                    extra_open_days: vec![d(2027, 2, 1)],
                    ..base()
                },
                "extra_open_days",
            ),
            (
                HoursConfig {
                    period_end: d(2150, 1, 1),
                    ..base()
                },
                "national_holidays",
            ),
        ];
        for (config, key) in cases {
            let err = config.validate().expect_err(key);
            assert!(err.to_string().contains(key), "{key}: {err}");
            assert_eq!(OpeningHours::new(&config), Err(err));
        }
        assert_eq!(base().validate(), Ok(()));
    }

    // R-HOURS-1: an empty profile section yields the spec's defaults; typos are refused.
    #[test]
    fn deserialize_defaults_and_unknown_keys() {
        let empty: MapDeserializer<'_, std::vec::IntoIter<(&str, &str)>, DeError> =
            MapDeserializer::new(Vec::new().into_iter());
        assert_eq!(
            HoursConfig::deserialize(empty).expect("defaults"),
            HoursConfig::default()
        );
        let typo: MapDeserializer<'_, _, DeError> =
            MapDeserializer::new(vec![("open_tme", "09:00")].into_iter());
        let err = HoursConfig::deserialize(typo).expect_err("unknown key");
        assert!(err.to_string().contains("open_tme"), "{err}");
    }

    // R-HOURS-1: dates load both as "YYYY-MM-DD" strings and as native TOML dates.
    #[test]
    fn deserialize_dates_and_weekdays() {
        let from_str: MapDeserializer<'_, _, DeError> = MapDeserializer::new(
            vec![("period_start", "2026-06-03"), ("period_end", "2026-07-31")].into_iter(),
        );
        let config = HoursConfig::deserialize(from_str).expect("string dates");
        assert_eq!(config.period_start, d(2026, 6, 3));
        assert_eq!(config.period_end, d(2026, 7, 31));

        // The toml crate presents a native date as a single-entry map.
        let toml_like: MapDeserializer<'_, _, DeError> =
            MapDeserializer::new(vec![("$__toml_private_datetime", "2026-08-12")].into_iter());
        assert_eq!(de_date(toml_like).expect("toml date"), d(2026, 8, 12));

        let bad: MapDeserializer<'_, _, DeError> =
            MapDeserializer::new(vec![("period_start", "2026-13-01")].into_iter());
        assert!(HoursConfig::deserialize(bad).is_err());

        let names: SeqDeserializer<_, DeError> =
            SeqDeserializer::new(["Mon", "saturday"].into_iter());
        let days: Vec<Weekday> = Vec::deserialize(names).expect("weekday names");
        assert_eq!(days, vec![Weekday::Mon, Weekday::Sat]);
    }

    // R-HOURS-1: no input instant or date makes the calendar panic.
    #[test]
    fn extreme_inputs_do_not_panic() {
        let hours = otaru();
        for at in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            let _ = hours.is_open_at(at);
            let _ = hours.next_opening(at);
            let _ = hours.retry_after_secs(at);
        }
        for day in [NaiveDate::MIN, NaiveDate::MAX] {
            assert_ne!(hours.is_holiday(day), Some(HolidayKind::National));
        }
        let open_always = OpeningHours::new(&HoursConfig {
            national_holidays: false,
            period_start: NaiveDate::MIN,
            period_end: NaiveDate::MAX,
            ..HoursConfig::default()
        })
        .expect("valid");
        for at in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            let _ = open_always.is_open_at(at);
            let _ = open_always.next_opening(at);
        }
    }
}
