use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use crate::clock::{to_db_time, SharedClock};
use crate::store::Db;

use super::{PrivacyError, Role, User};

crate::code_enum! {
    /// How a recorded action ended.
    pub enum AuditOutcome: "audit_outcome" {
        /// Done.
        Ok = "ok" / "成功",
        /// Tried and failed (e.g. a wrong password).
        Failed = "failed" / "失敗",
        /// Refused by policy (e.g. a locked account, a missing role).
        Denied = "denied" / "拒否",
    }
}

crate::code_enum! {
    /// What was done, as recorded in the 取扱記録 (R-PII-4).
    pub enum AuditAction: "audit_action" {
        /// A login attempt.
        Login = "login" / "ログイン",
        /// A logout.
        Logout = "logout" / "ログアウト",
        /// A request the account's role does not allow.
        Access = "access" / "権限外のアクセス",
        /// The audit log was read.
        AuditRead = "audit.read" / "取扱記録の閲覧",
        /// Call records with caller numbers were read.
        CallRead = "call.read" / "通話記録の閲覧",
        /// A screen pop showed a caller's number (and history) to a staff screen; once per
        /// screen and call. The target is the call key: the pop goes out before the row exists.
        CallPop = "call.pop" / "着信表示",
        /// An operator recorded a call's outcome.
        CallOutcome = "call.outcome" / "対応記録の保存",
        /// The callback list was read.
        CallbackRead = "callback.read" / "折り返し一覧の閲覧",
        /// A callback was closed.
        CallbackClose = "callback.close" / "折り返しの完了",
        /// A staff account was created.
        UserCreate = "user.create" / "利用者の登録",
        /// A staff account was disabled.
        UserDisable = "user.disable" / "利用者の無効化",
        /// A password was changed or reset.
        UserPassword = "user.password" / "パスワードの変更",
        /// An administrator lifted an account's lock after failed logins.
        UserUnlock = "user.unlock" / "ロックの解除",
        /// The audit log was exported (CSV or XLSX) for an inspection.
        AuditExport = "audit.export" / "取扱記録の出力",
        /// A home or facility visit was booked.
        BookingCreate = "booking.create" / "予約の登録",
        /// A booking was moved to another slot.
        BookingReschedule = "booking.reschedule" / "予約の日程変更",
        /// A booking was cancelled.
        BookingCancel = "booking.cancel" / "予約の取消",
        /// Bookings with personal data were read (slips, the booking list, a caller's bookings).
        BookingRead = "booking.read" / "予約情報の閲覧",
        /// The visit calendar was replaced by a proposal or an import.
        CalendarReplace = "calendar.replace" / "訪問日程の作成",
        /// A visit day was added, removed or changed.
        CalendarEdit = "calendar.edit" / "訪問日程の変更",
        /// The visit calendar was fixed (agreed with the city).
        CalendarFix = "calendar.fix" / "訪問日程の確定",
        /// A facility request was recorded.
        FacilityCreate = "facility.create" / "施設申込の登録",
        /// A facility request was updated (visit days, pre-meeting, checklist, applicant list).
        FacilityUpdate = "facility.update" / "施設申込の更新",
        /// Facility requests with personal data were read.
        FacilityRead = "facility.read" / "施設申込の閲覧",
        /// The manager corrected the travel time between two towns.
        TravelOverride = "travel.override" / "移動時間の補正",
        /// A visit was marked ended (date, applications taken, note) by the city or a manager.
        VisitDone = "visit.done" / "訪問完了の登録",
        /// A visit already marked ended was corrected.
        VisitCorrect = "visit.correct" / "訪問完了の訂正",
        /// The week's visit schedule with names, addresses and phones was read (city staff).
        VisitRead = "visit.read" / "訪問予定の閲覧",
        /// A booking's personal data (and its calls' numbers) was deleted (R-PII-5).
        BookingPurge = "booking.purge" / "個人情報の削除",
        /// A purge run: what it deleted, in counts (one row per run beside the per-booking rows).
        PurgeRun = "purge.run" / "個人情報削除の実行",
        /// The monthly handling report (取扱状況報告) was produced.
        HandlingReport = "report.handling" / "取扱状況報告の出力",
        /// An address was added to the share recipients' allow-list.
        ShareRecipientAdd = "share.recipient.add" / "送付先の登録",
        /// An address was removed from the allow-list.
        ShareRecipientRemove = "share.recipient.remove" / "送付先の削除",
        /// A week's slips were read into an encrypted share (R-PREP-1, R-PREP-2).
        SharePrepare = "share.prepare" / "受付票共有の準備",
        /// A second person approved a share.
        ShareApprove = "share.approve" / "受付票共有の承認",
        /// A share was sent to the city (or marked sent after download); archive deleted.
        ShareSend = "share.send" / "受付票の送付",
        /// The approved archive or its password was downloaded.
        ShareDownload = "share.download" / "受付票のダウンロード",
        /// An unsent share was withdrawn (its week prepared again); archive deleted.
        ShareWithdraw = "share.withdraw" / "受付票共有の取下げ",
        /// A share step refused by the rules (recipient not allowed, self-approval, …).
        ShareRefused = "share.refused" / "受付票共有の拒否",
        /// A report was recorded as sent to the city (frozen with its hash).
        ReportSend = "report.send" / "報告書の送付記録",
        /// The manager recorded the follow-up of an opinion or complaint.
        CallFollowUp = "call.follow_up" / "意見・苦情の対応記録",
        /// A backup of the whole database was written (`madoguchi backup`).
        Backup = "backup" / "バックアップの作成",
        /// The database was restored from a backup (`madoguchi restore`).
        Restore = "restore" / "バックアップからの復元",
    }
}

