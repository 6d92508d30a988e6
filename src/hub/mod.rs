//! The hub: screen pops and live statistics over WebSocket (R-LINE-4, issue 4).
//!
//! One task subscribes to the call events and keeps the live picture (calls ringing or in
//! progress, today's figures). Screen pops go out from the raw events at once; the figures
//! are read back from the call log only after the writer says it has stored the event. Each browser is a client with a small bounded queue: a message
//! is serialised once and offered to every queue without waiting; a client whose queue is
//! full is dropped, so a stuck browser delays nobody — not the other browsers, not the SIP side.
//! A (re)connecting client first gets a snapshot of the live picture, then every change.
//!
//! Every message that shows a caller's number (snapshot, ringing, answered, ended) is a screen
//! pop in the 取扱記録's sense: a [`Subscription`] writes one `call.pop` row per call it shows
//! its screen, before the screen gets it; a pop that cannot be recorded is not delivered.
//! The rows are written per screen, off the SIP side and off the hub's own loop, in one
//! transaction for whatever the screen has queued.
//!
//! The figures are kept by a [`LiveTally`] (issue 17): each committed call event moves its
//! counters, and the whole day is read from the call log (a *re-base*) only at the start,
//! when the day changes, every [`REBASE_EVERY`], when the hub missed stored events (lagged),
//! after the writer gave up on an event, when a saved outcome is one the tally cannot place,
//! and when another instance sharing the database stored calls. So the work per call does not
//! grow with the calls already logged today. The caller's history for a pop is read only while
//! a screen is connected (a screen connecting while a call rings reads it then), and kept per
//! number for a short while ([`HISTORY_TTL`], at most [`HISTORY_CACHE`] numbers).

mod presence;
mod remote;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::booking::bookings::Bookings;
use crate::calls::callbacks;
use crate::calls::callerid::CallerId;
use crate::calls::live_tally::{self, LiveTally, WrapupApplied};
use crate::calls::stats::{self, LineState, LiveStats};
use crate::calls::{
    CallEvent, CallEvents, CallInfo, CallLog, CallPhase, CallerKind, CallerView, CallsError,
    EndCause, EndCode, Outcome, Party, StoredEvents,
};
use crate::clock::SharedClock;
use crate::privacy::Actor;
use crate::store::Db;

/// Messages a client may fall behind by before it is dropped.
const CLIENT_QUEUE: usize = 256;
/// Queued messages a subscription records and hands out at once, at most.
const BATCH_MAX: usize = 64;
/// Statistics are pushed at least this often.
const STATS_EVERY: Duration = Duration::from_secs(5);
/// Statistics are pushed at most this often (issue 17): at hundreds of calls a second the
/// figures of one moment cover many events, and a screen cannot read faster anyway.
const STATS_GAP: Duration = Duration::from_millis(250);
/// The tally is re-based from the call log at least this often.
pub const REBASE_EVERY: Duration = Duration::from_secs(300);
/// Re-bases asked for in a row (another instance storing calls, missed events) are at least
/// this far apart: each holds the call-log writer while it reads the day.
const REBASE_GAP: Duration = Duration::from_secs(1);
/// How long a caller's history read for a pop is reused.
pub const HISTORY_TTL: Duration = Duration::from_secs(30);
/// Numbers whose history is kept at most.
pub const HISTORY_CACHE: usize = 1024;

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
    /// Ringing, talking or ended.
    pub state: CallPhase,
    /// The operator account that answered.
    pub answered_by: Option<String>,
    /// The phone that answered.
    pub extension: Option<String>,
    /// Earlier calls and bookings of this number.
    pub history: PopHistory,
    /// Whether `history` was read (it is not while no screen is connected).
    #[serde(skip)]
    pub(crate) history_read: bool,
}

/// What the pop shows of a caller's past.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PopHistory {
    /// Earlier calls from the number, newest first.
    pub calls: Vec<EarlierCall>,
    /// The number's bookings (filled by the booking core).
    pub bookings: Vec<serde_json::Value>,
}

/// One earlier call in the pop's history.
#[derive(Debug, Clone, Serialize)]
pub struct EarlierCall {
    /// Row id.
    pub id: i64,
    /// Arrival.
    pub arrived_at: DateTime<Utc>,
    /// How it ended.
    pub end_cause: Option<EndCode>,
    /// The operator's outcome.
    pub outcome: Option<Outcome>,
}

