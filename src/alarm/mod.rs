//! The dead-line alarm (issue 16 item 3): a silent line is the worst failure a call center
//! has. A supervised task checks, every `check_interval_secs`, whether the trunk stopped
//! answering OPTIONS, the carrier registration failed, no operator phone is registered while
//! the line is open, or calls stopped arriving when they usually come. A raised alarm is
//! stored (`alarms`), logged at warn once, shown on the managers' screens through the hub
//! (and replayed to a screen that connects later) and, when `mail_to` is set, mailed through
//! the `[sharing]` SMTP relay; it clears by itself when the condition ends.
//!
//! Several instances may share one PostgreSQL (`src/instances/`): each row names the
//! `[sip] instance_id` that raised it, and an instance loads and clears only its own, since
//! the SIP-side facts (trunk, registration, phones) are its own. The silence alarm reads the
//! shared call log, so it is one center-wide row (instance [`SHARED`]): the unique index on
//! open rows lets one instance's insert win; the others take that row without mailing it.
//!
//! The SIP side is read through [`FactsSource`] (the app wires it), so this module knows
//! nothing of SIP; the clock is the [`SharedClock`], so tests pin time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use sqlx::Row;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::{from_db_time, to_db_time, SharedClock};
use crate::hours::OpeningHours;
use crate::hub::{AlarmView, Hub};
use crate::sharing::{send_notice, SharingConfig};
use crate::store::{Db, StoreError};

/// The `instance` of a center-wide alarm's row, shared by every instance (`[sip] instance_id`
/// may not be this).
pub const SHARED: &str = "*";

/// `[alarm]` of `madoguchi.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmConfig {
    /// Whether the checker runs at all.
    pub enabled: bool,
    /// Seconds between two checks.
    pub check_interval_secs: u64,
    /// Alarm when the trunk stops answering OPTIONS (`[trunk.keepalive]` down).
    pub trunk_down: bool,
    /// Alarm when the carrier registration is refused, unreachable or failing.
    pub registration_failed: bool,
    /// Alarm when no operator phone is registered while the line is open.
    pub no_phone: bool,
    /// Minutes after opening before a missing phone raises the alarm.
    pub no_phone_grace_minutes: u32,
    /// Alarm when no call arrived for this many minutes of opening hours (0 = off) …
    pub silence_minutes: u32,
    /// … while the same weekday and time over the past `silence_weeks` weeks had at least
    /// this many calls on average.
    pub silence_min_usual_calls: f64,
    /// Weeks looked back for the usual number of calls.
    pub silence_weeks: u32,
    /// Where the alarm mails go (unset = no mail); sent through `[sharing]`'s SMTP relay.
    pub mail_to: Option<String>,
    /// At most one mail per alarm kind in this many minutes.
    pub mail_min_interval_minutes: u64,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            check_interval_secs: 30,
            trunk_down: true,
            registration_failed: true,
            no_phone: true,
            no_phone_grace_minutes: 5,
            silence_minutes: 60,
            silence_min_usual_calls: 3.0,
            silence_weeks: 4,
            mail_to: None,
            mail_min_interval_minutes: 30,
        }
    }
}

impl AlarmConfig {
    /// Checks the section; `Err((key, problem))` names the first bad key.
    pub fn validate(&self, sharing: &SharingConfig) -> Result<(), (&'static str, String)> {
        if !(1..=3600).contains(&self.check_interval_secs) {
            return Err((
                "alarm.check_interval_secs",
                "must be between 1 and 3600".into(),
            ));
        }
        if self.no_phone_grace_minutes > 720 {
            return Err(("alarm.no_phone_grace_minutes", "must be at most 720".into()));
        }
        if self.silence_minutes > 1440 {
            return Err(("alarm.silence_minutes", "must be at most 1440".into()));
        }
        if !(self.silence_min_usual_calls.is_finite() && self.silence_min_usual_calls > 0.0) {
            return Err((
                "alarm.silence_min_usual_calls",
                "must be a number above 0".into(),
            ));
        }
        if !(1..=52).contains(&self.silence_weeks) {
            return Err(("alarm.silence_weeks", "must be between 1 and 52".into()));
        }
        if self.mail_min_interval_minutes > 10_080 {
            return Err((
                "alarm.mail_min_interval_minutes",
                "must be at most 10080 (a week)".into(),
            ));
        }
        if let Some(to) = &self.mail_to {
            if to.parse::<lettre::Address>().is_err() {
                return Err(("alarm.mail_to", format!("'{to}' is not a mail address")));
            }
            if !sharing.smtp_enabled() {
                return Err((
                    "alarm.mail_to",
                    "needs [sharing] smtp_host (the alarm mails go through that relay)".into(),
                ));
            }
        }
        Ok(())
    }
}

