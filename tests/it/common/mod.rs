//! Test support: a fresh database per test on each backend, and the real server on port 0.

pub mod digest_client;
pub mod load;
pub mod rig;
pub mod sipp;
pub mod ua;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use madoguchi::app::{self, RunningServer};
use madoguchi::clock::{ManualClock, SharedClock};
use madoguchi::config::{AuthConfig, Config, Profile};
use madoguchi::store::Db;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

/// The password the test servers give their first admin.
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// A database backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// Backends to run storage tests on: SQLite always; PostgreSQL when `DATABASE_URL` names
/// one. Under `CI=true` a missing PostgreSQL is an error, never a silent skip.
pub fn backends() -> Vec<Kind> {
    let pg = std::env::var("DATABASE_URL")
        .map(|u| u.starts_with("postgres"))
        .unwrap_or(false);
    if !pg && std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but DATABASE_URL does not point to PostgreSQL: the PostgreSQL tier would be skipped");
    }
    if pg {
        vec![Kind::Sqlite, Kind::Postgres]
    } else {
        eprintln!(
            "note: DATABASE_URL not set to postgres://…; PostgreSQL tier skipped in this run"
        );
        vec![Kind::Sqlite]
    }
}

/// A throw-away database: a temp SQLite file, or a fresh PostgreSQL database. Either goes
/// away when this is dropped, also when the test panics.
pub struct TestDb {
    pub url: String,
    pg: Option<PgDatabase>,
    _dir: Option<tempfile::TempDir>,
}

fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[after_scheme..]
        .find('/')
        .map(|i| i + after_scheme)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..host_end], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl TestDb {
    pub async fn new(kind: Kind) -> TestDb {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}/test.db", dir.path().display());
                TestDb {
                    url,
                    pg: None,
                    _dir: Some(dir),
                }
            }
            Kind::Postgres => {
                let pg = PgDatabase::create().await;
                TestDb {
                    url: pg.url.clone(),
                    pg: Some(pg),
                    _dir: None,
                }
            }
        }
    }

    /// Another handle on the database at `url` (a second instance's, or a restarted
    /// server's): dropping it leaves the database alone.
    pub fn shared(url: &str) -> TestDb {
        TestDb {
            url: url.to_string(),
            pg: None,
            _dir: None,
        }
    }

    /// Opens and migrates it.
    pub async fn open(&self) -> Db {
        Db::connect_and_migrate(&self.url, 4)
            .await
            .expect("open test database")
    }

    /// The PostgreSQL database's name (None on SQLite).
    pub fn pg_name(&self) -> Option<&str> {
        self.pg.as_ref().map(|pg| pg.name.as_str())
    }

    /// Removes it now, off the async worker (dropping it does the same, blocking).
    pub async fn cleanup(self) {
        tokio::task::spawn_blocking(move || drop(self))
            .await
            .expect("drop test database");
    }
}

/// The PostgreSQL server the tests use (`DATABASE_URL`); its own database is only the door
/// through which test databases are created and dropped.
fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL")
}

/// A fresh PostgreSQL database for one test, dropped when this guard is dropped: at the end
/// of the test, and while unwinding from a panic, so failing tests leave no databases behind.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "mdg_t_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            Utc::now().timestamp_subsec_nanos()
        );
        let admin = admin_url();
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("connect to DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let _ = conn.close().await;
        PgDatabase {
            url: replace_db_name(&admin, &name),
            name,
        }
    }
}

impl Drop for PgDatabase {
    /// `drop` cannot await and may run on a runtime's worker (where `block_on` panics), so
    /// the DROP runs on its own thread with its own small runtime, joined before returning:
    /// once the guard is gone, so is the database. FORCE ends the connections a panicking
    /// test left open. A failure is printed, not raised: panicking while unwinding aborts.
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin_url())
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: test database {} not dropped: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped Otaru profile.
pub fn profile_dir() -> PathBuf {
    manifest_dir().join("profiles/otaru-2026")
}

