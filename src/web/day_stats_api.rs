//! `GET /api/stats/day?date=YYYY-MM-DD`: one past (or today's) day for the dashboard, by
//! outcome and by hour (issue 18 item 3). "Today" is the server's clock, as for the live
//! figures; the answer holds counts only (no numbers), so reading it is not a call read.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use chrono::{NaiveDate, Timelike};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::calls::{CallFilter, EndCode};

use super::{ApiError, QueryParams};

/// The chosen day.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayQuery {
    /// Asia/Tokyo civil date.
    date: NaiveDate,
}

/// One hour of the day (Asia/Tokyo).
#[derive(Debug, Default, Serialize)]
pub struct HourCounts {
    /// 0..=23.
    hour: u32,
    /// Every call that arrived in the hour.
    calls: u32,
    /// Answered.
    answered: u32,
    /// Given up by the caller while ringing.
    abandoned: u32,
}

/// The day's breakdown.
#[derive(Debug, Serialize)]
pub struct DayStats {
    /// The day shown.
    date: NaiveDate,
    /// The server's today (the picker's upper end).
    today: NaiveDate,
    /// Every call of the day.
    calls: u32,
    /// Answered calls.
    answered: u32,
    /// Outcome code → answered calls with it; `none` for answered calls with no outcome yet.
    by_outcome: BTreeMap<&'static str, u32>,
    /// End cause code → calls.
    by_end_cause: BTreeMap<&'static str, u32>,
    /// 24 hours, 0 to 23.
    by_hour: Vec<HourCounts>,
}

/// `GET /api/stats/day?date=`.
pub async fn day_stats(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<DayQuery>,
) -> Result<Json<DayStats>, ApiError> {
    let today = state
        .clock
        .now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .date_naive();
    if q.date > today {
        return Err(ApiError::invalid(format!(
            "{} はまだ来ていない日です。今日（{today}）以前の日を選んでください。",
            q.date
        )));
    }
    let mut filter = CallFilter {
        date: Some(q.date),
        limit: Some(500),
        ..CallFilter::default()
    };
    let mut stats = DayStats {
        date: q.date,
        today,
        calls: 0,
        answered: 0,
        by_outcome: BTreeMap::new(),
        by_end_cause: BTreeMap::new(),
        by_hour: (0..24)
            .map(|hour| HourCounts {
                hour,
                ..HourCounts::default()
            })
            .collect(),
    };
    loop {
        let page = state.calls.list(&filter).await?;
        for r in &page {
            let hour = r.arrived_at.with_timezone(&chrono_tz::Asia::Tokyo).hour() as usize;
            let slot = &mut stats.by_hour[hour];
            stats.calls += 1;
            slot.calls += 1;
            if r.answered_at.is_some() {
                stats.answered += 1;
                slot.answered += 1;
                let key = r.outcome.map_or("none", |o| o.as_str());
                *stats.by_outcome.entry(key).or_default() += 1;
            }
            if r.end_cause == Some(EndCode::Abandoned) {
                slot.abandoned += 1;
            }
            if let Some(c) = r.end_cause {
                *stats.by_end_cause.entry(c.as_str()).or_default() += 1;
            }
        }
        if page.len() < 500 {
            break;
        }
        filter.before_id = page.last().map(|r| r.id);
    }
    Ok(Json(stats))
}
