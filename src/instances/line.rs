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
        let keys: Vec<String> = self.held.keys().cloned().collect();
        self.held.clear();
        for key in keys {
            self.take(conn, &key).await?;
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

/// Keeps this instance's line slots and tells the SIP core how many the others hold, until
/// `stop` (closing the connection frees the slots). `nudge` asks for a fresh count (another
/// instance announced a call event).
pub fn spawn_line_keeper(
    url: String,
    max_calls: u32,
    mut events: mpsc::UnboundedReceiver<Arc<CallEvent>>,
    sip: Arc<SipHandle>,
    nudge: Arc<Notify>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut slots = Slots {
            max: i32::try_from(max_calls).unwrap_or(i32::MAX),
            held: HashMap::new(),
        };
        let mut conn: Option<PgConnection> = None;
        let mut pause = Duration::from_millis(250);
        let mut told = None;
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        loop {
            if conn.is_none() {
                match PgConnection::connect(&url).await {
                    Ok(mut c) => match slots.take_again(&mut c).await {
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
                        tracing::warn!(error = %e, "lost the database connection holding the line's slots");
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
                        tracing::warn!(error = %e, "lost the database connection holding the line's slots");
                        conn = None;
                    }
                }
            }
        }
    })
}
