//! The visit calendar (R-CAL-1..3, R-PERIOD-2): proposal, checks, import/export, the manager's
//! edits and fixing.
//!
//! A visit day is a weekday of the visit period that is no holiday of the line's own holiday
//! source ([`crate::hours::OpeningHours::is_holiday`]: national holidays incl. 振替休日 and
//! 国民の休日, the year-end closure, extra closed days). Every Monday–Sunday week of the period
//! (a partial first or last week included) holds between `min_days_per_week` and
//! `max_days_per_week` visit days; a week with no usable weekday at all is exempt, since nothing
//! can be put there. In each calendar month the counts of Monday..Friday differ by at most 1.
//!
//! The calendar is a draft until the manager fixes it (`calendar_state`); after that it changes
//! only one day at a time by an audited edit that refuses to drop or re-kind a day with live
//! bookings.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::clock::{from_db_time, to_db_time};
use crate::hours::{HolidayKind, OpeningHours};
use crate::privacy::{append_audit, Actor, AuditAction, AuditEntry, AuditTarget};
use crate::store::Db;

use super::{BookingError, BookingRules, BookingStatus, HalfDay, VisitDayKind};

/// Most search steps a proposal may take before giving up (keeps a hopeless profile from
/// stalling a request; a feasible profile needs a few hundred).
const SEARCH_BUDGET: u64 = 500_000;

/// Japanese weekday names, Monday first.
const WEEKDAY_JA: [&str; 7] = ["月", "火", "水", "木", "金", "土", "日"];

/// The Japanese short name of `date`'s weekday (月..日).
pub fn weekday_ja(date: NaiveDate) -> &'static str {
    WEEKDAY_JA[date.weekday().num_days_from_monday() as usize]
}

/// Everything the calendar rules read: the profile's numbers, the visit period and the line's
/// holiday source.
#[derive(Debug, Clone)]
pub struct Season {
    /// `[booking]` of the profile (day targets, days per week).
    pub rules: BookingRules,
    /// First visit day of the period (`[period] visits_start`).
    pub start: NaiveDate,
    /// Last visit day of the period (`[period] visits_end`).
    pub end: NaiveDate,
    /// The line's opening hours: its holidays are the calendar's.
    pub hours: OpeningHours,
}

impl Season {
    /// A proposal for this season (see [`propose`]).
    pub fn propose(&self) -> Result<Vec<(NaiveDate, VisitDayKind)>, BookingError> {
        propose(&self.rules, self.start, self.end, &self.hours)
    }

    /// The problems of `days` in this season (see [`check`]).
    pub fn check(&self, days: &[(NaiveDate, VisitDayKind)]) -> Vec<Problem> {
        check(days, &self.rules, self.start, self.end, &self.hours)
    }

    /// Why `date` cannot be a visit day at all, if it cannot.
    pub fn unusable(&self, date: NaiveDate) -> Option<Problem> {
        day_problem(date, self.start, self.end, &self.hours)
    }
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Refused: an import or edit with one changes nothing.
    Error,
    /// Shown to the manager; the calendar may still be stored and fixed.
    Warning,
}

/// One finding of [`check`] or of reading an import file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code: `weekend`, `holiday`, `out_of_period`, `duplicate`, `unknown_kind`,
    /// `bad_date`, `bad_row`, `week_count`, `month_balance`, `total`.
    pub code: &'static str,
    /// The day concerned, if one.
    pub date: Option<NaiveDate>,
    /// What is wrong, in Japanese.
    pub message: String,
}

impl Problem {
    fn error(code: &'static str, date: Option<NaiveDate>, message: String) -> Self {
        Problem {
            severity: Severity::Error,
            code,
            date,
            message,
        }
    }

    fn warning(code: &'static str, date: Option<NaiveDate>, message: String) -> Self {
        Problem {
            severity: Severity::Warning,
            code,
            date,
            message,
        }
    }

    /// Whether this refuses an import or edit.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

fn md(d: NaiveDate) -> String {
    format!("{}/{}（{}）", d.month(), d.day(), weekday_ja(d))
}

/// Why `date` can never be a visit day: outside the period, a weekend, a holiday.
fn day_problem(
    date: NaiveDate,
    start: NaiveDate,
    end: NaiveDate,
    hours: &OpeningHours,
) -> Option<Problem> {
    if date < start || date > end {
        return Some(Problem::error(
            "out_of_period",
            Some(date),
            format!("{date} は訪問期間（{start}〜{end}）の外です。"),
        ));
    }
    if date.weekday().num_days_from_monday() >= 5 {
        return Some(Problem::error(
            "weekend",
            Some(date),
            format!("{} は土日です。訪問日は平日だけです。", md(date)),
        ));
    }
    if let Some(kind) = hours.is_holiday(date) {
        let why = match kind {
            HolidayKind::National => "祝日",
            HolidayKind::YearEnd => "年末年始の休業日",
            HolidayKind::ExtraClosed => "臨時休業日",
        };
        return Some(Problem::error(
            "holiday",
            Some(date),
            format!("{} は{why}です。", md(date)),
        ));
    }
    None
}

/// The Monday of `date`'s week.
fn monday_of(date: NaiveDate) -> NaiveDate {
    date - Duration::days(i64::from(date.weekday().num_days_from_monday()))
}

/// A Monday–Sunday week of the period with its usable days.
struct Week {
    monday: NaiveDate,
    usable: Vec<NaiveDate>,
}

fn weeks(start: NaiveDate, end: NaiveDate, hours: &OpeningHours) -> Vec<Week> {
    let mut out = Vec::new();
    if end < start {
        return out;
    }
    let mut monday = monday_of(start);
    while monday <= end {
        let usable = (0..5)
            .map(|i| monday + Duration::days(i))
            .filter(|d| day_problem(*d, start, end, hours).is_none())
            .collect();
        out.push(Week { monday, usable });
        monday += Duration::days(7);
    }
    out
}

fn month_key(d: NaiveDate) -> (i32, u32) {
    (d.year(), d.month())
}

fn wd(d: NaiveDate) -> usize {
    d.weekday().num_days_from_monday() as usize
}

/// The search state of [`propose`].
struct Search<'a> {
    weeks: &'a [Week],
    min: usize,
    max: usize,
    target: usize,
    /// Month index of each (week, usable day).
    month_of: HashMap<(i32, u32), usize>,
    /// `suffix[i][m][w]`: usable days of weekday `w` in month `m` in weeks `i..`.
    suffix: Vec<Vec<[u32; 5]>>,
    /// Fewest / most days the weeks `i..` can hold.
    rest_lo: Vec<usize>,
    rest_hi: Vec<usize>,
    counts: Vec<[u32; 5]>,
    chosen: Vec<NaiveDate>,
    steps: u64,
}