/// Who answered a call.
#[derive(Debug, Clone, Serialize)]
pub struct AnsweredBy {
    /// The operator account.
    pub operator: Option<String>,
    /// The phone.
    pub extension: String,
}

/// A message to the screens; `type` names it, and every message carries `seq` (monotonic)
/// and `at` (the server's clock).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum HubMessage {
    /// The live picture, first on every (re)connect.
    #[serde(rename = "snapshot")]
    Snapshot {
        /// Calls ringing or in progress.
        calls: Vec<CallState>,
        /// Today's figures, once computed.
        stats: Option<LiveStats>,
        /// Dead-line alarms raised and not cleared (replayed to a screen that connects later).
        alarms: Vec<AlarmView>,
    },
    /// A call rings: the screen pop.
    #[serde(rename = "call.ringing")]
    CallRinging {
        /// The call, with the caller's history.
        call: CallState,
    },
    /// An operator answered.
    #[serde(rename = "call.answered")]
    CallAnswered {
        /// The call.
        call: CallState,
        /// Who answered.
        by: AnsweredBy,
    },
    /// The call is over.
    #[serde(rename = "call.ended")]
    CallEnded {
        /// The call.
        call: CallState,
        /// How it ended.
        cause: EndCode,
        /// The closing reason or the refusing status.
        detail: Option<String>,
        /// Who hung up, for completed calls.
        hangup_by: Option<Party>,
        /// Seconds it rang.
        ring_seconds: Option<f64>,
        /// Seconds of conversation.
        talk_seconds: Option<f64>,
    },
    /// Today's figures changed.
    #[serde(rename = "stats")]
    Stats {
        /// The figures.
        stats: LiveStats,
    },
    /// The dead-line alarms in force changed (issue 16 item 3): every one still raised.
    #[serde(rename = "alarms")]
    Alarms {
        /// The alarms raised and not cleared.
        alarms: Vec<AlarmView>,
    },
}

/// A dead-line alarm as the manager's banner shows it (no personal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlarmView {
    /// Its row id.
    pub id: i64,
    /// What kind (`trunk_down`, `registration_failed`, `no_phone`, `silence`).
    pub kind: String,
    /// Since when.
    pub raised_at: DateTime<Utc>,
    /// What is wrong, in Japanese.
    pub title: String,
    /// The facts behind it.
    pub detail: String,
    /// What to check, in Japanese.
    pub check: String,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(flatten)]
    message: &'a HubMessage,
    seq: u64,
    at: DateTime<Utc>,
}

/// A message as queued for the screens: serialised once, with the calls whose caller it
/// shows.
pub struct Outgoing {
    text: Arc<str>,
    /// The message's type, for the audit row of the pops it carries.
    kind: &'static str,
    /// Keys of the calls whose caller's number the message shows.
    shows: Vec<String>,
    /// The call this message ends, if any (it will not be shown again).
    ends: Option<String>,
}

impl HubMessage {
    fn kind(&self) -> &'static str {
        match self {
            HubMessage::Snapshot { .. } => "snapshot",
            HubMessage::CallRinging { .. } => "call.ringing",
            HubMessage::CallAnswered { .. } => "call.answered",
            HubMessage::CallEnded { .. } => "call.ended",
            HubMessage::Stats { .. } => "stats",
            HubMessage::Alarms { .. } => "alarms",
        }
    }

    /// The calls whose caller's number this message shows (withheld callers show none).
    fn shows(&self) -> Vec<String> {
        let calls: &[CallState] = match self {
            HubMessage::Snapshot { calls, .. } => calls,
            HubMessage::CallRinging { call }
            | HubMessage::CallAnswered { call, .. }
            | HubMessage::CallEnded { call, .. } => std::slice::from_ref(call),
            HubMessage::Stats { .. } | HubMessage::Alarms { .. } => &[],
        };
        calls
            .iter()
            .filter(|c| matches!(c.caller.kind, CallerKind::Number | CallerKind::Unparsed))
            .map(|c| c.call_key.clone())
            .collect()
    }
}

struct Client {
    id: u64,
    tx: mpsc::Sender<Arc<Outgoing>>,
}

