//! Shares: the due list (R-PREP-1), preparation, the four-eyes approval and the send
//! (R-PREP-2), each audited in its transaction; refusals audited on their own.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::booking::bookings::Bookings;
use crate::booking::{BookingKind, BookingStatus};
use crate::clock::{from_db_time, to_db_time, SharedClock};
use crate::privacy::{
    append_audit, Actor, AuditAction, AuditEntry, AuditOutcome, AuditTarget, Role,
};
use crate::store::Db;
use crate::wareki;

use super::config::SharingConfig;
use super::recipients::{self, Recipient};
use super::{
    bundle, facility, mail, slips, DueState, SentVia, ShareKind, ShareStatus, SharingError,
};

/// A send that started this long ago and never finished (a crash mid-send) may be retried.
const SEND_CLAIM_MINUTES: i64 = 10;

/// The Monday of the visit week `d` falls in.
pub fn week_start(d: NaiveDate) -> NaiveDate {
    d - Days::new(u64::from(d.weekday().num_days_from_monday()))
}

/// R-PREP-1: the slips of week W are due by the Tuesday of week W-1.
pub fn due_date(week_start: NaiveDate) -> NaiveDate {
    week_start - Days::new(6)
}

fn week_label(week_start: NaiveDate) -> String {
    format!(
        "{}〜{}",
        wareki::date_with_weekday(week_start),
        wareki::date_with_weekday(week_start + Days::new(6))
    )
}

fn facility_title(name: &str, first_visit: NaiveDate) -> String {
    format!("{name}（{}訪問）", wareki::date_with_weekday(first_visit))
}

/// What a preparation built, before it is encrypted and stored.
struct Bundle {
    kind: ShareKind,
    week_start: NaiveDate,
    facility_request_id: Option<i64>,
    visit_date: Option<NaiveDate>,
    title: String,
    due_date: NaiveDate,
    booking_ids: Vec<i64>,
    reception_numbers: Vec<Option<i64>>,
    count: i64,
    applicants: i64,
    xlsx_name: String,
    archive_name: String,
    xlsx: Vec<u8>,
}

/// One facility on the due list of applicant lists (R-PREP-4).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FacilityDue {
    /// The facility request.
    pub facility_request_id: i64,
    /// Facility name.
    pub facility_name: String,
    /// Its first live visit.
    pub first_visit: NaiveDate,
    /// The first visit in 和暦.
    pub visit_label: String,
    /// The 7th day before the first visit.
    pub due_date: NaiveDate,
    /// The due date in 和暦.
    pub due_label: String,
    /// Entries on its applicant list (0 = not recorded yet).
    pub applicants_listed: i64,
    /// Where it stands.
    pub state: DueState,
    /// The latest share of the list that is not withdrawn.
    pub share_id: Option<i64>,
    /// When it was first sent.
    pub sent_at: Option<DateTime<Utc>>,
}

/// One visit week on the due list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DueWeek {
    /// Monday of the visit week.
    pub week_start: NaiveDate,
    /// Sunday of the visit week.
    pub week_end: NaiveDate,
    /// The week as the city writes it.
    pub week_label: String,
    /// The Tuesday of the week before (R-PREP-1).
    pub due_date: NaiveDate,
    /// The due date in 和暦.
    pub due_label: String,
    /// Live home bookings visited that week.
    pub bookings: i64,
    /// Of them, not yet shared with the city.
    pub not_yet_shared: i64,
    /// Where the week stands.
    pub state: DueState,
    /// The latest share of the week that is not withdrawn.
    pub share_id: Option<i64>,
    /// When the week was sent (first send), UTC.
    pub sent_at: Option<DateTime<Utc>>,
}

/// A share as the approver and the due list see it: no personal data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShareView {
    /// Row id.
    pub id: i64,
    /// A week's slips or a facility's list.
    pub kind: ShareKind,
    /// What it holds, as the approver reads it.
    pub title: String,
    /// The facility request (facility lists).
    pub facility_request_id: Option<i64>,
    /// The facility's first visit (facility lists).
    pub visit_date: Option<NaiveDate>,
    /// Monday of the visit week.
    pub week_start: NaiveDate,
    /// The week in 和暦.
    pub week_label: String,
    /// Due date.
    pub due_date: NaiveDate,
    /// Where it stands.
    pub status: ShareStatus,
    /// The recipient address (on the allow-list when prepared).
    pub recipient: String,
    /// Slips (bookings) in the bundle.
    pub slip_count: i64,
    /// Applicants in the bundle.
    pub applicant_count: i64,
    /// The bookings in the bundle.
    pub booking_ids: Vec<i64>,
    /// The archive's file name.
    pub archive_name: String,
    /// Its size in bytes.
    pub archive_size: i64,
    /// Its SHA-256 (hex), to match what the city received.
    pub archive_sha256: String,
    /// Whether the archive and password are still held (until sent or withdrawn).
    pub archive_held: bool,
    /// Prepared when, by whom.
    pub prepared_at: Option<DateTime<Utc>>,
    /// The preparer's username.
    pub prepared_by: String,
    /// The preparer's account id.
    pub prepared_by_user_id: Option<i64>,
    /// Approved when.
    pub approved_at: Option<DateTime<Utc>>,
    /// The approver's username.
    pub approved_by: Option<String>,
    /// First download of the archive (no-SMTP path).
    pub archive_downloaded_at: Option<DateTime<Utc>>,
    /// First download of the password (no-SMTP path).
    pub password_downloaded_at: Option<DateTime<Utc>>,
    /// When the archive mail was accepted by the relay.
    pub archive_mailed_at: Option<DateTime<Utc>>,
    /// Sent when.
    pub sent_at: Option<DateTime<Utc>>,
    /// Who sent (or marked it sent).
    pub sent_by: Option<String>,
    /// How it went out.
    pub sent_via: Option<SentVia>,
    /// How this server sends: `smtp` (two mails) or `download`.
    pub delivery: SentVia,
}