/// Copies the shipped profile into `out`: its files and its folders (the announcements).
pub fn copy_profile(out: &std::path::Path) {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let target = to.join(e.file_name());
            if e.path().is_dir() {
                copy(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }
    copy(&profile_dir(), out);
}

/// Runs `madoguchi ARGS` against a test database with the shipped profile.
pub fn cli(database_url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_madoguchi"))
        .env("DATABASE_URL", database_url)
        .env("MADOGUCHI_PROFILE", profile_dir())
        .env("RUST_LOG", "warn")
        .current_dir(manifest_dir())
        .args(args)
        .output()
        .unwrap()
}

/// What `madoguchi ARGS` prints on standard output; fails the test when the command fails.
pub fn cli_ok(database_url: &str, args: &[&str]) -> String {
    let out = cli(database_url, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A configuration for tests: loopback, port 0, the shipped profile, the given database.
/// The shipped profile plays its closed-hours announcement: a closed call whose INVITE offers
/// G.711 (sipp's trunk scenarios do) hears it (183, RTP) before its 480.
pub fn test_config(database_url: &str) -> Config {
    let dir = profile_dir();
    Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        secure_cookies: false,
        trusted_proxies: Vec::new(),
        sip_addr: "127.0.0.1:0".parse().unwrap(),
        sip_advertised: None,
        sip: madoguchi::config::load_sip(
            &manifest_dir().join("sip-config"),
            &Default::default(),
            "test",
        )
        .expect("sip-config"),
        sip_max_tcp_connections: 1024,
        sip_shutdown_grace: std::time::Duration::from_secs(30),
        instance_id: "test".into(),
        database_url: database_url.to_string(),
        database_max_connections: 4,
        log_backlog_max: madoguchi::calls::BACKLOG_HIGH,
        auth: AuthConfig {
            failed_login_delay_ms: 1,
            ..AuthConfig::default()
        },
        sharing: Default::default(),
        metrics: Default::default(),
        // The dead-line alarm checks off unless a test turns it on (R-16.3 tests do).
        alarm: madoguchi::config::AlarmConfig {
            enabled: false,
            ..Default::default()
        },
        profile: Profile::load(&dir).expect("profile"),
        profile_dir: dir,
    }
}

/// A weekday morning inside the call-center period, in UTC.
pub fn a_working_morning() -> chrono::DateTime<Utc> {
    // 2026-11-25 (Wed) 10:00 JST
    Utc.with_ymd_and_hms(2026, 11, 25, 1, 0, 0).unwrap()
}

/// The real server on port 0 with a manual clock.
pub struct TestApp {
    pub server: RunningServer,
    pub clock: ManualClock,
    pub db: TestDb,
    pub base: String,
}

impl TestApp {
    pub async fn spawn(kind: Kind) -> TestApp {
        Self::spawn_with(kind, |_| {}).await
    }

    pub async fn spawn_with(kind: Kind, tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_clocked(kind, None, tweak).await
    }

    /// The server with a clock that starts at `start` and runs in real time (for sipp tests,
    /// where durations must be real).
    pub async fn spawn_at(
        kind: Kind,
        start: chrono::DateTime<Utc>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        Self::spawn_clocked(kind, Some(start), tweak).await
    }

    async fn spawn_clocked(
        kind: Kind,
        running_from: Option<chrono::DateTime<Utc>>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        Self::spawn_clocked_on(TestDb::new(kind).await, running_from, tweak).await
    }

    /// [`TestApp::spawn_at`] on an existing database (a restart, or a second instance).
    pub async fn spawn_at_on(
        db: TestDb,
        start: chrono::DateTime<Utc>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        Self::spawn_clocked_on(db, Some(start), tweak).await
    }

    async fn spawn_clocked_on(
        db: TestDb,
        running_from: Option<chrono::DateTime<Utc>>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        let mut config = test_config(&db.url);
        tweak(&mut config);
        let clock = ManualClock::new(a_working_morning());
        let shared: SharedClock = match running_from {
            Some(t) => Arc::new(madoguchi::clock::OffsetClock::starting_at(t)),
            None => Arc::new(clock.clone()),
        };
        let server = app::start(config, shared, Some(ADMIN_PASSWORD.to_string()))
            .await
            .expect("start server");
        let base = format!("http://{}", server.http_addr);
        TestApp {
            server,
            clock,
            db,
            base,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A fresh browser-like client (own cookie jar).
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap()
    }

    /// Logs in and returns the client with its session and the anti-CSRF token.
    pub async fn login(&self, username: &str, password: &str) -> Session {
        let client = self.client();
        let res = client
            .post(self.url("/api/login"))
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "login as {username} failed");
        let body: Value = res.json().await.unwrap();
        Session {
            client,
            csrf: body["csrf_token"].as_str().unwrap().to_string(),
            base: self.base.clone(),
        }
    }

    pub async fn admin(&self) -> Session {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// Creates an account with `role` (as the admin) and logs it in.
    pub async fn user_with_role(&self, username: &str, role: &str) -> Session {
        let admin = self.admin().await;
        let res = admin
            .post(
                "/api/users",
                &serde_json::json!({ "username": username, "role": role, "password": "password-of-" .to_string() + username, "must_change_password": false }),
            )
            .await;
        assert_eq!(res.status(), 201, "create {username}");
        self.login(username, &format!("password-of-{username}"))
            .await
    }

    pub async fn stop(self) {
        self.server.stop().await;
        self.db.cleanup().await;
    }
}

/// A logged-in client.
pub struct Session {
    pub client: reqwest::Client,
    pub csrf: String,
    pub base: String,
}

impl Session {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{}", self.base, path))
            .header("X-CSRF-Token", &self.csrf)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}
