//! Builds the one [`AppState`], starts the server and stops it in order; used by `main` and
//! by the tests.
//!
//! Shutdown follows tokio-rs/mini-redis: one signal that every long-lived task listens to (a
//! tree of [`CancellationToken`]s, so the parts stop in order), and every such task watched,
//! so one that panics or ends by itself fails the process instead of leaving it half alive.
//! An orderly stop goes:
//!
//! 1. the SIP side drains: a new INVITE gets 503 with Retry-After; calls in progress go on;
//! 2. wait until no call is in progress, or the grace period ends, and until the carrier
//!    has answered the removal of our registration (at most [`UNREGISTER_LIMIT`]);
//! 3. stop the intake: SIP sockets, core and connections, and the HTTP server;
//! 4. the call-log writer writes every event still queued and ends;
//! 5. the hub ends.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::alarm::{Alarms, FactsSource, LineFacts};
use crate::booking::bookings::Bookings;
use crate::booking::Places;
use crate::calls::{spawn_writer, CallEvents, CallLog};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::hours::OpeningHours;
use crate::hub::Hub;
use crate::instances;
use crate::privacy::{bootstrap_admin, Auditor, SessionStore, User, Users};
use crate::sharing::Sharing;
use crate::sip;
use crate::sip::policy::LinePolicy;
use crate::sip::proxy::{Input, KeepaliveState, Proxy, RegState, SipCounters};
use crate::sip::registrar::SavedBinding;
use crate::sip::transport::SipHandle;
use crate::store::{Backend, Db, StoreError};

/// How often the drain looks whether calls are still in progress.
const DRAIN_POLL: Duration = Duration::from_millis(200);
/// How long the drain waits for the carrier to answer the removal of our registration
/// (REGISTER with Expires: 0, and our answer to its challenge), grace period or not.
const UNREGISTER_LIMIT: Duration = Duration::from_secs(5);
/// How long the SIP side and the HTTP server get to close once told to.
const INTAKE_STOP_LIMIT: Duration = Duration::from_secs(10);
/// How long the call-log writer gets to write what is queued (the database may be slow).
const WRITER_STOP_LIMIT: Duration = Duration::from_secs(30);
/// How long the hub gets to end.
const HUB_STOP_LIMIT: Duration = Duration::from_secs(5);

/// Everything a request handler or background task needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