/// `POST /api/shares` body: a week or a facility request, and the recipient.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareInput {
    /// Any day of the visit week (its Monday is used): the week's home slips.
    #[serde(default)]
    pub week: Option<NaiveDate>,
    /// A facility request: its applicant list.
    #[serde(default)]
    pub facility_request: Option<i64>,
    /// The recipient; must be on the allow-list.
    pub recipient: String,
}

/// The answer of a preparation: the share and its password, shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct Prepared {
    /// The share.
    pub share: ShareView,
    /// The archive's password: shown once here.
    pub password: String,
    /// What to do with it.
    pub notice: String,
}

/// Which secret a download asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// The encrypted archive.
    Archive,
    /// Its password.
    Password,
}

/// A downloaded secret.
#[derive(Debug, Clone)]
pub struct Secret {
    /// File name for the download.
    pub name: String,
    /// The bytes (the archive, or the password as UTF-8 text).
    pub bytes: Vec<u8>,
}

/// The answer of a send.
#[derive(Debug, Clone, Serialize)]
pub struct SendOutcome {
    /// The share, now sent.
    pub share: ShareView,
    /// Bookings whose shared date was set.
    pub bookings_marked: u64,
}

/// The sharing domain's handle.
#[derive(Clone)]
pub struct Sharing {
    db: Db,
    clock: SharedClock,
    config: Arc<SharingConfig>,
    bookings: Bookings,
    tz: chrono_tz::Tz,
    /// The city the mails are addressed to (the profile's `[city] name_ja`).
    city: String,
}

const SHARE_COLUMNS: &str =
    "id, kind, title, facility_request_id, visit_date, week_start, due_date, status, recipient, booking_ids, slip_count, \
     applicant_count, archive_name, archive_sha256, archive_size, \
     CAST(CASE WHEN archive IS NULL THEN 0 ELSE 1 END AS BIGINT) AS archive_held, \
     prepared_at, prepared_by, prepared_by_user_id, approved_at, approved_by, approved_by_user_id, \
     archive_downloaded_at, password_downloaded_at, archive_mailed_at, sent_at, \
     sent_by, sent_via";

fn time(r: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    Ok(r.try_get::<Option<String>, _>(col)?
        .and_then(|s| from_db_time(&s)))
}

fn parse_date(s: &str) -> Result<NaiveDate, SharingError> {
    s.parse()
        .map_err(|_| SharingError::Invalid(format!("stored date '{s}' is not a date")))
}

struct Loaded {
    view: ShareView,
    approved_by_user_id: Option<i64>,
}

impl Sharing {
    /// The handle.
    pub fn new(
        db: Db,
        clock: SharedClock,
        config: SharingConfig,
        bookings: Bookings,
        tz: chrono_tz::Tz,
    ) -> Self {
        Sharing {
            db,
            clock,
            config: Arc::new(config),
            bookings,
            tz,
            city: String::new(),
        }
    }

    /// Names the city the mails are addressed to (the profile's `[city] name_ja`).
    pub fn for_city(mut self, name_ja: &str) -> Self {
        self.city = name_ja.to_string();
        self
    }

    fn delivery(&self) -> SentVia {
        if self.config.smtp_enabled() {
            SentVia::Smtp
        } else {
            SentVia::Download
        }
    }

    fn day(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }

