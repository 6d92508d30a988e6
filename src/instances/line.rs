//! The line's limit across instances (issue 16 item 1, R-LINE-2): each call in progress
//! holds one of the line's `max_concurrent_calls` slots as a PostgreSQL advisory lock,
//! taken on a connection of its own that this task keeps. The locks the other instances
//! hold are counted in `pg_locks` and handed to the SIP core, which refuses a new call as
//! busy when ours and theirs fill the line. An advisory lock lives as long as its session:
//! an instance that dies (or loses the database) frees its slots by itself, so a dead peer
//! never leaves the line busy.
//!
//! The trade-off: the SIP core decides at once from the count it was last given, never
//! waiting on the database. Two calls arriving on two instances within the moment it takes
//! an announcement to travel (milliseconds) may both ring; the slower one then finds no free
//! slot, which is logged at warn. With the database away, each instance decides by its own
//! calls and the last count it had.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::calls::CallEvent;
use crate::sip::transport::SipHandle;

/// The first key of the line's advisory locks ("mado"); the second is the slot number.
pub const LOCK_NAMESPACE: i32 = 0x6d61_646f;
/// How often the count of the other instances' calls is read without being nudged.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// The longest pause between tries to reach the database.
const RECONNECT_MAX: Duration = Duration::from_secs(10);
/// The first key of the lock that says an instance is alive; the second is its id's hash.
pub const ALIVE_NAMESPACE: i32 = 0x616c_6976;
/// How long an instance's alive lock must stay free before its open calls are closed.
pub const DEAD_AFTER: Duration = Duration::from_secs(30);
/// How often the other instances' open calls are looked at.
const DEAD_CHECK_EVERY: Duration = Duration::from_secs(5);

/// The second key of `instance`'s alive lock (FNV-1a; a collision only keeps calls open).
pub fn alive_key(instance: &str) -> i32 {
    let h = instance.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    i32::from_ne_bytes(h.to_ne_bytes())
}

/// What the keeper works with.
pub struct LineKeeper {
    /// The PostgreSQL URL (the keeper's own session).
    pub url: String,
    /// This instance's id.
    pub instance: String,
    /// The line's slots (`[line] max_concurrent_calls`).
    pub max_calls: u32,
    /// The pool, for closing a dead instance's calls.
    pub db: crate::store::Db,
    /// The time source.
    pub clock: crate::clock::SharedClock,
    /// The SIP core, told how many slots the others hold.
    pub sip: Arc<SipHandle>,
    /// The screens, told when a dead instance's calls were closed.
    pub hub: crate::hub::Hub,
    /// Asks for a fresh count (another instance announced a call event).
    pub nudge: Arc<Notify>,
}

/// Instances with open calls whose alive lock is free, and since when.
#[derive(Default)]
struct Silent(HashMap<String, tokio::time::Instant>);

impl Silent {
    /// Looks at the other instances with open calls; returns those silent for `DEAD_AFTER`.
    async fn dead(
        &mut self,
        conn: &mut PgConnection,
        me: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        let open: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT instance FROM calls \
             WHERE ended_at IS NULL AND instance IS NOT NULL AND instance <> $1",
        )
        .bind(me)
        .fetch_all(&mut *conn)
        .await?;
        let now = tokio::time::Instant::now();
        let mut dead = Vec::new();
        self.0.retain(|i, _| open.contains(i));
        for other in open {
            let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(ALIVE_NAMESPACE)
                .bind(alive_key(&other))
                .fetch_one(&mut *conn)
                .await?;
            if !free {
                self.0.remove(&other);
                continue;
            }
            sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(ALIVE_NAMESPACE)
                .bind(alive_key(&other))
                .execute(&mut *conn)
                .await?;
            let since = *self.0.entry(other.clone()).or_insert(now);
            if now.duration_since(since) >= DEAD_AFTER {
                self.0.remove(&other);
                dead.push(other);
            }
        }
        Ok(dead)
    }
}

/// The slots this instance holds: call key → slot (`None`: no slot was free).
struct Slots {
    max: i32,
    held: HashMap<String, Option<i32>>,
}

