//! Deletion of personal data (issue 15 item 5, R-PII-5): once a booking's slip was shared
//! with the city (`shared_at`) and its visit ended (`visit_done_at`), the purge empties every
//! column that holds the household's personal data and the caller numbers of the calls linked
//! to it, keeps the non-personal facts the reports and the reception list are made of, stamps
//! `purged_at`, and writes one `booking.purge` row per booking — all in one transaction. Then
//! [`crate::store::Db::scrub`] makes the old bytes unrecoverable from the database files.
//!
//! At the end of the contract (第10) [`PurgeScope::ContractEnd`] deletes every piece of
//! personal data left: every booking's, every call's number and note, every callback, every
//! facility's lists, the call-log dead letters, every unsent share's archive and password.
//!
//! Emptied: bookings `caller_e164`, `contact_phone`, `address`, `caller_name`, `details`,
//! `visit_note`; booking_applicants `name`, `name_kana`, `birth_date`, `details`;
//! booking_history `reason`; facility_requests `address`, `phone`, `contact_person`,
//! `details`, `applicant_list`, `checklist` (free text about residents); calls `caller_e164`, `caller_raw`, `outcome_note`, and
//! `sip_call_id` (set to the call key: a carrier's Call-ID may carry the number), and their
//! opinion follow-ups (call_follow_ups rows, deleted); callbacks
//! `caller_e164` (emptied), `note`; call_log_dead_letters rows (deleted: the event holds the
//! number); shares `archive`, `password` of an unsent share holding a purged booking's slip
//! (the share is withdrawn). The calls linked to a purged booking lose their number, and so do the other
//! calls from the same number (an earlier missed call, a later one) unless a booking that
//! still holds personal data has that number. Kept: dates, half-days, positions, counts,
//! kinds, town, the relation code, statuses, outcomes, causes, durations, forms, the
//! facility's name and type.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::clock::{from_db_time, to_db_time};
use crate::privacy::{append_audit, Actor, AuditAction, AuditEntry, AuditTarget};

use super::bookings::Bookings;
use super::{BookingError, BookingKind, BookingStatus};

/// The tables a purge rewrites (PostgreSQL `VACUUM FULL`).
pub const PURGED_TABLES: &[&str] = &[
    "bookings",
    "booking_applicants",
    "booking_history",
    "facility_requests",
    "calls",
    "callbacks",
    "call_log_dead_letters",
    "shares",
    "call_follow_ups",
];

/// What a purge deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeScope {
    /// Bookings shared with the city whose visit ended (R-PII-5).
    Due,
    /// Everything left at the end of the contract (第10).
    ContractEnd,
}

/// One booking a purge deletes the personal data of (no personal data itself).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PurgeItem {
    /// Row id.
    pub booking_id: i64,
    /// 受付番号.
    pub reception_number: Option<i64>,
    /// Home, facility or pre-meeting.
    pub kind: BookingKind,
    /// Booked or cancelled.
    pub status: BookingStatus,
    /// The visit day.
    pub visit_date: NaiveDate,
    /// Shared with the city on.
    pub shared_on: Option<NaiveDate>,
    /// Visit ended on.
    pub visit_done_on: Option<NaiveDate>,
}

/// What a purge deletes (the dry run) or deleted.
#[derive(Debug, Clone, Serialize)]
pub struct PurgePlan {
    /// Which purge.
    pub scope: PurgeScope,
    /// Whether this is only the preview.
    pub dry_run: bool,
    /// The bookings.
    pub bookings: Vec<PurgeItem>,
    /// Calls whose caller number (and note) goes.
    pub calls: usize,
    /// Callback entries whose number goes.
    pub callbacks: usize,
    /// Facility requests whose contact, address, phone and applicant list go.
    pub facility_requests: usize,
    /// Call-log dead letters deleted (they hold the number).
    pub dead_letters: usize,
    /// When it ran (absent for a dry run).
    pub purged_at: Option<DateTime<Utc>>,
    /// Whether the old bytes were scrubbed from the files (SQLite: the WAL checkpointed and
    /// truncated; PostgreSQL: the tables rewritten once no older transaction could see the
    /// old rows). False when busy readers held it up: run the purge again, it finishes the
    /// scrub. Absent for a dry run.
    pub scrub_complete: Option<bool>,
}