    fn view_of(&self, r: &AnyRow) -> Result<Loaded, SharingError> {
        let week_start = parse_date(&r.try_get::<String, _>("week_start")?)?;
        let view = ShareView {
            id: r.try_get("id")?,
            kind: r.try_get("kind")?,
            title: r.try_get("title")?,
            facility_request_id: r.try_get("facility_request_id")?,
            visit_date: r
                .try_get::<Option<String>, _>("visit_date")?
                .and_then(|d| d.parse().ok()),
            week_start,
            week_label: week_label(week_start),
            due_date: parse_date(&r.try_get::<String, _>("due_date")?)?,
            status: r.try_get("status")?,
            recipient: r.try_get("recipient")?,
            slip_count: r.try_get("slip_count")?,
            applicant_count: r.try_get("applicant_count")?,
            booking_ids: serde_json::from_str(&r.try_get::<String, _>("booking_ids")?)
                .unwrap_or_default(),
            archive_name: r.try_get("archive_name")?,
            archive_size: r.try_get("archive_size")?,
            archive_sha256: r.try_get("archive_sha256")?,
            archive_held: r.try_get::<i64, _>("archive_held")? == 1,
            prepared_at: time(r, "prepared_at")?,
            prepared_by: r.try_get("prepared_by")?,
            prepared_by_user_id: r.try_get("prepared_by_user_id")?,
            approved_at: time(r, "approved_at")?,
            approved_by: r.try_get("approved_by")?,
            archive_downloaded_at: time(r, "archive_downloaded_at")?,
            password_downloaded_at: time(r, "password_downloaded_at")?,
            archive_mailed_at: time(r, "archive_mailed_at")?,
            sent_at: time(r, "sent_at")?,
            sent_by: r.try_get("sent_by")?,
            sent_via: r.try_get("sent_via")?,
            delivery: self.delivery(),
        };
        Ok(Loaded {
            view,
            approved_by_user_id: r.try_get("approved_by_user_id")?,
        })
    }

