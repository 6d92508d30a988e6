//! The missed-call callback list: one open entry per number until someone calls back or
//! closes it (issue 4, R-LINE-3).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::calls::callerid::display_national;
use crate::clock::{from_db_time, to_db_time};
use crate::codes::sql_list;
use crate::privacy::{append_audit, Actor, AuditAction, AuditEntry, AuditTarget};
use crate::store::Db;

use super::{CallbackResult, CallbackStatus, CallsError, EndCode};

/// The longest note on a closed callback, in characters.
pub const NOTE_MAX_CHARS: usize = 500;

/// Why a callback was not closed.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// The entry does not exist or was already closed.
    #[error("the callback is not open")]
    NotOpen,
    /// Storage failed.
    #[error(transparent)]
    Calls(#[from] CallsError),
}

impl From<sqlx::Error> for CallbackError {
    fn from(e: sqlx::Error) -> Self {
        CallbackError::Calls(e.into())
    }
}

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
    pub last_cause: EndCode,
}

/// Records a missed call; idempotent per call key.
pub async fn record_missed(
    conn: &mut sqlx::AnyConnection,
    e164: &str,
    cause: EndCode,
    call_key: &str,
    at: DateTime<Utc>,
) -> Result<(), CallsError> {
    // The conflict target must repeat the partial unique index's predicate literally.
    sqlx::query(&format!(
        "INSERT INTO callbacks (caller_e164, first_missed_at, last_missed_at, missed_count, last_cause, last_call_key, status) \
         VALUES ($1, $2, $2, 1, $3, $4, $5) \
         ON CONFLICT (caller_e164) WHERE status = {open} DO UPDATE SET \
            missed_count = callbacks.missed_count + CASE WHEN callbacks.last_call_key = excluded.last_call_key THEN 0 ELSE 1 END, \
            last_missed_at = excluded.last_missed_at, last_cause = excluded.last_cause, last_call_key = excluded.last_call_key",
        open = sql_list(&[CallbackStatus::Open]),
    ))

    .bind(e164)
    .bind(to_db_time(at))
    .bind(cause)
    .bind(call_key)
    .bind(CallbackStatus::Open)
    .execute(conn)
    .await?;
    Ok(())
}

/// The caller got through after all: the open entry is moot.
pub async fn answered_later(
    conn: &mut sqlx::AnyConnection,
    e164: &str,
    at: DateTime<Utc>,
) -> Result<(), CallsError> {
    bind_answered_later(sqlx::query(ANSWERED_LATER_SQL), e164, to_db_time(at))
        .execute(conn)
        .await?;
    Ok(())
}

/// [`answered_later`]'s statement: closes the number's open callback.
pub(super) const ANSWERED_LATER_SQL: &str =
    "UPDATE callbacks SET status = $3, closed_at = $1 WHERE caller_e164 = $2 AND status = $4";

/// Binds [`ANSWERED_LATER_SQL`]'s four values next on `q`.
pub(super) fn bind_answered_later<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    e164: &'q str,
    at: String,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    q.bind(at)
        .bind(e164)
        .bind(CallbackStatus::AnsweredLater)
        .bind(CallbackStatus::Open)
}

/// Open callbacks for `actor`, oldest first (the one waiting longest on top); the read of
/// their numbers is recorded in the same transaction (R-PII-4).
pub async fn read_open(
    db: &Db,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Result<Vec<Callback>, CallsError> {
    let mut tx = db.pool().begin().await?;
    let list = open_on(&mut tx).await?;
    if !list.is_empty() {
        let ids: Vec<i64> = list.iter().map(|c| c.id).collect();
        let entry = AuditEntry::new(AuditAction::CallbackRead)
            .detail(serde_json::json!({ "callback_ids": ids }));
        append_audit(&mut tx, at, actor, &entry).await?;
    }
    tx.commit().await?;
    Ok(list)
}

/// Open callbacks, oldest first (not audited: for the service itself and tests).
pub async fn list_open(db: &Db) -> Result<Vec<Callback>, CallsError> {
    let mut conn = db.pool().acquire().await?;
    open_on(&mut conn).await
}

async fn open_on(conn: &mut sqlx::AnyConnection) -> Result<Vec<Callback>, CallsError> {
    let rows = sqlx::query(
        "SELECT id, caller_e164, first_missed_at, last_missed_at, missed_count, last_cause FROM callbacks \
         WHERE status = $1 ORDER BY first_missed_at, id",
    )
    .bind(CallbackStatus::Open)
    .fetch_all(conn)
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
    let r = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT), MIN(first_missed_at) FROM callbacks WHERE status = $1",
    )
    .bind(CallbackStatus::Open)
    .fetch_one(db.pool())
    .await?;
    let n: i64 = r.try_get(0)?;
    let oldest: Option<String> = r.try_get(1)?;
    Ok((
        u32::try_from(n).unwrap_or(u32::MAX),
        oldest.as_deref().and_then(from_db_time),
    ))
}

/// `actor` closes open entry `id` as called back or closed, with its `callback.close` row
/// in the same transaction.
pub async fn close(
    db: &Db,
    actor: &Actor,
    id: i64,
    result: CallbackResult,
    note: &str,
    at: DateTime<Utc>,
) -> Result<(), CallbackError> {
    if note.chars().count() > NOTE_MAX_CHARS {
        return Err(CallbackError::Invalid(format!(
            "メモは{NOTE_MAX_CHARS}文字以内で入力してください。"
        )));
    }
    let mut tx = db.pool().begin().await?;
    let n = sqlx::query(
        "UPDATE callbacks SET status = $1, note = $2, closed_by_user_id = $3, closed_at = $4 WHERE id = $5 AND status = $6",
    )
    .bind(CallbackStatus::from(result))
    .bind(note.trim())
    .bind(actor.user_id)
    .bind(to_db_time(at))
    .bind(id)
    .bind(CallbackStatus::Open)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n != 1 {
        return Err(CallbackError::NotOpen);
    }
    let entry = AuditEntry::new(AuditAction::CallbackClose)
        .target(AuditTarget::Callback, id)
        .detail(serde_json::json!({ "result": result }));
    append_audit(&mut tx, at, actor, &entry).await?;
    tx.commit().await?;
    Ok(())
}
