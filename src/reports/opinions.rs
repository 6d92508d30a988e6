//! Opinions and complaints (R-REP-3): calls tagged opinion or complaint, with the operator's
//! note as the summary and the manager's follow-up. Notes may hold personal data, so every
//! read is recorded as a read of call data and every follow-up change is audited. Caller
//! numbers are not part of the list.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::calls::stats::day_bounds;
use crate::calls::Outcome;
use crate::clock::{from_db_time, to_db_time};
use crate::codes::sql_list;
use crate::privacy::{append_audit, Actor, AuditAction, AuditEntry, AuditTarget};
use crate::store::Db;

use super::ReportsError;

/// The longest follow-up text, in characters.
pub const FOLLOW_UP_MAX_CHARS: usize = 2000;

/// The outcomes listed.
const KINDS: &[Outcome] = &[Outcome::Opinion, Outcome::Complaint];

/// One opinion or complaint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpinionRow {
    /// The call's row id.
    pub call_id: i64,
    /// Arrival (UTC).
    pub arrived_at: DateTime<Utc>,
    /// The day (Japanese time).
    pub date: NaiveDate,
    /// 令和8年6月17日（水）.
    pub date_ja: String,
    /// 14:05 (Japanese time).
    pub time: String,
    /// Opinion or complaint.
    pub kind: Outcome,
    /// Its label.
    pub kind_ja: &'static str,
    /// The operator's note.
    pub summary: String,
    /// The manager's follow-up.
    pub follow_up: Option<String>,
    /// When it was last set.
    pub follow_up_at: Option<DateTime<Utc>>,
    /// Who set it.
    pub follow_up_by: Option<String>,
}

/// The manager's follow-up text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUpInput {
    /// What was done about it.
    pub follow_up: String,
}

/// The UTC bounds of the Japanese days `from..=to` (either open).
fn range(
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ReportsError> {
    if let (Some(f), Some(t)) = (from, to) {
        if t < f {
            return Err(ReportsError::Invalid(format!(
                "終了日（{t}）が開始日（{f}）より前です。"
            )));
        }
    }
    let start = from
        .map(|d| day_bounds(d).0)
        .unwrap_or(DateTime::UNIX_EPOCH);
    let end = to
        .map(|d| day_bounds(d + Duration::days(1)).0)
        .unwrap_or_else(|| DateTime::UNIX_EPOCH + Duration::days(365 * 1000));
    Ok((start, end))
}

/// The opinions and complaints of the Japanese days `from..=to`, oldest first, read by
/// `actor`; the read of their notes is recorded in the same transaction.
pub async fn read(
    db: &Db,
    actor: &Actor,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<Vec<OpinionRow>, ReportsError> {
    let (start, end) = range(from, to)?;
    let mut tx = db.pool().begin().await?;
    let rows = sqlx::query(&format!(
        "SELECT c.id, c.arrived_at, c.outcome, c.outcome_note, f.text, f.updated_at, f.updated_by_username \
         FROM calls c LEFT JOIN call_follow_ups f ON f.call_id = c.id \
         WHERE c.outcome IN ({}) AND c.arrived_at >= $1 AND c.arrived_at < $2 ORDER BY c.arrived_at, c.id",
        sql_list(KINDS)
    ))
    .bind(to_db_time(start))
    .bind(to_db_time(end))
    .fetch_all(&mut *tx)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let arrived_at = from_db_time(&r.try_get::<String, _>(1)?).unwrap_or_default();
        let local = arrived_at.with_timezone(&chrono_tz::Asia::Tokyo);
        let kind: Outcome = r.try_get(2)?;
        out.push(OpinionRow {
            call_id: r.try_get(0)?,
            arrived_at,
            date: local.date_naive(),
            date_ja: crate::wareki::date_with_weekday(local.date_naive()),
            time: local.format("%H:%M").to_string(),
            kind,
            kind_ja: kind.label_ja(),
            summary: r.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
            follow_up: r.try_get(4)?,
            follow_up_at: r
                .try_get::<Option<String>, _>(5)?
                .as_deref()
                .and_then(from_db_time),
            follow_up_by: r.try_get(6)?,
        });
    }
    if !out.is_empty() {
        let ids: Vec<i64> = out.iter().map(|r| r.call_id).collect();
        let entry = AuditEntry::new(AuditAction::CallRead)
            .detail(serde_json::json!({ "call_ids": ids, "fields": "outcome_note,follow_up" }));
        append_audit(&mut tx, now, actor, &entry).await?;
    }
    tx.commit().await?;
    Ok(out)
}

/// Sets the follow-up of an opinion or complaint (replacing an earlier one); audited
/// (`call.follow_up`) in the same transaction.
pub async fn set_follow_up(
    db: &Db,
    actor: &Actor,
    call_id: i64,
    input: &FollowUpInput,
    now: DateTime<Utc>,
) -> Result<(), ReportsError> {
    let text = input.follow_up.trim();
    if text.chars().count() > FOLLOW_UP_MAX_CHARS {
        return Err(ReportsError::Invalid(format!(
            "対応内容は{FOLLOW_UP_MAX_CHARS}文字以内で入力してください。"
        )));
    }
    let mut tx = db.pool().begin().await?;
    let outcome: Option<Option<Outcome>> = sqlx::query("SELECT outcome FROM calls WHERE id = $1")
        .bind(call_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    match outcome {
        None => return Err(ReportsError::NotFound("call")),
        Some(Some(o)) if KINDS.contains(&o) => {}
        Some(_) => return Err(ReportsError::NotAnOpinion(call_id)),
    }
    sqlx::query(
        "INSERT INTO call_follow_ups (call_id, text, updated_at, updated_by_user_id, updated_by_username) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (call_id) DO UPDATE SET text = excluded.text, \
         updated_at = excluded.updated_at, updated_by_user_id = excluded.updated_by_user_id, \
         updated_by_username = excluded.updated_by_username",
    )
    .bind(call_id)
    .bind(text)
    .bind(to_db_time(now))
    .bind(actor.user_id)
    .bind(&actor.username)
    .execute(&mut *tx)
    .await?;
    let entry = AuditEntry::new(AuditAction::CallFollowUp).target(AuditTarget::Call, call_id);
    append_audit(&mut tx, now, actor, &entry).await?;
    tx.commit().await?;
    Ok(())
}
