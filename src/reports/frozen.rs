//! Reports recorded as sent: stored as sent with a SHA-256 of the stored text, never edited.
//! A later change of the figures is offered as a new version that names the one it revises.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::clock::{from_db_time, to_db_time};
use crate::privacy::{append_audit, Actor, AuditAction, AuditEntry, AuditTarget};
use crate::store::Db;

use super::weekly::{self, IsoWeek, WeeklyReport};
use super::{ReportSettings, ReportsError};

/// The kind of the weekly call counts in `report_versions`.
const WEEKLY_CALLS: &str = "weekly_calls";

/// Which figures a read wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionChoice {
    /// The latest version sent, or the live figures while none was sent.
    #[default]
    Latest,
    /// The figures as the call log has them now.
    Live,
    /// One sent version.
    Number(i64),
}

impl FromStr for VersionChoice {
    type Err = ReportsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "latest" => Ok(VersionChoice::Latest),
            "live" => Ok(VersionChoice::Live),
            n => n.parse().map(VersionChoice::Number).map_err(|_| {
                ReportsError::Invalid(format!(
                    "版「{n}」は指定できません（latest、live または版の番号）。"
                ))
            }),
        }
    }
}

/// A version as sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentInfo {
    /// 1, 2, …
    pub version: i64,
    /// The version this one revises (`None` for the first).
    pub revision_of: Option<i64>,
    /// SHA-256 (hex) of the stored JSON text.
    pub sha256: String,
    /// When it was recorded as sent.
    pub sent_at: DateTime<Utc>,
    /// Who recorded it.
    pub sent_by: String,
}

/// The weekly report as served: which figures, and how they stand to what was sent.
#[derive(Debug, Clone, Serialize)]
pub struct WeeklyView {
    /// `2026-W24`.
    pub week: String,
    /// `sent` (a stored version, served as stored) or `live` (computed now).
    pub status: &'static str,
    /// The version served, when it is a sent one.
    pub sent: Option<SentInfo>,
    /// Whether the live figures of the week differ from the latest version sent: a new
    /// version is due. `false` while nothing was sent.
    pub changed_since_sent: bool,
    /// Every version sent, oldest first.
    pub versions: Vec<SentInfo>,
    /// The figures.
    pub report: WeeklyReport,
}

impl WeeklyView {
    /// The line at the top of the printed page: which figures these are.
    pub fn note(&self) -> String {
        let v = self;
        let mut note = match &v.sent {
            Some(s) => {
                let at = s.sent_at.with_timezone(&chrono_tz::Asia::Tokyo);
                let mut n = format!(
                    "送付済み 第{}版（{} {} 送付、{}）",
                    s.version,
                    crate::wareki::date_with_weekday(at.date_naive()),
                    at.format("%H:%M"),
                    s.sent_by
                );
                if let Some(r) = s.revision_of {
                    n.push_str(&format!("　第{r}版の訂正版"));
                }
                n
            }
            None => match v.versions.last() {
                Some(last) => format!("現在の集計値（送付済みの最新は第{}版）", last.version),
                None => "速報値（未送付）".to_string(),
            },
        };
        if v.changed_since_sent {
            note.push_str("　※送付後に集計値が変わりました。新しい版を送付できます。");
        }
        note
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn row_info(r: &AnyRow) -> Result<SentInfo, sqlx::Error> {
    Ok(SentInfo {
        version: r.try_get("version")?,
        revision_of: r.try_get("revision_of")?,
        sha256: r.try_get("sha256")?,
        sent_at: from_db_time(&r.try_get::<String, _>("sent_at")?).unwrap_or_default(),
        sent_by: r.try_get("sent_by_username")?,
    })
}

async fn versions(
    conn: &mut AnyConnection,
    week: IsoWeek,
) -> Result<Vec<(SentInfo, String)>, ReportsError> {
    let rows = sqlx::query(
        "SELECT version, revision_of, sha256, sent_at, sent_by_username, body FROM report_versions \
         WHERE kind = $1 AND period = $2 ORDER BY version",
    )
    .bind(WEEKLY_CALLS)
    .bind(week.to_string())
    .fetch_all(conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push((row_info(r)?, r.try_get::<String, _>("body")?));
    }
    Ok(out)
}

/// The week's figures (days and total) of a report's JSON text. Compared as parsed text on
/// both sides, so a float's last digit cannot make a difference that is not there.
fn figures_of(body: &str) -> Result<serde_json::Value, ReportsError> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| ReportsError::Invalid(format!("stored report unreadable: {e}")))?;
    Ok(serde_json::json!([v["days"], v["total"]]))
}