crate::code_enum! {
    /// The kind of record an audited action touched.
    pub enum AuditTarget: "audit_target" {
        /// A staff account.
        User = "user" / "利用者",
        /// A call record.
        Call = "call" / "通話記録",
        /// A callback entry.
        Callback = "callback" / "折り返し",
        /// A booking.
        Booking = "booking" / "予約",
        /// A visit day of the calendar.
        VisitDay = "visit_day" / "訪問日",
        /// A facility request.
        FacilityRequest = "facility_request" / "施設申込",
        /// A weekly share to the city.
        Share = "share" / "市への共有",
        /// An address on the share recipients' allow-list.
        ShareRecipient = "share_recipient" / "送付先",
        /// A report for the city (kind/period/version).
        Report = "report" / "報告書",
    }
}

/// Who did something, from where: every domain operation takes one (R-PII-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The staff account, when one acted.
    pub user_id: Option<i64>,
    /// Its username; `(cli)` for the command line; for a failed login the account's name, or
    /// [`Actor::UNKNOWN`] when the name typed names no account.
    pub username: String,
    /// The account's role, when known.
    pub role: Option<Role>,
    /// The client address.
    pub ip: Option<String>,
}

impl Actor {
    /// A logged-in account acting from `ip`.
    pub fn user(user: &User, ip: Option<String>) -> Self {
        Actor {
            user_id: Some(user.id),
            username: user.username.clone(),
            role: Some(user.role),
            ip,
        }
    }

    /// The command line on the server (`madoguchi user …`).
    pub fn cli() -> Self {
        Self::system("(cli)")
    }

    /// The service itself, e.g. `(bootstrap)` creating the first admin.
    pub fn system(name: &str) -> Self {
        Actor {
            user_id: None,
            username: name.to_string(),
            role: None,
            ip: None,
        }
    }

    /// What a failed login records instead of a name that names no account.
    pub const UNKNOWN: &'static str = "(unknown)";

    /// Someone not (yet) logged in, trying `account` (when the name typed names one).
    ///
    /// The name as typed is never kept: the audit log is append-only, and people type
    /// passwords into the username field.
    pub fn unauthenticated(account: Option<&User>, ip: Option<String>) -> Self {
        Actor {
            user_id: account.map(|u| u.id),
            username: account
                .map_or(Self::UNKNOWN, |u| u.username.as_str())
                .to_string(),
            role: None,
            ip,
        }
    }
}

/// One thing to record. Holds ids and codes, never personal data itself.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// What was done.
    pub action: AuditAction,
    /// How it ended (default `ok`).
    pub outcome: AuditOutcome,
    /// The kind of record acted on.
    pub target_kind: Option<AuditTarget>,
    /// Its id.
    pub target_id: Option<String>,
    /// Extra facts as JSON (codes and counts, no personal data).
    pub detail: Option<serde_json::Value>,
}

impl AuditEntry {
    /// An entry for `action` that succeeded.
    pub fn new(action: AuditAction) -> Self {
        AuditEntry {
            action,
            outcome: AuditOutcome::Ok,
            target_kind: None,
            target_id: None,
            detail: None,
        }
    }

    /// Sets the record acted on.
    pub fn target(mut self, kind: AuditTarget, id: impl ToString) -> Self {
        self.target_kind = Some(kind);
        self.target_id = Some(id.to_string());
        self
    }