impl Search<'_> {
    fn bounds(&self, week: &Week) -> (usize, usize) {
        let n = week.usable.len();
        (self.min.min(n), self.max.min(n))
    }

    /// Can every month still end balanced, given what weeks `from..` may add?
    fn months_feasible(&self, from: usize, months: &BTreeSet<usize>) -> bool {
        months.iter().all(|&m| {
            let c = &self.counts[m];
            let r = &self.suffix[from][m];
            let hi = c.iter().max().copied().unwrap_or(0);
            let reach = (0..5).map(|w| c[w] + r[w]).min().unwrap_or(0);
            hi <= reach + 1
        })
    }

    fn run(&mut self, i: usize) -> bool {
        self.steps += 1;
        if self.steps > SEARCH_BUDGET {
            return false;
        }
        if i == self.weeks.len() {
            return self.chosen.len() == self.target;
        }
        let week = &self.weeks[i];
        let (lo, hi) = self.bounds(week);
        let placed = self.chosen.len();
        // The pace that spreads the days evenly: after week i, about target·(i+1)/weeks.
        let pace = (self.target * (i + 1) + self.weeks.len() / 2) / self.weeks.len();
        let mut ks: Vec<usize> = (lo..=hi)
            .filter(|k| {
                let after = placed + k;
                after + self.rest_lo[i + 1] <= self.target
                    && after + self.rest_hi[i + 1] >= self.target
            })
            .collect();
        ks.sort_by_key(|k| ((placed + k).abs_diff(pace), *k));
        let months: BTreeSet<usize> = week
            .usable
            .iter()
            .map(|d| self.month_of[&month_key(*d)])
            .collect();
        for k in ks {
            for combo in self.combos(week, k, i) {
                for d in &combo {
                    self.counts[self.month_of[&month_key(*d)]][wd(*d)] += 1;
                    self.chosen.push(*d);
                }
                if self.months_feasible(i + 1, &months) && self.run(i + 1) {
                    return true;
                }
                for d in &combo {
                    self.counts[self.month_of[&month_key(*d)]][wd(*d)] -= 1;
                    self.chosen.pop();
                }
                if self.steps > SEARCH_BUDGET {
                    return false;
                }
            }
        }
        false
    }

    /// The `k`-day choices of week `i`, best first: weekdays least used in their month, then
    /// the scarcest weekdays (fewest chances left in the month), then days apart.
    fn combos(&self, week: &Week, k: usize, i: usize) -> Vec<Vec<NaiveDate>> {
        let days = &week.usable;
        let mut all: Vec<Vec<NaiveDate>> = Vec::new();
        let n = days.len();
        // k is at most 5; enumerate subsets by bitmask.
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize == k {
                all.push(
                    (0..n)
                        .filter(|b| mask & (1 << b) != 0)
                        .map(|b| days[b])
                        .collect(),
                );
            }
        }
        let score = |c: &Vec<NaiveDate>| {
            let used: u32 = c
                .iter()
                .map(|d| self.counts[self.month_of[&month_key(*d)]][wd(*d)])
                .sum();
            let left: u32 = c
                .iter()
                .map(|d| self.suffix[i + 1][self.month_of[&month_key(*d)]][wd(*d)])
                .sum();
            let close = c
                .windows(2)
                .filter(|p| (p[1] - p[0]).num_days() < 2)
                .count();
            (used, left, close, c.clone())
        };
        all.sort_by_cached_key(score);
        all
    }
}

