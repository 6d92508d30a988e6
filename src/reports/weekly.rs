//! The weekly call counts (受電件数, R-REP-1): per Japanese day Monday–Sunday and for the week.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::calls::stats::{self, day_bounds};
use crate::calls::tally::{self, KindCount};
use crate::calls::{DayTotals, EndCode, LineState, Outcome, Topic};
use crate::hours::ClosedReason;
use crate::store::Db;

use super::{ReportSettings, ReportsError};

/// An ISO week, `2026-W24`: Monday to Sunday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IsoWeek {
    monday: NaiveDate,
}

impl IsoWeek {
    /// The week `date` falls in.
    pub fn of(date: NaiveDate) -> Self {
        let back = i64::from(date.weekday().num_days_from_monday());
        IsoWeek {
            monday: date - Duration::days(back),
        }
    }

    /// Its Monday.
    pub fn monday(self) -> NaiveDate {
        self.monday
    }

    /// Its seven days, Monday first.
    pub fn days(self) -> impl Iterator<Item = NaiveDate> {
        (0..7).map(move |i| self.monday + Duration::days(i))
    }

    /// The week after.
    pub fn next(self) -> Self {
        IsoWeek {
            monday: self.monday + Duration::days(7),
        }
    }

    /// Its UTC bounds (Monday 00:00 to the next Monday 00:00, Asia/Tokyo).
    pub fn bounds(self) -> (DateTime<Utc>, DateTime<Utc>) {
        (day_bounds(self.monday).0, day_bounds(self.next().monday).0)
    }
}

impl fmt::Display for IsoWeek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.monday.iso_week();
        write!(f, "{}-W{:02}", w.year(), w.week())
    }
}

impl FromStr for IsoWeek {
    type Err = ReportsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ReportsError::Invalid(format!(
                "「{s}」は週の指定として正しくありません（例: 2026-W24）。"
            ))
        };
        let (y, w) = s.trim().split_once("-W").ok_or_else(bad)?;
        let (y, w) = (y.parse().map_err(|_| bad())?, w.parse().map_err(|_| bad())?);
        let monday = NaiveDate::from_isoywd_opt(y, w, Weekday::Mon).ok_or_else(bad)?;
        Ok(IsoWeek { monday })
    }
}

/// Calls outside the hours, by the rule that closed the line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClosedByReason {
    /// 夜間: an open day, outside the opening hours.
    pub night: u32,
    /// 土日.
    pub weekend: u32,
    /// 祝日.
    pub holiday: u32,
    /// 年末年始.
    pub year_end: u32,
    /// Before or after the call-center period.
    pub outside_period: u32,
    /// A day closed by agreement with the city.
    pub extra_closed: u32,
    /// No reason recorded (rows from before the reason was stored).
    pub unknown: u32,
}

impl ClosedByReason {
    fn add(&mut self, detail: Option<&str>, n: u32) {
        let slot = match detail.and_then(|d| d.parse::<ClosedReason>().ok()) {
            Some(ClosedReason::OutsideHours) => &mut self.night,
            Some(ClosedReason::Weekend) => &mut self.weekend,
            Some(ClosedReason::NationalHoliday) => &mut self.holiday,
            Some(ClosedReason::YearEnd) => &mut self.year_end,
            Some(ClosedReason::OutsidePeriod) => &mut self.outside_period,
            Some(ClosedReason::ExtraClosed) => &mut self.extra_closed,
            None => &mut self.unknown,
        };
        *slot += n;
    }

    fn plus(&mut self, o: &Self) {
        self.night += o.night;
        self.weekend += o.weekend;
        self.holiday += o.holiday;
        self.year_end += o.year_end;
        self.outside_period += o.outside_period;
        self.extra_closed += o.extra_closed;
        self.unknown += o.unknown;
    }
}

/// Answered calls by the operator's outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcomes {
    /// 予約受付.
    pub booking: u32,
    /// 施設依頼.
    pub facility_request: u32,
    /// 一般問合せ.
    pub inquiry: u32,
    /// 意見.
    pub opinion: u32,
    /// 苦情.
    pub complaint: u32,
    /// 間違い電話.
    pub wrong_number: u32,
    /// その他.
    pub other: u32,
    /// Answered, no outcome recorded (yet).
    pub none: u32,
}