    async fn load(&self, conn: &mut AnyConnection, id: i64) -> Result<Loaded, SharingError> {
        let row = sqlx::query(&format!("SELECT {SHARE_COLUMNS} FROM shares WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?
            .ok_or(SharingError::NotFound("share"))?;
        self.view_of(&row)
    }

    /// Records a refusal on its own (nothing else changed) and returns it as the error.
    // Each argument is one field of the refusal or of its audit row.
    #[allow(clippy::too_many_arguments)]
    async fn refuse(
        &self,
        actor: &Actor,
        share: Option<i64>,
        step: &str,
        code: &'static str,
        message: String,
        forbidden: bool,
        extra: serde_json::Value,
    ) -> SharingError {
        let mut entry = AuditEntry::new(AuditAction::ShareRefused)
            .outcome(AuditOutcome::Denied)
            .detail(serde_json::json!({ "step": step, "reason": code, "detail": extra }));
        if let Some(id) = share {
            entry = entry.target(AuditTarget::Share, id);
        }
        let recorded = async {
            let mut conn = self.db.pool().acquire().await?;
            append_audit(&mut conn, self.clock.now(), actor, &entry).await?;
            Ok::<_, sqlx::Error>(())
        };
        if let Err(e) = recorded.await {
            return SharingError::Store(e);
        }
        SharingError::Refused {
            code,
            message,
            forbidden,
        }
    }

    /// The allow-list.
    pub async fn recipients(&self) -> Result<Vec<Recipient>, SharingError> {
        let mut conn = self.db.pool().acquire().await?;
        recipients::list(&mut conn).await
    }

    /// Adds an address to the allow-list (admin; audited).
    pub async fn add_recipient(
        &self,
        actor: &Actor,
        address: &str,
        label: &str,
    ) -> Result<Recipient, SharingError> {
        let mut tx = self.db.pool().begin().await?;
        let r = recipients::add(&mut tx, actor, self.clock.now(), address, label).await?;
        tx.commit().await?;
        Ok(r)
    }

    /// Removes an address from the allow-list (admin; audited). Shares already prepared for
    /// it can then no longer be sent.
    pub async fn remove_recipient(&self, actor: &Actor, id: i64) -> Result<(), SharingError> {
        let mut tx = self.db.pool().begin().await?;
        recipients::remove(&mut tx, actor, self.clock.now(), id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every visit week with home visits (or a share), its due date and where it stands.
    pub async fn due(&self) -> Result<Vec<DueWeek>, SharingError> {
        let today = self.day(self.clock.now());
        let mut conn = self.db.pool().acquire().await?;
        let rows = sqlx::query(
            "SELECT visit_date, shared_at FROM bookings WHERE kind = $1 AND status = $2",
        )
        .bind(BookingKind::Home)
        .bind(BookingStatus::Booked)
        .fetch_all(&mut *conn)
        .await?;
        let mut weeks: BTreeMap<NaiveDate, (i64, i64)> = BTreeMap::new();
        for r in &rows {
            let d = parse_date(&r.try_get::<String, _>("visit_date")?)?;
            let shared: Option<String> = r.try_get("shared_at")?;
            let w = weeks.entry(week_start(d)).or_default();
            w.0 += 1;
            if shared.is_none() {
                w.1 += 1;
            }
        }
        let shares = sqlx::query(&format!(
            "SELECT {SHARE_COLUMNS} FROM shares WHERE status <> $1 AND kind = $2 ORDER BY id"
        ))
        .bind(ShareStatus::Withdrawn)
        .bind(ShareKind::HomeWeek)
        .fetch_all(&mut *conn)
        .await?;
        // Per week: the latest open share and the first send.
        let mut latest: BTreeMap<NaiveDate, ShareView> = BTreeMap::new();
        let mut first_sent: BTreeMap<NaiveDate, DateTime<Utc>> = BTreeMap::new();
        for r in &shares {
            let v = self.view_of(r)?.view;
            weeks.entry(v.week_start).or_default();
            if let Some(at) = v.sent_at {
                first_sent.entry(v.week_start).or_insert(at);
            }
            latest.insert(v.week_start, v);
        }
        Ok(weeks
            .into_iter()
            .map(|(start, (bookings, not_yet_shared))| {
                let due = due_date(start);
                let share = latest.get(&start);
                let sent = first_sent.get(&start).copied();
                let state = self.state(today, due, share.map(|s| s.status), sent);
                DueWeek {
                    week_start: start,
                    week_end: start + Days::new(6),
                    week_label: week_label(start),
                    due_date: due,
                    due_label: wareki::date_with_weekday(due),
                    bookings,
                    not_yet_shared,
                    state,
                    share_id: share.map(|s| s.id),
                    sent_at: sent,
                }
            })
            .collect())
    }

    /// Where something due on `due` stands today: a prepared or approved share first, then
    /// the first send against the due date, then the calendar (due within the last week).
    fn state(
        &self,
        today: NaiveDate,
        due: NaiveDate,
        open: Option<ShareStatus>,
        first_sent: Option<DateTime<Utc>>,
    ) -> DueState {
        match (open, first_sent) {
            (Some(ShareStatus::Prepared), _) => DueState::Prepared,
            (Some(ShareStatus::Approved), _) => DueState::Approved,
            (_, Some(at)) if self.day(at) <= due => DueState::SentOnTime,
            (_, Some(_)) => DueState::SentLate,
            _ if today > due => DueState::Late,
            _ if today + Days::new(7) >= due => DueState::Due,
            _ => DueState::NotDue,
        }
    }

    /// Every facility with live visits: its applicant list's due date (the 7th day before
    /// the first visit, R-PREP-4) and where it stands.
    pub async fn facility_due(&self) -> Result<Vec<FacilityDue>, SharingError> {
        let today = self.day(self.clock.now());
        let mut conn = self.db.pool().acquire().await?;
        let rows = sqlx::query(
            "SELECT f.id, f.facility_name, f.applicant_list, MIN(b.visit_date) AS first_visit \
             FROM facility_requests f JOIN bookings b ON b.facility_request_id = f.id \
             WHERE b.kind = $1 AND b.status = $2 \
             GROUP BY f.id, f.facility_name, f.applicant_list ORDER BY MIN(b.visit_date), f.id",
        )
        .bind(BookingKind::Facility)
        .bind(BookingStatus::Booked)
        .fetch_all(&mut *conn)
        .await?;
        let shares = sqlx::query(&format!(
            "SELECT {SHARE_COLUMNS} FROM shares WHERE status <> $1 AND kind = $2 ORDER BY id"
        ))
        .bind(ShareStatus::Withdrawn)
        .bind(ShareKind::FacilityList)
        .fetch_all(&mut *conn)
        .await?;
        let mut latest: BTreeMap<i64, ShareView> = BTreeMap::new();
        let mut first_sent: BTreeMap<i64, DateTime<Utc>> = BTreeMap::new();
        for r in &shares {
            let v = self.view_of(r)?.view;
            let Some(f) = v.facility_request_id else {
                continue;
            };
            if let Some(at) = v.sent_at {
                first_sent.entry(f).or_insert(at);
            }
            latest.insert(f, v);
        }
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get("id")?;
                let first = parse_date(&r.try_get::<String, _>("first_visit")?)?;
                let due = facility::due_date(first);
                let share = latest.get(&id);
                let sent = first_sent.get(&id).copied();
                Ok(FacilityDue {
                    facility_request_id: id,
                    facility_name: r.try_get("facility_name")?,
                    first_visit: first,
                    visit_label: wareki::date_with_weekday(first),
                    due_date: due,
                    due_label: wareki::date_with_weekday(due),
                    applicants_listed: facility::count(
                        r.try_get::<Option<String>, _>("applicant_list")?.as_deref(),
                    ),
                    state: self.state(today, due, share.map(|s| s.status), sent),
                    share_id: share.map(|s| s.id),
                    sent_at: sent,
                })
            })
            .collect()
    }

    /// Every share, newest first.
    pub async fn list(&self) -> Result<Vec<ShareView>, SharingError> {
        let rows = sqlx::query(&format!(
            "SELECT {SHARE_COLUMNS} FROM shares ORDER BY id DESC"
        ))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| self.view_of(r).map(|l| l.view))
            .collect()
    }

    /// One share: what the approver checks (recipient, week, slip count).
    pub async fn get(&self, id: i64) -> Result<ShareView, SharingError> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(self.load(&mut conn, id).await?.view)
    }