/// Proposes the season's visit days (R-CAL-1, R-CAL-2, R-PERIOD-2): exactly
/// `home_days + facility_days` weekdays of `visits_start..=visits_end` that are no holiday,
/// `min..=max_days_per_week` in every Monday–Sunday week (partial weeks included; a week
/// without any usable weekday is exempt), Monday..Friday used evenly in every month (counts
/// within 1), and the facility days spread evenly over the season. Deterministic: the same
/// profile gives the same calendar. When the rules cannot all be met, the error says why.
pub fn propose(
    rules: &BookingRules,
    visits_start: NaiveDate,
    visits_end: NaiveDate,
    hours: &OpeningHours,
) -> Result<Vec<(NaiveDate, VisitDayKind)>, BookingError> {
    let target = (rules.home_days + rules.facility_days) as usize;
    if visits_end < visits_start {
        return Err(BookingError::Invalid(format!(
            "訪問期間の終わり（{visits_end}）が始まり（{visits_start}）より前です。"
        )));
    }
    if rules.min_days_per_week == 0 || rules.min_days_per_week > rules.max_days_per_week {
        return Err(BookingError::Invalid(
            "週あたりの訪問日数の下限と上限が矛盾しています。".into(),
        ));
    }
    let weeks = weeks(visits_start, visits_end, hours);
    let min = rules.min_days_per_week as usize;
    let max = rules.max_days_per_week as usize;
    let usable: usize = weeks.iter().map(|w| w.usable.len()).sum();
    let lo: usize = weeks.iter().map(|w| min.min(w.usable.len())).sum();
    let hi: usize = weeks.iter().map(|w| max.min(w.usable.len())).sum();
    if target > hi {
        return Err(BookingError::Invalid(format!(
            "訪問日 {target} 日（自宅 {} + 施設 {}）は入りません：訪問期間の {} 週に週 {max} 日までだと最大 {hi} 日です（平日で祝日でない日は {usable} 日）。",
            rules.home_days,
            rules.facility_days,
            weeks.len()
        )));
    }
    if target < lo {
        return Err(BookingError::Invalid(format!(
            "訪問日 {target} 日では足りません：訪問期間の {} 週すべてに週 {min} 日以上置くと最低 {lo} 日になります。",
            weeks.len()
        )));
    }
    let mut month_of = HashMap::new();
    for w in &weeks {
        for d in &w.usable {
            let next = month_of.len();
            month_of.entry(month_key(*d)).or_insert(next);
        }
    }
    let months = month_of.len();
    let mut suffix = vec![vec![[0u32; 5]; months]; weeks.len() + 1];
    let mut rest_lo = vec![0; weeks.len() + 1];
    let mut rest_hi = vec![0; weeks.len() + 1];
    for i in (0..weeks.len()).rev() {
        suffix[i] = suffix[i + 1].clone();
        for d in &weeks[i].usable {
            suffix[i][month_of[&month_key(*d)]][wd(*d)] += 1;
        }
        let n = weeks[i].usable.len();
        rest_lo[i] = rest_lo[i + 1] + min.min(n);
        rest_hi[i] = rest_hi[i + 1] + max.min(n);
    }
    let mut search = Search {
        weeks: &weeks,
        min,
        max,
        target,
        month_of,
        suffix,
        rest_lo,
        rest_hi,
        counts: vec![[0; 5]; months],
        chosen: Vec::new(),
        steps: 0,
    };
    if !search.run(0) {
        return Err(BookingError::Invalid(format!(
            "訪問日 {target} 日を、毎週 {min}〜{max} 日・各月の月〜金の回数の差 1 以内で置く組み合わせが見つかりません（訪問期間 {visits_start}〜{visits_end}）。日数か期間を見直してください。"
        )));
    }
    let mut dates = search.chosen;
    dates.sort();
    let days = assign_kinds(&dates, rules.facility_days as usize);
    // The search's result is checked by the same rules an import meets.
    let problems = check(&days, rules, visits_start, visits_end, hours);
    if let Some(p) = problems.first() {
        return Err(BookingError::Invalid(format!(
            "提案が規則を満たしません：{}",
            p.message
        )));
    }
    Ok(days)
}

/// Facility days spread evenly over the season: the j-th of F at about (j+1)/(F+1) of the
/// way, so none falls in the first weeks (facilities need a month's lead time, R-SLOT-5)
/// and none at the very end.
fn assign_kinds(dates: &[NaiveDate], facility: usize) -> Vec<(NaiveDate, VisitDayKind)> {
    let n = dates.len();
    let picks: BTreeSet<usize> = if facility >= n {
        (0..n).collect()
    } else {
        (0..facility)
            .map(|j| (j + 1) * n / (facility + 1))
            .collect()
    };
    dates
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let kind = if picks.contains(&i) {
                VisitDayKind::Facility
            } else {
                VisitDayKind::Home
            };
            (*d, kind)
        })
        .collect()
}

/// Checks a calendar against the rules, for imports and edits. Errors (outside the period,
/// weekend, holiday, duplicate date) refuse an import; warnings (days in a week, weekday
/// balance in a month, totals against the targets) are shown to the manager.
pub fn check(
    days: &[(NaiveDate, VisitDayKind)],
    rules: &BookingRules,
    visits_start: NaiveDate,
    visits_end: NaiveDate,
    hours: &OpeningHours,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut good = BTreeSet::new();
    for (d, _) in days {
        if !seen.insert(*d) {
            problems.push(Problem::error(
                "duplicate",
                Some(*d),
                format!("{} が2回あります。", md(*d)),
            ));
            continue;
        }
        match day_problem(*d, visits_start, visits_end, hours) {
            Some(p) => problems.push(p),
            None => {
                good.insert(*d);
            }
        }
    }
    for w in weeks(visits_start, visits_end, hours) {
        if w.usable.is_empty() {
            continue;
        }
        let sunday = w.monday + Duration::days(6);
        let n = good.range(w.monday..=sunday).count();
        let (min, max) = (
            (rules.min_days_per_week as usize).min(w.usable.len()),
            rules.max_days_per_week as usize,
        );
        if n < min || n > max {
            problems.push(Problem::warning(
                "week_count",
                Some(w.monday),
                format!(
                    "{}〜{} の週の訪問日が {n} 日です（毎週 {}〜{max} 日）。",
                    md(w.monday),
                    md(sunday),
                    rules.min_days_per_week
                ),
            ));
        }
    }
    let mut months: BTreeMap<(i32, u32), [u32; 5]> = BTreeMap::new();
    for d in &good {
        months.entry(month_key(*d)).or_default()[wd(*d)] += 1;
    }
    for ((y, m), c) in &months {
        let hi = c.iter().max().copied().unwrap_or(0);
        let lo = c.iter().min().copied().unwrap_or(0);
        if hi > lo + 1 {
            let counts: Vec<String> = (0..5)
                .map(|w| format!("{}{}", WEEKDAY_JA[w], c[w]))
                .collect();
            problems.push(Problem::warning(
                "month_balance",
                NaiveDate::from_ymd_opt(*y, *m, 1),
                format!(
                    "{y}年{m}月の曜日の偏り：{}（月〜金の回数の差は1以内に）。",
                    counts.join(" ")
                ),
            ));
        }
    }
    let home = days
        .iter()
        .filter(|(d, k)| good.contains(d) && *k == VisitDayKind::Home)
        .count();
    let facility = days
        .iter()
        .filter(|(d, k)| good.contains(d) && *k == VisitDayKind::Facility)
        .count();
    if home != rules.home_days as usize || facility != rules.facility_days as usize {
        problems.push(Problem::warning(
            "total",
            None,
            format!(
                "自宅訪問日 {home} 日・施設訪問日 {facility} 日です（目標：自宅 {} 日・施設 {} 日）。",
                rules.home_days, rules.facility_days
            ),
        ));
    }
    problems
}