#[derive(Default)]
struct Live {
    calls: BTreeMap<String, CallState>,
    stats: Option<LiveStats>,
    /// Today's figures as moved per event; `None` until the first re-base succeeds.
    tally: Option<LiveTally>,
    alarms: Vec<AlarmView>,
    clients: Vec<Client>,
    seq: u64,
}

/// A caller's history as read for the pop of one call.
struct CachedHistory {
    /// The call it was read for (its own row is not in it).
    read_for: String,
    read_at: Instant,
    history: PopHistory,
}

/// Histories per number (see [`HISTORY_TTL`]). An entry serves the call it was read for —
/// a screen connecting later, another instance's announcement of the same call — and goes
/// when another call of the number is logged or a call's outcome is saved.
#[derive(Default)]
struct HistoryCache {
    by_number: HashMap<String, CachedHistory>,
}

impl HistoryCache {
    fn get(&self, e164: &str, key: &str) -> Option<PopHistory> {
        self.by_number
            .get(e164)
            .filter(|c| c.read_for == key && c.read_at.elapsed() < HISTORY_TTL)
            .map(|c| c.history.clone())
    }

    fn put(&mut self, e164: &str, key: &str, history: PopHistory) {
        if self.by_number.len() >= HISTORY_CACHE && !self.by_number.contains_key(e164) {
            self.by_number
                .retain(|_, c| c.read_at.elapsed() < HISTORY_TTL);
            if self.by_number.len() >= HISTORY_CACHE {
                let oldest = self
                    .by_number
                    .iter()
                    .min_by_key(|(_, c)| c.read_at)
                    .map(|(n, _)| n.clone());
                if let Some(n) = oldest {
                    self.by_number.remove(&n);
                }
            }
        }
        self.by_number.insert(
            e164.to_string(),
            CachedHistory {
                read_for: key.to_string(),
                read_at: Instant::now(),
                history,
            },
        );
    }

    /// Call `key` of `e164` was logged or changed.
    fn logged(&mut self, e164: &str, key: &str) {
        if self.by_number.get(e164).is_some_and(|c| c.read_for != key) {
            self.by_number.remove(e164);
        }
    }
}

/// The hub's counters, for the metrics and the tests.
#[derive(Default)]
struct HubCounters {
    rebases: AtomicU64,
    history_reads: AtomicU64,
    /// Screens connecting (reading the histories of their snapshot): calls that ring
    /// meanwhile read theirs too, as if the screen were there already.
    connecting: AtomicU64,
}

/// What the hub loop is asked to do besides the events.
#[derive(Default)]
struct Requests {
    /// Read the whole day again.
    rebase: std::sync::atomic::AtomicBool,
    /// Read the open callbacks again.
    callbacks: std::sync::atomic::AtomicBool,
    wake: tokio::sync::Notify,
}

/// The hub handle; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    live: Arc<Mutex<Live>>,
    next_client: Arc<AtomicU64>,
    log: CallLog,
    bookings: Bookings,
    db: Db,
    clock: SharedClock,
    service_level_secs: u32,
    stored: StoredEvents,
    counters: Arc<HubCounters>,
    requests: Arc<Requests>,
    histories: Arc<Mutex<HistoryCache>>,
}

/// The caller as the screens show it.
pub fn caller_view(caller: &Option<CallerId>) -> CallerView {
    CallerView::of(caller.as_ref())
}

