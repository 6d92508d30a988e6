use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::clock::{to_db_time, SharedClock};
use crate::store::Db;

use super::PrivacyError;

/// How a recorded action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Tried and failed (e.g. a wrong password).
    Failed,
    /// Refused by policy (e.g. a locked account, a missing role).
    Denied,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Denied => "denied",
        }
    }
}

/// One thing to record. Holds ids and codes, never personal data itself.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    /// The staff account that acted, when known.
    pub actor_user_id: Option<i64>,
    /// Its username (kept as typed for failed logins), or `(cli)` for the command line.
    pub actor_username: Option<String>,
    /// What was done, e.g. `login`, `user.create`, `call.read`.
    pub action: String,
    /// `ok`, `failed` or `denied`.
    pub outcome: Option<Outcome>,
    /// The kind of record acted on, e.g. `user`, `call`, `booking`.
    pub target_kind: Option<String>,
    /// Its id.
    pub target_id: Option<String>,
    /// The client address.
    pub ip: Option<String>,
    /// Extra facts as JSON (codes and counts, no personal data).
    pub detail: Option<serde_json::Value>,
}

impl AuditEntry {
    /// An entry for `action` that succeeded.
    pub fn new(action: &str) -> Self {
        AuditEntry {
            action: action.to_string(),
            ..Default::default()
        }
    }

    /// Sets the acting account.
    pub fn actor(mut self, user_id: Option<i64>, username: &str) -> Self {
        self.actor_user_id = user_id;
        self.actor_username = Some(username.to_string());
        self
    }

    /// Sets the record acted on.
    pub fn target(mut self, kind: &str, id: impl ToString) -> Self {
        self.target_kind = Some(kind.to_string());
        self.target_id = Some(id.to_string());
        self
    }

    /// Sets how it ended (default `ok`).
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = Some(outcome);
        self
    }

    /// Sets the client address.
    pub fn ip(mut self, ip: Option<String>) -> Self {
        self.ip = ip;
        self
    }

    /// Adds detail.
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
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
    pub action: String,
    /// `ok`, `failed` or `denied`.
    pub outcome: String,
    /// Kind of record.
    pub target_kind: Option<String>,
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
    pub action: Option<String>,
    /// Kind of record.
    pub target_kind: Option<String>,
    /// Record id.
    pub target_id: Option<String>,
    /// Only rows older than this id (paging, newest first).
    pub before_id: Option<i64>,
    /// Page size, default 100, at most 1000.
    pub limit: Option<u32>,
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

    /// Appends one row.
    pub async fn record(&self, e: AuditEntry) -> Result<i64, PrivacyError> {
        let row = sqlx::query(
            "INSERT INTO audit_log (at, actor_user_id, actor_username, action, outcome, target_kind, target_id, ip, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(to_db_time(self.clock.now()))
        .bind(e.actor_user_id)
        .bind(e.actor_username)
        .bind(e.action)
        .bind(e.outcome.unwrap_or(Outcome::Ok).as_str())
        .bind(e.target_kind)
        .bind(e.target_id)
        .bind(e.ip)
        .bind(e.detail.map(|d| d.to_string()))
        .fetch_one(self.db.pool())
        .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Reads rows matching `f`, newest first.
    pub async fn query(&self, f: &AuditFilter) -> Result<Vec<AuditRow>, PrivacyError> {
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
        if let Some(v) = &f.action {
            add(&mut sql, "action =", v.clone());
        }
        if let Some(v) = &f.target_kind {
            add(&mut sql, "target_kind =", v.clone());
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
        let rows = q.fetch_all(self.db.pool()).await?;
        rows.iter()
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
            .collect()
    }
}