fn to_text(r: &WeeklyReport) -> Result<String, ReportsError> {
    serde_json::to_string(r)
        .map_err(|e| ReportsError::Invalid(format!("report not serialisable: {e}")))
}

fn parse_body(body: &str) -> Result<WeeklyReport, ReportsError> {
    serde_json::from_str(body)
        .map_err(|e| ReportsError::Invalid(format!("stored report unreadable: {e}")))
}

/// The weekly report of `week` as `choice` asks (see [`VersionChoice`]).
pub async fn weekly_view(
    db: &Db,
    settings: &ReportSettings,
    week: IsoWeek,
    choice: VersionChoice,
    now: DateTime<Utc>,
) -> Result<WeeklyView, ReportsError> {
    let stored = {
        let mut conn = db.pool().acquire().await?;
        versions(&mut conn, week).await?
    };
    let live = weekly::live(db, settings, week, now).await?;
    let changed_since_sent = match stored.last() {
        Some((_, body)) => figures_of(body)? != figures_of(&to_text(&live)?)?,
        None => false,
    };
    let pick = match choice {
        VersionChoice::Live => None,
        VersionChoice::Latest => stored.last(),
        VersionChoice::Number(n) => Some(
            stored
                .iter()
                .find(|(i, _)| i.version == n)
                .ok_or(ReportsError::NotFound("report version"))?,
        ),
    };
    let (status, sent, report) = match pick {
        Some((info, body)) => ("sent", Some(info.clone()), parse_body(body)?),
        None => ("live", None, live),
    };
    Ok(WeeklyView {
        week: week.to_string(),
        status,
        sent,
        changed_since_sent,
        versions: stored.into_iter().map(|(i, _)| i).collect(),
        report,
    })
}

/// Records the live report of `week` as sent by `actor`: stored as JSON with its SHA-256,
/// as version 1, or as a new version revising the last one when the figures changed since.
/// Sending the very figures of the last version again is refused. Audited (`report.send`).
pub async fn mark_sent(
    db: &Db,
    settings: &ReportSettings,
    actor: &Actor,
    week: IsoWeek,
    now: DateTime<Utc>,
) -> Result<SentInfo, ReportsError> {
    let live = weekly::live(db, settings, week, now).await?;
    let body = to_text(&live)?;
    let sha256 = sha256_hex(&body);
    let mut tx = db.pool().begin().await?;
    let stored = versions(&mut tx, week).await?;
    if let Some((last, last_body)) = stored.last() {
        if figures_of(last_body)? == figures_of(&body)? {
            return Err(ReportsError::Unchanged(last.version));
        }
    }
    let revision_of = stored.last().map(|(i, _)| i.version);
    let version = revision_of.unwrap_or(0) + 1;
    sqlx::query(
        "INSERT INTO report_versions (kind, period, version, revision_of, body, sha256, sent_at, sent_by_user_id, sent_by_username) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(WEEKLY_CALLS)
    .bind(week.to_string())
    .bind(version)
    .bind(revision_of)
    .bind(&body)
    .bind(&sha256)
    .bind(to_db_time(now))
    .bind(actor.user_id)
    .bind(&actor.username)
    .execute(&mut *tx)
    .await?;
    let entry = AuditEntry::new(AuditAction::ReportSend)
        .target(
            AuditTarget::Report,
            format!("{WEEKLY_CALLS}/{week}/v{version}"),
        )
        .detail(serde_json::json!({ "sha256": sha256, "revision_of": revision_of }));
    append_audit(&mut tx, now, actor, &entry).await?;
    tx.commit().await?;
    Ok(SentInfo {
        version,
        revision_of,
        sha256,
        sent_at: now,
        sent_by: actor.username.clone(),
    })
}
