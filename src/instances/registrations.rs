//! Phone registrations in the database: what a restarted server takes back (issue 18 item
//! 9) and how the instances sharing a PostgreSQL database learn each other's phones (issue
//! 16 item 1). The SIP core never waits on this: its binding changes queue up for
//! [`spawn_binding_writer`], which writes them in order, coalesced per phone, retrying while
//! the database is away.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{from_db_time, to_db_time};
use crate::sip::registrar::SavedBinding;
use crate::sip::transport::BindingsChanged;
use crate::store::{Backend, Db, StoreError};

/// The PostgreSQL channel an instance announces its binding changes on.
pub const BINDINGS_CHANNEL: &str = "madoguchi_bindings";
/// How long the writer waits before trying again when the database failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One stored binding with the instance that holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBinding {
    /// The owning instance's `instance_id`.
    pub instance: String,
    /// The binding.
    pub binding: SavedBinding,
}

/// The announcement on [`BINDINGS_CHANNEL`]: which instance changed which phone (the rows
/// are read back, so the payload stays far below PostgreSQL's 8000 bytes).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BindingsNote {
    /// The instance.
    pub instance: String,
    /// The phone.
    pub aor: String,
    /// An account was disabled: every instance reads the disabled accounts again and
    /// takes their phones off its line (`aor` is empty then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accounts: bool,
}

const COLUMNS: &str = "instance, aor, contact, transport, source, outbound, expires_at, \
     user_agent, call_id, cseq, sip_instance, reg_id";

fn row_to_binding(r: &sqlx::any::AnyRow) -> Result<Option<StoredBinding>, sqlx::Error> {
    let source: String = r.try_get("source")?;
    let expires: String = r.try_get("expires_at")?;
    let (Ok(source), Some(expires_at)) = (source.parse(), from_db_time(&expires)) else {
        return Ok(None);
    };
    let cseq: i64 = r.try_get("cseq")?;
    let outbound: i64 = r.try_get("outbound")?;
    Ok(Some(StoredBinding {
        instance: r.try_get("instance")?,
        binding: SavedBinding {
            aor: r.try_get("aor")?,
            contact: r.try_get("contact")?,
            transport: r.try_get("transport")?,
            source,
            outbound: outbound != 0,
            expires_at,
            user_agent: r.try_get("user_agent")?,
            call_id: r.try_get("call_id")?,
            cseq: u32::try_from(cseq).unwrap_or(0),
            instance: r.try_get("sip_instance")?,
            reg_id: r.try_get("reg_id")?,
        },
    }))
}

/// Every binding not lapsed at `now`, all instances, in a stable order.
pub async fn load(db: &Db, now: DateTime<Utc>) -> Result<Vec<StoredBinding>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM registrations WHERE expires_at > $1 \
         ORDER BY instance, aor, contact"
    ))
    .bind(to_db_time(now))
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.extend(row_to_binding(r)?);
    }
    Ok(out)
}

/// The bindings `instance` holds for phone `aor`, not lapsed at `now`.
pub async fn load_phone(
    db: &Db,
    instance: &str,
    aor: &str,
    now: DateTime<Utc>,
) -> Result<Vec<SavedBinding>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM registrations \
         WHERE instance = $1 AND aor = $2 AND expires_at > $3 ORDER BY contact"
    ))
    .bind(instance)
    .bind(aor)
    .bind(to_db_time(now))
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.extend(row_to_binding(r)?.map(|s| s.binding));
    }
    Ok(out)
}