/// One day of an export or import file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportDay {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `home` or `facility`.
    pub kind: String,
}

/// The calendar as CSV: UTF-8 with a BOM (Excel opens it), header `date,kind`, CRLF lines.
pub fn export_csv(days: &[(NaiveDate, VisitDayKind)]) -> String {
    let mut out = String::from("\u{feff}date,kind\r\n");
    for (d, k) in days {
        out.push_str(&format!("{d},{k}\r\n"));
    }
    out
}

/// The calendar as JSON: an array of `{"date", "kind"}`.
pub fn export_json(days: &[(NaiveDate, VisitDayKind)]) -> Vec<ExportDay> {
    days.iter()
        .map(|(d, k)| ExportDay {
            date: d.to_string(),
            kind: k.as_str().to_string(),
        })
        .collect()
}

fn parse_kind(raw: &str) -> Option<VisitDayKind> {
    let raw = raw.trim();
    VisitDayKind::ALL
        .iter()
        .copied()
        .find(|k| k.as_str() == raw || k.label_ja() == raw)
}

fn parse_row(line: usize, date: &str, kind: &str) -> Result<(NaiveDate, VisitDayKind), Problem> {
    let d = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d").map_err(|_| {
        Problem::error(
            "bad_date",
            None,
            format!(
                "{line}行目：'{}' は日付（YYYY-MM-DD）ではありません。",
                date.trim()
            ),
        )
    })?;
    let k = parse_kind(kind).ok_or_else(|| {
        Problem::error(
            "unknown_kind",
            Some(d),
            format!(
                "{line}行目：種別 '{}' は home / facility のどちらでもありません。",
                kind.trim()
            ),
        )
    })?;
    Ok((d, k))
}

/// Reads an import: JSON (an array of `{"date","kind"}`, or `{"days": [...]}`) or CSV
/// (`date,kind` with or without the header and BOM). Kinds are codes or their Japanese
/// labels. Every unreadable row is reported; one is enough to refuse the file.
pub fn parse_import(text: &str) -> Result<Vec<(NaiveDate, VisitDayKind)>, Vec<Problem>> {
    let text = text.trim_start_matches('\u{feff}').trim();
    let bad = |m: String| vec![Problem::error("bad_row", None, m)];
    if text.starts_with('[') || text.starts_with('{') {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Doc {
            List(Vec<ExportDay>),
            Wrapped { days: Vec<ExportDay> },
        }
        let doc: Doc = serde_json::from_str(text).map_err(|e| {
            bad(format!(
                "JSON を読めません（[{{\"date\":\"2026-07-01\",\"kind\":\"home\"}}, …] の形にしてください）：{e}"
            ))
        })?;
        let list = match doc {
            Doc::List(l) | Doc::Wrapped { days: l } => l,
        };
        let (ok, errs): (Vec<_>, Vec<_>) = list
            .iter()
            .enumerate()
            .map(|(i, r)| parse_row(i + 1, &r.date, &r.kind))
            .partition(Result::is_ok);
        if !errs.is_empty() {
            return Err(errs.into_iter().filter_map(Result::err).collect());
        }
        return Ok(ok.into_iter().filter_map(Result::ok).collect());
    }
    let mut days = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("date")) {
            continue;
        }
        let cols: Vec<&str> = line
            .split(',')
            .map(|c| c.trim().trim_matches('"'))
            .collect();
        if cols.len() < 2 {
            problems.push(Problem::error(
                "bad_row",
                None,
                format!("{}行目：「日付,種別」の2列が必要です。", i + 1),
            ));
            continue;
        }
        match parse_row(i + 1, cols[0], cols[1]) {
            Ok(r) => days.push(r),
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(days)
    } else {
        Err(problems)
    }
}

/// One stored visit day.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VisitDay {
    /// The date.
    pub date: NaiveDate,
    /// Home or facility.
    pub kind: VisitDayKind,
    /// The manager opened the 3rd afternoon home visit (R-SLOT-1).
    pub pm_extra_open: bool,
    /// Live bookings on the day.
    pub booked: i64,
}

/// The stored calendar.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Calendar {
    /// Visit days, in date order.
    pub days: Vec<VisitDay>,
    /// When the manager fixed it; `None` while a draft.
    pub fixed_at: Option<DateTime<Utc>>,
    /// Who fixed it.
    pub fixed_by: Option<String>,
}

impl Calendar {
    /// Whether the calendar is fixed.
    pub fn is_fixed(&self) -> bool {
        self.fixed_at.is_some()
    }

    /// The days as (date, kind) pairs.
    pub fn pairs(&self) -> Vec<(NaiveDate, VisitDayKind)> {
        self.days.iter().map(|d| (d.date, d.kind)).collect()
    }
}

/// Days in one week of the period.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WeekCount {
    /// Its Monday.
    pub monday: NaiveDate,
    /// Visit days in it.
    pub days: u32,
    /// Weekdays in it that could be visit days.
    pub usable: u32,
}

/// Days in one month.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MonthCount {
    /// `YYYY-MM`.
    pub month: String,
    /// Home days.
    pub home: u32,
    /// Facility days.
    pub facility: u32,
    /// Visit days per weekday, Monday..Friday.
    pub weekdays: [u32; 5],
}

/// Per-week and per-month counts of a calendar over the season.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Every week of the period.
    pub weeks: Vec<WeekCount>,
    /// Every month with a visit day.
    pub months: Vec<MonthCount>,
}