impl Hub {
    /// Starts the hub: screen pops from the raw call events, figures from the call log once
    /// the writer has stored each event. Ends when `stop` is cancelled.
    // Each argument is one of the hub's independent sources; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        events: &CallEvents,
        stored: &StoredEvents,
        log: CallLog,
        bookings: Bookings,
        db: Db,
        clock: SharedClock,
        service_level_secs: u32,
        stop: CancellationToken,
    ) -> (Hub, JoinHandle<()>) {
        let hub = Hub {
            bookings,
            live: Arc::new(Mutex::new(Live::default())),
            next_client: Arc::new(AtomicU64::new(1)),
            log,
            db,
            clock,
            service_level_secs,
            stored: stored.clone(),
            counters: Arc::default(),
            requests: Arc::default(),
            histories: Arc::default(),
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
    fn connect(&self) -> (u64, Arc<Outgoing>, mpsc::Receiver<Arc<Outgoing>>) {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let mut live = self.lock();
        live.seq += 1;
        let snapshot = HubMessage::Snapshot {
            calls: live.calls.values().cloned().collect(),
            stats: live.stats.clone(),
            alarms: live.alarms.clone(),
        };
        let out = self.outgoing(&snapshot, live.seq);
        live.clients.push(Client { id, tx });
        (id, out, rx)
    }

    /// Subscribes the screen of `actor`: the snapshot first, then every change, each caller
    /// shown recorded first. Dropping the subscription unsubscribes.
    pub fn subscribe(&self, actor: Actor) -> Subscription {
        let (id, snapshot, rx) = self.connect();
        Subscription {
            hub: self.clone(),
            id,
            actor,
            pending: vec![snapshot],
            rx,
            recorded: HashSet::new(),
            recorded_at: None,
        }
    }

    /// Like [`Hub::subscribe`], and the callers of calls ringing or in progress whose history
    /// was not read (no screen was connected when they rang) get it first, so this screen's
    /// pop shows it.
    pub async fn subscribe_with_history(&self, actor: Actor) -> Subscription {
        // Counted while connecting, even if this future is dropped half-way.
        struct Connecting<'a>(&'a AtomicU64);
        impl Drop for Connecting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.counters.connecting.fetch_add(1, Ordering::SeqCst);
        let _connecting = Connecting(&self.counters.connecting);
        let missing: Vec<(String, String)> = self
            .lock()
            .calls
            .values()
            .filter(|c| !c.history_read)
            .filter_map(|c| Some((c.call_key.clone(), c.caller.e164.clone()?)))
            .collect();
        for (key, e164) in missing {
            let history = self.history_of(&e164, &key).await;
            if let Some(c) = self.lock().calls.get_mut(&key) {
                c.history = history;
                c.history_read = true;
            }
        }
        self.subscribe(actor)
    }

    /// Times the whole day was read from the call log for the figures (re-bases).
    pub fn stats_rebases(&self) -> u64 {
        self.counters.rebases.load(Ordering::Relaxed)
    }

    /// Times a caller's history was read from the database for a pop.
    pub fn history_reads(&self) -> u64 {
        self.counters.history_reads.load(Ordering::Relaxed)
    }

    /// An outcome was saved for call `id` (by hand, or by a booking taken on it): its
    /// wrap-up time joins the figures, and its caller's history is read afresh.
    pub async fn outcome_saved(&self, id: i64) {
        // Not while a re-base reads the day: the wrap-up would be in neither tally.
        let _fence = self.stored.fence().await;
        self.histories().by_number.clear();
        let saved = match live_tally::saved_wrapup(&self.db, id).await {
            Ok(Some(saved)) => saved,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "saved outcome not read; the figures are read again");
                self.request(|r| &r.rebase);
                return;
            }
        };
        let applied = self
            .lock()
            .tally
            .as_mut()
            .map(|t| t.wrapup_saved(&saved.call_key, saved.arrived_at, saved.wrapup_ms));
        match applied {
            Some(WrapupApplied::Done) => self.push_stats(),
            Some(WrapupApplied::Unknown) | None => self.request(|r| &r.rebase),
        }
    }

    /// A callback was closed (or the list otherwise changed outside the call events): the
    /// open callbacks are read again.
    pub fn callbacks_changed(&self) {
        self.histories().by_number.clear();
        self.request(|r| &r.callbacks);
    }

    fn histories(&self) -> std::sync::MutexGuard<'_, HistoryCache> {
        self.histories.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn request(&self, which: impl FnOnce(&Requests) -> &std::sync::atomic::AtomicBool) {
        which(&self.requests).store(true, Ordering::Relaxed);
        self.requests.wake.notify_one();
    }

    /// Forgets a client (its socket closed).
    pub fn disconnect(&self, id: u64) {
        self.lock().clients.retain(|c| c.id != id);
    }

    /// The dead-line alarms in force now: every screen is told, and a screen that connects
    /// later gets them in its snapshot.
    pub fn set_alarms(&self, alarms: Vec<AlarmView>) {
        let message = HubMessage::Alarms {
            alarms: alarms.clone(),
        };
        self.broadcast(message, |live| live.alarms = alarms);
    }

    /// The dead-line alarms in force, as the screens were last told.
    pub fn alarms(&self) -> Vec<AlarmView> {
        self.lock().alarms.clone()
    }

    /// Connected clients.
    pub fn clients(&self) -> usize {
        self.lock().clients.len()
    }

    /// The line state now.
    pub fn line_state(&self) -> LineState {
        line_state(&self.lock().calls)
    }

    fn outgoing(&self, message: &HubMessage, seq: u64) -> Arc<Outgoing> {
        let envelope = Envelope {
            message,
            seq,
            at: self.clock.now(),
        };
        let ends = match message {
            HubMessage::CallEnded { call, .. } => Some(call.call_key.clone()),
            _ => None,
        };
        Arc::new(Outgoing {
            // Plain data: serialising it cannot fail.
            text: Arc::from(serde_json::to_string(&envelope).unwrap_or_default()),
            kind: message.kind(),
            shows: message.shows(),
            ends,
        })
    }

    fn broadcast(&self, message: HubMessage, update: impl FnOnce(&mut Live)) {
        let mut live = self.lock();
        update(&mut live);
        live.seq += 1;
        let out = self.outgoing(&message, live.seq);
        // A full or closed queue drops the client: it reconnects and gets a snapshot.
        live.clients.retain(|c| c.tx.try_send(out.clone()).is_ok());
    }

    /// The pop's history of a ringing call: read only while a screen is connected (`None`:
    /// not read).
    async fn history(&self, call: &CallInfo) -> Option<PopHistory> {
        let Some(e164) = call.caller.as_ref().and_then(CallerId::e164) else {
            return Some(PopHistory::default());
        };
        if self.clients() == 0 && self.counters.connecting.load(Ordering::SeqCst) == 0 {
            return None;
        }
        Some(self.history_of(e164, &call.key).await)
    }

    /// Earlier calls and bookings of `e164` for the pop of call `key`.
    async fn history_of(&self, e164: &str, key: &str) -> PopHistory {
        let cached = self.histories().get(e164, key);
        if let Some(history) = cached {
            return history;
        }
        self.counters.history_reads.fetch_add(1, Ordering::Relaxed);
        let earlier = self.log.history(e164, key, 10).await.unwrap_or_default();
        let history = PopHistory {
            calls: earlier
                .iter()
                .map(|c| EarlierCall {
                    id: c.id,
                    arrived_at: c.arrived_at,
                    end_cause: c.end_cause,
                    outcome: c.outcome,
                })
                .collect(),
            bookings: self
                .bookings
                .for_caller(e164)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter_map(|b| serde_json::to_value(b).ok())
                .collect(),
        };
        self.histories().put(e164, key, history.clone());
        history
    }

    /// Today's figures aggregated afresh from the call log (for `GET /api/stats/live`; the
    /// screens get the tally's).
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

    /// Today's date in Japan.
    fn today(&self) -> chrono::NaiveDate {
        self.clock
            .now()
            .with_timezone(&chrono_tz::Asia::Tokyo)
            .date_naive()
    }

    /// Sends the tally's figures to every screen.
    fn push_stats(&self) {
        let now = self.clock.now();
        let figures = {
            let live = self.lock();
            live.tally
                .as_ref()
                .map(|t| t.stats(line_state(&live.calls), now))
        };
        if let Some(s) = figures {
            let update = s.clone();
            self.broadcast(HubMessage::Stats { stats: s }, |live| {
                live.stats = Some(update)
            });
        }
    }

    /// Reads the whole day again. Under the writer's fence: the stored events still queued
    /// are in what is read, so they are dropped, and none is committed meanwhile.
    async fn rebase(&self, stored: &mut broadcast::Receiver<Arc<CallEvent>>) {
        let fence = self.stored.fence().await;
        // What is queued is in what is read next: missed or not, nothing is lost.
        let _ = self.drain(stored, false);
        self.requests.rebase.store(false, Ordering::Relaxed);
        self.requests.callbacks.store(false, Ordering::Relaxed);
        self.counters.rebases.fetch_add(1, Ordering::Relaxed);
        match LiveTally::load(&self.db, self.today(), self.service_level_secs).await {
            Ok(t) => self.lock().tally = Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "live statistics not read; trying again");
                self.lock().tally = None;
            }
        }
        drop(fence);
    }

    /// Takes the stored events queued; applies them to the tally when `apply`.
    /// Returns whether some were missed (the channel overflowed): then only a re-base knows.
    #[must_use]
    fn drain(&self, stored: &mut broadcast::Receiver<Arc<CallEvent>>, apply: bool) -> bool {
        let mut missed = false;
        loop {
            match stored.try_recv() {
                Ok(ev) => self.stored_event(&ev, apply),
                Err(broadcast::error::TryRecvError::Lagged(_)) => missed = true,
                Err(_) => break,
            }
        }
        missed
    }

    /// One committed event: the caller's cached history is stale, the figures move.
    fn stored_event(&self, ev: &CallEvent, apply: bool) {
        let call = ev.call();
        if let Some(e164) = call.caller.as_ref().and_then(CallerId::e164) {
            self.histories().logged(e164, &call.key);
        }
        if apply {
            if let Some(t) = self.lock().tally.as_mut() {
                t.apply(ev);
            }
        }
    }

    /// Whether the tally must be read again before it can move: none yet, another day.
    fn tally_stale(&self) -> bool {
        let today = self.today();
        self.lock().tally.as_ref().is_none_or(|t| t.date() != today)
    }

    async fn run(
        self,
        mut raw: mpsc::UnboundedReceiver<Arc<CallEvent>>,
        mut stored: broadcast::Receiver<Arc<CallEvent>>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(STATS_EVERY);
        let mut writer_running = true;
        let dead_letters = || self.log.counters().dead_letters;
        let mut seen_dead_letters = dead_letters();
        self.rebase(&mut stored).await;
        let mut rebased = tokio::time::Instant::now();
        let mut rebase_pending = false;
        // The last push, and whether the figures moved since.
        let mut pushed_at = tokio::time::Instant::now() - STATS_GAP;
        let mut moved = false;
        loop {
            // What the tally needs before it can move by the events that came.
            let mut rebase_now = false;
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                // Figures that moved within the gap go out at its end.
                () = tokio::time::sleep_until(pushed_at + STATS_GAP), if moved => {}
                // A re-base held back by the gap.
                () = tokio::time::sleep_until(rebased + REBASE_GAP), if rebase_pending => {}
                // Screen pops go out from the raw event at once, before the database has it.
                ev = raw.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_event(&ev).await;
                    continue;
                }
                // The figures move only once the writer says the event is committed.
                note = stored.recv(), if writer_running => match note {
                    Err(broadcast::error::RecvError::Closed) => {
                        writer_running = false;
                        continue;
                    }
                    // Missed some: only the call log knows what they did.
                    Err(broadcast::error::RecvError::Lagged(_)) => rebase_now = true,
                    Ok(ev) => {
                        // An event the writer gave up on is announced but not in the log.
                        let dead = dead_letters();
                        if dead != seen_dead_letters || self.tally_stale() {
                            // The re-base reads it; its caller's history is stale all the same.
                            self.stored_event(&ev, false);
                            seen_dead_letters = dead;
                            rebase_now = true;
                        } else {
                            self.stored_event(&ev, true);
                            rebase_now = self.drain(&mut stored, true);
                            let dead = dead_letters();
                            if dead != seen_dead_letters {
                                seen_dead_letters = dead;
                                rebase_now = true;
                            }
                        }
                    }
                },
                () = self.requests.wake.notified() => {
                    if self.requests.rebase.load(Ordering::Relaxed) {
                        rebase_now = true;
                    } else if self.requests.callbacks.swap(false, Ordering::Relaxed) {
                        self.reload_callbacks(&mut stored).await;
                    }
                }
                _ = tick.tick() => {
                    rebase_now = self.tally_stale() || rebased.elapsed() >= REBASE_EVERY;
                }
            }
            rebase_pending |= rebase_now;
            if rebase_pending && rebased.elapsed() >= REBASE_GAP {
                rebase_pending = false;
                seen_dead_letters = dead_letters();
                self.rebase(&mut stored).await;
                rebased = tokio::time::Instant::now();
            }
            moved = true;
            if pushed_at.elapsed() >= STATS_GAP {
                self.push_stats();
                pushed_at = tokio::time::Instant::now();
                moved = false;
            }
        }
    }

    /// Reads the open callbacks again, under the writer's fence after applying what is
    /// queued.
    async fn reload_callbacks(&self, stored: &mut broadcast::Receiver<Arc<CallEvent>>) {
        let fence = self.stored.fence().await;
        if self.drain(stored, true) {
            self.request(|r| &r.rebase);
        }
        match live_tally::OpenCallbacks::load(&self.db).await {
            Ok(open) => {
                if let Some(t) = self.lock().tally.as_mut() {
                    t.set_callbacks(open);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "open callbacks not read; the figures are read again");
                self.request(|r| &r.rebase);
            }
        }
        drop(fence);
    }

    async fn on_event(&self, ev: &CallEvent) {
        match ev {
            CallEvent::Ringing { call, .. } => {
                let history = self.history(call).await;
                let state = CallState {
                    call_key: call.key.clone(),
                    caller: caller_view(&call.caller),
                    line_number: call.line_number.clone(),
                    arrived_at: call.arrived_at,
                    state: CallPhase::Ringing,
                    answered_by: None,
                    extension: None,
                    history_read: history.is_some(),
                    history: history.unwrap_or_default(),
                };
                let message = HubMessage::CallRinging {
                    call: state.clone(),
                };
                self.broadcast(message, |live| {
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
                    s.state = CallPhase::Talking;
                    s.answered_by = operator.clone();
                    s.extension = Some(extension.clone());
                }
                let Some(state) = live_state else { return };
                let message = HubMessage::CallAnswered {
                    call: state.clone(),
                    by: AnsweredBy {
                        operator: operator.clone(),
                        extension: extension.clone(),
                    },
                };
                self.broadcast(message, |live| {
                    live.calls.insert(state.call_key.clone(), state);
                });
            }
            // Not from the carrier: whatever a stranger put in From is no caller of ours.
            // It is logged and counted, but no screen shows it (nor records a pop of it).
            CallEvent::Ended {
                call,
                cause: EndCause::Rejected,
                ..
            } if !self.lock().calls.contains_key(&call.key) => {}
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
                        state: CallPhase::Ended,
                        answered_by: None,
                        extension: None,
                        history: PopHistory::default(),
                        history_read: true,
                    });
                state.state = CallPhase::Ended;
                let secs = |a: Option<DateTime<Utc>>, b: DateTime<Utc>| {
                    a.map(|a| (b - a).num_milliseconds() as f64 / 1000.0)
                };
                let message = HubMessage::CallEnded {
                    call: state,
                    cause: cause.code(),
                    detail: cause.detail(),
                    hangup_by: *hangup_by,
                    ring_seconds: secs(*rang_at, answered_at.unwrap_or(*at)),
                    talk_seconds: secs(*answered_at, *at),
                };
                let key = call.key.clone();
                self.broadcast(message, |live| {
                    live.calls.remove(&key);
                });
            }
        }
    }
}