/// What the SIP side reports, read at each check.
#[derive(Debug, Clone, Default)]
pub struct LineFacts {
    /// Keep-alive targets that stopped answering OPTIONS.
    pub trunk_down: Vec<String>,
    /// The carrier registration's failure, in a few words (`None`: fine or not configured).
    pub registration_failed: Option<String>,
    /// Operator phones registered now.
    pub phones_registered: usize,
}

/// Reads the SIP side's facts; `None` when it does not answer (stopping).
pub type FactsSource = Arc<dyn Fn() -> BoxFuture<'static, Option<LineFacts>> + Send + Sync>;

/// What an alarm is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmKind {
    /// The trunk stopped answering OPTIONS.
    TrunkDown,
    /// The carrier registration failed.
    RegistrationFailed,
    /// No operator phone is registered while the line is open.
    NoPhone,
    /// No call for a while when calls usually come.
    Silence,
}

impl AlarmKind {
    const ALL: [AlarmKind; 4] = [
        AlarmKind::TrunkDown,
        AlarmKind::RegistrationFailed,
        AlarmKind::NoPhone,
        AlarmKind::Silence,
    ];

    /// The code stored and sent to the screens.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::TrunkDown => "trunk_down",
            AlarmKind::RegistrationFailed => "registration_failed",
            AlarmKind::NoPhone => "no_phone",
            AlarmKind::Silence => "silence",
        }
    }

    /// Whether one row serves every instance (its facts are the shared database's).
    fn shared(self) -> bool {
        self == AlarmKind::Silence
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// What is wrong, for the banner and the mail.
    fn title(self) -> &'static str {
        match self {
            AlarmKind::TrunkDown => "回線（キャリアのSIPトランク）が応答していません",
            AlarmKind::RegistrationFailed => "キャリアへの登録に失敗しています",
            AlarmKind::NoPhone => "受付時間中ですが、電話機が1台も登録されていません",
            AlarmKind::Silence => "いつもは着信がある時間帯ですが、着信が途絶えています",
        }
    }

    /// What to check.
    fn check(self) -> &'static str {
        match self {
            AlarmKind::TrunkDown => {
                "ネットワーク接続とキャリアの障害情報を確認し、必要ならキャリアへ連絡してください。"
            }
            AlarmKind::RegistrationFailed => {
                "sip-config/trunk.toml の登録情報（ユーザー名・パスワード）とキャリアの契約状況を確認してください。"
            }
            AlarmKind::NoPhone => {
                "オペレーターの電話機（ソフトフォン）が起動し、登録されているか確認してください。"
            }
            AlarmKind::Silence => {
                "試験発信でフリーダイヤルにつながるか確認し、回線とキャリアの状況を確認してください。"
            }
        }
    }
}

/// An alarm in force.
#[derive(Debug, Clone)]
struct Raised {
    id: i64,
    raised_at: DateTime<Utc>,
    detail: String,
}