/// The parts of [`AppState`].
pub struct AppInner {
    /// Validated configuration and profile.
    pub config: Config,
    /// The database.
    pub db: Db,
    /// The time source.
    pub clock: SharedClock,
    /// Staff accounts.
    pub users: Users,
    /// Login sessions.
    pub sessions: SessionStore,
    /// The audit log.
    pub audit: Auditor,
    /// Call events from the SIP side (the hub and the call log subscribe).
    pub events: CallEvents,
    /// The call log.
    pub calls: CallLog,
    /// The SIP adapter, once started.
    pub sip: Option<Arc<SipHandle>>,
    /// Screen pops and live statistics.
    pub hub: Hub,
    /// Visit slots and bookings.
    pub bookings: Bookings,
    /// The city's towns and the travel model with the manager's corrections (R-SLOT-4).
    pub places: Places,
    /// The weekly share to the city (R-PREP-1, R-PREP-2).
    pub sharing: Sharing,
    /// What `/metrics` records as it happens (HTTP latencies).
    pub metrics: crate::metrics::Metrics,
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// Wires the domains together on an open, migrated database; `calls` is the log the
    /// call-event writer writes through (its counters are the writer's).
    // One argument per domain handle, built once in `start`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        db: Db,
        clock: SharedClock,
        events: CallEvents,
        calls: CallLog,
        hub: Hub,
        bookings: Bookings,
        places: Places,
        sip: Option<Arc<SipHandle>>,
    ) -> Self {
        let sessions = SessionStore::new(db.clone(), clock.clone(), config.auth.clone());
        let users = Users::new(db.clone(), clock.clone(), config.auth.clone())
            .with_session_ends(sessions.ends());
        let audit = Auditor::new(db.clone(), clock.clone());
        let tz = config
            .profile
            .hours
            .timezone
            .parse()
            .unwrap_or(chrono_tz::Asia::Tokyo);
        let sharing = Sharing::new(
            db.clone(),
            clock.clone(),
            config.sharing.clone(),
            bookings.clone(),
            tz,
        )
        .for_city(&config.profile.city.name_ja);
        AppState(Arc::new(AppInner {
            config,
            db,
            clock,
            users,
            sessions,
            audit,
            calls,
            hub,
            bookings,
            events,
            sip,
            places,
            sharing,
            metrics: crate::metrics::Metrics::default(),
        }))
    }
}

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The first admin could not be created.
    #[error("cannot create the first admin account: {0}")]
    Bootstrap(#[from] crate::privacy::PrivacyError),
    /// A listen address is taken or not ours.
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    /// The profile's opening hours do not validate (config loading checks them first).
    #[error("profile hours: {0}")]
    Profile(String),
    /// The call log could not be prepared.
    #[error(transparent)]
    Calls(#[from] crate::calls::CallsError),
    /// The staff accounts could not be read.
    #[error("cannot read the staff accounts: {0}")]
    Accounts(crate::privacy::PrivacyError),
    /// The manager's travel corrections could not be read.
    #[error("cannot read the travel corrections: {0}")]
    TravelOverrides(crate::booking::BookingError),
    /// The alarms in force could not be read.
    #[error("cannot read the dead-line alarms: {0}")]
    Alarms(crate::alarm::AlarmError),
}

/// What the dead-line alarm reads of the SIP side: keep-alive targets down, a failing carrier
/// registration, how many operator phones are registered.
fn line_facts(sip: Arc<SipHandle>) -> FactsSource {
    Arc::new(move || {
        let sip = sip.clone();
        Box::pin(async move {
            let status = sip.status().await?;
            let trunk = status.trunk;
            let registration_failed = trunk.registration.and_then(|r| {
                let status = r
                    .last_status
                    .map(|s| format!("（{s}）"))
                    .unwrap_or_default();
                match r.state {
                    RegState::Refused => {
                        Some(format!("キャリアが登録を拒否{status}：{}", r.registrar))
                    }
                    RegState::Unreachable => {
                        Some(format!("登録サーバーが応答しません：{}", r.registrar))
                    }
                    RegState::Failed => Some(format!("登録エラー{status}：{}", r.registrar)),
                    RegState::Registering | RegState::Registered => None,
                }
            });
            Some(LineFacts {
                trunk_down: trunk
                    .keepalive
                    .into_iter()
                    .filter(|k| k.state == KeepaliveState::Down)
                    .map(|k| k.target)
                    .collect(),
                registration_failed,
                phones_registered: status.phones.len(),
            })
        })
    })
}

/// A long-lived task that failed: it panicked, or ended while it should still run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{task} {how}")]
pub struct TaskFailure {
    /// Which task.
    pub task: &'static str,
    /// What happened to it.
    pub how: &'static str,
}

/// A stop that was not clean: a task failed, or the call-log writer could not finish.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct StopError {
    /// Each problem, in the order seen.
    pub problems: Vec<String>,
}

/// The parts of the server in the order they stop; each has its own token in the one tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// SIP sockets, core and connections; the HTTP server.
    Intake,
    /// The call-log writer.
    Writer,
    /// The hub.
    Hub,
}

/// The shutdown signal: cancelling `all` stops everything at once; an orderly stop cancels
/// `intake`, then `writer`, then `all` (each token is a child of the next).
struct Signals {
    all: CancellationToken,
    writer: CancellationToken,
    intake: CancellationToken,
}

impl Signals {
    fn new() -> Self {
        let all = CancellationToken::new();
        let writer = all.child_token();
        let intake = writer.child_token();
        Signals {
            all,
            writer,
            intake,
        }
    }

    fn of(&self, stage: Stage) -> &CancellationToken {
        match stage {
            Stage::Intake => &self.intake,
            Stage::Writer => &self.writer,
            Stage::Hub => &self.all,
        }
    }
}

