//! The missed-call callback list: one open entry per number until someone calls back or
//! closes it (issue 4, R-LINE-3).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::calls::callerid::display_national;
use crate::clock::{from_db_time, to_db_time};
use crate::store::Db;

use super::CallsError;

/// Causes that put a number on the callback list (every phone refusing counts as no answer).
pub const MISSED_CAUSES: [&str; 5] = ["abandoned", "busy", "no_answer", "unstaffed", "refused"];

/// The caller of a callback entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallbackCaller {
    /// E.164.
    pub e164: String,
    /// National format for the screen.
    pub display: String,
}

/// One open callback.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Callback {
    /// Entry id.
    pub id: i64,
    /// Who to call back.
    pub caller: CallbackCaller,
    /// The first missed call.
    pub first_missed_at: DateTime<Utc>,
    /// The latest missed call.
    pub last_missed_at: DateTime<Utc>,
    /// Missed calls since the entry opened.
    pub missed_count: i64,
    /// How the latest one ended.
    pub last_cause: String,
}

/// Records a missed call; idempotent per call key.
pub async fn record_missed(
    db: &Db,
    e164: &str,
    cause: &str,
    call_key: &str,
    at: DateTime<Utc>,
) -> Result<(), CallsError> {
    sqlx::query(
        "INSERT INTO callbacks (caller_e164, first_missed_at, last_missed_at, missed_count, last_cause, last_call_key, status) \
         VALUES ($1, $2, $2, 1, $3, $4, 'open') \
         ON CONFLICT (caller_e164) WHERE status = 'open' DO UPDATE SET \
            missed_count = callbacks.missed_count + CASE WHEN callbacks.last_call_key = excluded.last_call_key THEN 0 ELSE 1 END, \
            last_missed_at = excluded.last_missed_at, last_cause = excluded.last_cause, last_call_key = excluded.last_call_key",
    )
    .bind(e164)
    .bind(to_db_time(at))
    .bind(cause)
    .bind(call_key)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The caller got through after all: the open entry is moot.
pub async fn answered_later(db: &Db, e164: &str, at: DateTime<Utc>) -> Result<(), CallsError> {
    sqlx::query("UPDATE callbacks SET status = 'answered_later', closed_at = $1 WHERE caller_e164 = $2 AND status = 'open'")
        .bind(to_db_time(at))
        .bind(e164)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Open callbacks, oldest first (the one waiting longest on top).
pub async fn list_open(db: &Db) -> Result<Vec<Callback>, CallsError> {
    let rows = sqlx::query(
        "SELECT id, caller_e164, first_missed_at, last_missed_at, missed_count, last_cause FROM callbacks \
         WHERE status = 'open' ORDER BY first_missed_at, id",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let e164: String = r.try_get("caller_e164")?;
            Ok(Callback {
                id: r.try_get("id")?,
                caller: CallbackCaller {
                    display: display_national(&e164),
                    e164,
                },
                first_missed_at: from_db_time(&r.try_get::<String, _>("first_missed_at")?)
                    .unwrap_or_default(),
                last_missed_at: from_db_time(&r.try_get::<String, _>("last_missed_at")?)
                    .unwrap_or_default(),
                missed_count: r.try_get("missed_count")?,
                last_cause: r.try_get("last_cause")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// How many numbers wait for a callback, and since when the oldest.
pub async fn waiting(db: &Db) -> Result<(u32, Option<DateTime<Utc>>), CallsError> {
    let r = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT), MIN(first_missed_at) FROM callbacks WHERE status = 'open'")
        .fetch_one(db.pool())
        .await?;
    let n: i64 = r.try_get(0)?;
    let oldest: Option<String> = r.try_get(1)?;
    Ok((
        u32::try_from(n).unwrap_or(u32::MAX),
        oldest.as_deref().and_then(from_db_time),
    ))
}

/// Closes an open entry as `called_back` or `closed`; `false` if it was not open.
pub async fn close(
    db: &Db,
    id: i64,
    result: &str,
    note: &str,
    user_id: i64,
    at: DateTime<Utc>,
) -> Result<bool, CallsError> {
    let n = sqlx::query(
        "UPDATE callbacks SET status = $1, note = $2, closed_by_user_id = $3, closed_at = $4 WHERE id = $5 AND status = 'open'",
    )
    .bind(result)
    .bind(note)
    .bind(user_id)
    .bind(to_db_time(at))
    .bind(id)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}
