//! Builds the one [`AppState`] and starts the server; used by `main` and by the tests.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::calls::{spawn_writer, CallEvents, CallLog};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::hours::OpeningHours;
use crate::hub::Hub;
use crate::privacy::{bootstrap_admin, Auditor, SessionStore, User, Users};
use crate::sip;
use crate::sip::policy::LinePolicy;
use crate::sip::proxy::{Proxy, SipCounters};
use crate::sip::transport::SipHandle;
use crate::store::{Db, StoreError};

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
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// Wires the domains together on an open, migrated database.
    pub fn new(
        config: Config,
        db: Db,
        clock: SharedClock,
        events: CallEvents,
        sip: Option<Arc<SipHandle>>,
    ) -> Self {
        let users = Users::new(db.clone(), clock.clone(), config.auth.clone());
        let sessions = SessionStore::new(db.clone(), clock.clone(), config.auth.clone());
        let audit = Auditor::new(db.clone(), clock.clone());
        let db_for_calls = db.clone();
        let hub = Hub::start(
            &events,
            db.clone(),
            clock.clone(),
            config.profile.line.service_level_secs,
        );
        AppState(Arc::new(AppInner {
            config,
            db,
            clock,
            users,
            sessions,
            audit,
            calls: CallLog::new(db_for_calls),
            hub,
            events,
            sip,
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
}

/// A running server: its bound address, the first admin's password if one was just
/// created, and a handle to stop it.
pub struct RunningServer {
    /// Where HTTP is actually listening (port 0 resolved).
    pub http_addr: SocketAddr,
    /// Where SIP is actually listening (UDP and TCP, port 0 resolved).
    pub sip_addr: SocketAddr,
    /// `(admin, password)` when this start created the first account.
    pub bootstrap: Option<(User, String)>,
    /// The shared state, for tests that look inside.
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting and waits for the server task to end.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        if let Some(sip) = &self.state.sip {
            sip.stop().await;
        }
    }

    /// Waits until the server ends by itself (it normally does not).
    pub async fn wait(self) {
        let _ = self.task.await;
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
    let call_log = CallLog::new(db.clone());
    let interrupted = call_log.close_interrupted(clock.now()).await?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "calls left open by the previous run closed as interrupted"
        );
    }
    let events = CallEvents::new();
    spawn_writer(call_log, events.subscribe());
    let hours =
        OpeningHours::new(&config.profile.hours).map_err(|e| StartError::Profile(e.to_string()))?;
    let (sip_settings, line, sip_clock) = (
        config.sip.clone(),
        config.profile.line.clone(),
        clock.clone(),
    );
    let counters = Arc::new(SipCounters::default());
    let advertised = config.sip_advertised;
    let proxy_counters = counters.clone();
    let sip = sip::transport::start(
        config.sip_addr,
        move |bound| {
            Proxy::new(
                sip_settings,
                LinePolicy::new(hours, line),
                sip_clock,
                advertised.unwrap_or(bound),
                proxy_counters,
            )
        },
        events.clone(),
        counters,
    )
    .await
    .map_err(|e| StartError::Bind {
        addr: config.sip_addr,
        reason: e.to_string(),
    })?;
    let sip_addr = sip.local;
    let state = AppState::new(config, db, clock, events, Some(Arc::new(sip)));
    let bootstrap = bootstrap_admin(&state.users, bootstrap_password).await?;
    if let Some((user, _)) = &bootstrap {
        state
            .audit
            .record(
                crate::privacy::AuditEntry::new("user.create")
                    .actor(None, "(bootstrap)")
                    .target("user", user.id),
            )
            .await?;
    }
    let app = crate::web::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let (tx, mut rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "http server stopped");
        }
    });
    tracing::info!(%http_addr, "http listening");
    Ok(RunningServer {
        http_addr,
        sip_addr,
        bootstrap,
        state,
        shutdown: tx,
        task,
    })
}