impl Slots {
    async fn take(&mut self, conn: &mut PgConnection, key: &str) -> Result<(), sqlx::Error> {
        let busy: Vec<i32> = self.held.values().flatten().copied().collect();
        for slot in (0..self.max).filter(|s| !busy.contains(s)) {
            let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1, $2)")
                .bind(LOCK_NAMESPACE)
                .bind(slot)
                .fetch_one(&mut *conn)
                .await?
                .try_get(0)?;
            if got {
                self.held.insert(key.to_string(), Some(slot));
                return Ok(());
            }
        }
        tracing::warn!(
            call = key,
            "no line slot free: calls arrived on two instances at once and both ring"
        );
        self.held.insert(key.to_string(), None);
        Ok(())
    }

    async fn give_back(&mut self, conn: &mut PgConnection, key: &str) -> Result<(), sqlx::Error> {
        if let Some(Some(slot)) = self.held.remove(key) {
            sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(LOCK_NAMESPACE)
                .bind(slot)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// After a new connection: every call still in progress takes a slot again.
    async fn take_again(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        // The old session's locks went with it: no call holds a slot until it takes one.
        let keys: Vec<String> = self.held.keys().cloned().collect();
        for key in &keys {
            self.held.insert(key.clone(), None);
        }
        for key in keys {
            self.held.remove(&key);
            if let Err(e) = self.take(conn, &key).await {
                self.held.insert(key, None);
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Slots of the line held by the other sessions on this database.
async fn held_elsewhere(conn: &mut PgConnection) -> Result<usize, sqlx::Error> {
    let n: i64 = sqlx::query(
        "SELECT COUNT(*) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND objsubid = 2 \
           AND classid::bigint = $1 AND pid <> pg_backend_pid() \
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(i64::from(LOCK_NAMESPACE))
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Keeps this instance's line slots and its alive lock, tells the SIP core how many slots
/// the others hold, and closes the calls of instances found dead, until `stop` (closing the
/// connection frees the locks).
pub fn spawn_line_keeper(
    k: LineKeeper,
    mut events: mpsc::UnboundedReceiver<Arc<CallEvent>>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let LineKeeper {
        url,
        instance,
        max_calls,
        db,
        clock,
        sip,
        hub,
        nudge,
    } = k;
    tokio::spawn(async move {
        let mut slots = Slots {
            max: i32::try_from(max_calls).unwrap_or(i32::MAX),
            held: HashMap::new(),
        };
        let mut conn: Option<PgConnection> = None;
        let mut pause = Duration::from_millis(250);
        let mut told = None;
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        let mut silent = Silent::default();
        let mut checked = tokio::time::Instant::now();
        loop {
            if conn.is_none() {
                match PgConnection::connect(&url).await {
                    Ok(mut c) => match take_alive(&mut c, &instance)
                        .await
                        .and(slots.take_again(&mut c).await)
                    {
                        Ok(()) => {
                            conn = Some(c);
                            pause = Duration::from_millis(250);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot take the line's slots"),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?pause, "cannot reach the database for the line's slots; deciding by our own calls meanwhile");
                    }
                }
            }
            if conn.is_none() && told != Some(0) {
                // Without the database the others' slots are unknown: a count kept from
                // before would refuse every call while another instance was mid-call.
                sip.calls_elsewhere(0).await;
                told = Some(0);
            }
            let wait = if conn.is_some() {
                None
            } else {
                let p = pause;
                pause = (pause * 2).min(RECONNECT_MAX);
                Some(p)
            };
            tokio::select! {
                () = stop.cancelled() => break,
                ev = events.recv() => {
                    // The channel never closes before the stop; if it did, wait for it.
                    let Some(ev) = ev else {
                        stop.cancelled().await;
                        break;
                    };
                    let result = match (ev.as_ref(), conn.as_mut()) {
                        (CallEvent::Ringing { call, .. }, Some(c)) => slots.take(c, &call.key).await,
                        (CallEvent::Ringing { call, .. }, None) => {
                            slots.held.insert(call.key.clone(), None);
                            Ok(())
                        }
                        (CallEvent::Ended { call, .. }, Some(c)) => slots.give_back(c, &call.key).await,
                        (CallEvent::Ended { call, .. }, None) => {
                            slots.held.remove(&call.key);
                            Ok(())
                        }
                        _ => Ok(()),
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "lost the database connection holding the line's slots; deciding by our own calls meanwhile");
                        conn = None;
                    }
                }
                () = nudge.notified() => {}
                _ = tick.tick() => {}
                () = async {
                    match wait {
                        Some(p) => tokio::time::sleep(p).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
            if let Some(c) = conn.as_mut() {
                match held_elsewhere(c).await {
                    Ok(n) => {
                        if told != Some(n) {
                            sip.calls_elsewhere(n).await;
                            told = Some(n);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the database connection holding the line's slots; deciding by our own calls meanwhile");
                        conn = None;
                    }
                }
            }
            if checked.elapsed() >= DEAD_CHECK_EVERY {
                checked = tokio::time::Instant::now();
                if let Some(c) = conn.as_mut() {
                    match silent.dead(c, &instance).await {
                        Ok(dead) => {
                            for other in &dead {
                                close_dead(&db, &clock, other).await;
                            }
                            if !dead.is_empty() {
                                // The screens drop the calls the call log has ended now.
                                hub.resync_remote().await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "lost the database connection holding the line's slots");
                            conn = None;
                        }
                    }
                }
            }
        }
    })
}

/// Takes this instance's alive lock; another process with the same instance id holding it
/// is a configuration error, logged (each instance needs its own `instance_id`).
async fn take_alive(conn: &mut PgConnection, instance: &str) -> Result<(), sqlx::Error> {
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(ALIVE_NAMESPACE)
        .bind(alive_key(instance))
        .fetch_one(&mut *conn)
        .await?;
    if !got {
        tracing::error!(
            instance,
            "another running process uses this instance_id: give each instance its own"
        );
    }
    Ok(())
}

/// Closes the open calls of a dead instance as interrupted.
async fn close_dead(db: &crate::store::Db, clock: &crate::clock::SharedClock, other: &str) {
    let log = crate::calls::CallLog::new(db.clone(), other);
    match log.close_interrupted(clock.now()).await {
        Ok(n) => tracing::warn!(
            instance = other,
            closed = n,
            "an instance is gone: its open calls closed as interrupted"
        ),
        Err(e) => {
            tracing::warn!(instance = other, error = %e, "cannot close a gone instance's calls")
        }
    }
}