impl Outcomes {
    fn add(&mut self, o: Option<Outcome>, n: u32) {
        let slot = match o {
            Some(Outcome::Booking) => &mut self.booking,
            Some(Outcome::FacilityRequest) => &mut self.facility_request,
            Some(Outcome::Inquiry) => &mut self.inquiry,
            Some(Outcome::Opinion) => &mut self.opinion,
            Some(Outcome::Complaint) => &mut self.complaint,
            Some(Outcome::WrongNumber) => &mut self.wrong_number,
            Some(Outcome::Other) => &mut self.other,
            None => &mut self.none,
        };
        *slot += n;
    }

    fn plus(&mut self, o: &Self) {
        self.booking += o.booking;
        self.facility_request += o.facility_request;
        self.inquiry += o.inquiry;
        self.opinion += o.opinion;
        self.complaint += o.complaint;
        self.wrong_number += o.wrong_number;
        self.other += o.other;
        self.none += o.none;
    }
}

/// Inquiries by topic tag (one inquiry may carry several).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Topics {
    /// マイナ保険証.
    pub health_insurance: u32,
    /// 更新.
    pub renewal: u32,
    /// 紛失.
    pub loss: u32,
    /// 手数料.
    pub fee: u32,
    /// その他.
    pub other: u32,
}

impl Topics {
    fn add(&mut self, t: Topic, n: u32) {
        let slot = match t {
            Topic::HealthInsurance => &mut self.health_insurance,
            Topic::Renewal => &mut self.renewal,
            Topic::Loss => &mut self.loss,
            Topic::Fee => &mut self.fee,
            Topic::Other => &mut self.other,
        };
        *slot += n;
    }

    fn plus(&mut self, o: &Self) {
        self.health_insurance += o.health_insurance;
        self.renewal += o.renewal;
        self.loss += o.loss;
        self.fee += o.fee;
        self.other += o.other;
    }
}

/// The figures of one day, or of the week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// The day (`None` for the week's total).
    pub date: Option<NaiveDate>,
    /// 令和8年6月17日（水）, or 週計.
    pub label_ja: String,
    /// 受付件数.
    pub offered: u32,
    /// 応答件数.
    pub answered: u32,
    /// 放棄.
    pub abandoned: u32,
    /// 話中.
    pub busy: u32,
    /// 時間外.
    pub closed: u32,
    /// 時間外 by reason.
    pub closed_by_reason: ClosedByReason,
    /// 応答なし.
    pub no_answer: u32,
    /// 不在.
    pub unstaffed: u32,
    /// Answered calls by outcome.
    pub outcomes: Outcomes,
    /// Inquiries by topic.
    pub inquiry_topics: Topics,
    /// Offered calls per hour of the day (Japanese time), 0–23.
    pub hourly_offered: Vec<u32>,
    /// Average speed of answer, seconds.
    pub asa_seconds: Option<f64>,
    /// Average handling time, seconds.
    pub aht_seconds: Option<f64>,
    /// abandoned / offered.
    pub abandonment_rate: Option<f64>,
    /// Answered within the threshold / offered.
    pub service_level: Option<f64>,
}

/// One week of the season so far, for the chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeekPoint {
    /// `2026-W24`.
    pub week: String,
    /// Its Monday.
    pub monday: NaiveDate,
    /// 受付件数.
    pub offered: u32,
    /// 応答件数.
    pub answered: u32,
    /// 時間外.
    pub closed: u32,
}

/// The weekly call counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeeklyReport {
    /// `2026-W24`.
    pub week: String,
    /// Monday.
    pub from: NaiveDate,
    /// Sunday.
    pub to: NaiveDate,
    /// 小樽市.
    pub city_ja: String,
    /// The service's name.
    pub service_ja: String,
    /// The service-level threshold, seconds.
    pub service_level_secs: u32,
    /// Monday to Sunday.
    pub days: Vec<Figures>,
    /// The week.
    pub total: Figures,
    /// Every week from the start of the season to this one.
    pub season: Vec<WeekPoint>,
    /// Each figure's formula, in Japanese.
    pub formulas: BTreeMap<String, String>,
    /// When the figures were computed.
    pub computed_at: DateTime<Utc>,
}