/// Counts `days` per week of the season and per month.
pub fn counts(days: &[(NaiveDate, VisitDayKind)], season: &Season) -> Counts {
    let set: BTreeSet<NaiveDate> = days.iter().map(|(d, _)| *d).collect();
    let weeks = weeks(season.start, season.end, &season.hours)
        .into_iter()
        .map(|w| WeekCount {
            monday: w.monday,
            days: set.range(w.monday..=w.monday + Duration::days(6)).count() as u32,
            usable: w.usable.len() as u32,
        })
        .collect();
    let mut months: BTreeMap<(i32, u32), MonthCount> = BTreeMap::new();
    for (d, k) in days {
        let m = months.entry(month_key(*d)).or_insert_with(|| MonthCount {
            month: format!("{:04}-{:02}", d.year(), d.month()),
            home: 0,
            facility: 0,
            weekdays: [0; 5],
        });
        match k {
            VisitDayKind::Home => m.home += 1,
            VisitDayKind::Facility => m.facility += 1,
        }
        if wd(*d) < 5 {
            m.weekdays[wd(*d)] += 1;
        }
    }
    Counts {
        weeks,
        months: months.into_values().collect(),
    }
}

/// A readable month-by-month listing (for `madoguchi calendar show`).
pub fn render_text(days: &[(NaiveDate, VisitDayKind)], season: &Season) -> String {
    let mut out = String::new();
    let c = counts(days, season);
    for m in &c.months {
        out.push_str(&format!(
            "{}  自宅 {} 日・施設 {} 日  （月{} 火{} 水{} 木{} 金{}）\n",
            m.month,
            m.home,
            m.facility,
            m.weekdays[0],
            m.weekdays[1],
            m.weekdays[2],
            m.weekdays[3],
            m.weekdays[4]
        ));
        for (d, k) in days
            .iter()
            .filter(|(d, _)| format!("{:04}-{:02}", d.year(), d.month()) == m.month)
        {
            out.push_str(&format!("  {d}（{}） {}\n", weekday_ja(*d), k.label_ja()));
        }
    }
    let home = days
        .iter()
        .filter(|(_, k)| *k == VisitDayKind::Home)
        .count();
    out.push_str(&format!(
        "合計 {} 日（自宅 {home} 日・施設 {} 日）\n",
        days.len(),
        days.len() - home
    ));
    out
}

fn parse_date_col(raw: &str) -> Result<NaiveDate, sqlx::Error> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