/// The ids a purge touches, found inside its transaction.
struct Targets {
    items: Vec<PurgeItem>,
    calls: BTreeSet<i64>,
    call_keys: BTreeSet<String>,
    numbers: BTreeSet<String>,
    facility_requests: BTreeSet<i64>,
    callbacks: BTreeSet<i64>,
    dead_letters: BTreeSet<i64>,
}

impl Targets {
    fn plan(&self, scope: PurgeScope, dry_run: bool, at: Option<DateTime<Utc>>) -> PurgePlan {
        PurgePlan {
            scope,
            dry_run,
            bookings: self.items.clone(),
            calls: self.calls.len(),
            callbacks: self.callbacks.len(),
            facility_requests: self.facility_requests.len(),
            dead_letters: self.dead_letters.len(),
            purged_at: at,
            scrub_complete: None,
        }
    }
}

impl Bookings {
    /// What [`Bookings::purge`] would delete now (nothing is changed or recorded: the
    /// preview holds ids, dates and counts only).
    pub async fn purge_preview(&self, scope: PurgeScope) -> Result<PurgePlan, BookingError> {
        let mut tx = self.db().pool().begin().await?;
        let t = self.targets(&mut tx, scope).await?;
        tx.rollback().await?;
        Ok(t.plan(scope, true, None))
    }

