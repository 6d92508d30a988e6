//! Live statistics of one day (Asia/Tokyo) for the manager's dashboard (issue 4).
//!
//! Every figure's formula is in [`FORMULAS`]; the README and the dashboard tooltips show the
//! same text, so the city and the contractor read the numbers the same way.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use super::DayTotals;
pub use super::LineState;

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

/// Computes the figures from the day's totals and the open callbacks (count, oldest).
pub fn compute(
    date: NaiveDate,
    t: &DayTotals,
    line_state: LineState,
    callbacks: (u32, Option<DateTime<Utc>>),
    now: DateTime<Utc>,
    service_level_secs: u32,
) -> LiveStats {
    let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
    let mean = |sum: i64, n: i64| (n > 0).then(|| sum as f64 / n as f64 / 1000.0);
    let rate = |n: i64| (t.offered > 0).then(|| n as f64 / t.offered as f64);
    LiveStats {
        date,
        line_state,
        offered: count(t.offered),
        answered: count(t.answered),
        abandoned: count(t.abandoned),
        busy: count(t.busy),
        closed: count(t.closed),
        no_answer: count(t.no_answer),
        unstaffed: count(t.unstaffed),
        callbacks_waiting: callbacks.0,
        callbacks_oldest_wait_seconds: callbacks.1.map(|first| (now - first).num_seconds()),
        asa_seconds: mean(t.ring_ms_sum, t.ring_n),
        aht_seconds: mean(t.handle_ms_sum, t.handle_n),
        abandonment_rate: rate(t.abandoned),
        service_level: rate(t.within_service_level),
        service_level_secs,
        formulas: FORMULAS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_follow_their_formulas() {
        let t = DayTotals {
            offered: 4,
            answered: 2,
            abandoned: 1,
            ring_ms_sum: 30_000,
            ring_n: 2,
            handle_ms_sum: 400_000,
            handle_n: 2,
            within_service_level: 1,
            ..Default::default()
        };
        let now = Utc::now();
        let s = compute(
            now.date_naive(),
            &t,
            LineState::Idle,
            (1, Some(now - chrono::Duration::seconds(90))),
            now,
            20,
        );
        assert_eq!(s.asa_seconds, Some(15.0));
        assert_eq!(s.aht_seconds, Some(200.0));
        assert_eq!(s.abandonment_rate, Some(0.25));
        assert_eq!(s.service_level, Some(0.25));
        assert_eq!(s.callbacks_oldest_wait_seconds, Some(90));
        let empty = compute(
            now.date_naive(),
            &DayTotals::default(),
            LineState::Idle,
            (0, None),
            now,
            20,
        );
        assert_eq!(empty.abandonment_rate, None);
    }
}
