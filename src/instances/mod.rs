//! Several instances as one center (issue 16 item 1) and phones kept across a restart
//! (issue 18 item 9).
//!
//! Every instance stores its phones' bindings in the database ([`registrations`]); on start
//! it takes its own back. On PostgreSQL each instance also listens for the others'
//! announcements (`LISTEN/NOTIFY`) and hands their bindings to its SIP core, so a phone
//! registered on A rings for a call arriving on B. This module wires `sip` to `store`;
//! neither knows the other.

pub mod calls;
pub mod line;
pub mod registrations;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::hub::Hub;
use crate::sip::registrar::SavedBinding;
use crate::sip::transport::SipHandle;
use crate::store::Db;

use calls::{CallNote, CALLS_CHANNEL};
use registrations::{BindingsNote, BINDINGS_CHANNEL};

/// The first pause before the listener connects again after losing PostgreSQL.
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
/// The longest pause between tries.
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// Listens to the other instances on PostgreSQL until `stop`: their phones' bindings go to
/// the SIP core, their call events to the hub. A lost connection is opened again with
/// back-off, and everything is read again from the database then (announcements made
/// meanwhile are lost, not their rows).
// Each argument is one of the parts the listener feeds; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn spawn_listener(
    url: String,
    db: Db,
    clock: SharedClock,
    instance: String,
    sip: Arc<SipHandle>,
    hub: Hub,
    nudge: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut pause = RECONNECT_FIRST;
        // The other instances' phones the core was last given bindings of.
        let mut known: BTreeSet<(String, String)> = BTreeSet::new();
        loop {
            let listener = tokio::select! {
                () = stop.cancelled() => return,
                l = connect(&url) => l,
            };
            let mut listener = match listener {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?pause, "cannot listen to the other instances; trying again");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(RECONNECT_MAX);
                    continue;
                }
            };
            pause = RECONNECT_FIRST;
            if let Err(e) = resync(&db, &clock, &instance, &sip, &mut known).await {
                tracing::warn!(error = %e, "cannot read the other instances' registrations");
            }
            // Accounts disabled on another instance while this one did not listen.
            disable_accounts(&db, &sip).await;
            hub.resync_remote().await;
            tracing::info!("listening to the other instances");
            loop {
                let note = tokio::select! {
                    () = stop.cancelled() => return,
                    n = listener.try_recv() => n,
                };
                match note {
                    Ok(Some(n)) if n.channel() == CALLS_CHANNEL => {
                        let Ok(note) = serde_json::from_str::<CallNote>(n.payload()) else {
                            continue;
                        };
                        if note.instance == instance {
                            continue;
                        }
                        if note.resync {
                            // The sender dropped announcements: read everything again.
                            nudge.notify_one();
                            if let Err(e) = resync(&db, &clock, &instance, &sip, &mut known).await {
                                tracing::warn!(error = %e, "cannot read the other instances' registrations");
                            }
                            disable_accounts(&db, &sip).await;
                            hub.resync_remote().await;
                            continue;
                        }
                        match note.event {
                            Some(ev) => {
                                // The line's slots may have changed hands.
                                nudge.notify_one();
                                hub.apply_remote(&ev).await;
                            }
                            None => hub.remote_stored().await,
                        }
                    }
                    Ok(Some(n)) => {
                        let Ok(note) = serde_json::from_str::<BindingsNote>(n.payload()) else {
                            continue;
                        };
                        if note.accounts {
                            disable_accounts(&db, &sip).await;
                            continue;
                        }
                        if note.instance == instance {
                            continue;
                        }
                        let key = (note.instance.clone(), note.aor.clone());
                        match registrations::load_phone(&db, &note.instance, &note.aor, clock.now())
                            .await
                        {
                            Ok(bindings) => {
                                if bindings.is_empty() {
                                    known.remove(&key);
                                } else {
                                    known.insert(key);
                                }
                                sip.remote_bindings(note.instance, note.aor, bindings).await;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot read another instance's registration")
                            }
                        }
                    }
                    // The connection was lost: open a new one and read everything again.
                    Ok(None) | Err(_) => {
                        tracing::warn!(
                            "lost the connection listening to the other instances; reconnecting"
                        );
                        break;
                    }
                }
            }
        }
    })
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect(url).await?;
    l.listen_all([BINDINGS_CHANNEL, CALLS_CHANNEL]).await?;
    Ok(l)
}

/// Gives the core every other instance's bindings as the database has them now (and none
/// for a phone it had some of, that has none left).
async fn resync(
    db: &Db,
    clock: &SharedClock,
    instance: &str,
    sip: &SipHandle,
    known: &mut BTreeSet<(String, String)>,
) -> Result<(), crate::store::StoreError> {
    let mut now: HashMap<(String, String), Vec<SavedBinding>> = HashMap::new();
    for s in registrations::load(db, clock.now()).await? {
        if s.instance != instance {
            now.entry((s.instance, s.binding.aor.clone()))
                .or_default()
                .push(s.binding);
        }
    }
    let gone: Vec<(String, String)> = known
        .iter()
        .filter(|k| !now.contains_key(*k))
        .cloned()
        .collect();
    for (i, aor) in gone {
        sip.remote_bindings(i, aor, Vec::new()).await;
    }
    known.clear();
    for ((i, aor), bindings) in now {
        known.insert((i.clone(), aor.clone()));
        sip.remote_bindings(i, aor, bindings).await;
    }
    Ok(())
}

/// Takes the phones of every disabled account off this instance's line (an account
/// disabled on another instance must not ring here either).
async fn disable_accounts(db: &Db, sip: &SipHandle) {
    match registrations::disabled_accounts(db).await {
        Ok(names) if !names.is_empty() => sip.disable_operators(names).await,
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the disabled accounts"),
    }
}