    /// Deletes the personal data of `scope` in one transaction with its audit rows, then
    /// scrubs the database files (see [`crate::store::Db::scrub`]).
    pub async fn purge(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        scope: PurgeScope,
    ) -> Result<PurgePlan, BookingError> {
        let stamp = to_db_time(now);
        let mut tx = self.db().pool().begin().await?;
        let mark = self
            .db()
            .transaction_mark(&mut tx)
            .await
            .map_err(|e| BookingError::Scrub(e.to_string()))?;
        let t = self.targets(&mut tx, scope).await?;
        for item in &t.items {
            let id = item.booking_id;
            sqlx::query(
                "UPDATE bookings SET caller_e164 = NULL, contact_phone = NULL, address = NULL, caller_name = NULL, \
                 details = NULL, visit_note = NULL, purged_at = $1, updated_at = $1 WHERE id = $2",
            )
            .bind(&stamp)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE booking_applicants SET name = NULL, name_kana = NULL, birth_date = NULL, details = NULL \
                 WHERE booking_id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE booking_history SET reason = NULL WHERE booking_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let calls: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM calls WHERE id = (SELECT call_id FROM bookings WHERE id = $1)",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            let entry = AuditEntry::new(AuditAction::BookingPurge)
                .target(AuditTarget::Booking, id)
                .detail(serde_json::json!({
                    "reception_number": item.reception_number,
                    "scope": scope,
                    "call_ids": calls,
                }));
            append_audit(&mut tx, now, actor, &entry).await?;
        }
        for id in &t.facility_requests {
            sqlx::query(
                "UPDATE facility_requests SET address = NULL, phone = NULL, contact_person = NULL, details = NULL, \
                 applicant_list = NULL, checklist = NULL, updated_at = $1 WHERE id = $2",
            )
            .bind(&stamp)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        for id in &t.calls {
            sqlx::query(
                "UPDATE calls SET caller_e164 = NULL, caller_raw = NULL, outcome_note = NULL, sip_call_id = call_key \
                 WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            // The manager's follow-up of an opinion or complaint may quote the caller.
            sqlx::query("DELETE FROM call_follow_ups WHERE call_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for id in &t.callbacks {
            // An open one (contract end only) is closed: its number is gone.
            sqlx::query(
                "UPDATE callbacks SET caller_e164 = '', note = NULL, \
                 status = CASE WHEN status = 'open' THEN 'closed' ELSE status END, \
                 closed_at = COALESCE(closed_at, $1) WHERE id = $2",
            )
            .bind(&stamp)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        for id in &t.dead_letters {
            sqlx::query("DELETE FROM call_log_dead_letters WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if scope == PurgeScope::ContractEnd {
            // Every follow-up goes at the end of the contract, also on calls already emptied.
            sqlx::query("DELETE FROM call_follow_ups")
                .execute(&mut *tx)
                .await?;
        }
        // An unsent share still holds slips in its archive, with the password beside it: one
        // holding a purged booking is withdrawn (archive and password emptied), and at the end
        // of the contract every unsent share is.
        let purged: Vec<i64> = t.items.iter().map(|i| i.booking_id).collect();
        let unsent: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, booking_ids FROM shares WHERE archive IS NOT NULL OR password IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut shares_withdrawn = Vec::new();
        for (share, ids) in unsent {
            // A list that cannot be read is withdrawn too: better one share prepared again than
            // slips kept after their purge.
            let holds_purged = serde_json::from_str::<Vec<i64>>(&ids)
                .map(|ids| ids.iter().any(|i| purged.contains(i)))
                .unwrap_or(true);
            if scope == PurgeScope::ContractEnd || holds_purged {
                sqlx::query(
                    "UPDATE shares SET archive = NULL, password = NULL, \
                     status = CASE WHEN status = 'sent' THEN status ELSE 'withdrawn' END, \
                     withdrawn_at = CASE WHEN status = 'sent' THEN withdrawn_at ELSE COALESCE(withdrawn_at, $1) END \
                     WHERE id = $2",
                )
                .bind(&stamp)
                .bind(share)
                .execute(&mut *tx)
                .await?;
                shares_withdrawn.push(share);
            }
        }
        let entry = AuditEntry::new(AuditAction::PurgeRun).detail(serde_json::json!({
            "scope": scope,
            "shares_withdrawn": shares_withdrawn,
            "bookings": t.items.len(),
            "calls": t.calls.len(),
            "callbacks": t.callbacks.len(),
            "facility_requests": t.facility_requests.len(),
            "dead_letters": t.dead_letters.len(),
        }));
        append_audit(&mut tx, now, actor, &entry).await?;
        tx.commit().await?;
        let scrub = self
            .db()
            .scrub(PURGED_TABLES, mark.as_deref())
            .await
            .map_err(|e| BookingError::Scrub(e.to_string()))?;
        let mut plan = t.plan(scope, false, Some(now));
        plan.scrub_complete = Some(scrub.complete);
        if !scrub.complete {
            tracing::warn!(
                "purge: busy readers kept the old bytes from being scrubbed; run the purge again"
            );
        }
        Ok(plan)
    }

    async fn targets(
        &self,
        conn: &mut AnyConnection,
        scope: PurgeScope,
    ) -> Result<Targets, BookingError> {
        let due = match scope {
            PurgeScope::Due => {
                " AND shared_at IS NOT NULL AND visit_done_at IS NOT NULL AND kind <> 'pre_meeting'"
            }
            PurgeScope::ContractEnd => "",
        };
        let rows = sqlx::query(&format!(
            "SELECT id, reception_number, kind, status, visit_date, shared_at, visit_done_at, call_id, caller_e164, \
             facility_request_id FROM bookings WHERE purged_at IS NULL{due} \
             ORDER BY reception_number IS NULL, reception_number, id"
        ))
        .fetch_all(&mut *conn)
        .await?;
        let mut t = Targets {
            items: Vec::new(),
            calls: BTreeSet::new(),
            call_keys: BTreeSet::new(),
            numbers: BTreeSet::new(),
            facility_requests: BTreeSet::new(),
            callbacks: BTreeSet::new(),
            dead_letters: BTreeSet::new(),
        };
        let mut candidates = BTreeSet::new();
        for r in &rows {
            let day = |col: &str| -> Result<Option<NaiveDate>, sqlx::Error> {
                Ok(r.try_get::<Option<String>, _>(col)?
                    .as_deref()
                    .and_then(from_db_time)
                    .map(|t| self.day(t)))
            };
            t.items.push(PurgeItem {
                booking_id: r.try_get("id")?,
                reception_number: r.try_get("reception_number")?,
                kind: r.try_get("kind")?,
                status: r.try_get("status")?,
                visit_date: r
                    .try_get::<String, _>("visit_date")?
                    .parse()
                    .map_err(|_| BookingError::NotFound("booking"))?,
                shared_on: day("shared_at")?,
                visit_done_on: day("visit_done_at")?,
            });
            if let Some(c) = r.try_get::<Option<i64>, _>("call_id")? {
                t.calls.insert(c);
            }
            if let Some(n) = r.try_get::<Option<String>, _>("caller_e164")? {
                t.numbers.insert(n);
            }
            if let Some(f) = r.try_get::<Option<i64>, _>("facility_request_id")? {
                candidates.insert(f);
            }
        }
        let chosen: BTreeSet<i64> = t.items.iter().map(|i| i.booking_id).collect();
        match scope {
            PurgeScope::Due => {
                // A facility's lists go once none of its live visits keeps personal data.
                for f in candidates {
                    let open: Vec<i64> = sqlx::query_scalar(
                        "SELECT id FROM bookings WHERE facility_request_id = $1 AND kind = 'facility' \
                         AND status = 'booked' AND purged_at IS NULL",
                    )
                    .bind(f)
                    .fetch_all(&mut *conn)
                    .await?;
                    if open.iter().all(|b| chosen.contains(b)) {
                        t.facility_requests.insert(f);
                    }
                }
                for f in &t.facility_requests {
                    let call: Option<i64> =
                        sqlx::query_scalar("SELECT call_id FROM facility_requests WHERE id = $1")
                            .bind(f)
                            .fetch_one(&mut *conn)
                            .await?;
                    t.calls.extend(call);
                }
                let calls: Vec<i64> = t.calls.iter().copied().collect();
                for c in calls {
                    let row = sqlx::query("SELECT call_key, caller_e164 FROM calls WHERE id = $1")
                        .bind(c)
                        .fetch_optional(&mut *conn)
                        .await?;
                    match row {
                        Some(row) => {
                            t.call_keys.insert(row.try_get("call_key")?);
                            if let Some(n) = row.try_get::<Option<String>, _>("caller_e164")? {
                                t.numbers.insert(n);
                            }
                        }
                        None => {
                            t.calls.remove(&c);
                        }
                    }
                }
                // The other calls from these numbers (a missed call before the booking, a
                // call about it later) go too, unless a booking still holding its personal
                // data has the number: then they stay until that one is purged.
                for n in t.numbers.clone() {
                    let others: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM bookings WHERE caller_e164 = $1 AND purged_at IS NULL",
                    )
                    .bind(&n)
                    .fetch_one(&mut *conn)
                    .await?;
                    let held_elsewhere: i64 = {
                        let mut held = others;
                        for r in &rows {
                            let id: i64 = r.try_get("id")?;
                            let num: Option<String> = r.try_get("caller_e164")?;
                            if chosen.contains(&id) && num.as_deref() == Some(n.as_str()) {
                                held -= 1;
                            }
                        }
                        held
                    };
                    if held_elsewhere > 0 {
                        continue;
                    }
                    for r in sqlx::query("SELECT id, call_key FROM calls WHERE caller_e164 = $1")
                        .bind(&n)
                        .fetch_all(&mut *conn)
                        .await?
                    {
                        t.calls.insert(r.try_get("id")?);
                        t.call_keys.insert(r.try_get("call_key")?);
                    }
                }
                // Callbacks of these numbers that are done with (an open one is a task still
                // to do and keeps its number until then or the contract's end).
                for n in &t.numbers {
                    let ids: Vec<i64> = sqlx::query_scalar(
                        "SELECT id FROM callbacks WHERE caller_e164 = $1 AND status <> 'open'",
                    )
                    .bind(n)
                    .fetch_all(&mut *conn)
                    .await?;
                    t.callbacks.extend(ids);
                }
                for k in &t.call_keys {
                    let ids: Vec<i64> = sqlx::query_scalar(
                        "SELECT id FROM callbacks WHERE last_call_key = $1 AND status <> 'open'",
                    )
                    .bind(k)
                    .fetch_all(&mut *conn)
                    .await?;
                    t.callbacks.extend(ids);
                    let ids: Vec<i64> = sqlx::query_scalar(
                        "SELECT id FROM call_log_dead_letters WHERE call_key = $1",
                    )
                    .bind(k)
                    .fetch_all(&mut *conn)
                    .await?;
                    t.dead_letters.extend(ids);
                }
            }
            PurgeScope::ContractEnd => {
                let ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT id FROM facility_requests WHERE address IS NOT NULL OR phone IS NOT NULL \
                     OR contact_person IS NOT NULL OR details IS NOT NULL OR applicant_list IS NOT NULL \
                     OR checklist IS NOT NULL",
                )
                .fetch_all(&mut *conn)
                .await?;
                t.facility_requests.extend(ids);
                t.calls = sqlx::query_scalar(
                    "SELECT id FROM calls WHERE caller_e164 IS NOT NULL OR caller_raw IS NOT NULL \
                     OR outcome_note IS NOT NULL OR sip_call_id <> call_key",
                )
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect();
                t.callbacks = sqlx::query_scalar(
                    "SELECT id FROM callbacks WHERE caller_e164 <> '' OR note IS NOT NULL",
                )
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect();
                t.dead_letters = sqlx::query_scalar("SELECT id FROM call_log_dead_letters")
                    .fetch_all(&mut *conn)
                    .await?
                    .into_iter()
                    .collect();
            }
        }
        Ok(t)
    }
}