type Ended = (&'static str, Stage, Result<(), JoinError>);

/// Watches the long-lived tasks; each must run until its stage is told to stop.
#[derive(Default)]
struct Supervisor {
    running: JoinSet<Ended>,
    left: Vec<Stage>,
    problems: Vec<String>,
}

impl Supervisor {
    fn watch(&mut self, name: &'static str, stage: Stage, task: JoinHandle<()>) {
        self.left.push(stage);
        self.running.spawn(async move { (name, stage, task.await) });
    }

    /// The next watched task to end; `None` when none is left.
    async fn next(&mut self) -> Option<Ended> {
        loop {
            // The watchers cannot fail; one is aborted only when the set is dropped.
            if let Ok(ended) = self.running.join_next().await? {
                if let Some(i) = self.left.iter().position(|s| *s == ended.1) {
                    self.left.swap_remove(i);
                }
                return Some(ended);
            }
        }
    }

    fn left(&self, stage: Stage) -> bool {
        self.left.contains(&stage)
    }

    /// A task ended: fine if its stage was told to stop, else a failure (logged, recorded).
    fn judge(&mut self, signals: &Signals, (task, stage, result): Ended) -> Option<TaskFailure> {
        let how = match result {
            Ok(()) if signals.of(stage).is_cancelled() => return None,
            Ok(()) => "ended by itself",
            Err(e) if e.is_panic() => "panicked",
            Err(_) => "was cancelled",
        };
        let failure = TaskFailure { task, how };
        tracing::error!(
            task,
            how,
            "a long-lived task failed; the process stops with an error so that it is restarted"
        );
        self.problems.push(failure.to_string());
        Some(failure)
    }
}

/// A running server: its bound addresses, the first admin's password if one was just
/// created, and what it takes to stop it in order.
pub struct RunningServer {
    /// Where HTTP is actually listening (port 0 resolved).
    pub http_addr: SocketAddr,
    /// Where SIP is actually listening (UDP and TCP, port 0 resolved).
    pub sip_addr: SocketAddr,
    /// `(admin, password)` when this start created the first account.
    pub bootstrap: Option<(User, String)>,
    /// The shared state, for tests that look inside.
    pub state: AppState,
    signals: Signals,
    supervisor: Supervisor,
}

impl RunningServer {
    /// Waits until a long-lived task fails (panics, or ends by itself). The server is then
    /// half alive: stop it with [`RunningServer::shutdown`], which reports the failure.
    pub async fn failure(&mut self) -> TaskFailure {
        loop {
            let Some(ended) = self.supervisor.next().await else {
                return std::future::pending().await;
            };
            if let Some(failure) = self.supervisor.judge(&self.signals, ended) {
                return failure;
            }
        }
    }

    /// Stops in order (see the module docs): new calls get 503 at once, calls in progress
    /// get up to `grace` (cut short when `hurry` completes, e.g. on a second signal), and
    /// every call event already published is in the call log before this returns. An error
    /// names each task that failed on the way, or before.
    pub async fn shutdown(
        mut self,
        grace: Duration,
        hurry: impl Future<Output = ()>,
    ) -> Result<(), StopError> {
        if let Some(sip) = self.state.sip.clone() {
            sip.drain().await;
            self.wait_for_calls(&sip, grace, hurry).await;
        }
        self.signals.intake.cancel();
        if let Some(sip) = &self.state.sip {
            sip.stop().await;
        }
        self.finish(Stage::Intake, INTAKE_STOP_LIMIT).await;
        // Nothing publishes call events any more: the writer empties its queue and ends.
        self.signals.writer.cancel();
        self.finish(Stage::Writer, WRITER_STOP_LIMIT).await;
        self.signals.all.cancel();
        self.finish(Stage::Hub, HUB_STOP_LIMIT).await;
        if self.supervisor.problems.is_empty() {
            tracing::info!("stopped cleanly");
            Ok(())
        } else {
            Err(StopError {
                problems: self.supervisor.problems,
            })
        }
    }

    /// Stops in order without waiting for calls in progress (they stay open in the log and
    /// close as interrupted at the next start); a failure is logged. For tests.
    pub async fn stop(self) {
        if let Err(e) = self.shutdown(Duration::ZERO, std::future::pending()).await {
            tracing::error!(error = %e, "unclean stop");
        }
    }

    async fn wait_for_calls(
        &mut self,
        sip: &SipHandle,
        grace: Duration,
        hurry: impl Future<Output = ()>,
    ) {
        let deadline = Instant::now() + grace;
        let unregister_deadline = Instant::now() + UNREGISTER_LIMIT;
        tokio::pin!(hurry);
        let mut shown = None;
        let mut calls_given_up = false;
        loop {
            // No answer: the core is gone, there is nothing left to wait for.
            let Some(status) = sip.status().await else {
                return;
            };
            // Relays: in-dialog requests passed on (a BYE), each counted until its transaction
            // ends (T4 after the answer, over UDP), so the answer has surely gone back.
            let open = (status.tables.calls, status.tables.relays);
            // The carrier has not yet answered the removal of our registration: the intake
            // (socket, retransmissions, our answer to a challenge) must live until it has.
            let unregistering = status.trunk.unregistering;
            if !calls_given_up {
                if open == (0, 0) {
                    tracing::info!("no call in progress");
                    calls_given_up = true;
                } else if Instant::now() >= deadline {
                    if !grace.is_zero() {
                        tracing::warn!(
                            calls = open.0,
                            "grace period over with calls in progress; they close as interrupted at the next start"
                        );
                    }
                    calls_given_up = true;
                }
            }
            if calls_given_up {
                if !unregistering {
                    return;
                }
                if Instant::now() >= unregister_deadline {
                    tracing::warn!(
                        limit_secs = UNREGISTER_LIMIT.as_secs(),
                        "the carrier did not answer the removal of our registration in time; it lapses at its expiry"
                    );
                    return;
                }
                if shown != Some((0, 0)) {
                    tracing::info!("waiting for the carrier to remove our registration");
                    shown = Some((0, 0));
                }
            } else if shown != Some(open) {
                tracing::info!(
                    calls = open.0,
                    relays = open.1,
                    left_secs = (deadline - Instant::now()).as_secs(),
                    "draining: new calls get 503; waiting for the calls in progress to end"
                );
                shown = Some(open);
            }
            tokio::select! {
                () = tokio::time::sleep(DRAIN_POLL) => {}
                () = &mut hurry => {
                    tracing::warn!(calls = open.0, "asked again to stop: not waiting for calls in progress");
                    return;
                }
                ended = self.supervisor.next() => {
                    if let Some(ended) = ended {
                        self.supervisor.judge(&self.signals, ended);
                    }
                    return;
                }
            }
        }
    }

    /// Waits until every task of `stage` has ended, at most `limit`.
    async fn finish(&mut self, stage: Stage, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.supervisor.left(stage) {
            match tokio::time::timeout_at(deadline, self.supervisor.next()).await {
                Ok(Some(ended)) => {
                    self.supervisor.judge(&self.signals, ended);
                }
                Ok(None) => return,
                Err(_) if stage == Stage::Writer => {
                    let problem = format!(
                        "the call log writer did not finish within {limit:?}: events not yet written are lost (their calls close as interrupted at the next start)"
                    );
                    tracing::error!("{problem}");
                    self.supervisor.problems.push(problem);
                    return;
                }
                Err(_) => {
                    tracing::warn!(?stage, "still running {limit:?} after stop; leaving it");
                    return;
                }
            }
        }
    }
}

/// Opens the database, migrates, bootstraps the first admin and starts listening.
pub async fn start(
    config: Config,
    clock: SharedClock,
    bootstrap_password: Option<String>,
) -> Result<RunningServer, StartError> {
    let db = Db::connect_and_migrate(&config.database_url, config.database_max_connections).await?;
    let listener = TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| StartError::Bind {
            addr: config.http_addr,
            reason: e.to_string(),
        })?;
    let http_addr = listener.local_addr().map_err(|e| StartError::Bind {
        addr: config.http_addr,
        reason: e.to_string(),
    })?;
    // Calls left open by a previous run can no longer end normally.
    let call_log = CallLog::new(db.clone(), &config.instance_id);
    let interrupted = call_log.close_interrupted(clock.now()).await?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "calls left open by the previous run closed as interrupted"
        );
    }
    let signals = Signals::new();
    // A start that fails half-way stops what it had started.
    let started = signals.all.clone().drop_guard();
    let mut supervisor = Supervisor::default();
    let events = CallEvents::with_backlog_max(config.log_backlog_max);
    let stored = events.stored().clone();
    // Both subscribe before the SIP side starts, so they see every call.
    supervisor.watch(
        "call log writer",
        Stage::Writer,
        spawn_writer(
            call_log.clone(),
            events.subscribe(),
            stored.clone(),
            signals.writer.clone(),
        ),
    );
    let hours =
        OpeningHours::new(&config.profile.hours).map_err(|e| StartError::Profile(e.to_string()))?;
    // The corrections are read once the state exists (below); the bookings share them.
    let places = Places::new(
        config.profile.gazetteer.clone(),
        config.profile.travel.clone(),
    );
    let bookings = Bookings::new(
        db.clone(),
        config.profile.booking.clone(),
        Arc::new(places.travel().clone()),
        hours.timezone(),
    );
    let (hub, hub_task) = Hub::start(
        &events,
        &stored,
        call_log.clone(),
        bookings.clone(),
        db.clone(),
        clock.clone(),
        config.profile.line.service_level_secs,
        signals.all.clone(),
    );
    supervisor.watch("hub", Stage::Hub, hub_task);
    // On PostgreSQL the other instances see our calls, and our calls hold the line's slots
    // (both subscribed before the SIP side starts).
    let line_events = (db.backend() == Backend::Postgres).then(|| events.subscribe());
    if db.backend() == Backend::Postgres {
        supervisor.watch(
            "call event announcer",
            Stage::Hub,
            instances::calls::spawn_publisher(
                db.clone(),
                config.instance_id.clone(),
                events.subscribe(),
                stored.subscribe(),
                signals.all.clone(),
            ),
        );
    }
    let (sip_settings, line, sip_clock) = (
        config.sip.clone(),
        config.profile.line.clone(),
        clock.clone(),
    );
    // Accounts disabled while no server ran (the CLI) keep their phones off the line too.
    let accounts = Users::new(db.clone(), clock.clone(), config.auth.clone())
        .list()
        .await
        .map_err(StartError::Accounts)?;
    warn_unknown_phone_operators(&config.sip.phones, &accounts);
    let disabled_operators: Vec<String> = accounts
        .into_iter()
        .filter(|u| u.disabled)
        .map(|u| u.username)
        .collect();
    // Phones registered before a restart ring at once (issue 18 item 9); lapsed rows go.
    let restored = restore_bindings(&db, &clock, &config.instance_id).await?;
    let counters = Arc::new(SipCounters::default());
    let advertised = config.sip_advertised;
    let proxy_counters = counters.clone();
    // The announcements' RTP goes out from the SIP address (the SDP names the advertised one).
    let rtp = sip::rtp::RtpPool::bind(
        config.sip_addr.ip(),
        config.profile.line.max_announcements as usize,
        config.profile.announcements.clone(),
    )
    .await
    .map_err(|e| StartError::Bind {
        addr: config.sip_addr,
        reason: format!("RTP for the announcement: {e}"),
    })?;
    let announce_plan = rtp.plan(Duration::from_secs(u64::from(
        config.profile.line.announcement_max_secs,
    )));
    let sip = sip::transport::start(
        config.sip_addr,
        move |bound| {
            let mut proxy = Proxy::new(
                sip_settings,
                LinePolicy::new(hours, line),
                sip_clock,
                advertised.unwrap_or(bound),
                proxy_counters,
            )?;
            proxy.set_announcements(announce_plan);
            proxy.handle_input(Input::DisableOperators(disabled_operators));
            proxy.handle_input(Input::RestoreBindings(restored));
            Ok(proxy)
        },
        events.clone(),
        counters,
        sip::transport::TransportLimits {
            max_tcp: config.sip_max_tcp_connections,
            limits: config.sip.limits.clone(),
            trunk: config.sip.trunk_nets.clone(),
        },
        signals.intake.clone(),
        rtp,
    )
    .await
    .map_err(|e| StartError::Bind {
        addr: config.sip_addr,
        reason: e.to_string(),
    })?;
    for (name, task) in sip.take_tasks() {
        supervisor.watch(name, Stage::Intake, task);
    }
    let sip = Arc::new(sip);
    if let Some(changes) = sip.take_binding_changes() {
        supervisor.watch(
            "registration writer",
            Stage::Writer,
            instances::registrations::spawn_binding_writer(
                db.clone(),
                config.instance_id.clone(),
                changes,
                signals.writer.clone(),
            ),
        );
    }
    if let Some(line_events) = line_events {
        let nudge = Arc::new(tokio::sync::Notify::new());
        supervisor.watch(
            "line slot keeper",
            Stage::Hub,
            instances::line::spawn_line_keeper(
                instances::line::LineKeeper {
                    url: config.database_url.clone(),
                    instance: config.instance_id.clone(),
                    max_calls: config.profile.line.max_concurrent_calls,
                    db: db.clone(),
                    clock: clock.clone(),
                    sip: sip.clone(),
                    hub: hub.clone(),
                    nudge: nudge.clone(),
                },
                line_events,
                signals.all.clone(),
            ),
        );
        supervisor.watch(
            "instance listener",
            Stage::Hub,
            instances::spawn_listener(
                config.database_url.clone(),
                db.clone(),
                clock.clone(),
                config.instance_id.clone(),
                sip.clone(),
                hub.clone(),
                nudge,
                signals.all.clone(),
            ),
        );
    }
    let sip_addr = sip.local;
    let state = AppState::new(
        config,
        db,
        clock,
        events,
        call_log,
        hub,
        bookings,
        places,
        Some(sip.clone()),
    );
    state
        .places
        .load(&state.db)
        .await
        .map_err(StartError::TravelOverrides)?;
    let bootstrap = bootstrap_admin(&state.users, bootstrap_password).await?;
    if state.config.alarm.enabled {
        let hours = OpeningHours::new(&state.config.profile.hours)
            .map_err(|e| StartError::Profile(e.to_string()))?;
        let alarms = Alarms::load(
            state.config.alarm.clone(),
            state.config.sharing.clone(),
            state.db.clone(),
            state.hub.clone(),
            state.clock.clone(),
            hours,
            state.config.profile.city.name_ja.clone(),
            state.config.instance_id.clone(),
        )
        .await
        .map_err(StartError::Alarms)?;
        let task = tokio::spawn(alarms.run(line_facts(sip), signals.intake.clone()));
        supervisor.watch("dead-line alarm", Stage::Intake, task);
    }
    let trim = tokio::spawn(give_back_memory(signals.intake.clone()));
    supervisor.watch("memory give-back", Stage::Intake, trim);
    let http = tokio::spawn(crate::web::serve(
        listener,
        crate::web::router(state.clone()),
        signals.intake.clone(),
    ));
    supervisor.watch("HTTP server", Stage::Intake, http);
    tracing::info!(%http_addr, "http listening");
    started.disarm();
    Ok(RunningServer {
        http_addr,
        sip_addr,
        bootstrap,
        state,
        signals,
        supervisor,
    })
}

