//! Call events between the instances sharing PostgreSQL (issue 16 item 1): each instance
//! announces its own call events (and each "stored" signal of its call-log writer) on
//! [`CALLS_CHANNEL`]; the others apply them to their hub, so a call ringing on A pops on a
//! browser connected to B and B's figures match A's. Off the SIP path: the SIP core
//! publishes to an in-process queue; this task alone waits on the database.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::calls::CallEvent;
use crate::store::Db;

/// The PostgreSQL channel of call events.
pub const CALLS_CHANNEL: &str = "madoguchi_calls";
/// PostgreSQL refuses NOTIFY payloads from 8000 bytes on; a call event is far below.
pub const MAX_PAYLOAD: usize = 7900;

/// One announcement on [`CALLS_CHANNEL`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CallNote {
    /// The announcing instance.
    pub instance: String,
    /// A call event; `None`: its call-log writer stored events (the figures changed).
    pub event: Option<CallEvent>,
    /// Announcements were lost: the others read the call log and registrations again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resync: bool,
}

/// The payload of `note`, if it fits in a NOTIFY.
pub fn payload(note: &CallNote) -> Option<String> {
    serde_json::to_string(note)
        .ok()
        .filter(|p| p.len() <= MAX_PAYLOAD)
}

async fn notify(db: &Db, payload: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CALLS_CHANNEL)
        .bind(payload)
        .execute(db.pool())
        .await
        .map(|_| ())
}

/// Announces this instance's call events and stored signals until `stop`. When the database
/// fails, what is queued is dropped rather than piled up; the first announcement that goes
/// through again is followed by a `resync` note, on which the other instances read the call
/// log and registrations again (as they do when their own link comes back).
pub fn spawn_publisher(
    db: Db,
    instance: String,
    mut raw: mpsc::UnboundedReceiver<Arc<CallEvent>>,
    mut stored: broadcast::Receiver<Arc<CallEvent>>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut writer_running = true;
        let mut failing = false;
        loop {
            let note = tokio::select! {
                // What the SIP side published before the stop still goes out.
                biased;
                ev = raw.recv() => match ev {
                    Some(ev) => CallNote { instance: instance.clone(), event: Some((*ev).clone()), resync: false },
                    // The channel never closes before the stop; if it did, wait for it.
                    None => {
                        stop.cancelled().await;
                        break;
                    }
                },
                s = stored.recv(), if writer_running => {
                    if matches!(s, Err(broadcast::error::RecvError::Closed)) {
                        writer_running = false;
                        continue;
                    }
                    // A burst of commits is one announcement.
                    while matches!(
                        stored.try_recv(),
                        Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_))
                    ) {}
                    CallNote { instance: instance.clone(), event: None, resync: false }
                }
                () = stop.cancelled() => break,
            };
            let Some(p) = payload(&note) else {
                tracing::warn!("call event too large to announce to the other instances");
                continue;
            };
            match notify(&db, &p).await {
                Ok(()) => {
                    if failing {
                        tracing::info!("announcing call events to the other instances again");
                        failing = false;
                        // What was dropped meanwhile: the others read the state again.
                        let again = CallNote {
                            instance: instance.clone(),
                            event: None,
                            resync: true,
                        };
                        if let Some(p) = payload(&again) {
                            if let Err(e) = notify(&db, &p).await {
                                tracing::warn!(error = %e, "cannot ask the other instances to read the calls again");
                                failing = true;
                            }
                        }
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot announce call events to the other instances; dropping them until the database answers");
                        failing = true;
                    }
                    let mut dropped = 0u32;
                    while raw.try_recv().is_ok() {
                        dropped += 1;
                    }
                    tracing::debug!(dropped, "call events not announced");
                }
            }
        }
    })
}