    /// Sets how it ended.
    pub fn outcome(mut self, outcome: AuditOutcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Adds detail.
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// Appends one row on `conn` — inside the caller's transaction, so the change and its
/// 取扱記録 row commit together or not at all.
pub async fn append(
    conn: &mut AnyConnection,
    at: DateTime<Utc>,
    actor: &Actor,
    e: &AuditEntry,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO audit_log (at, actor_user_id, actor_username, action, outcome, target_kind, target_id, ip, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(to_db_time(at))
    .bind(actor.user_id)
    .bind(&actor.username)
    .bind(e.action)
    .bind(e.outcome)
    .bind(e.target_kind)
    .bind(&e.target_id)
    .bind(&actor.ip)
    .bind(e.detail.as_ref().map(|d| d.to_string()))
    .fetch_one(conn)
    .await?;
    row.try_get::<i64, _>(0)
}

/// A stored audit row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditRow {
    /// Sequence number; rows are never reused or changed.
    pub id: i64,
    /// When, UTC.
    pub at: DateTime<Utc>,
    /// Acting account id.
    pub actor_user_id: Option<i64>,
    /// Acting username.
    pub actor_username: Option<String>,
    /// What was done.
    pub action: AuditAction,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Kind of record.
    pub target_kind: Option<AuditTarget>,
    /// Record id.
    pub target_id: Option<String>,
    /// Client address.
    pub ip: Option<String>,
    /// Extra facts.
    pub detail: Option<serde_json::Value>,
}

/// Filters for reading the log; every field narrows, none is required.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// From this instant (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Until this instant (exclusive).
    pub to: Option<DateTime<Utc>>,
    /// Acting username.
    pub actor: Option<String>,
    /// Action code.
    pub action: Option<AuditAction>,
    /// Kind of record.
    pub target_kind: Option<AuditTarget>,
    /// Record id.
    pub target_id: Option<String>,
    /// Only rows older than this id (paging, newest first).
    pub before_id: Option<i64>,
    /// Page size, default 100, at most 1000.
    pub limit: Option<u32>,
    /// A reception number, `booking:ID` or a caller number: the handling record of that
    /// subject instead of a page (see `crate::privacy::handling`); the other filters are
    /// then not used.
    pub subject: Option<String>,
}

/// Writes and reads the append-only audit log. There is deliberately no update or delete.
#[derive(Clone)]
pub struct Auditor {
    db: Db,
    clock: SharedClock,
}

impl Auditor {
    /// An auditor on `db` stamping rows with `clock`.
    pub fn new(db: Db, clock: SharedClock) -> Self {
        Self { db, clock }
    }

    /// The database (for the handling record's reads).
    pub(super) fn db(&self) -> &Db {
        &self.db
    }

    /// The clock's now.
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Appends one row on its own, for an action that changes nothing else (a refused
    /// access, a failed password check).
    pub async fn record(&self, actor: &Actor, e: AuditEntry) -> Result<i64, PrivacyError> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(append(&mut conn, self.clock.now(), actor, &e).await?)
    }

    /// Reads rows matching `f`, newest first; the read itself is recorded in the same
    /// transaction, so nobody reads the log without leaving a row.
    pub async fn read(
        &self,
        actor: &Actor,
        f: &AuditFilter,
    ) -> Result<Vec<AuditRow>, PrivacyError> {
        if let (Some(from), Some(to)) = (f.from, f.to) {
            if from > to {
                return Err(PrivacyError::Invalid("開始日が終了日より後です。".into()));
            }
        }
        let mut tx = self.db.pool().begin().await?;
        let mut sql = String::from(
            "SELECT id, at, actor_user_id, actor_username, action, outcome, target_kind, target_id, ip, detail FROM audit_log WHERE 1=1",
        );
        let mut args: Vec<String> = Vec::new();
        let mut add = |sql: &mut String, cond: &str, v: String| {
            args.push(v);
            sql.push_str(&format!(" AND {cond} ${}", args.len()));
        };
        if let Some(v) = f.from {
            add(&mut sql, "at >=", to_db_time(v));
        }
        if let Some(v) = f.to {
            add(&mut sql, "at <", to_db_time(v));
        }
        if let Some(v) = &f.actor {
            add(&mut sql, "actor_username =", v.clone());
        }
        if let Some(v) = f.action {
            add(&mut sql, "action =", v.as_str().to_string());
        }
        if let Some(v) = f.target_kind {
            add(&mut sql, "target_kind =", v.as_str().to_string());
        }
        if let Some(v) = &f.target_id {
            add(&mut sql, "target_id =", v.clone());
        }
        let limit = i64::from(f.limit.unwrap_or(100).clamp(1, 1000));
        let mut q_sql = sql;
        if f.before_id.is_some() {
            q_sql.push_str(&format!(" AND id < ${}", args.len() + 1));
        }
        q_sql.push_str(" ORDER BY id DESC LIMIT ");
        q_sql.push_str(&limit.to_string());
        let mut q = sqlx::query(&q_sql);
        for a in args {
            q = q.bind(a);
        }
        if let Some(b) = f.before_id {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        let rows = rows
            .iter()
            .map(|r| {
                let at: String = r.try_get("at")?;
                let detail: Option<String> = r.try_get("detail")?;
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    at: crate::clock::from_db_time(&at).unwrap_or_default(),
                    actor_user_id: r.try_get("actor_user_id")?,
                    actor_username: r.try_get("actor_username")?,
                    action: r.try_get("action")?,
                    outcome: r.try_get("outcome")?,
                    target_kind: r.try_get("target_kind")?,
                    target_id: r.try_get("target_id")?,
                    ip: r.try_get("ip")?,
                    detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        append(
            &mut tx,
            self.clock.now(),
            actor,
            &AuditEntry::new(AuditAction::AuditRead),
        )
        .await?;
        tx.commit().await?;
        Ok(rows)
    }
}