    /// Prepares a share: a visit week's slips (`week`) or a facility's applicant list
    /// (`facility_request`). Reads the personal data (one audit row lists the bookings read),
    /// builds the XLSX and the AES-256 ZIP under a new password, and withdraws an earlier
    /// unsent share of the same week or facility.
    pub async fn prepare(
        &self,
        actor: &Actor,
        input: &PrepareInput,
    ) -> Result<Prepared, SharingError> {
        let now = self.clock.now();
        let target = match (input.week, input.facility_request) {
            (Some(w), None) => serde_json::json!({ "week": week_start(w) }),
            (None, Some(f)) => serde_json::json!({ "facility_request": f }),
            _ => return Err(SharingError::Invalid(
                "対象の週（week）か施設申込（facility_request）のどちらか一方を指定してください。"
                    .into(),
            )),
        };
        let recipient = recipients::normalise(&input.recipient);
        let allowed = match &recipient {
            Some(r) => {
                let mut conn = self.db.pool().acquire().await?;
                recipients::allowed(&mut conn, r).await?
            }
            None => false,
        };
        let Some(recipient) = recipient.filter(|_| allowed) else {
            let shown: String = input.recipient.trim().chars().take(254).collect();
            return Err(self
                .refuse(
                    actor,
                    None,
                    "prepare",
                    "recipient_not_allowed",
                    format!(
                        "{shown} は送付先リストにありません。市が指定した送付先だけに送れます（送付先はシステム管理者が登録します）。"
                    ),
                    false,
                    serde_json::json!({ "target": target, "recipient": shown }),
                )
                .await);
        };
        let mut tx = self.db.pool().begin().await?;
        let b = match (input.week, input.facility_request) {
            (Some(w), _) => self.home_bundle(&mut tx, week_start(w)).await?,
            (_, Some(f)) => self.facility_bundle(&mut tx, f).await?,
            _ => unreachable!("checked above"),
        };
        let password = bundle::new_password();
        let archive = bundle::encrypt(
            &b.xlsx_name,
            &b.xlsx,
            &password,
            now.with_timezone(&self.tz).naive_local(),
        )
        .map_err(|e| SharingError::Bundle(e.to_string()))?;
        let sha = hex(&Sha256::digest(&archive));
        let stamp = to_db_time(now);
        let withdrawn = sqlx::query(
            "UPDATE shares SET status = $1, archive = NULL, password = NULL, withdrawn_at = $2 \
             WHERE kind = $3 AND status IN ($4, $5) AND (($3 = 'home_week' AND week_start = $6) \
             OR ($3 = 'facility_list' AND facility_request_id = $7)) RETURNING id",
        )
        .bind(ShareStatus::Withdrawn)
        .bind(&stamp)
        .bind(b.kind)
        .bind(ShareStatus::Prepared)
        .bind(ShareStatus::Approved)
        .bind(b.week_start.to_string())
        .bind(b.facility_request_id)
        .fetch_all(&mut *tx)
        .await?;
        for r in &withdrawn {
            let old: i64 = r.try_get(0)?;
            let entry = AuditEntry::new(AuditAction::ShareWithdraw)
                .target(AuditTarget::Share, old)
                .detail(serde_json::json!({ "target": target, "reason": "prepared_again" }));
            append_audit(&mut tx, now, actor, &entry).await?;
        }
        let id: i64 = sqlx::query(
            "INSERT INTO shares (kind, week_start, facility_request_id, visit_date, title, due_date, status, \
             recipient, booking_ids, slip_count, applicant_count, archive_name, archive_sha256, archive_size, \
             archive, password, prepared_at, prepared_by_user_id, prepared_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
             RETURNING id",
        )
        .bind(b.kind)
        .bind(b.week_start.to_string())
        .bind(b.facility_request_id)
        .bind(b.visit_date.map(|d| d.to_string()))
        .bind(&b.title)
        .bind(b.due_date.to_string())
        .bind(ShareStatus::Prepared)
        .bind(&recipient)
        .bind(serde_json::to_string(&b.booking_ids).unwrap_or_else(|_| "[]".into()))
        .bind(b.count)
        .bind(b.applicants)
        .bind(&b.archive_name)
        .bind(&sha)
        .bind(archive.len() as i64)
        .bind(base64::engine::general_purpose::STANDARD.encode(&archive))
        .bind(&password)
        .bind(&stamp)
        .bind(actor.user_id)
        .bind(&actor.username)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        // Reading the slips (or the list) is a read of personal data: one row lists every
        // booking read.
        let entry = AuditEntry::new(AuditAction::SharePrepare)
            .target(AuditTarget::Share, id)
            .detail(serde_json::json!({
                "kind": b.kind,
                "target": target,
                "recipient": recipient,
                "booking_ids": b.booking_ids,
                "reception_numbers": b.reception_numbers,
                "count": b.count,
                "archive_sha256": sha,
            }));
        append_audit(&mut tx, now, actor, &entry).await?;
        let share = self.load(&mut tx, id).await?.view;
        tx.commit().await?;
        tracing::info!(
            share = id,
            kind = b.kind.as_str(),
            count = b.count,
            "share prepared"
        );
        Ok(Prepared {
            share,
            password,
            notice: "このパスワードは今回一度だけ表示されます。控えずに、送付手順（承認後の別メール／ダウンロード）でのみ市へ伝えてください。".into(),
        })
    }