/// A screen's subscription to the hub (see [`Hub::subscribe`]).
pub struct Subscription {
    hub: Hub,
    id: u64,
    actor: Actor,
    /// Taken from the queue, not yet handed out: kept here, so that a `next` dropped while
    /// it records (cancelled by a `select!`) loses nothing.
    pending: Vec<Arc<Outgoing>>,
    rx: mpsc::Receiver<Arc<Outgoing>>,
    /// Calls whose pop this screen has recorded and that have not ended yet.
    recorded: HashSet<String>,
    /// When this screen's pops were last recorded.
    recorded_at: Option<tokio::time::Instant>,
}

/// Least time between two writes of one screen's `call.pop` rows (issue 17): a pop that finds
/// the last write longer ago is recorded and shown at once; under load, the pops of this
/// span share one transaction instead of a commit each, and show at most this much later.
const POP_RECORD_GAP: Duration = Duration::from_millis(5);

impl Subscription {
    /// The next messages for the screen, in order, once every caller they show it for the
    /// first time has its `call.pop` row. `Ok(None)`: the hub dropped this screen (it fell
    /// too far behind). An error: the rows could not be written, and nothing may be sent.
    /// Cancel-safe: dropped before it returns, it loses no message.
    pub async fn next(&mut self) -> Result<Option<Vec<Arc<str>>>, CallsError> {
        if self.pending.is_empty() {
            match self.rx.recv().await {
                Some(message) => self.pending.push(message),
                None => return Ok(None),
            }
        }
        self.top_up();
        let wait = self
            .recorded_at
            .map(|t| (t + POP_RECORD_GAP).saturating_duration_since(tokio::time::Instant::now()))
            .unwrap_or_default();
        if !wait.is_zero() && self.pending.len() < BATCH_MAX && self.has_new_pop() {
            // Cancel-safe: what was taken is kept in `pending`.
            tokio::time::sleep(wait).await;
            self.top_up();
        }
        let mut pops: Vec<(String, &'static str)> = Vec::new();
        for m in &self.pending {
            for key in &m.shows {
                if !self.recorded.contains(key) && !pops.iter().any(|(k, _)| k == key) {
                    pops.push((key.clone(), m.kind));
                }
            }
        }
        if !pops.is_empty() {
            self.hub
                .log
                .record_pops(&self.actor, &pops, self.hub.clock.now())
                .await?;
            self.recorded.extend(pops.into_iter().map(|(k, _)| k));
            self.recorded_at = Some(tokio::time::Instant::now());
        }
        let batch = std::mem::take(&mut self.pending);
        for m in &batch {
            if let Some(key) = &m.ends {
                self.recorded.remove(key);
            }
        }
        Ok(Some(batch.iter().map(|m| m.text.clone()).collect()))
    }

    /// Takes what is queued for the screen, without waiting.
    fn top_up(&mut self) {
        while self.pending.len() < BATCH_MAX {
            match self.rx.try_recv() {
                Ok(message) => self.pending.push(message),
                Err(_) => break,
            }
        }
    }

    /// Whether something taken shows a caller this screen has not recorded yet.
    fn has_new_pop(&self) -> bool {
        self.pending
            .iter()
            .flat_map(|m| &m.shows)
            .any(|key| !self.recorded.contains(key))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.disconnect(self.id);
    }
}

fn line_state(calls: &BTreeMap<String, CallState>) -> LineState {
    if calls.values().any(|c| c.state == CallPhase::Talking) {
        LineState::Talking
    } else if calls.values().any(|c| c.state == CallPhase::Ringing) {
        LineState::Ringing
    } else {
        LineState::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn the_history_cache_serves_its_call_holds_1024_numbers_and_forgets_on_a_new_call() {
        let mut cache = HistoryCache::default();
        for i in 0..(HISTORY_CACHE + 10) {
            cache.put(
                &format!("+8190{i:08}"),
                &format!("k{i}"),
                PopHistory::default(),
            );
        }
        assert_eq!(cache.by_number.len(), HISTORY_CACHE);
        let last = format!("+8190{:08}", HISTORY_CACHE + 9);
        let key = format!("k{}", HISTORY_CACHE + 9);
        assert!(cache.get(&last, &key).is_some(), "the call it was read for");
        assert!(
            cache.get(&last, "another call").is_none(),
            "not another call's"
        );
        cache.logged(&last, &key);
        assert!(
            cache.get(&last, &key).is_some(),
            "its own call's events change nothing"
        );
        cache.logged(&last, "another call");
        assert!(
            cache.get(&last, &key).is_none(),
            "another call of the number was logged"
        );
    }

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
            CallLog::new(db.clone(), "test"),
            Bookings::new(
                db.clone(),
                crate::booking::BookingRules::default(),
                Arc::new(crate::booking::travel::StraightLine::new(
                    crate::booking::TravelRules::default(),
                )),
                chrono_tz::Asia::Tokyo,
            ),
            db,
            clock,
            20,
            CancellationToken::new(),
        );
        let (_, _, _stuck) = hub.connect();
        let (_, _, mut live) = hub.connect();
        assert_eq!(hub.clients(), 2);
        let stats = hub.compute_stats().await.unwrap();
        for i in 0..(CLIENT_QUEUE + 10) {
            let message = HubMessage::Stats {
                stats: stats.clone(),
            };
            hub.broadcast(message, |_| {});
            // The live client keeps up; the stuck one never reads.
            let got = live.try_recv().expect("the live client is served at once");
            let got = &got.text;
            assert!(got.starts_with("{\"type\":\"stats\""), "{got}");
            assert!(got.contains(&format!("\"seq\":{}", i + 3)), "{got}");
        }
        assert_eq!(
            hub.clients(),
            1,
            "the stuck client was dropped, nobody waited for it"
        );
    }
}
