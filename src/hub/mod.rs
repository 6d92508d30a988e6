//! The hub: screen pops and live statistics over WebSocket (R-LINE-4, issue 4).
//!
//! One task subscribes to the call events and keeps the live picture (calls ringing or in
//! progress, today's figures). Screen pops go out from the raw events at once; the figures
//! are read back from the call log only after the writer says it has stored the event. Each browser is a client with a small bounded queue: a message
//! is serialised once and offered to every queue without waiting; a client whose queue is
//! full is dropped, so a stuck browser delays nobody — not the other browsers, not the SIP side.
//! A (re)connecting client first gets a snapshot of the live picture, then every change.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::calls::callbacks;
use crate::calls::callerid::CallerId;
use crate::calls::stats::{self, LineState, LiveStats};
use crate::calls::{CallEvent, CallEvents, CallInfo, CallLog, CallerView, StoredEvents};
use crate::clock::SharedClock;
use crate::store::Db;

/// Messages a client may fall behind by before it is dropped.
const CLIENT_QUEUE: usize = 256;
/// Statistics are pushed at least this often.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// A call as the screens see it.
#[derive(Debug, Clone, Serialize)]
pub struct CallState {
    /// Our call id.
    pub call_key: String,
    /// The caller.
    pub caller: CallerView,
    /// The number dialled.
    pub line_number: Option<String>,
    /// Arrival.
    pub arrived_at: DateTime<Utc>,
    /// `ringing`, `talking` or `ended`.
    pub state: &'static str,
    /// The operator account that answered.
    pub answered_by: Option<String>,
    /// The phone that answered.
    pub extension: Option<String>,
    /// Earlier calls and bookings of this number.
    pub history: Value,
}

struct Client {
    id: u64,
    tx: mpsc::Sender<Arc<str>>,
}

#[derive(Default)]
struct Live {
    calls: BTreeMap<String, CallState>,
    stats: Option<LiveStats>,
    clients: Vec<Client>,
    seq: u64,
}

/// The hub handle; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    live: Arc<Mutex<Live>>,
    next_client: Arc<AtomicU64>,
    log: CallLog,
    db: Db,
    clock: SharedClock,
    service_level_secs: u32,
}

/// The caller as the screens show it.
pub fn caller_view(caller: &Option<CallerId>) -> CallerView {
    match caller {
        Some(CallerId::Number { e164, display }) => CallerView {
            kind: "number".into(),
            e164: Some(e164.clone()),
            display: display.clone(),
            withheld_reason: None,
        },
        Some(CallerId::Unparsed { raw_digits }) => CallerView {
            kind: "unparsed".into(),
            e164: None,
            display: raw_digits.clone(),
            withheld_reason: None,
        },
        Some(CallerId::Withheld { reason }) => CallerView {
            kind: "withheld".into(),
            e164: None,
            display: reason.label_ja().to_string(),
            withheld_reason: Some(reason.as_str().to_string()),
        },
        None => CallerView {
            kind: "unknown".into(),
            e164: None,
            display: "不明".into(),
            withheld_reason: None,
        },
    }
}