    async fn home_bundle(
        &self,
        conn: &mut AnyConnection,
        start: NaiveDate,
    ) -> Result<Bundle, SharingError> {
        let slips = slips::read_week(
            conn,
            self.bookings.rules(),
            self.tz,
            start,
            start + Days::new(6),
        )
        .await?;
        if slips.is_empty() {
            return Err(SharingError::Invalid(format!(
                "{}に訪問予定の自宅訪問はありません。",
                week_label(start)
            )));
        }
        Ok(Bundle {
            kind: ShareKind::HomeWeek,
            week_start: start,
            facility_request_id: None,
            visit_date: None,
            title: week_label(start),
            due_date: due_date(start),
            booking_ids: slips.iter().map(|s| s.booking_id).collect(),
            reception_numbers: slips.iter().map(|s| Some(s.reception_number)).collect(),
            count: slips.len() as i64,
            applicants: slips.iter().map(|s| s.applicants.len() as i64).sum(),
            xlsx_name: bundle::xlsx_name(start),
            archive_name: bundle::archive_name(start),
            xlsx: bundle::workbook(start, &slips)
                .map_err(|e| SharingError::Bundle(e.to_string()))?,
        })
    }

    async fn facility_bundle(
        &self,
        conn: &mut AnyConnection,
        id: i64,
    ) -> Result<Bundle, SharingError> {
        let list = facility::read(conn, id).await?;
        let Some(first) = list.visits.first().map(|v| v.2) else {
            return Err(SharingError::Invalid(
                "この施設申込には訪問日が登録されていません。".into(),
            ));
        };
        if list.applicants.is_empty() {
            return Err(SharingError::Invalid(
                "この施設の申請者一覧が登録されていません（施設申込の申請者一覧を入力してください）。"
                    .into(),
            ));
        }
        Ok(Bundle {
            kind: ShareKind::FacilityList,
            week_start: week_start(first),
            facility_request_id: Some(id),
            visit_date: Some(first),
            title: facility_title(&list.facility_name, first),
            due_date: facility::due_date(first),
            booking_ids: list.visits.iter().map(|v| v.0).collect(),
            reception_numbers: list.visits.iter().map(|v| v.1).collect(),
            count: list.applicants.len() as i64,
            applicants: list.applicants.len() as i64,
            xlsx_name: bundle::facility_xlsx_name(id, first),
            archive_name: bundle::facility_archive_name(id, first),
            xlsx: bundle::facility_workbook(&list)
                .map_err(|e| SharingError::Bundle(e.to_string()))?,
        })
    }