/// How often freed heap memory is handed back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Hands the heap's free pages back to the system every few seconds until `stop` (issue 17):
/// glibc keeps what a burst of calls freed (their transactions, messages, log rows) in its
/// arenas, so without this the process would stay at its peak size after a ramp. The tables
/// themselves shrink in the SIP core (`sip::shrink`).
async fn give_back_memory(stop: CancellationToken) {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                // A trim walks the heap: off the runtime's threads.
                let _ = tokio::task::spawn_blocking(trim_heap).await;
            }
        }
    }
}

/// Largest allocation served from the heap, and the free room at the top of a heap kept
/// rather than handed back: glibc's start values, fixed (issue 17).
const HEAP_THRESHOLD: i32 = 128 * 1024;

/// Fixes glibc's heap thresholds for a long-running server; call once at start, before the
/// threads. glibc otherwise raises both after the first large block is freed (up to 32 MB
/// and 64 MB): larger blocks then come from the heaps, and each thread's heap keeps that much
/// free room on top, which `malloc_trim` does not hand back (it trims only the main heap's
/// top). Fixed, a burst's large tables are mapped and unmapped on their own and every heap
/// shrinks as its top frees; measured: idle 46 → 27 MB, 60 s after a burst of 20,000 calls
/// 22 → 14 MB above idle. Large blocks are rare on the call path (tables, WebSocket
/// buffers), so mapping them costs next to nothing.
pub fn tune_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc's allocator parameters; it takes the allocator's lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, HEAP_THRESHOLD);
    }
}