/// The checker's state.
pub struct Alarms {
    config: AlarmConfig,
    sharing: SharingConfig,
    db: Db,
    hub: Hub,
    clock: SharedClock,
    hours: OpeningHours,
    city: String,
    /// This instance's `[sip] instance_id`.
    instance: String,
    active: HashMap<AlarmKind, Raised>,
    last_mail: HashMap<AlarmKind, Instant>,
    /// The silence verdict and when it was computed (its queries run at most once a minute).
    silence_cache: Option<(Instant, Option<String>)>,
}

/// Errors of the checker (logged; the next check tries again).
#[derive(Debug, thiserror::Error)]
pub enum AlarmError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A query failed.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

impl Alarms {
    /// The checker, with this instance's alarms and the shared ones still open in the table
    /// (from before a restart) in force.
    #[allow(clippy::too_many_arguments)]
    pub async fn load(
        config: AlarmConfig,
        sharing: SharingConfig,
        db: Db,
        hub: Hub,
        clock: SharedClock,
        hours: OpeningHours,
        city: String,
        instance: String,
    ) -> Result<Self, AlarmError> {
        let rows = sqlx::query(
            "SELECT id, kind, raised_at, detail, instance FROM alarms \
             WHERE cleared_at IS NULL AND (instance = $1 OR instance = $2)",
        )
        .bind(&instance)
        .bind(SHARED)
        .fetch_all(db.pool())
        .await?;
        let mut active = HashMap::new();
        for r in rows {
            let kind: String = r.try_get(1)?;
            let raised_at: String = r.try_get(2)?;
            let owner: String = r.try_get(4)?;
            if let (Some(kind), Some(raised_at)) =
                (AlarmKind::parse(&kind), from_db_time(&raised_at))
            {
                if kind.shared() != (owner == SHARED) {
                    continue;
                }
                active.insert(
                    kind,
                    Raised {
                        id: r.try_get(0)?,
                        raised_at,
                        detail: r.try_get(3)?,
                    },
                );
            }
        }
        let alarms = Self {
            config,
            sharing,
            db,
            hub,
            clock,
            hours,
            city,
            instance,
            active,
            last_mail: HashMap::new(),
            silence_cache: None,
        };
        alarms.publish();
        Ok(alarms)
    }