    /// The second person's approval (manager or admin, not the preparer).
    pub async fn approve(&self, actor: &Actor, id: i64) -> Result<ShareView, SharingError> {
        let now = self.clock.now();
        let mut tx = self.db.pool().begin().await?;
        let s = self.load(&mut tx, id).await?.view;
        let refusal = if !matches!(actor.role, Some(Role::Manager | Role::Admin)) {
            Some((
                "role",
                "承認できるのは管理者またはシステム管理者です。".to_string(),
                true,
            ))
        } else if s.status != ShareStatus::Prepared {
            Some((
                "not_prepared",
                format!(
                    "この共有は「{}」のため承認できません。",
                    s.status.label_ja()
                ),
                false,
            ))
        } else if actor.user_id.is_some() && actor.user_id == s.prepared_by_user_id {
            Some((
                "self_approval",
                "準備した本人は承認できません。別の管理者が送付先・対象週・件数を確認して承認してください。".to_string(),
                true,
            ))
        } else {
            None
        };
        if let Some((code, message, forbidden)) = refusal {
            tx.rollback().await?;
            return Err(self
                .refuse(
                    actor,
                    Some(id),
                    "approve",
                    code,
                    message,
                    forbidden,
                    serde_json::json!({ "status": s.status }),
                )
                .await);
        }
        let done = sqlx::query(
            "UPDATE shares SET status = $1, approved_at = $2, approved_by_user_id = $3, approved_by = $4 \
             WHERE id = $5 AND status = $6",
        )
        .bind(ShareStatus::Approved)
        .bind(to_db_time(now))
        .bind(actor.user_id)
        .bind(&actor.username)
        .bind(id)
        .bind(ShareStatus::Prepared)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            // Lost a race with another approval or send: a conflict (409), nothing changed.
            return Err(SharingError::Refused {
                code: "changed",
                message: "この共有は別の操作で変更されました。画面を更新してください。".into(),
                forbidden: false,
            });
        }
        let entry = AuditEntry::new(AuditAction::ShareApprove)
            .target(AuditTarget::Share, id)
            .detail(serde_json::json!({
                "week": s.week_start,
                "recipient": s.recipient,
                "slips": s.slip_count,
            }));
        append_audit(&mut tx, now, actor, &entry).await?;
        let view = self.load(&mut tx, id).await?.view;
        tx.commit().await?;
        Ok(view)
    }

    /// The checks every send and download makes first; a refusal is recorded.
    async fn check_sendable(
        &self,
        actor: &Actor,
        s: &ShareView,
        step: &str,
    ) -> Result<(), SharingError> {
        let (code, message) = match s.status {
            ShareStatus::Approved => {
                let mut conn = self.db.pool().acquire().await?;
                if recipients::allowed(&mut conn, &s.recipient).await? {
                    return Ok(());
                }
                (
                    "recipient_not_allowed",
                    format!(
                        "{} は送付先リストから外されています。送付できません。",
                        s.recipient
                    ),
                )
            }
            ShareStatus::Sent => (
                "already_sent",
                "この共有は送付済みです。受付票とパスワードは送付時に削除されています。"
                    .to_string(),
            ),
            ShareStatus::Prepared => (
                "not_approved",
                "まだ承認されていません。準備した人とは別の管理者の承認が必要です。".to_string(),
            ),
            ShareStatus::Withdrawn => (
                "withdrawn",
                "この共有は取り下げられました（同じ週を準備し直したため）。".to_string(),
            ),
        };
        Err(self
            .refuse(
                actor,
                Some(s.id),
                step,
                code,
                message,
                false,
                serde_json::json!({ "status": s.status }),
            )
            .await)
    }

    /// Downloads the approved archive or its password (no-SMTP path): only the preparer or
    /// the approver, as often as needed until the share is marked sent.
    pub async fn download(
        &self,
        actor: &Actor,
        id: i64,
        kind: SecretKind,
    ) -> Result<Secret, SharingError> {
        let now = self.clock.now();
        let mut conn = self.db.pool().acquire().await?;
        let loaded = self.load(&mut conn, id).await?;
        drop(conn);
        let s = loaded.view;
        let step = match kind {
            SecretKind::Archive => "download_archive",
            SecretKind::Password => "download_password",
        };
        if self.config.smtp_enabled() {
            return Err(self
                .refuse(
                    actor,
                    Some(id),
                    step,
                    "smtp_configured",
                    "このサーバーはメールで送付します。ダウンロードはできません。".into(),
                    false,
                    serde_json::Value::Null,
                )
                .await);
        }
        let involved = actor.user_id.is_some()
            && (actor.user_id == s.prepared_by_user_id
                || actor.user_id == loaded.approved_by_user_id);
        if !involved && s.status == ShareStatus::Approved {
            return Err(self
                .refuse(
                    actor,
                    Some(id),
                    step,
                    "not_involved",
                    "ダウンロードできるのは、この共有を準備した人か承認した人だけです。".into(),
                    true,
                    serde_json::Value::Null,
                )
                .await);
        }
        self.check_sendable(actor, &s, step).await?;
        let mut tx = self.db.pool().begin().await?;
        let (col, stamp_col) = match kind {
            SecretKind::Archive => ("archive", "archive_downloaded_at"),
            SecretKind::Password => ("password", "password_downloaded_at"),
        };
        let row = sqlx::query(&format!(
            "SELECT {col} FROM shares WHERE id = $1 AND status = $2"
        ))
        .bind(id)
        .bind(ShareStatus::Approved)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(value) = row
            .map(|r| r.try_get::<Option<String>, _>(0))
            .transpose()?
            .flatten()
        else {
            return Err(SharingError::NotFound("share"));
        };
        sqlx::query(&format!(
            "UPDATE shares SET {stamp_col} = COALESCE({stamp_col}, $1) WHERE id = $2"
        ))
        .bind(to_db_time(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let entry = AuditEntry::new(AuditAction::ShareDownload)
            .target(AuditTarget::Share, id)
            .detail(serde_json::json!({ "what": col, "booking_ids": s.booking_ids }));
        append_audit(&mut tx, now, actor, &entry).await?;
        tx.commit().await?;
        Ok(match kind {
            SecretKind::Archive => Secret {
                name: s.archive_name.clone(),
                bytes: base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .map_err(|e| SharingError::Bundle(e.to_string()))?,
            },
            SecretKind::Password => Secret {
                name: format!("{}-password.txt", s.archive_name.trim_end_matches(".zip")),
                bytes: value.into_bytes(),
            },
        })
    }

    /// Sends an approved share: by SMTP, the archive mail then the password mail; without
    /// SMTP, marks it sent once both were downloaded. Either way the archive and password are
    /// deleted and the bookings' shared date set, with the audit row, in one transaction.
    pub async fn send(&self, actor: &Actor, id: i64) -> Result<SendOutcome, SharingError> {
        let mut conn = self.db.pool().acquire().await?;
        let loaded = self.load(&mut conn, id).await?;
        drop(conn);
        let s = loaded.view;
        self.check_sendable(actor, &s, "send").await?;
        if !self.config.smtp_enabled() {
            if s.archive_downloaded_at.is_none() || s.password_downloaded_at.is_none() {
                return Err(self
                    .refuse(
                        actor,
                        Some(id),
                        "send",
                        "not_downloaded",
                        "メール送信の設定がないため、アーカイブとパスワードをダウンロードして別々に送ってから「送付済み」にしてください。".into(),
                        false,
                        serde_json::Value::Null,
                    )
                    .await);
            }
            return self.finish(actor, &s, SentVia::Download).await;
        }
        let now = self.clock.now();
        // Claim the send so that two clicks (or two instances) cannot mail twice, and only while
        // the recipient is still on the allow-list (an admin may remove it meanwhile).
        let cutoff = to_db_time(now - chrono::Duration::minutes(SEND_CLAIM_MINUTES));
        let claimed = sqlx::query(
            "UPDATE shares SET send_started_at = $1 WHERE id = $2 AND status = $3 \
             AND (send_started_at IS NULL OR send_started_at < $4) \
             AND recipient IN (SELECT address FROM share_recipients)",
        )
        .bind(to_db_time(now))
        .bind(id)
        .bind(ShareStatus::Approved)
        .bind(&cutoff)
        .execute(self.db.pool())
        .await?;
        if claimed.rows_affected() != 1 {
            return Err(self
                .refuse(
                    actor,
                    Some(id),
                    "send",
                    "send_in_progress",
                    "この共有は送信中か、送付先が許可リストから外されました。画面を更新してください。".into(),
                    false,
                    serde_json::Value::Null,
                )
                .await);
        }
        let row = sqlx::query("SELECT archive, password FROM shares WHERE id = $1")
            .bind(id)
            .fetch_one(self.db.pool())
            .await?;
        let archive = base64::engine::general_purpose::STANDARD
            .decode(row.try_get::<Option<String>, _>(0)?.unwrap_or_default())
            .map_err(|e| SharingError::Bundle(e.to_string()))?;
        let password: String = row.try_get::<Option<String>, _>(1)?.unwrap_or_default();
        let mails = mail::Mails {
            to: &s.recipient,
            city: &self.city,
            title: s.title.clone(),
            what: match s.kind {
                ShareKind::HomeWeek => format!("自宅訪問{}件の受付票", s.slip_count),
                ShareKind::FacilityList => {
                    format!("施設訪問の申請者一覧（{}名）", s.applicant_count)
                }
            },
            archive_name: &s.archive_name,
            archive,
            password: &password,
        };
        let (archive_went, sent) =
            mail::send(&self.config, &mails, s.archive_mailed_at.is_some()).await;
        if let Err(e) = sent {
            let mut tx = self.db.pool().begin().await?;
            sqlx::query(
                "UPDATE shares SET send_started_at = NULL, \
                 archive_mailed_at = CASE WHEN $1 = 1 THEN COALESCE(archive_mailed_at, $2) ELSE archive_mailed_at END \
                 WHERE id = $3",
            )
            .bind(i64::from(archive_went))
            .bind(to_db_time(self.clock.now()))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let entry = AuditEntry::new(AuditAction::ShareSend)
                .outcome(AuditOutcome::Failed)
                .target(AuditTarget::Share, id)
                .detail(
                    serde_json::json!({ "archive_mailed": archive_went, "error": e.to_string() }),
                );
            append_audit(&mut tx, self.clock.now(), actor, &entry).await?;
            tx.commit().await?;
            tracing::warn!(share = id, error = %e, "share mail failed");
            return Err(e);
        }
        self.finish(actor, &s, SentVia::Smtp).await
    }

    async fn finish(
        &self,
        actor: &Actor,
        s: &ShareView,
        via: SentVia,
    ) -> Result<SendOutcome, SharingError> {
        let now = self.clock.now();
        let stamp = to_db_time(now);
        let mut tx = self.db.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE shares SET status = $1, archive = NULL, password = NULL, sent_at = $2, sent_by = $3, \
             sent_via = $4, send_started_at = NULL, \
             archive_mailed_at = CASE WHEN $4 = 'smtp' THEN COALESCE(archive_mailed_at, $2) ELSE archive_mailed_at END \
             WHERE id = $5 AND status = $6",
        )
        .bind(ShareStatus::Sent)
        .bind(&stamp)
        .bind(&actor.username)
        .bind(via)
        .bind(s.id)
        .bind(ShareStatus::Approved)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            // Lost a race with another approval or send: a conflict (409), nothing changed.
            return Err(SharingError::Refused {
                code: "changed",
                message: "この共有は別の操作で変更されました。画面を更新してください。".into(),
                forbidden: false,
            });
        }
        let mut marked = 0;
        for b in &s.booking_ids {
            marked += sqlx::query(
                "UPDATE bookings SET shared_at = $1 WHERE id = $2 AND shared_at IS NULL",
            )
            .bind(&stamp)
            .bind(b)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        let entry = AuditEntry::new(AuditAction::ShareSend)
            .target(AuditTarget::Share, s.id)
            .detail(serde_json::json!({
                "via": via,
                "recipient": s.recipient,
                "week": s.week_start,
                "booking_ids": s.booking_ids,
                "archive_sha256": s.archive_sha256,
                "archive_deleted": true,
            }));
        append_audit(&mut tx, now, actor, &entry).await?;
        let share = self.load(&mut tx, s.id).await?.view;
        tx.commit().await?;
        tracing::info!(share = s.id, week = %s.week_start, via = via.as_str(), "share sent");
        Ok(SendOutcome {
            share,
            bookings_marked: marked,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tuesday_of_the_week_before() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        // A visit on Thursday 2026-12-10: week from Monday 12-07, due Tuesday 12-01.
        assert_eq!(week_start(d("2026-12-10")), d("2026-12-07"));
        assert_eq!(week_start(d("2026-12-13")), d("2026-12-07"));
        assert_eq!(week_start(d("2026-12-07")), d("2026-12-07"));
        assert_eq!(due_date(d("2026-12-07")), d("2026-12-01"));
        assert_eq!(due_date(d("2026-12-07")).weekday(), chrono::Weekday::Tue);
    }
}