impl Hub {
    /// Starts the hub: screen pops from the raw call events, figures from the call log once
    /// the writer has stored each event. Ends when `stop` is cancelled.
    pub fn start(
        events: &CallEvents,
        stored: &StoredEvents,
        db: Db,
        clock: SharedClock,
        service_level_secs: u32,
        stop: CancellationToken,
    ) -> (Hub, JoinHandle<()>) {
        let hub = Hub {
            live: Arc::new(Mutex::new(Live::default())),
            next_client: Arc::new(AtomicU64::new(1)),
            log: CallLog::new(db.clone()),
            db,
            clock,
            service_level_secs,
        };
        let task = tokio::spawn(
            hub.clone()
                .run(events.subscribe(), stored.subscribe(), stop),
        );
        (hub, task)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a client; returns its id, the snapshot to send first, and its queue.
    pub fn connect(&self) -> (u64, Arc<str>, mpsc::Receiver<Arc<str>>) {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let mut live = self.lock();
        live.seq += 1;
        let snapshot = json!({
            "type": "snapshot",
            "seq": live.seq,
            "at": self.clock.now(),
            "calls": live.calls.values().collect::<Vec<_>>(),
            "stats": live.stats,
        });
        live.clients.push(Client { id, tx });
        (id, Arc::from(snapshot.to_string()), rx)
    }

    /// Forgets a client (its socket closed).
    pub fn disconnect(&self, id: u64) {
        self.lock().clients.retain(|c| c.id != id);
    }

    /// Connected clients.
    pub fn clients(&self) -> usize {
        self.lock().clients.len()
    }

    /// The line state now.
    pub fn line_state(&self) -> LineState {
        line_state(&self.lock().calls)
    }

    fn broadcast(&self, kind: &str, mut body: Value, update: impl FnOnce(&mut Live)) {
        let mut live = self.lock();
        update(&mut live);
        live.seq += 1;
        body["type"] = json!(kind);
        body["seq"] = json!(live.seq);
        body["at"] = json!(self.clock.now());
        let text: Arc<str> = Arc::from(body.to_string());
        // A full or closed queue drops the client: it reconnects and gets a snapshot.
        live.clients.retain(|c| c.tx.try_send(text.clone()).is_ok());
    }

    async fn history(&self, call: &CallInfo) -> Value {
        let Some(e164) = call.caller.as_ref().and_then(CallerId::e164) else {
            return json!({ "calls": [], "bookings": [] });
        };
        let earlier = self
            .log
            .history(e164, &call.key, 10)
            .await
            .unwrap_or_default();
        let calls: Vec<Value> = earlier
            .iter()
            .map(|c| json!({ "id": c.id, "arrived_at": c.arrived_at, "end_cause": c.end_cause, "outcome": c.outcome }))
            .collect();
        // Bookings linked to the number arrive with the booking core.
        json!({ "calls": calls, "bookings": [] })
    }

    /// Today's figures, computed from the call log.
    pub async fn compute_stats(&self) -> Option<LiveStats> {
        let now = self.clock.now();
        let date = now.with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
        let (from, to) = stats::day_bounds(date);
        let totals = self
            .log
            .totals(from, to, i64::from(self.service_level_secs) * 1000)
            .await
            .ok()?;
        let waiting = callbacks::waiting(&self.db).await.ok()?;
        Some(stats::compute(
            date,
            &totals,
            self.line_state(),
            waiting,
            now,
            self.service_level_secs,
        ))
    }

    async fn push_stats(&self) {
        if let Some(s) = self.compute_stats().await {
            self.broadcast("stats", json!({ "stats": s }), |live| {
                live.stats = Some(s.clone())
            });
        }
    }

    async fn run(
        self,
        mut raw: mpsc::UnboundedReceiver<Arc<CallEvent>>,
        mut stored: broadcast::Receiver<Arc<CallEvent>>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(STATS_EVERY);
        let mut writer_running = true;
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                // Screen pops go out from the raw event at once, before the database has it.
                ev = raw.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_event(&ev).await;
                }
                // The figures are read back from the call log only once the writer says the
                // event is committed; a burst of commits is one recomputation.
                note = stored.recv(), if writer_running => {
                    if matches!(note, Err(broadcast::error::RecvError::Closed)) {
                        writer_running = false;
                        continue;
                    }
                    while matches!(
                        stored.try_recv(),
                        Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_))
                    ) {}
                    self.push_stats().await;
                }
                _ = tick.tick() => self.push_stats().await,
            }
        }
    }

    async fn on_event(&self, ev: &CallEvent) {
        match ev {
            CallEvent::Ringing { call, .. } => {
                let state = CallState {
                    call_key: call.key.clone(),
                    caller: caller_view(&call.caller),
                    line_number: call.line_number.clone(),
                    arrived_at: call.arrived_at,
                    state: "ringing",
                    answered_by: None,
                    extension: None,
                    history: self.history(call).await,
                };
                let body = json!({ "call": state });
                self.broadcast("call.ringing", body, |live| {
                    live.calls.insert(state.call_key.clone(), state);
                });
            }
            CallEvent::Answered {
                call,
                operator,
                extension,
                ..
            } => {
                let mut live_state = self.lock().calls.get(&call.key).cloned();
                if let Some(s) = &mut live_state {
                    s.state = "talking";
                    s.answered_by = operator.clone();
                    s.extension = Some(extension.clone());
                }
                let Some(state) = live_state else { return };
                let body = json!({ "call": state, "by": { "operator": operator, "extension": extension } });
                self.broadcast("call.answered", body, |live| {
                    live.calls.insert(state.call_key.clone(), state);
                });
            }
            CallEvent::Ended {
                call,
                at,
                cause,
                hangup_by,
                rang_at,
                answered_at,
            } => {
                let mut state = self
                    .lock()
                    .calls
                    .get(&call.key)
                    .cloned()
                    .unwrap_or_else(|| CallState {
                        call_key: call.key.clone(),
                        caller: caller_view(&call.caller),
                        line_number: call.line_number.clone(),
                        arrived_at: call.arrived_at,
                        state: "ended",
                        answered_by: None,
                        extension: None,
                        history: json!({ "calls": [], "bookings": [] }),
                    });
                state.state = "ended";
                let secs = |a: Option<DateTime<Utc>>, b: DateTime<Utc>| {
                    a.map(|a| (b - a).num_milliseconds() as f64 / 1000.0)
                };
                let body = json!({
                    "call": state,
                    "cause": cause.as_str(),
                    "detail": cause.detail(),
                    "hangup_by": hangup_by,
                    "ring_seconds": secs(*rang_at, answered_at.unwrap_or(*at)),
                    "talk_seconds": secs(*answered_at, *at),
                });
                let key = call.key.clone();
                self.broadcast("call.ended", body, |live| {
                    live.calls.remove(&key);
                });
            }
        }
    }
}

fn line_state(calls: &BTreeMap<String, CallState>) -> LineState {
    if calls.values().any(|c| c.state == "talking") {
        LineState::Talking
    } else if calls.values().any(|c| c.state == "ringing") {
        LineState::Ringing
    } else {
        LineState::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn a_client_that_stops_reading_is_dropped_and_others_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect_and_migrate(&format!("sqlite://{}/h.db", dir.path().display()), 1)
            .await
            .unwrap();
        let clock: SharedClock = Arc::new(ManualClock::new(Utc::now()));
        let (hub, _task) = Hub::start(
            &CallEvents::new(),
            &StoredEvents::new(),
            db,
            clock,
            20,
            CancellationToken::new(),
        );
        let (_, _, _stuck) = hub.connect();
        let (_, _, mut live) = hub.connect();
        assert_eq!(hub.clients(), 2);
        for i in 0..(CLIENT_QUEUE + 10) {
            hub.broadcast("stats", json!({ "n": i }), |_| {});
            // The live client keeps up; the stuck one never reads.
            let got = live.try_recv().expect("the live client is served at once");
            assert!(got.contains(&format!("\"n\":{i}")));
        }
        assert_eq!(
            hub.clients(),
            1,
            "the stuck client was dropped, nobody waited for it"
        );
    }
}