async fn load_on(conn: &mut sqlx::AnyConnection) -> Result<Calendar, BookingError> {
    let rows = sqlx::query(
        "SELECT v.visit_date, v.kind, v.pm_extra_open, \
           (SELECT CAST(COUNT(*) AS BIGINT) FROM bookings b WHERE b.visit_date = v.visit_date AND b.status = $1) AS booked \
         FROM visit_days v ORDER BY v.visit_date",
    )
    .bind(BookingStatus::Booked)
    .fetch_all(&mut *conn)
    .await?;
    let days = rows
        .iter()
        .map(|r| {
            Ok(VisitDay {
                date: parse_date_col(&r.try_get::<String, _>("visit_date")?)?,
                kind: r.try_get("kind")?,
                pm_extra_open: r.try_get::<i64, _>("pm_extra_open")? != 0,
                booked: r.try_get("booked")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let state = sqlx::query("SELECT fixed_at, fixed_by FROM calendar_state WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?;
    let (fixed_at, fixed_by) = match state {
        Some(r) => (
            r.try_get::<Option<String>, _>("fixed_at")?
                .as_deref()
                .and_then(from_db_time),
            r.try_get::<Option<String>, _>("fixed_by")?,
        ),
        None => (None, None),
    };
    Ok(Calendar {
        days,
        fixed_at,
        fixed_by,
    })
}

/// The stored calendar with its live-booking counts and fixed state.
pub async fn load(db: &Db) -> Result<Calendar, BookingError> {
    let mut conn = db.pool().acquire().await?;
    load_on(&mut conn).await
}

/// Takes the calendar's write lock first thing in a transaction (SQLite: the database write
/// lock; PostgreSQL: the state row), so edits of the calendar run one at a time.
async fn lock_calendar(conn: &mut sqlx::AnyConnection) -> Result<bool, BookingError> {
    sqlx::query("UPDATE calendar_state SET id = id WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    let fixed: Option<String> =
        sqlx::query_scalar("SELECT fixed_at FROM calendar_state WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
    Ok(fixed.is_some())
}

/// Locks a day's half-day rows (creating them), the rows every booking write of the day
/// updates first: a booking cannot land on the day while it is being removed or changed.
async fn lock_day(conn: &mut sqlx::AnyConnection, date: NaiveDate) -> Result<(), BookingError> {
    for half in HalfDay::ALL {
        sqlx::query(
            "INSERT INTO half_day_locks (visit_date, half_day, version) VALUES ($1, $2, 0) \
             ON CONFLICT (visit_date, half_day) DO UPDATE SET version = half_day_locks.version + 1",
        )
        .bind(date.to_string())
        .bind(*half)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn live_bookings(
    conn: &mut sqlx::AnyConnection,
    date: NaiveDate,
) -> Result<i64, BookingError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM bookings WHERE visit_date = $1 AND status = $2",
    )
    .bind(date.to_string())
    .bind(BookingStatus::Booked)
    .fetch_one(&mut *conn)
    .await?;
    Ok(n)
}

fn kind_counts(days: &[(NaiveDate, VisitDayKind)]) -> (usize, usize) {
    let home = days
        .iter()
        .filter(|(_, k)| *k == VisitDayKind::Home)
        .count();
    (home, days.len() - home)
}

/// Where a whole-calendar replacement came from (recorded in the audit row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceSource {
    /// The system's proposal.
    Proposal,
    /// An imported file.
    Import,
}

impl ReplaceSource {
    fn as_str(self) -> &'static str {
        match self {
            ReplaceSource::Proposal => "propose",
            ReplaceSource::Import => "import",
        }
    }
}

/// Replaces the whole draft calendar with `days` (a proposal or an import), audited as
/// `calendar.replace`. Refused, changing nothing, when the calendar is fixed, when `days`
/// has an error (outside the period, weekend, holiday, duplicate), or when a day with live
/// bookings would go or change kind. Returns the warnings.
pub async fn replace(
    db: &Db,
    actor: &Actor,
    season: &Season,
    days: &[(NaiveDate, VisitDayKind)],
    source: ReplaceSource,
    at: DateTime<Utc>,
) -> Result<Vec<Problem>, BookingError> {
    let problems = season.check(days);
    let errors: Vec<&str> = problems
        .iter()
        .filter(|p| p.is_error())
        .map(|p| p.message.as_str())
        .collect();
    if !errors.is_empty() {
        return Err(BookingError::Invalid(format!(
            "取り込めません（何も変更していません）：\n{}",
            errors.join("\n")
        )));
    }
    let mut tx = db.pool().begin().await?;
    if lock_calendar(&mut tx).await? {
        return Err(BookingError::Conflict(
            "訪問日程は確定済みです。確定後は1日ずつの変更だけができます。".into(),
        ));
    }
    let old = load_on(&mut tx).await?;
    let new: HashMap<NaiveDate, VisitDayKind> = days.iter().copied().collect();
    if let Some(d) = old
        .days
        .iter()
        .find(|d| d.booked > 0 && new.get(&d.date) != Some(&d.kind))
    {
        return Err(BookingError::Conflict(format!(
            "{} には予約が {} 件あるため、その日を外したり種別を変えたりできません。",
            md(d.date),
            d.booked
        )));
    }
    let old_pm: HashMap<NaiveDate, (VisitDayKind, bool)> = old
        .days
        .iter()
        .map(|d| (d.date, (d.kind, d.pm_extra_open)))
        .collect();
    sqlx::query("DELETE FROM visit_days")
        .execute(&mut *tx)
        .await?;
    let now = to_db_time(at);
    for (d, k) in days {
        // The PM-3rd switch survives a replacement that keeps the day as it was.
        let pm = matches!(old_pm.get(d), Some((ok, true)) if ok == k);
        sqlx::query(
            "INSERT INTO visit_days (visit_date, kind, pm_extra_open, updated_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(d.to_string())
        .bind(*k)
        .bind(i64::from(pm))
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    let (home, facility) = kind_counts(days);
    let warnings: Vec<Problem> = problems.into_iter().filter(|p| !p.is_error()).collect();
    let codes: BTreeSet<&str> = warnings.iter().map(|p| p.code).collect();
    let entry = AuditEntry::new(AuditAction::CalendarReplace).detail(serde_json::json!({
        "source": source.as_str(),
        "days": days.len(),
        "home": home,
        "facility": facility,
        "warnings": codes,
    }));
    append_audit(&mut tx, at, actor, &entry).await?;
    tx.commit().await?;
    Ok(warnings)
}

/// Fixes the calendar (agreed with the city), audited as `calendar.fix`. Refused when it is
/// already fixed or empty.
pub async fn fix(db: &Db, actor: &Actor, at: DateTime<Utc>) -> Result<(), BookingError> {
    let mut tx = db.pool().begin().await?;
    if lock_calendar(&mut tx).await? {
        return Err(BookingError::Conflict(
            "訪問日程は既に確定済みです。".into(),
        ));
    }
    let cal = load_on(&mut tx).await?;
    if cal.days.is_empty() {
        return Err(BookingError::Invalid(
            "訪問日がありません。先に日程を作成してください。".into(),
        ));
    }
    sqlx::query("UPDATE calendar_state SET fixed_at = $1, fixed_by = $2 WHERE id = 1")
        .bind(to_db_time(at))
        .bind(&actor.username)
        .execute(&mut *tx)
        .await?;
    let (home, facility) = kind_counts(&cal.pairs());
    let entry = AuditEntry::new(AuditAction::CalendarFix).detail(serde_json::json!({
        "days": cal.days.len(),
        "home": home,
        "facility": facility,
    }));
    append_audit(&mut tx, at, actor, &entry).await?;
    tx.commit().await?;
    Ok(())
}

/// Adds a visit day or changes one (kind, the PM-3rd switch), audited as `calendar.edit`;
/// allowed on a draft and, as this audited edit, on a fixed calendar. Refused when the date
/// cannot be a visit day, when the kind of a day with live bookings would change, when the
/// PM-3rd switch goes off while a booking holds the 3rd afternoon visit, or when it is set on
/// a facility day. Returns the calendar's warnings after the change.
pub async fn set_day(
    db: &Db,
    actor: &Actor,
    season: &Season,
    date: NaiveDate,
    kind: VisitDayKind,
    pm_extra_open: bool,
    at: DateTime<Utc>,
) -> Result<Vec<Problem>, BookingError> {
    if let Some(p) = season.unusable(date) {
        return Err(BookingError::Invalid(p.message));
    }
    if pm_extra_open && kind != VisitDayKind::Home {
        return Err(BookingError::Invalid(
            "午後3件目は自宅訪問日にだけ設定できます。".into(),
        ));
    }
    let mut tx = db.pool().begin().await?;
    let fixed = lock_calendar(&mut tx).await?;
    lock_day(&mut tx, date).await?;
    let before = sqlx::query("SELECT kind, pm_extra_open FROM visit_days WHERE visit_date = $1")
        .bind(date.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| {
            Ok::<_, sqlx::Error>((
                r.try_get::<VisitDayKind, _>("kind")?,
                r.try_get::<i64, _>("pm_extra_open")? != 0,
            ))
        })
        .transpose()?;
    if before == Some((kind, pm_extra_open)) {
        let cal = load_on(&mut tx).await?;
        return Ok(season
            .check(&cal.pairs())
            .into_iter()
            .filter(|p| !p.is_error())
            .collect());
    }
    if let Some((old_kind, old_pm)) = before {
        if old_kind != kind {
            let n = live_bookings(&mut tx, date).await?;
            if n > 0 {
                return Err(BookingError::Conflict(format!(
                    "{} には予約が {n} 件あるため、種別を変更できません。先に予約を移すか取り消してください。",
                    md(date)
                )));
            }
        }
        if old_pm && !pm_extra_open {
            let n: i64 = sqlx::query_scalar(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM bookings \
                 WHERE visit_date = $1 AND status = $2 AND half_day = $3 AND position = 3",
            )
            .bind(date.to_string())
            .bind(BookingStatus::Booked)
            .bind(HalfDay::Pm)
            .fetch_one(&mut *tx)
            .await?;
            if n > 0 {
                return Err(BookingError::Conflict(format!(
                    "{} は午後3件目に予約があるため、午後3件目を閉じられません。",
                    md(date)
                )));
            }
        }
    }
    sqlx::query(
        "INSERT INTO visit_days (visit_date, kind, pm_extra_open, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (visit_date) DO UPDATE SET kind = excluded.kind, pm_extra_open = excluded.pm_extra_open, updated_at = excluded.updated_at",
    )
    .bind(date.to_string())
    .bind(kind)
    .bind(i64::from(pm_extra_open))
    .bind(to_db_time(at))
    .execute(&mut *tx)
    .await?;
    let entry = AuditEntry::new(AuditAction::CalendarEdit)
        .target(AuditTarget::VisitDay, date)
        .detail(serde_json::json!({
            "op": if before.is_some() { "change" } else { "add" },
            "kind": kind,
            "pm_extra_open": pm_extra_open,
            "before": before.map(|(k, pm)| serde_json::json!({ "kind": k, "pm_extra_open": pm })),
            "fixed": fixed,
        }));
    append_audit(&mut tx, at, actor, &entry).await?;
    let cal = load_on(&mut tx).await?;
    tx.commit().await?;
    Ok(season
        .check(&cal.pairs())
        .into_iter()
        .filter(|p| !p.is_error())
        .collect())
}

/// Removes a visit day, audited as `calendar.edit`; refused while it has live bookings.
/// Returns the calendar's warnings after the change.
pub async fn remove_day(
    db: &Db,
    actor: &Actor,
    season: &Season,
    date: NaiveDate,
    at: DateTime<Utc>,
) -> Result<Vec<Problem>, BookingError> {
    let mut tx = db.pool().begin().await?;
    let fixed = lock_calendar(&mut tx).await?;
    lock_day(&mut tx, date).await?;
    let kind: Option<VisitDayKind> =
        sqlx::query_scalar("SELECT kind FROM visit_days WHERE visit_date = $1")
            .bind(date.to_string())
            .fetch_optional(&mut *tx)
            .await?;
    let Some(kind) = kind else {
        return Err(BookingError::NotFound("visit day"));
    };
    let n = live_bookings(&mut tx, date).await?;
    if n > 0 {
        return Err(BookingError::Conflict(format!(
            "{} には予約が {n} 件あるため、訪問日から外せません。先に予約を移すか取り消してください。",
            md(date)
        )));
    }
    sqlx::query("DELETE FROM visit_days WHERE visit_date = $1")
        .bind(date.to_string())
        .execute(&mut *tx)
        .await?;
    let entry = AuditEntry::new(AuditAction::CalendarEdit)
        .target(AuditTarget::VisitDay, date)
        .detail(serde_json::json!({ "op": "remove", "kind": kind, "fixed": fixed }));
    append_audit(&mut tx, at, actor, &entry).await?;
    let cal = load_on(&mut tx).await?;
    tx.commit().await?;
    Ok(season
        .check(&cal.pairs())
        .into_iter()
        .filter(|p| !p.is_error())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hours::HoursConfig;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn hours_for(start: NaiveDate, end: NaiveDate) -> OpeningHours {
        OpeningHours::new(&HoursConfig {
            period_start: start,
            period_end: end,
            ..HoursConfig::default()
        })
        .unwrap()
    }

    fn shipped() -> (BookingRules, NaiveDate, NaiveDate, OpeningHours) {
        // profiles/otaru-2026: [period] visits 2026-06-17..2026-12-24, [hours] from 06-01.
        let (s, e) = (ymd(2026, 6, 17), ymd(2026, 12, 24));
        (BookingRules::default(), s, e, hours_for(ymd(2026, 6, 1), e))
    }

    /// Every rule of R-CAL-1/2, checked independently of `check`.
    fn assert_rules(
        days: &[(NaiveDate, VisitDayKind)],
        rules: &BookingRules,
        s: NaiveDate,
        e: NaiveDate,
        hours: &OpeningHours,
    ) {
        let home = days.iter().filter(|d| d.1 == VisitDayKind::Home).count();
        assert_eq!(home, rules.home_days as usize);
        assert_eq!(days.len() - home, rules.facility_days as usize);
        let set: BTreeSet<NaiveDate> = days.iter().map(|d| d.0).collect();
        assert_eq!(set.len(), days.len(), "a date twice");
        for d in &set {
            assert!(*d >= s && *d <= e, "{d} outside the period");
            assert!(d.weekday().num_days_from_monday() < 5, "{d} is a weekend");
            assert!(hours.is_holiday(*d).is_none(), "{d} is a holiday");
        }
        let mut monday = monday_of(s);
        while monday <= e {
            let usable = (0..5)
                .map(|i| monday + Duration::days(i))
                .filter(|d| *d >= s && *d <= e && hours.is_holiday(*d).is_none())
                .count();
            let n = set.range(monday..=monday + Duration::days(6)).count();
            if usable > 0 {
                assert!(
                    n >= (rules.min_days_per_week as usize).min(usable)
                        && n <= rules.max_days_per_week as usize,
                    "week of {monday}: {n} days"
                );
            }
            monday += Duration::days(7);
        }
        let mut months: BTreeMap<(i32, u32), [u32; 5]> = BTreeMap::new();
        for d in &set {
            months.entry((d.year(), d.month())).or_default()[wd(*d)] += 1;
        }
        for (m, c) in months {
            let (hi, lo) = (c.iter().max().unwrap(), c.iter().min().unwrap());
            assert!(hi - lo <= 1, "month {m:?}: {c:?}");
        }
    }

    #[test]
    fn shipped_profile_proposal_meets_r_cal_1_and_2() {
        let (rules, s, e, hours) = shipped();
        let days = propose(&rules, s, e, &hours).unwrap();
        assert_eq!(days.len(), 42);
        assert_rules(&days, &rules, s, e, &hours);
        for holiday in [
            ymd(2026, 7, 20),
            ymd(2026, 9, 21),
            ymd(2026, 9, 22),
            ymd(2026, 9, 23),
            ymd(2026, 10, 12),
            ymd(2026, 11, 3),
            ymd(2026, 11, 23),
        ] {
            assert!(days.iter().all(|d| d.0 != holiday), "{holiday} chosen");
        }
        assert!(check(&days, &rules, s, e, &hours).is_empty());
        // Deterministic.
        assert_eq!(propose(&rules, s, e, &hours).unwrap(), days);
        // Facility days are spread: none in June (a month's lead time), no two in a month.
        let fac: Vec<NaiveDate> = days
            .iter()
            .filter(|d| d.1 == VisitDayKind::Facility)
            .map(|d| d.0)
            .collect();
        assert!(fac.iter().all(|d| d.month() > 6), "{fac:?}");
        assert!(
            fac.windows(2).all(|w| (w[1] - w[0]).num_days() >= 14),
            "{fac:?}"
        );
    }

    #[test]
    fn proposals_over_other_periods_meet_the_rules_or_say_why() {
        let cases = [
            (ymd(2027, 6, 16), ymd(2027, 12, 24), 36, 6, 1, 2),
            (ymd(2028, 4, 3), ymd(2028, 9, 29), 30, 5, 1, 2),
            (ymd(2026, 4, 20), ymd(2026, 5, 29), 7, 1, 1, 2),
            (ymd(2026, 1, 5), ymd(2026, 3, 31), 20, 4, 1, 3),
            (ymd(2026, 12, 1), ymd(2027, 1, 29), 10, 2, 1, 2),
            (ymd(2029, 6, 1), ymd(2029, 12, 28), 40, 10, 1, 2),
            (ymd(2026, 6, 17), ymd(2026, 12, 24), 28, 0, 1, 1),
            (ymd(2026, 6, 17), ymd(2026, 12, 24), 50, 6, 2, 3),
        ];
        for (s, e, home, facility, min, max) in cases {
            let rules = BookingRules {
                home_days: home,
                facility_days: facility,
                min_days_per_week: min,
                max_days_per_week: max,
                ..BookingRules::default()
            };
            let hours = hours_for(s, e);
            match propose(&rules, s, e, &hours) {
                Ok(days) => assert_rules(&days, &rules, s, e, &hours),
                Err(err) => panic!("{s}..{e} {home}+{facility}: {err}"),
            }
        }
    }

    #[test]
    fn impossible_targets_get_a_reason() {
        let (rules, s, e, hours) = shipped();
        let many = BookingRules {
            home_days: 100,
            ..rules.clone()
        };
        let err = propose(&many, s, e, &hours).unwrap_err().to_string();
        assert!(err.contains("106") && err.contains("最大"), "{err}");
        let few = BookingRules {
            home_days: 10,
            facility_days: 0,
            ..rules
        };
        let err = propose(&few, s, e, &hours).unwrap_err().to_string();
        assert!(err.contains("足りません"), "{err}");
    }

    #[test]
    fn check_sorts_errors_from_warnings() {
        let (rules, s, e, hours) = shipped();
        let mut days = propose(&rules, s, e, &hours).unwrap();
        days.push((ymd(2026, 7, 18), VisitDayKind::Home)); // Saturday
        days.push((ymd(2026, 7, 20), VisitDayKind::Home)); // 海の日
        days.push((ymd(2026, 12, 25), VisitDayKind::Home)); // after the period
        days.push(days[0]);
        let problems = check(&days, &rules, s, e, &hours);
        let errors: Vec<&str> = problems
            .iter()
            .filter(|p| p.is_error())
            .map(|p| p.code)
            .collect();
        assert_eq!(
            errors,
            ["weekend", "holiday", "out_of_period", "duplicate"],
            "{problems:?}"
        );
        assert!(problems
            .iter()
            .any(|p| p.code == "holiday" && p.message.contains("祝日")));
        // Dropping three days of one week empties it: a week warning and totals.
        let first = monday_of(s) + Duration::days(7);
        let thin: Vec<_> = propose(&rules, s, e, &hours)
            .unwrap()
            .into_iter()
            .filter(|(d, _)| !(first..first + Duration::days(7)).contains(d))
            .collect();
        let problems = check(&thin, &rules, s, e, &hours);
        assert!(problems.iter().all(|p| !p.is_error()));
        assert!(problems.iter().any(|p| p.code == "week_count"));
        assert!(problems.iter().any(|p| p.code == "total"));
    }

    #[test]
    fn imports_read_csv_and_json_and_report_bad_rows() {
        let csv = "\u{feff}date,kind\r\n2026-07-01,home\r\n2026-07-02,施設訪問日\r\n";
        assert_eq!(
            parse_import(csv).unwrap(),
            vec![
                (ymd(2026, 7, 1), VisitDayKind::Home),
                (ymd(2026, 7, 2), VisitDayKind::Facility)
            ]
        );
        let json = r#"[{"date":"2026-07-01","kind":"home"}]"#;
        assert_eq!(parse_import(json).unwrap().len(), 1);
        let wrapped = r#"{"days":[{"date":"2026-07-01","kind":"facility"}]}"#;
        assert_eq!(parse_import(wrapped).unwrap()[0].1, VisitDayKind::Facility);
        let bad = parse_import("2026-07-01,office\n2026-13-01,home\n").unwrap_err();
        assert_eq!(
            bad.iter().map(|p| p.code).collect::<Vec<_>>(),
            ["unknown_kind", "bad_date"]
        );
        let days = vec![(ymd(2026, 7, 1), VisitDayKind::Home)];
        let out = export_csv(&days);
        assert!(out.starts_with("\u{feff}date,kind\r\n2026-07-01,home"));
        assert_eq!(parse_import(&out).unwrap(), days);
    }
}
