//! Live statistics of one day (Asia/Tokyo) for the manager's dashboard (issue 4).
//!
//! Every figure's formula is in [`FORMULAS`]; the README and the dashboard tooltips show the
//! same text, so the city and the contractor read the numbers the same way.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use super::CallRow;

/// What the line is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LineState {
    /// No call.
    Idle,
    /// A call is ringing the operators' phones.
    Ringing,
    /// An operator is talking.
    Talking,
}

/// The dashboard's figures for one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveStats {
    /// The day (JST).
    pub date: NaiveDate,
    /// Idle, ringing or talking.
    pub line_state: LineState,
    /// Calls that reached the line while it was open.
    pub offered: u32,
    /// Calls an operator answered.
    pub answered: u32,
    /// Callers who hung up while it rang.
    pub abandoned: u32,
    /// Calls refused because the line was in use.
    pub busy: u32,
    /// Calls outside the opening hours.
    pub closed: u32,
    /// Calls nobody answered (ring timeout, or every phone refused).
    pub no_answer: u32,
    /// Calls while no operator phone was registered.
    pub unstaffed: u32,
    /// Numbers waiting for a callback.
    pub callbacks_waiting: u32,
    /// How long the oldest of them has waited, seconds.
    pub callbacks_oldest_wait_seconds: Option<i64>,
    /// Average speed of answer, seconds.
    pub asa_seconds: Option<f64>,
    /// Average handling time (talk + wrap-up), seconds.
    pub aht_seconds: Option<f64>,
    /// abandoned / offered.
    pub abandonment_rate: Option<f64>,
    /// Answered within `service_level_secs` / offered.
    pub service_level: Option<f64>,
    /// The service-level threshold, seconds.
    pub service_level_secs: u32,
    /// Each figure's formula, in Japanese (an object: figure → text).
    #[serde(serialize_with = "as_map")]
    pub formulas: &'static [(&'static str, &'static str)],
}

/// Each figure's definition (Japanese, for tooltips and the README).
pub const FORMULAS: &[(&str, &str)] = &[
    ("offered", "受付時間内に着信した件数（応答・放棄・話中・応答なし・不在・中断・通話中を含む。時間外と不正発信元は含まない）"),
    ("answered", "オペレーターが応答した件数"),
    ("abandoned", "呼出中に発信者が切った件数"),
    ("busy", "回線使用中のため話中となった件数"),
    ("closed", "受付時間外（夜間・土日祝・年末年始・期間外）の着信件数"),
    ("no_answer", "呼出タイムアウト、または全電話機が拒否した件数"),
    ("unstaffed", "登録済みの電話機が無く応答できなかった件数"),
    ("callbacks_waiting", "折り返し待ちの電話番号の数（非通知を除く）"),
    ("callbacks_oldest_wait_seconds", "最も古い折り返し待ちの経過秒数"),
    ("asa_seconds", "平均応答時間 = 応答した通話の呼出秒数の合計 ÷ 応答件数"),
    ("aht_seconds", "平均処理時間 = （通話秒数 + 後処理秒数）の合計 ÷ 終了した応答通話の件数（後処理 = 通話終了から対応記録保存まで）"),
    ("abandonment_rate", "放棄率 = 放棄件数 ÷ 受付件数"),
    ("service_level", "サービスレベル = 規定秒数以内に応答した件数 ÷ 受付件数"),
];

fn as_map<S: serde::Serializer>(
    v: &&'static [(&'static str, &'static str)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(k, t)| (*k, *t)))
}

/// The UTC bounds of `date` in Asia/Tokyo.
pub fn day_bounds(date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let tz = chrono_tz::Asia::Tokyo;
    let start = tz
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default();
    (start, start + chrono::Duration::days(1))
}

/// Computes the figures from the day's call rows.
pub fn compute(
    date: NaiveDate,
    calls: &[CallRow],
    line_state: LineState,
    callbacks: &[super::callbacks::Callback],
    now: DateTime<Utc>,
    service_level_secs: u32,
) -> LiveStats {
    let count = |cause: &str| {
        calls
            .iter()
            .filter(|c| c.end_cause.as_deref() == Some(cause))
            .count() as u32
    };
    let not_offered = ["closed", "rejected"];
    let offered = calls
        .iter()
        .filter(|c| {
            !c.end_cause
                .as_deref()
                .is_some_and(|e| not_offered.contains(&e))
        })
        .count() as u32;
    let answered: Vec<&CallRow> = calls.iter().filter(|c| c.answered_at.is_some()).collect();
    let ring: Vec<f64> = answered.iter().filter_map(|c| c.ring_seconds).collect();
    let handled: Vec<f64> = answered
        .iter()
        .filter_map(|c| {
            let talk = c.talk_seconds?;
            let wrap = match (c.ended_at, c.outcome_at) {
                (Some(e), Some(o)) if o > e => (o - e).num_milliseconds() as f64 / 1000.0,
                _ => 0.0,
            };
            Some(talk + wrap)
        })
        .collect();
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let rate = |n: u32| (offered > 0).then(|| f64::from(n) / f64::from(offered));
    let within = answered
        .iter()
        .filter(|c| {
            c.ring_seconds
                .is_some_and(|r| r <= f64::from(service_level_secs))
        })
        .count() as u32;
    LiveStats {
        date,
        line_state,
        offered,
        answered: answered.len() as u32,
        abandoned: count("abandoned"),
        busy: count("busy"),
        closed: count("closed"),
        no_answer: count("no_answer") + count("refused"),
        unstaffed: count("unstaffed"),
        callbacks_waiting: callbacks.len() as u32,
        callbacks_oldest_wait_seconds: callbacks
            .iter()
            .map(|c| (now - c.first_missed_at).num_seconds())
            .max(),
        asa_seconds: mean(&ring),
        aht_seconds: mean(&handled),
        abandonment_rate: rate(count("abandoned")),
        service_level: rate(within),
        service_level_secs,
        formulas: FORMULAS,
    }
}