/// Returns free heap pages to the system (glibc; other allocators do it themselves).
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; it takes their locks itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// This instance's phone bindings stored before a restart; lapsed rows of any instance are
/// deleted on the way.
async fn restore_bindings(
    db: &Db,
    clock: &SharedClock,
    instance: &str,
) -> Result<Vec<SavedBinding>, StartError> {
    let now = clock.now();
    instances::registrations::delete_lapsed(db, now).await?;
    Ok(instances::registrations::load(db, now)
        .await?
        .into_iter()
        .filter(|s| s.instance == instance)
        .map(|s| s.binding)
        .collect())
}

/// Warns (at start) about each phone in `sip-config/phones.toml` whose `operator` names no
/// account: its calls would be answered with no one to record them (issue 18 item 7).
fn warn_unknown_phone_operators(
    phones: &[crate::sip::settings::PhoneSettings],
    accounts: &[crate::privacy::User],
) {
    for phone in phones {
        let Some(operator) = phone.operator.as_deref() else {
            continue;
        };
        if !accounts.iter().any(|u| u.username == operator) {
            tracing::warn!(
                phone = %phone.username,
                operator,
                "sip-config/phones.toml links phone '{}' to the operator account '{}', which does not exist: create it (madoguchi user add {} --role operator) or fix phones.toml",
                phone.username,
                operator,
                operator,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_ends_before_its_stage_stops_is_a_failure() {
        let signals = Signals::new();
        let mut sup = Supervisor::default();
        sup.watch(
            "panicking",
            Stage::Hub,
            tokio::spawn(async { panic!("boom") }),
        );
        let ended = sup.next().await.unwrap();
        let f = sup.judge(&signals, ended).expect("a panic is a failure");
        assert_eq!(f.to_string(), "panicking panicked");

        sup.watch("quitter", Stage::Writer, tokio::spawn(async {}));
        let ended = sup.next().await.unwrap();
        let f = sup
            .judge(&signals, ended)
            .expect("ending unasked is a failure");
        assert_eq!(f.how, "ended by itself");
        assert_eq!(sup.problems.len(), 2);
    }

    #[tokio::test]
    async fn stopping_in_order_ends_each_stage_and_only_its_own() {
        let signals = Signals::new();
        let mut sup = Supervisor::default();
        for (name, stage) in [
            ("sip", Stage::Intake),
            ("writer", Stage::Writer),
            ("hub", Stage::Hub),
        ] {
            let token = signals.of(stage).clone();
            sup.watch(
                name,
                stage,
                tokio::spawn(async move { token.cancelled().await }),
            );
        }
        signals.intake.cancel();
        let ended = sup.next().await.unwrap();
        assert_eq!(ended.0, "sip");
        assert!(
            sup.judge(&signals, ended).is_none(),
            "asked to stop: not a failure"
        );
        assert!(!sup.left(Stage::Intake) && sup.left(Stage::Writer) && sup.left(Stage::Hub));
        assert!(
            !signals.writer.is_cancelled(),
            "the writer outlives the intake"
        );
        signals.writer.cancel();
        assert_eq!(sup.next().await.unwrap().0, "writer");
        assert!(!signals.all.is_cancelled());
        signals.all.cancel();
        let ended = sup.next().await.unwrap();
        assert_eq!(ended.0, "hub");
        assert!(sup.judge(&signals, ended).is_none());
        assert!(sup.next().await.is_none());
        assert!(sup.problems.is_empty());
    }
}
