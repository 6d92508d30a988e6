//! The call log's aggregations: the live statistics (`GET /api/stats/live`) and the weekly
//! report read the same sums, written once here.
//!
//! [`totals_columns`] is the list of sums behind [`DayTotals`]; [`CallLog::totals`] takes them
//! over one range, [`hourly`] per hour of arrival. The store keeps UTC times as fixed-width
//! text and Japan is a whole number of hours from UTC, so an hour of UTC text
//! (`YYYY-MM-DDTHH`) is exactly one hour of Japanese time: both backends group by it and the
//! caller adds up hours into Japanese days.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::clock::to_db_time;
use crate::codes::sql_list;
use crate::store::Db;

use super::{CallsError, DayTotals, EndCode, Outcome};

/// The sums behind [`DayTotals`], in its field order; `$3` is the service-level threshold, ms.
pub(super) fn totals_columns() -> String {
    let sum = |cond: &str, value: &str| {
        format!("CAST(COALESCE(SUM(CASE WHEN {cond} THEN {value} ELSE 0 END), 0) AS BIGINT)")
    };
    let is = |c: EndCode| format!("end_cause IN ({})", sql_list(&[c]));
    let answered = "answered_at IS NOT NULL";
    [
        sum(
            &format!(
                "end_cause IS NULL OR end_cause NOT IN ({})",
                sql_list(EndCode::NOT_OFFERED)
            ),
            "1",
        ),
        sum(answered, "1"),
        sum(&is(EndCode::Abandoned), "1"),
        sum(&is(EndCode::Busy), "1"),
        sum(&is(EndCode::Closed), "1"),
        sum(
            &format!("end_cause IN ({})", sql_list(EndCode::NO_ANSWER)),
            "1",
        ),
        sum(&is(EndCode::Unstaffed), "1"),
        sum(&format!("{answered} AND ring_ms IS NOT NULL"), "ring_ms"),
        sum(&format!("{answered} AND ring_ms IS NOT NULL"), "1"),
        sum(
            &format!("{answered} AND talk_ms IS NOT NULL"),
            "talk_ms + COALESCE(wrapup_ms, 0)",
        ),
        sum(&format!("{answered} AND talk_ms IS NOT NULL"), "1"),
        sum(&format!("{answered} AND ring_ms <= $3"), "1"),
    ]
    .join(", ")
}

/// Reads the [`totals_columns`] of `r` starting at column `at`.
pub(super) fn totals_from_row(r: &AnyRow, at: usize) -> Result<DayTotals, sqlx::Error> {
    let n = |i: usize| -> Result<i64, sqlx::Error> { r.try_get::<i64, _>(at + i) };
    Ok(DayTotals {
        offered: n(0)?,
        answered: n(1)?,
        abandoned: n(2)?,
        busy: n(3)?,
        closed: n(4)?,
        no_answer: n(5)?,
        unstaffed: n(6)?,
        ring_ms_sum: n(7)?,
        ring_n: n(8)?,
        handle_ms_sum: n(9)?,
        handle_n: n(10)?,
        within_service_level: n(11)?,
    })
}

/// The start (UTC) of an hour bucket `YYYY-MM-DDTHH`.
fn hour_start(bucket: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(&format!("{bucket}:00:00"), "%Y-%m-%dT%H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

/// The [`DayTotals`] of every hour (UTC start) with calls arriving in `[from, to)`, in time
/// order: the live statistics' sums, per hour.
pub async fn hourly(
    db: &Db,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    service_level_ms: i64,
) -> Result<Vec<(DateTime<Utc>, DayTotals)>, CallsError> {
    let sql = format!(
        "SELECT SUBSTR(arrived_at, 1, 13) AS h, {} FROM calls \
         WHERE arrived_at >= $1 AND arrived_at < $2 GROUP BY SUBSTR(arrived_at, 1, 13) ORDER BY h",
        totals_columns()
    );
    let rows = sqlx::query(&sql)
        .bind(to_db_time(from))
        .bind(to_db_time(to))
        .bind(service_level_ms)
        .fetch_all(db.pool())
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let bucket: String = r.try_get(0)?;
        if let Some(h) = hour_start(&bucket) {
            out.push((h, totals_from_row(r, 1)?));
        }
    }
    Ok(out)
}

/// How many calls of one kind arrived in one hour: the breakdown the live statistics do not
/// show (closing reasons, outcomes, inquiry topics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindCount {
    /// The hour's start (UTC).
    pub hour: DateTime<Utc>,
    /// How the call ended.
    pub end_cause: Option<EndCode>,
    /// The stored detail (for a closed call: the closing reason's code).
    pub end_detail: Option<String>,
    /// Whether an operator answered.
    pub answered: bool,
    /// The operator's outcome.
    pub outcome: Option<Outcome>,
    /// The topic tags (JSON array text) of an inquiry.
    pub topics: Option<String>,
    /// Calls.
    pub count: i64,
}

/// Calls arriving in `[from, to)` counted per hour, end cause, detail, answered or not,
/// outcome and topic tags.
pub async fn kinds(
    db: &Db,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<KindCount>, CallsError> {
    let answered = "CAST(CASE WHEN answered_at IS NOT NULL THEN 1 ELSE 0 END AS BIGINT)";
    let sql = format!(
        "SELECT SUBSTR(arrived_at, 1, 13) AS h, end_cause, end_detail, {answered} AS a, outcome, outcome_topics, \
         CAST(COUNT(*) AS BIGINT) AS n FROM calls WHERE arrived_at >= $1 AND arrived_at < $2 \
         GROUP BY SUBSTR(arrived_at, 1, 13), end_cause, end_detail, {answered}, outcome, outcome_topics"
    );
    let rows = sqlx::query(&sql)
        .bind(to_db_time(from))
        .bind(to_db_time(to))
        .fetch_all(db.pool())
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let bucket: String = r.try_get(0)?;
        let Some(hour) = hour_start(&bucket) else {
            continue;
        };
        out.push(KindCount {
            hour,
            end_cause: r.try_get(1)?,
            end_detail: r.try_get(2)?,
            answered: r.try_get::<i64, _>(3)? != 0,
            outcome: r.try_get(4)?,
            topics: r.try_get(5)?,
            count: r.try_get(6)?,
        });
    }
    Ok(out)
}