/// The formulas of the figures the live statistics do not have.
pub const REPORT_FORMULAS: &[(&str, &str)] = &[
    ("closed_by_reason", "時間外の着信を、着信時に判定した理由（calls.end_detail）別に数えた件数：夜間＝開所日の受付時間外、土日、祝日、年末年始、受付期間外、臨時休業日、不明＝理由の記録がない件数"),
    ("outcomes", "応答した通話をオペレーターの対応記録の区分別に数えた件数（未記録＝応答したが対応記録が保存されていない件数）"),
    ("inquiry_topics", "一般問合せをトピック別に数えた件数（1件に複数のトピックがあり得るため合計は一般問合せ件数と一致しないことがある）"),
    ("hourly_offered", "受付件数を着信時刻（日本時間）の時台別に数えた件数"),
    ("week", "週 = 月曜0時から翌週月曜0時まで（日本時間）。週計は日別件数の合計、率と平均は週全体の合計から計算"),
    ("season", "期間推移 = 受付期間の最初の週から当該週までの各週の受付件数・応答件数・時間外件数"),
];

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn add_totals(a: &mut DayTotals, b: &DayTotals) {
    a.offered += b.offered;
    a.answered += b.answered;
    a.abandoned += b.abandoned;
    a.busy += b.busy;
    a.closed += b.closed;
    a.no_answer += b.no_answer;
    a.unstaffed += b.unstaffed;
    a.ring_ms_sum += b.ring_ms_sum;
    a.ring_n += b.ring_n;
    a.handle_ms_sum += b.handle_ms_sum;
    a.handle_n += b.handle_n;
    a.within_service_level += b.within_service_level;
}

fn jst(t: DateTime<Utc>) -> chrono::NaiveDateTime {
    t.with_timezone(&chrono_tz::Asia::Tokyo).naive_local()
}

/// One day's (or the week's) figures being added up.
#[derive(Default)]
struct Acc {
    totals: DayTotals,
    closed: ClosedByReason,
    outcomes: Outcomes,
    topics: Topics,
    hourly: [u32; 24],
}

impl Acc {
    fn plus(&mut self, o: &Acc) {
        add_totals(&mut self.totals, &o.totals);
        self.closed.plus(&o.closed);
        self.outcomes.plus(&o.outcomes);
        self.topics.plus(&o.topics);
        for (a, b) in self.hourly.iter_mut().zip(o.hourly) {
            *a += b;
        }
    }

    fn add_kind(&mut self, k: &KindCount) {
        let n = count(k.count);
        if k.end_cause == Some(EndCode::Closed) {
            self.closed.add(k.end_detail.as_deref(), n);
        }
        if k.answered {
            self.outcomes.add(k.outcome, n);
        }
        if k.outcome == Some(Outcome::Inquiry) {
            let topics: Vec<Topic> = k
                .topics
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default();
            for t in topics {
                self.topics.add(t, n);
            }
        }
    }

    fn figures(
        &self,
        date: Option<NaiveDate>,
        label_ja: String,
        sl: u32,
        now: DateTime<Utc>,
    ) -> Figures {
        // The rates and averages are the live statistics' own computation.
        let s = stats::compute(
            date.unwrap_or_default(),
            &self.totals,
            LineState::Idle,
            (0, None),
            now,
            sl,
        );
        Figures {
            date,
            label_ja,
            offered: s.offered,
            answered: s.answered,
            abandoned: s.abandoned,
            busy: s.busy,
            closed: s.closed,
            closed_by_reason: self.closed.clone(),
            no_answer: s.no_answer,
            unstaffed: s.unstaffed,
            outcomes: self.outcomes.clone(),
            inquiry_topics: self.topics.clone(),
            hourly_offered: self.hourly.to_vec(),
            asa_seconds: s.asa_seconds,
            aht_seconds: s.aht_seconds,
            abandonment_rate: s.abandonment_rate,
            service_level: s.service_level,
        }
    }
}

/// The week's figures, Monday to Sunday and the total (no season series).
pub async fn week_figures(
    db: &Db,
    settings: &ReportSettings,
    week: IsoWeek,
    now: DateTime<Utc>,
) -> Result<(Vec<Figures>, Figures), ReportsError> {
    let (from, to) = week.bounds();
    let sl = settings.service_level_secs;
    let mut days: Vec<Acc> = (0..7).map(|_| Acc::default()).collect();
    let index = |hour: DateTime<Utc>| -> Option<(usize, usize)> {
        let local = jst(hour);
        let d = (local.date() - week.monday()).num_days();
        (0..7)
            .contains(&d)
            .then(|| (d as usize, local.hour() as usize))
    };
    for (hour, t) in tally::hourly(db, from, to, i64::from(sl) * 1000).await? {
        if let Some((d, h)) = index(hour) {
            add_totals(&mut days[d].totals, &t);
            days[d].hourly[h] += count(t.offered);
        }
    }
    for k in tally::kinds(db, from, to).await? {
        if let Some((d, _)) = index(k.hour) {
            days[d].add_kind(&k);
        }
    }
    let mut week_acc = Acc::default();
    for d in &days {
        week_acc.plus(d);
    }
    let figures = days
        .iter()
        .zip(week.days())
        .map(|(a, date)| a.figures(Some(date), crate::wareki::date_with_weekday(date), sl, now))
        .collect();
    Ok((figures, week_acc.figures(None, "週計".into(), sl, now)))
}