/// Replaces what `instance` holds for phone `aor` with `saved`, in one transaction; on
/// PostgreSQL the other instances are told at commit (NOTIFY is transactional).
pub async fn replace(
    db: &Db,
    instance: &str,
    aor: &str,
    saved: &[SavedBinding],
) -> Result<(), StoreError> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("DELETE FROM registrations WHERE instance = $1 AND aor = $2")
        .bind(instance)
        .bind(aor)
        .execute(&mut *tx)
        .await?;
    for b in saved {
        sqlx::query(&format!(
            "INSERT INTO registrations ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(instance)
        .bind(&b.aor)
        .bind(&b.contact)
        .bind(&b.transport)
        .bind(b.source.to_string())
        .bind(i64::from(b.outbound))
        .bind(to_db_time(b.expires_at))
        .bind(b.user_agent.as_deref())
        .bind(&b.call_id)
        .bind(i64::from(b.cseq))
        .bind(b.instance.as_deref())
        .bind(b.reg_id.as_deref())
        .execute(&mut *tx)
        .await?;
    }
    if db.backend() == Backend::Postgres {
        let note = BindingsNote {
            instance: instance.to_string(),
            aor: aor.to_string(),
            accounts: false,
        };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(BINDINGS_CHANNEL)
            .bind(serde_json::to_string(&note).unwrap_or_default())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Deletes every binding lapsed at `now` (any instance's: a dead instance's rows too).
pub async fn delete_lapsed(db: &Db, now: DateTime<Utc>) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("DELETE FROM registrations WHERE expires_at <= $1")
            .bind(to_db_time(now))
            .execute(db.pool())
            .await?
            .rows_affected(),
    )
}

/// Writes the changes of this instance's bindings as they come, until `stop` (then what is
/// queued still goes in, within a bounded number of tries). Only the newest state of each
/// phone is written; a failed write is tried again, so nothing waits on the database but
/// this task.
pub fn spawn_binding_writer(
    db: Db,
    instance: String,
    mut changes: mpsc::UnboundedReceiver<BindingsChanged>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut pending: BTreeMap<String, Vec<SavedBinding>> = BTreeMap::new();
        // `open`: not told to stop; `closed`: the SIP core is gone (it stops first).
        let (mut open, mut closed) = (true, false);
        loop {
            // Whatever is queued: only the newest state of each phone counts.
            while let Ok(c) = changes.try_recv() {
                pending.insert(c.aor, c.saved);
            }
            if pending.is_empty() {
                if !open {
                    break;
                }
                tokio::select! {
                    () = stop.cancelled() => open = false,
                    c = changes.recv(), if !closed => match c {
                        Some(c) => { pending.insert(c.aor, c.saved); }
                        None => closed = true,
                    },
                }
                continue;
            }
            let Some((aor, saved)) = pending.pop_first() else {
                continue;
            };
            match replace(&db, &instance, &aor, &saved).await {
                Ok(()) => {
                    tracing::debug!(phone = %aor, bindings = saved.len(), "registration stored")
                }
                Err(e) => {
                    tracing::warn!(phone = %aor, error = %e, "could not store a registration; trying again");
                    pending.entry(aor).or_insert(saved);
                    if !open || stop.is_cancelled() {
                        // Stopping with the database away: the phone registers again anyway.
                        tracing::warn!(left = pending.len(), "stopping: registrations not stored");
                        break;
                    }
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(RETRY_AFTER) => {}
                    }
                }
            }
        }
    })
}

/// Tells the other instances (PostgreSQL only) that an account was disabled, so they take
/// its phones off their line too. A failure is logged: they read the disabled accounts
/// again whenever their link to the database comes back.
pub async fn announce_accounts(db: &Db) {
    if db.backend() != Backend::Postgres {
        return;
    }
    // Every instance acts on it, the sender too (disabling twice changes nothing).
    let note = BindingsNote {
        instance: String::new(),
        aor: String::new(),
        accounts: true,
    };
    if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(BINDINGS_CHANNEL)
        .bind(serde_json::to_string(&note).unwrap_or_default())
        .execute(db.pool())
        .await
    {
        tracing::warn!(error = %e, "cannot tell the other instances an account was disabled");
    }
}

/// The usernames of the disabled accounts.
pub async fn disabled_accounts(db: &Db) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query("SELECT username FROM users WHERE disabled <> 0")
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
        .collect()
}