    /// Runs the checks every `check_interval_secs` until `stop`.
    pub async fn run(mut self, facts: FactsSource, stop: CancellationToken) {
        let every = Duration::from_secs(self.config.check_interval_secs);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            let Some(f) = facts().await else {
                continue;
            };
            if let Err(e) = self.check(&f).await {
                tracing::warn!(error = %e, "dead-line alarm check failed; trying again next time");
            }
        }
    }

    /// One check: each condition raised or cleared as it stands now.
    pub async fn check(&mut self, facts: &LineFacts) -> Result<(), AlarmError> {
        let now = self.clock.now();
        let c = &self.config;
        let mut verdicts: Vec<(AlarmKind, Option<String>)> = Vec::new();
        verdicts.push((
            AlarmKind::TrunkDown,
            (c.trunk_down && !facts.trunk_down.is_empty())
                .then(|| format!("OPTIONS に応答なし：{}", facts.trunk_down.join("、"))),
        ));
        verdicts.push((
            AlarmKind::RegistrationFailed,
            facts
                .registration_failed
                .clone()
                .filter(|_| c.registration_failed),
        ));
        let grace = chrono::Duration::minutes(i64::from(c.no_phone_grace_minutes));
        let open_a_while =
            self.hours.is_open_at(now).is_open() && self.hours.is_open_at(now - grace).is_open();
        verdicts.push((
            AlarmKind::NoPhone,
            (c.no_phone && open_a_while && facts.phones_registered == 0)
                .then(|| "登録中の電話機：0台".to_string()),
        ));
        let silence = self.silence(now).await?;
        verdicts.push((AlarmKind::Silence, silence));
        let mut changed = false;
        for (kind, verdict) in verdicts {
            changed |= match verdict {
                Some(detail) => self.raise(kind, detail, now).await?,
                None => self.clear(kind, now).await?,
            };
        }
        if changed {
            self.publish();
        }
        Ok(())
    }

    /// Whether calls stopped arriving when they usually come: `Some(detail)` if so.
    async fn silence(&mut self, now: DateTime<Utc>) -> Result<Option<String>, AlarmError> {
        let c = &self.config;
        if c.silence_minutes == 0 {
            return Ok(None);
        }
        let span = chrono::Duration::minutes(i64::from(c.silence_minutes));
        if !(self.hours.is_open_at(now).is_open() && self.hours.is_open_at(now - span).is_open()) {
            self.silence_cache = None;
            return Ok(None);
        }
        if let Some((at, verdict)) = &self.silence_cache {
            if at.elapsed() < Duration::from_secs(60) {
                return Ok(verdict.clone());
            }
        }
        let recent = self.calls_between(now - span, now).await?;
        let verdict = if recent > 0 {
            None
        } else {
            let weeks = c.silence_weeks;
            let mut total = 0;
            for k in 1..=weeks {
                let end = now - chrono::Duration::weeks(i64::from(k));
                total += self.calls_between(end - span, end).await?;
            }
            let usual = total as f64 / f64::from(weeks);
            (usual >= self.config.silence_min_usual_calls).then(|| {
                format!(
                    "直近{}分の着信：0件（過去{}週の同じ曜日・時間帯の平均：{:.1}件）",
                    self.config.silence_minutes, weeks, usual
                )
            })
        };
        self.silence_cache = Some((Instant::now(), verdict.clone()));
        Ok(verdict)
    }

    /// Calls that arrived in [from, to), refused strangers not counted.
    async fn calls_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<i64, AlarmError> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM calls WHERE arrived_at >= $1 AND arrived_at < $2 \
             AND (end_cause IS NULL OR end_cause <> 'rejected')",
        )
        .bind(to_db_time(from))
        .bind(to_db_time(to))
        .fetch_one(self.db.pool())
        .await?
        .try_get(0)?;
        Ok(n)
    }

    /// Raises `kind` if it is not in force; true if it changed.
    async fn raise(
        &mut self,
        kind: AlarmKind,
        detail: String,
        now: DateTime<Utc>,
    ) -> Result<bool, AlarmError> {
        if let Some(r) = self.active.get_mut(&kind) {
            // Still raised: the banner follows the facts, the log and the mail do not repeat.
            if r.detail != detail {
                r.detail = detail;
                return Ok(true);
            }
            return Ok(false);
        }
        let owner = if kind.shared() {
            SHARED
        } else {
            self.instance.as_str()
        };
        // The unique index on open rows: for a shared alarm another instance's raise may win.
        let inserted = sqlx::query(
            "INSERT INTO alarms (instance, kind, raised_at, detail) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(owner)
        .bind(kind.as_str())
        .bind(to_db_time(now))
        .bind(&detail)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = inserted else {
            // Raised already (by another instance): take its row; it mailed it, not us.
            let open = sqlx::query(
                "SELECT id, raised_at, detail FROM alarms \
                 WHERE instance = $1 AND kind = $2 AND cleared_at IS NULL",
            )
            .bind(owner)
            .bind(kind.as_str())
            .fetch_optional(self.db.pool())
            .await?;
            let Some(r) = open else {
                return Ok(false); // cleared meanwhile: the next check decides again
            };
            let raised_at: String = r.try_get(1)?;
            tracing::info!(
                alarm = kind.as_str(),
                "dead-line alarm raised by another instance"
            );
            self.active.insert(
                kind,
                Raised {
                    id: r.try_get(0)?,
                    raised_at: from_db_time(&raised_at).unwrap_or(now),
                    detail: r.try_get(2)?,
                },
            );
            return Ok(true);
        };
        let id: i64 = row.try_get(0)?;
        tracing::warn!(alarm = kind.as_str(), %detail, "DEAD-LINE ALARM raised: {}", kind.title());
        if self.mail_raise(kind, &detail, now).await {
            sqlx::query("UPDATE alarms SET mailed_at = $1 WHERE id = $2")
                .bind(to_db_time(now))
                .bind(id)
                .execute(self.db.pool())
                .await?;
        }
        self.active.insert(
            kind,
            Raised {
                id,
                raised_at: now,
                detail,
            },
        );
        Ok(true)
    }

    /// Clears `kind` if it is in force; true if it changed.
    async fn clear(&mut self, kind: AlarmKind, now: DateTime<Utc>) -> Result<bool, AlarmError> {
        let Some(r) = self.active.get(&kind).cloned() else {
            return Ok(false);
        };
        // Only the row still open: a shared one may have been cleared by another instance,
        // which then sent the clear mail.
        let closed = sqlx::query(
            "UPDATE alarms SET cleared_at = $1 WHERE id = $2 AND cleared_at IS NULL \
             RETURNING mailed_at",
        )
        .bind(to_db_time(now))
        .bind(r.id)
        .fetch_optional(self.db.pool())
        .await?;
        self.active.remove(&kind);
        tracing::info!(alarm = kind.as_str(), since = %r.raised_at, "dead-line alarm cleared");
        if let Some(row) = closed {
            // The stored mailed_at decides (not memory): a raise mailed before a restart gets
            // its clear, one held back by the rate limit does not.
            let mailed_at: Option<String> = row.try_get(0)?;
            if mailed_at.is_some() {
                self.mail(kind, false, &r.detail, now).await;
            }
        }
        Ok(true)
    }

    /// Mails a raise, at most once per kind in `mail_min_interval_minutes`; true if sent.
    async fn mail_raise(&mut self, kind: AlarmKind, detail: &str, now: DateTime<Utc>) -> bool {
        if self.config.mail_to.is_none() {
            return false;
        }
        let limit = Duration::from_secs(self.config.mail_min_interval_minutes * 60);
        if let Some(last) = self.last_mail.get(&kind) {
            if last.elapsed() < limit {
                tracing::info!(alarm = kind.as_str(), "alarm mail held back (rate limit)");
                return false;
            }
        }
        let sent = self.mail(kind, true, detail, now).await;
        if sent {
            self.last_mail.insert(kind, Instant::now());
        }
        sent
    }

    /// Mails the manager a raise or a clear; true if the relay took it.
    async fn mail(&self, kind: AlarmKind, raised: bool, detail: &str, now: DateTime<Utc>) -> bool {
        let Some(to) = self.config.mail_to.clone() else {
            return false;
        };
        let at = now
            .with_timezone(&self.hours.timezone())
            .format("%Y-%m-%d %H:%M");
        let (subject, body) = if raised {
            (
                format!("【警報】{}（{}）", kind.title(), self.city),
                format!(
                    "{}窓口のご担当者様\n\n{}時点で次の警報が出ています。\n\n警報：{}\n状況：{}\n確認してください：{}\n\n解消すると自動で解除され、解除のお知らせをお送りします。\n",
                    self.city, at, kind.title(), detail, kind.check()
                ),
            )
        } else {
            (
                format!("【解除】{}（{}）", kind.title(), self.city),
                format!(
                    "{}窓口のご担当者様\n\n{}に次の警報は解除されました。\n\n警報：{}\n",
                    self.city,
                    at,
                    kind.title()
                ),
            )
        };
        match send_notice(&self.sharing, &to, &subject, body).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(alarm = kind.as_str(), error = %e, "alarm mail could not be sent");
                false
            }
        }
    }

    /// Tells the screens which alarms are in force.
    fn publish(&self) {
        let mut views: Vec<AlarmView> = self
            .active
            .iter()
            .map(|(kind, r)| AlarmView {
                id: r.id,
                kind: kind.as_str().to_string(),
                raised_at: r.raised_at,
                title: kind.title().to_string(),
                detail: r.detail.clone(),
                check: kind.check().to_string(),
            })
            .collect();
        views.sort_by_key(|v| v.id);
        self.hub.set_alarms(views);
    }
}