/// The figures of the Japanese days `first..=last` taken together (the completion report's
/// whole-contract figures).
pub async fn range_total(
    db: &Db,
    settings: &ReportSettings,
    first: NaiveDate,
    last: NaiveDate,
    label_ja: &str,
    now: DateTime<Utc>,
) -> Result<Figures, ReportsError> {
    let (from, to) = (day_bounds(first).0, day_bounds(last).1);
    let sl = settings.service_level_secs;
    let mut acc = Acc::default();
    for (hour, t) in tally::hourly(db, from, to, i64::from(sl) * 1000).await? {
        add_totals(&mut acc.totals, &t);
        acc.hourly[jst(hour).hour() as usize] += count(t.offered);
    }
    for k in tally::kinds(db, from, to).await? {
        acc.add_kind(&k);
    }
    Ok(acc.figures(None, label_ja.to_string(), sl, now))
}

/// The first week of the season.
pub fn season_first_week(settings: &ReportSettings) -> IsoWeek {
    IsoWeek::of(settings.season_start)
}

/// Offered, answered and closed calls of every week from the start of the season to `last`.
pub async fn season_series(
    db: &Db,
    settings: &ReportSettings,
    last: IsoWeek,
) -> Result<Vec<WeekPoint>, ReportsError> {
    let first = season_first_week(settings).min(last);
    let mut points = Vec::new();
    let mut w = first;
    while w <= last {
        points.push(WeekPoint {
            week: w.to_string(),
            monday: w.monday(),
            offered: 0,
            answered: 0,
            closed: 0,
        });
        w = w.next();
    }
    let (from, _) = first.bounds();
    let (_, to) = last.bounds();
    let sl = i64::from(settings.service_level_secs) * 1000;
    for (hour, t) in tally::hourly(db, from, to, sl).await? {
        let i = (jst(hour).date() - first.monday()).num_days() / 7;
        if let Some(p) = usize::try_from(i).ok().and_then(|i| points.get_mut(i)) {
            p.offered += count(t.offered);
            p.answered += count(t.answered);
            p.closed += count(t.closed);
        }
    }
    Ok(points)
}

/// Every formula of the report: the live statistics' and the report's own.
pub fn formulas() -> BTreeMap<String, String> {
    stats::FORMULAS
        .iter()
        .chain(REPORT_FORMULAS)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The weekly report of `week` as the call log has it now.
pub async fn live(
    db: &Db,
    settings: &ReportSettings,
    week: IsoWeek,
    now: DateTime<Utc>,
) -> Result<WeeklyReport, ReportsError> {
    let (days, total) = week_figures(db, settings, week, now).await?;
    let season = season_series(db, settings, week).await?;
    Ok(WeeklyReport {
        week: week.to_string(),
        from: week.monday(),
        to: week.monday() + Duration::days(6),
        city_ja: settings.city_ja.clone(),
        service_ja: settings.service_ja.clone(),
        service_level_secs: settings.service_level_secs,
        days,
        total,
        season,
        formulas: formulas(),
        computed_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_weeks_parse_and_print() {
        let w: IsoWeek = "2026-W24".parse().unwrap();
        assert_eq!(w.monday(), NaiveDate::from_ymd_opt(2026, 6, 8).unwrap());
        assert_eq!(w.to_string(), "2026-W24");
        assert_eq!(w.next().to_string(), "2026-W25");
        assert!("2026-24".parse::<IsoWeek>().is_err());
        assert!("2026-W54".parse::<IsoWeek>().is_err());
        let (from, to) = w.bounds();
        assert_eq!(crate::clock::to_db_time(from), "2026-06-07T15:00:00.000Z");
        assert_eq!((to - from).num_days(), 7);
        // The ISO year of a week at the turn of the year.
        let d = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        assert_eq!(IsoWeek::of(d).to_string(), "2026-W53");
    }
}
