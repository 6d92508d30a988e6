//! Loading `madoguchi.toml`, the city profile and environment overrides, with validation.
//!
//! Every problem becomes one [`ConfigError`] whose `Display` is a single line naming the
//! file (or variable), the key and what is wrong, so an operator can fix it at a glance.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::booking::address::Gazetteer;
use crate::booking::{AddressRules, BookingRules, TravelRules};
use crate::hours::HoursConfig;
// Each domain owns its section's type; config only reads the files and composes them.
pub use crate::alarm::AlarmConfig;
pub use crate::calls::LineProfile;
pub use crate::privacy::AuthConfig;
pub use crate::sharing::SharingConfig;
use crate::sip::settings::{
    self, PhonesFile, SipLimits, SipSettings, SipTimers, SipTuning, TrunkFile,
};

/// Default listen address of the web UI and API.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
/// Default listen address of the SIP adapter (UDP and TCP).
pub const DEFAULT_SIP_ADDR: &str = "127.0.0.1:5060";
/// Default database: embedded SQLite under `data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/madoguchi.db";
/// Default directory of `trunk.toml` and `phones.toml`.
pub const DEFAULT_SIP_CONFIG_DIR: &str = "sip-config";
/// Default city profile directory.
pub const DEFAULT_PROFILE: &str = "profiles/otaru-2026";
/// Default of `[sip] shutdown_grace_secs`.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;

/// A configuration problem; its `Display` is the one line printed at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file that must exist could not be read.
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    /// A file is not valid TOML or has an unknown or mistyped key.
    #[error("{file}: line {line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    /// A key is present but its value is not acceptable.
    #[error("{source_name}: {key}: {problem}")]
    Value {
        source_name: String,
        key: String,
        problem: String,
    },
}

impl ConfigError {
    fn value(
        source_name: impl Into<String>,
        key: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        ConfigError::Value {
            source_name: source_name.into(),
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// The validated configuration the whole application runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the web UI and API listen.
    pub http_addr: SocketAddr,
    /// Mark the session cookie `Secure` (set when served over TLS).
    pub secure_cookies: bool,
    /// Reverse proxies whose `X-Forwarded-For` is believed (`[http] trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where the SIP adapter listens (UDP and TCP).
    pub sip_addr: SocketAddr,
    /// The address put in Via and Record-Route when `sip_addr` is a wildcard (0.0.0.0).
    pub sip_advertised: Option<SocketAddr>,
    /// Trunk, phones, registrar and timers of the SIP adapter.
    pub sip: SipSettings,
    /// Most TCP connections the SIP adapter holds at once; more are closed at once.
    pub sip_max_tcp_connections: usize,
    /// On SIGTERM/SIGINT, how long calls in progress may go on before the process stops.
    pub sip_shutdown_grace: Duration,
    /// This instance's name in the call log: at start it closes only its own calls left open.
    pub instance_id: String,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Most connections the pool opens.
    pub database_max_connections: u32,
    /// Call events waiting to be written at which new calls get 503 until the log catches up.
    pub log_backlog_max: u64,
    /// Login, session and lock-out policy.
    pub auth: AuthConfig,
    /// How the weekly share reaches the city (`[sharing]`).
    pub sharing: SharingConfig,
    /// Who may read `/metrics` (`[metrics]`).
    pub metrics: crate::metrics::MetricsConfig,
    /// The dead-line alarm (`[alarm]`).
    pub alarm: AlarmConfig,
    /// Directory of the city profile.
    pub profile_dir: PathBuf,
    /// The loaded city profile.
    pub profile: Profile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    http: HttpSection,
    sip: SipSection,
    database: DatabaseSection,
    profile: ProfileSection,
    auth: AuthConfig,
    sharing: SharingConfig,
    metrics: crate::metrics::MetricsConfig,
    alarm: AlarmConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HttpSection {
    addr: Option<String>,
    secure_cookies: bool,
    trusted_proxies: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SipSection {
    addr: Option<String>,
    advertised_addr: Option<String>,
    config_dir: Option<String>,
    // Spelled out rather than `#[serde(flatten)]`: serde ignores deny_unknown_fields on a
    // flattened struct, and a misspelt key must stop start-up.
    t1_ms: Option<u64>,
    t2_ms: Option<u64>,
    t4_ms: Option<u64>,
    max_tcp_connections: Option<usize>,
    max_tcp_connections_per_address: Option<usize>,
    tcp_idle_timeout_secs: Option<u64>,
    tcp_message_timeout_secs: Option<u64>,
    tcp_write_queue_bytes: Option<usize>,
    max_server_transactions: Option<usize>,
    source_messages_per_sec: Option<u32>,
    trunk_messages_per_sec: Option<u32>,
    register_max_failures: Option<u32>,
    register_max_failures_per_user: Option<u32>,
    register_failure_window_secs: Option<u64>,
    register_lockout_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    instance_id: Option<String>,
}

impl SipSection {
    /// The tuning keys, defaults filled in (checked by `settings::validate`).
    fn tuning(&self) -> SipTuning {
        let t = SipTimers::default();
        let l = SipLimits::default();
        SipTuning {
            timers: SipTimers {
                t1_ms: self.t1_ms.unwrap_or(t.t1_ms),
                t2_ms: self.t2_ms.unwrap_or(t.t2_ms),
                t4_ms: self.t4_ms.unwrap_or(t.t4_ms),
            },
            limits: SipLimits {
                max_tcp_connections_per_address: self
                    .max_tcp_connections_per_address
                    .unwrap_or(l.max_tcp_connections_per_address),
                tcp_idle_timeout_secs: self
                    .tcp_idle_timeout_secs
                    .unwrap_or(l.tcp_idle_timeout_secs),
                tcp_message_timeout_secs: self
                    .tcp_message_timeout_secs
                    .unwrap_or(l.tcp_message_timeout_secs),
                tcp_write_queue_bytes: self
                    .tcp_write_queue_bytes
                    .unwrap_or(l.tcp_write_queue_bytes),
                max_server_transactions: self
                    .max_server_transactions
                    .unwrap_or(l.max_server_transactions),
                source_messages_per_sec: self
                    .source_messages_per_sec
                    .unwrap_or(l.source_messages_per_sec),
                trunk_messages_per_sec: self
                    .trunk_messages_per_sec
                    .unwrap_or(l.trunk_messages_per_sec),
                register_max_failures: self
                    .register_max_failures
                    .unwrap_or(l.register_max_failures),
                register_max_failures_per_user: self
                    .register_max_failures_per_user
                    .unwrap_or(l.register_max_failures_per_user),
                register_failure_window_secs: self
                    .register_failure_window_secs
                    .unwrap_or(l.register_failure_window_secs),
                register_lockout_secs: self
                    .register_lockout_secs
                    .unwrap_or(l.register_lockout_secs),
            },
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DatabaseSection {
    url: Option<String>,
    max_connections: Option<u32>,
    log_backlog_max: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ProfileSection {
    path: Option<String>,
}

/// Environment variables that override the file, read once by the caller.
#[derive(Debug, Default, Clone)]
pub struct EnvOverrides {
    /// `MADOGUCHI_HTTP_ADDR`
    pub http_addr: Option<String>,
    /// `MADOGUCHI_SIP_ADDR`
    pub sip_addr: Option<String>,
    /// `DATABASE_URL`
    pub database_url: Option<String>,
    /// `MADOGUCHI_PROFILE`
    pub profile: Option<String>,
    /// `MADOGUCHI_SIP_CONFIG`
    pub sip_config: Option<String>,
}

impl EnvOverrides {
    /// Reads the overrides from the process environment; empty values count as unset.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Self {
            http_addr: var("MADOGUCHI_HTTP_ADDR"),
            sip_addr: var("MADOGUCHI_SIP_ADDR"),
            database_url: var("DATABASE_URL"),
            profile: var("MADOGUCHI_PROFILE"),
            sip_config: var("MADOGUCHI_SIP_CONFIG"),
        }
    }
}

/// Loads the configuration.
///
/// `path` is the `--config` argument: when given, the file must exist. Without it,
/// `madoguchi.toml` in the working directory is read if present, else defaults apply.
pub fn load(path: Option<&Path>, env: &EnvOverrides) -> Result<Config, ConfigError> {
    let (file_name, file) = match path {
        Some(p) => (p.display().to_string(), Some(read_toml::<FileConfig>(p)?)),
        None => {
            let p = Path::new("madoguchi.toml");
            if p.exists() {
                (p.display().to_string(), Some(read_toml::<FileConfig>(p)?))
            } else {
                ("(defaults)".to_string(), None)
            }
        }
    };
    let file = file.unwrap_or_default();

    let (src, raw) = pick(
        &env.http_addr,
        "MADOGUCHI_HTTP_ADDR",
        &file.http.addr,
        &file_name,
        "http.addr",
        DEFAULT_HTTP_ADDR,
    );
    let http_addr = parse_addr(&src.0, &src.1, &raw)?;
    let (src, raw) = pick(
        &env.sip_addr,
        "MADOGUCHI_SIP_ADDR",
        &file.sip.addr,
        &file_name,
        "sip.addr",
        DEFAULT_SIP_ADDR,
    );
    let sip_addr = parse_addr(&src.0, &src.1, &raw)?;
    let (src, database_url) = pick(
        &env.database_url,
        "DATABASE_URL",
        &file.database.url,
        &file_name,
        "database.url",
        DEFAULT_DATABASE_URL,
    );
    if !(database_url.starts_with("sqlite:")
        || database_url.starts_with("postgres://")
        || database_url.starts_with("postgresql://"))
    {
        return Err(ConfigError::value(
            src.0,
            src.1,
            format!(
                "'{}' is neither sqlite://… nor postgres://…",
                redact_url(&database_url)
            ),
        ));
    }
    let log_backlog_max = file
        .database
        .log_backlog_max
        .unwrap_or(crate::calls::BACKLOG_HIGH);
    if !(4..=10_000_000).contains(&log_backlog_max) {
        return Err(ConfigError::value(
            &file_name,
            "database.log_backlog_max",
            "must be between 4 and 10000000",
        ));
    }
    let database_max_connections = file.database.max_connections.unwrap_or(8);
    if !(1..=200).contains(&database_max_connections) {
        return Err(ConfigError::value(
            &file_name,
            "database.max_connections",
            "must be between 1 and 200",
        ));
    }
    validate_auth(&file.auth, &file_name)?;
    let trusted_proxies = parse_trusted_proxies(&file.http.trusted_proxies, &file_name)?;
    if let Err((key, problem)) = file.sharing.validate() {
        return Err(ConfigError::value(&file_name, key, problem));
    }
    if let Err((key, problem)) = file.metrics.validate() {
        return Err(ConfigError::value(&file_name, key, problem));
    }
    if let Err((key, problem)) = file.alarm.validate(&file.sharing) {
        return Err(ConfigError::value(&file_name, key, problem));
    }

    let (src, profile_raw) = pick(
        &env.profile,
        "MADOGUCHI_PROFILE",
        &file.profile.path,
        &file_name,
        "profile.path",
        DEFAULT_PROFILE,
    );
    let profile_dir = PathBuf::from(&profile_raw);
    if !profile_dir.is_dir() {
        return Err(ConfigError::value(
            src.0,
            src.1,
            format!("profile directory '{profile_raw}' not found"),
        ));
    }
    let profile = Profile::load(&profile_dir)?;
    let (src, sip_dir) = pick(
        &env.sip_config,
        "MADOGUCHI_SIP_CONFIG",
        &file.sip.config_dir,
        &file_name,
        "sip.config_dir",
        DEFAULT_SIP_CONFIG_DIR,
    );
    if !Path::new(&sip_dir).is_dir() {
        return Err(ConfigError::value(
            src.0,
            src.1,
            format!("directory '{sip_dir}' not found"),
        ));
    }
    // Problems with the `[sip]` keys are the config file's, wherever the directory came from.
    let sip = load_sip(Path::new(&sip_dir), &file.sip.tuning(), &file_name)?;
    let sip_advertised = match &file.sip.advertised_addr {
        Some(a) => Some(parse_addr(&file_name, "sip.advertised_addr", a)?),
        None => None,
    };
    if sip_addr.ip().is_unspecified() && sip_advertised.is_none() {
        return Err(ConfigError::value(
            &file_name,
            "sip.advertised_addr",
            format!("sip.addr {sip_addr} listens on every interface: set the address phones and the trunk reach us at"),
        ));
    }
    if sip_advertised.is_some_and(|a| a.ip().is_unspecified()) {
        return Err(ConfigError::value(
            &file_name,
            "sip.advertised_addr",
            "must be a concrete address, not 0.0.0.0",
        ));
    }
    // The demo passwords are in the repository: with them, anyone who can reach the adapter
    // can register as an operator phone and take citizens' calls.
    if !sip_addr.ip().is_loopback() {
        if let Some(user) = sip.phone_with_demo_password() {
            return Err(ConfigError::value(
                Path::new(&sip_dir).join("phones.toml").display().to_string(),
                "phone.password",
                format!("phone '{user}' still has the shipped demo password; set a new one (16+ random characters) before listening on {sip_addr}"),
            ));
        }
    }
    let sip_max_tcp_connections = file
        .sip
        .max_tcp_connections
        .unwrap_or(crate::sip::transport::DEFAULT_MAX_TCP_CONNECTIONS);
    if !(1..=65_536).contains(&sip_max_tcp_connections) {
        return Err(ConfigError::value(
            &file_name,
            "sip.max_tcp_connections",
            "must be between 1 and 65536",
        ));
    }
    let grace_secs = file
        .sip
        .shutdown_grace_secs
        .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS);
    if grace_secs > 3600 {
        return Err(ConfigError::value(
            &file_name,
            "sip.shutdown_grace_secs",
            "must be between 0 and 3600",
        ));
    }

    // Stable across restarts of the same service, distinct for two instances on one host.
    let instance_id = match &file.sip.instance_id {
        Some(id) if id.trim() == crate::alarm::SHARED => {
            return Err(ConfigError::value(
                &file_name,
                "sip.instance_id",
                "'*' is reserved (the shared rows of the dead-line alarm)",
            ));
        }
        Some(id) if id.trim().is_empty() || id.len() > 64 || id.chars().any(char::is_control) => {
            return Err(ConfigError::value(
                &file_name,
                "sip.instance_id",
                "must be 1–64 printable characters",
            ));
        }
        Some(id) => id.trim().to_string(),
        None => format!("{}:{}", host_name(), sip_addr.port()),
    };

    Ok(Config {
        http_addr,
        secure_cookies: file.http.secure_cookies,
        trusted_proxies,
        sip_addr,
        sip_advertised,
        sip,
        sip_max_tcp_connections,
        sip_shutdown_grace: Duration::from_secs(grace_secs),
        instance_id,
        database_url,
        database_max_connections,
        log_backlog_max,
        auth: file.auth,
        sharing: file.sharing,
        metrics: file.metrics,
        alarm: file.alarm,
        profile_dir,
        profile,
    })
}

/// The machine's name, for the default instance id.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Chooses env over file over default and remembers where the value came from.
fn pick(
    env: &Option<String>,
    env_name: &str,
    file: &Option<String>,
    file_name: &str,
    key: &str,
    default: &str,
) -> ((String, String), String) {
    if let Some(v) = env {
        ((env_name.to_string(), "value".to_string()), v.clone())
    } else if let Some(v) = file {
        ((file_name.to_string(), key.to_string()), v.clone())
    } else {
        (
            ("(defaults)".to_string(), key.to_string()),
            default.to_string(),
        )
    }
}

fn parse_addr(source_name: &str, key: &str, raw: &str) -> Result<SocketAddr, ConfigError> {
    raw.trim().parse().map_err(|_| {
        ConfigError::value(
            source_name,
            key,
            format!("'{raw}' is not a socket address (expected host:port, e.g. 127.0.0.1:8080)"),
        )
    })
}

/// `[http] trusted_proxies`: addresses (`127.0.0.1`) or networks (`10.0.0.0/8`).
fn parse_trusted_proxies(raw: &[String], file: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    if raw.len() > 64 {
        return Err(ConfigError::value(
            file,
            "http.trusted_proxies",
            "at most 64 entries",
        ));
    }
    raw.iter()
        .map(|a| {
            let a = a.trim();
            a.parse::<ipnet::IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| a.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ConfigError::value(
                        file,
                        "http.trusted_proxies",
                        format!(
                            "'{a}' is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)"
                        ),
                    )
                })
        })
        .collect()
}

fn validate_auth(a: &AuthConfig, file: &str) -> Result<(), ConfigError> {
    let checks: [(&str, bool, &str); 8] = [
        (
            "auth.session_idle_minutes",
            (1..=1440).contains(&a.session_idle_minutes),
            "must be between 1 and 1440",
        ),
        (
            "auth.session_max_hours",
            (1..=168).contains(&a.session_max_hours),
            "must be between 1 and 168",
        ),
        (
            "auth.max_failed_logins",
            (1..=100).contains(&a.max_failed_logins),
            "must be between 1 and 100",
        ),
        (
            "auth.lockout_minutes",
            (1..=1440).contains(&a.lockout_minutes),
            "must be between 1 and 1440",
        ),
        (
            "auth.failed_login_delay_ms",
            a.failed_login_delay_ms <= 10_000,
            "must be at most 10000",
        ),
        (
            "auth.max_failed_logins_per_address",
            (1..=10_000).contains(&a.max_failed_logins_per_address),
            "must be between 1 and 10000",
        ),
        (
            "auth.address_window_minutes",
            (1..=1440).contains(&a.address_window_minutes),
            "must be between 1 and 1440",
        ),
        (
            "auth.session_recheck_secs",
            (1..=300).contains(&a.session_recheck_secs),
            "must be between 1 and 300",
        ),
    ];
    match checks.iter().find(|(_, ok, _)| !ok) {
        Some((key, _, problem)) => Err(ConfigError::value(file, *key, *problem)),
        None => Ok(()),
    }
}

/// Loads `trunk.toml` and `phones.toml` from `dir` and validates them with the `[sip]` tuning.
pub fn load_sip(
    dir: &Path,
    tuning: &SipTuning,
    config_file: &str,
) -> Result<SipSettings, ConfigError> {
    if !dir.is_dir() {
        return Err(ConfigError::value(
            config_file,
            "sip.config_dir",
            format!("directory '{}' not found", dir.display()),
        ));
    }
    let trunk_path = dir.join("trunk.toml");
    let phones_path = dir.join("phones.toml");
    let trunk: TrunkFile = read_toml(&trunk_path)?;
    let phones: PhonesFile = read_toml(&phones_path)?;
    settings::validate(&trunk, &phones, tuning).map_err(|(key, problem)| {
        let file = if key.starts_with("trunk") {
            trunk_path.display().to_string()
        } else if key.starts_with("sip.") {
            config_file.to_string()
        } else {
            phones_path.display().to_string()
        };
        ConfigError::value(file, key, problem)
    })
}

/// Hides the password in a database URL before it is shown anywhere.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1);
        ConfigError::Syntax {
            file,
            line,
            message: e.message().replace('\n', " "),
        }
    })
}

/// The city profile (`profiles/<name>/profile.toml`): everything that makes one city's line.
///
/// Dates, counts and limits of the spec live here, not in code (R-PERIOD-3).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Who the line serves.
    pub city: CityProfile,
    /// The contract's dates (R-PERIOD-1, R-PERIOD-2).
    pub period: PeriodProfile,
    /// Opening hours and closing days of the line, incl. the call-center period (R-HOURS-1).
    #[serde(default)]
    pub hours: HoursConfig,
    /// The telephone line (R-LINE-1, R-LINE-2).
    #[serde(default)]
    pub line: LineProfile,
    /// Visit calendar, slot capacities, windows, travel limits, lead times and targets
    /// (R-CAL, R-SLOT, R-PERIOD-2/3).
    #[serde(default)]
    pub booking: BookingRules,
    /// The travel-time model's figures (R-SLOT-4).
    #[serde(default)]
    pub travel: TravelRules,
    /// Where the city's reference data is and how addresses are read (R-BOOK-3 a).
    #[serde(default)]
    pub address: AddressRules,
    /// The city's 町丁目 and postal codes, read from the files `[address]` names.
    #[serde(skip)]
    pub gazetteer: Arc<Gazetteer>,
    /// The talk script (`talk-script.md` beside `profile.toml`; Japanese Markdown, R-LINE-6).
    #[serde(skip)]
    pub talk_script: String,
    /// The closed-hours announcements `[line]` names, read and checked at load.
    #[serde(skip)]
    pub announcements: crate::sip::media::Announcements,
}

/// `[city]` of the profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CityProfile {
    /// Short machine id, e.g. `otaru`.
    pub id: String,
    /// The city's name as shown to users, e.g. 小樽市.
    pub name_ja: String,
    /// The service's name on screens and documents.
    pub service_name_ja: String,
}

/// `[period]` of the profile. The call-center period itself is `[hours] period_start/end`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodProfile {
    /// First visit day.
    pub visits_start: NaiveDate,
    /// Last visit day.
    pub visits_end: NaiveDate,
    /// Last day of the contract; everything is returned or deleted by then (R-PII-5).
    pub contract_end: NaiveDate,
}

impl Profile {
    /// Reads and validates `profile.toml` in `dir`.
    pub fn load(dir: &Path) -> Result<Profile, ConfigError> {
        let path = dir.join("profile.toml");
        let mut profile: Profile = read_toml(&path)?;
        profile.validate(&path.display().to_string())?;
        let gazetteer =
            Gazetteer::load(dir, &profile.city.name_ja, &profile.address).map_err(|e| {
                match e.line {
                    0 => ConfigError::Read {
                        file: e.file,
                        reason: e.message,
                    },
                    line => ConfigError::Syntax {
                        file: e.file,
                        line,
                        message: e.message,
                    },
                }
            })?;
        profile.gazetteer = Arc::new(gazetteer);
        profile.announcements = crate::sip::media::Announcements::load(dir, &profile.line)
            .map_err(|(key, problem)| {
                ConfigError::value(path.display().to_string(), key, problem)
            })?;
        let script = dir.join("talk-script.md");
        if script.exists() {
            profile.talk_script =
                std::fs::read_to_string(&script).map_err(|e| ConfigError::Read {
                    file: script.display().to_string(),
                    reason: e.to_string(),
                })?;
        }
        Ok(profile)
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let p = &self.period;
        if let Err(e) = self.hours.validate() {
            return Err(ConfigError::value(file, "hours", e.to_string()));
        }
        let order = [
            (
                "period.visits_end",
                p.visits_start <= p.visits_end,
                "is before period.visits_start",
            ),
            (
                "period.contract_end",
                self.hours.period_end <= p.contract_end,
                "is before hours.period_end",
            ),
        ];
        if let Some((key, _, problem)) = order.iter().find(|(_, ok, _)| !ok) {
            return Err(ConfigError::value(file, *key, *problem));
        }
        if let Err((key, why)) = self.booking.validate() {
            return Err(ConfigError::value(file, key, why));
        }
        if let Err((key, why)) = self.travel.validate() {
            return Err(ConfigError::value(file, key, why));
        }
        if let Err((key, why)) = self.address.validate() {
            return Err(ConfigError::value(file, key, why));
        }
        if self.line.max_concurrent_calls == 0 {
            return Err(ConfigError::value(
                file,
                "line.max_concurrent_calls",
                "must be at least 1",
            ));
        }
        if !(1..=1440).contains(&self.line.max_call_minutes) {
            return Err(ConfigError::value(
                file,
                "line.max_call_minutes",
                "must be between 1 and 1440",
            ));
        }
        if !(5..=300).contains(&self.line.ring_timeout_secs) {
            return Err(ConfigError::value(
                file,
                "line.ring_timeout_secs",
                "must be between 5 and 300",
            ));
        }
        if !matches!(self.line.closed_status, 403 | 480 | 486 | 503 | 603) {
            return Err(ConfigError::value(
                file,
                "line.closed_status",
                "must be one of 403, 480, 486, 503, 603",
            ));
        }
        if !(1..=600).contains(&self.line.announcement_max_secs) {
            return Err(ConfigError::value(
                file,
                "line.announcement_max_secs",
                "must be between 1 and 600",
            ));
        }
        if !(1..=1000).contains(&self.line.max_announcements) {
            return Err(ConfigError::value(
                file,
                "line.max_announcements",
                "must be between 1 and 1000",
            ));
        }
        if self.city.id.trim().is_empty() {
            return Err(ConfigError::value(file, "city.id", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile_dir() -> String {
        format!("{}/profiles/otaru-2026", env!("CARGO_MANIFEST_DIR"))
    }

    fn env_with_profile() -> EnvOverrides {
        EnvOverrides {
            profile: Some(profile_dir()),
            sip_config: Some(format!("{}/sip-config", env!("CARGO_MANIFEST_DIR"))),
            ..Default::default()
        }
    }

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let p = dir.path().join("madoguchi.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn shipped_profile_has_the_spec_dates() {
        // R-PERIOD-1, R-PERIOD-2
        let p = Profile::load(Path::new(&profile_dir())).unwrap();
        assert_eq!(p.hours.period_start.to_string(), "2026-06-01");
        assert_eq!(p.hours.period_end.to_string(), "2026-12-24");
        assert_eq!(p.hours.open_time, "09:00");
        assert_eq!(p.hours.close_time, "17:00");
        assert_eq!(p.period.visits_start.to_string(), "2026-06-17");
        assert_eq!(p.period.contract_end.to_string(), "2027-01-08");
    }

    /// Issue 16 item 4: the shipped profile plays its demo announcements; a WAV the line
    /// cannot play stops the load with the option, the file and what is wrong.
    #[test]
    fn shipped_announcements_load_and_a_wrong_wav_is_named() {
        use crate::sip::media::AnnouncementKind;
        let p = Profile::load(Path::new(&profile_dir())).unwrap();
        for kind in AnnouncementKind::ALL {
            let a = p.announcements.get(kind).expect("shipped announcement");
            assert!(a.duration() > Duration::from_secs(2), "{kind:?}");
            let loudest = a.samples().iter().map(|s| s.unsigned_abs()).max();
            assert!(loudest > Some(8000), "{kind:?} is speech, not silence");
        }
        let d = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(Path::new(&profile_dir()).join("profile.toml"))
            .unwrap()
            .replace("announcements/holiday.wav", "holiday.mp3");
        std::fs::write(d.path().join("profile.toml"), text).unwrap();
        for f in ["towns.csv", "postcodes.csv"] {
            std::fs::copy(Path::new(&profile_dir()).join(f), d.path().join(f)).unwrap();
        }
        std::fs::create_dir(d.path().join("announcements")).unwrap();
        for f in ["closed.wav", "period-ended.wav"] {
            let a = Path::new("announcements").join(f);
            std::fs::copy(Path::new(&profile_dir()).join(&a), d.path().join(&a)).unwrap();
        }
        let e = Profile::load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("line.holiday_announcement") && e.contains("holiday.mp3: cannot be read"),
            "{e}"
        );
        std::fs::write(d.path().join("holiday.mp3"), b"ID3\x04not a wav").unwrap();
        let e = Profile::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("holiday.mp3: is not a WAV file"), "{e}");
        let text = std::fs::read_to_string(d.path().join("profile.toml"))
            .unwrap()
            .replace("max_announcements = 8", "max_announcements = 0");
        std::fs::write(d.path().join("profile.toml"), text).unwrap();
        let e = Profile::load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("line.max_announcements: must be between 1 and 1000"),
            "{e}"
        );
    }

    /// R-BOOK-3 a: the reference data ships in the profile; a broken file stops start-up
    /// with its name and line.
    #[test]
    fn the_profile_carries_the_town_list_and_a_broken_one_is_named() {
        let p = Profile::load(Path::new(&profile_dir())).unwrap();
        assert_eq!(p.gazetteer.towns().len(), 144);
        assert_eq!(p.address.prefecture_ja, "北海道");
        assert!(p.address.other_municipalities.iter().any(|m| m == "余市町"));
        let d = tempfile::tempdir().unwrap();
        for f in ["profile.toml", "towns.csv", "postcodes.csv"] {
            std::fs::copy(Path::new(&profile_dir()).join(f), d.path().join(f)).unwrap();
        }
        std::fs::create_dir(d.path().join("announcements")).unwrap();
        for f in ["closed.wav", "holiday.wav", "period-ended.wav"] {
            let a = Path::new("announcements").join(f);
            std::fs::copy(Path::new(&profile_dir()).join(&a), d.path().join(&a)).unwrap();
        }
        let towns = d.path().join("towns.csv");
        let text = std::fs::read_to_string(&towns).unwrap();
        std::fs::write(&towns, text.replacen("43.220970", "north", 1)).unwrap();
        let e = Profile::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("towns.csv: line 3: lat 'north'"), "{e}");
        std::fs::remove_file(d.path().join("postcodes.csv")).unwrap();
        let e = Profile::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("postcodes.csv: cannot read"), "{e}");
        let env = EnvOverrides {
            profile: Some(d.path().display().to_string()),
            ..env_with_profile()
        };
        let c = write(&d, "");
        let e = load(Some(&c), &env).unwrap_err().to_string();
        assert!(e.contains("postcodes.csv"), "{e}");
    }

    #[test]
    fn shipped_example_config_loads() {
        let example = format!("{}/madoguchi.example.toml", env!("CARGO_MANIFEST_DIR"));
        let c = load(Some(Path::new(&example)), &env_with_profile()).unwrap();
        assert_eq!(c.http_addr.to_string(), DEFAULT_HTTP_ADDR);
        assert_eq!(c.sip_addr.to_string(), DEFAULT_SIP_ADDR);
        assert_eq!(c.sip_max_tcp_connections, 1024);
        assert_eq!(c.sip_shutdown_grace, Duration::from_secs(30));
        // Every limit is listed there with its default.
        assert_eq!(c.sip.limits, SipLimits::default());
        let text = std::fs::read_to_string(&example).unwrap();
        let listed = serde_json::to_value(SipLimits::default()).unwrap();
        for (key, value) in listed.as_object().unwrap() {
            assert!(
                text.contains(&format!("\n{key} = {value}\n")),
                "madoguchi.example.toml lists {key} = {value}"
            );
        }
    }

    #[test]
    fn the_alarm_section_is_read_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let c = load(Some(&write(&d, "")), &env_with_profile()).unwrap();
        assert_eq!(c.alarm, AlarmConfig::default());
        assert!(c.alarm.enabled && c.alarm.mail_to.is_none());
        let p = write(
            &d,
            "[alarm]
silence_minutes = 20
no_phone = false
",
        );
        let c = load(Some(&p), &env_with_profile()).unwrap();
        assert_eq!(c.alarm.silence_minutes, 20);
        assert!(!c.alarm.no_phone);
        let p = write(
            &d,
            "[alarm]
mail_to = \"manager@example.jp\"
",
        );
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(
            e.contains("alarm.mail_to") && e.contains("smtp_host"),
            "{e}"
        );
    }

    #[test]
    fn the_sharing_section_is_read_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let c = load(Some(&write(&d, "")), &env_with_profile()).unwrap();
        assert!(!c.sharing.smtp_enabled(), "no SMTP: downloads");
        let p = write(
            &d,
            "[sharing]\nsmtp_host = \"smtp.example.jp\"\nfrom = \"madoguchi@example.jp\"\nsmtp_tls = \"tls\"\n",
        );
        let c = load(Some(&p), &env_with_profile()).unwrap();
        assert!(c.sharing.smtp_enabled());
        assert_eq!(c.sharing.port(), 465);
        let p = write(&d, "[sharing]\nsmtp_host = \"smtp.example.jp\"\n");
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(
            e.contains("madoguchi.toml: sharing.from: is required"),
            "{e}"
        );
        let p = write(&d, "[sharing]\nsmtp_tls = \"ssl\"\n");
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(e.contains("unknown variant `ssl`"), "{e}");
    }

    #[test]
    fn sip_limits_are_read_and_bounded() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            &d,
            "[sip]\nmax_server_transactions = 100\nsource_messages_per_sec = 5\n",
        );
        let c = load(Some(&p), &env_with_profile()).unwrap();
        assert_eq!(c.sip.limits.max_server_transactions, 100);
        assert_eq!(c.sip.limits.source_messages_per_sec, 5);
        let p = write(&d, "[sip]\nmax_server_transactions = 0\n");
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(
            e.contains("madoguchi.toml: sip.max_server_transactions"),
            "{e}"
        );
    }

    #[test]
    fn shutdown_grace_and_tcp_cap_are_bounded() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "[sip]\nshutdown_grace_secs = 3601\n");
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(e.contains("sip.shutdown_grace_secs"), "{e}");
        let p = write(&d, "[sip]\nmax_tcp_connections = 0\n");
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(e.contains("sip.max_tcp_connections"), "{e}");
        let p = write(&d, "[sip]\nshutdown_grace_secs = 0\n");
        let c = load(Some(&p), &env_with_profile()).unwrap();
        assert_eq!(c.sip_shutdown_grace, Duration::ZERO);
    }

    #[test]
    fn instance_id_defaults_to_host_and_port_and_is_checked() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "[sip]\naddr = \"127.0.0.1:5099\"\n");
        let c = load(Some(&p), &env_with_profile()).unwrap();
        assert!(c.instance_id.ends_with(":5099"), "{}", c.instance_id);
        let p = write(&d, "[sip]\ninstance_id = \"otaru-b\"\n");
        assert_eq!(
            load(Some(&p), &env_with_profile()).unwrap().instance_id,
            "otaru-b"
        );
        let p = write(&d, "[sip]\ninstance_id = \" \"\n");
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(e.contains("sip.instance_id"), "{e}");
        // '*' names the dead-line alarm's shared rows.
        let p = write(&d, "[sip]\ninstance_id = \"*\"\n");
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(
            e.contains("sip.instance_id") && e.contains("reserved"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "[http]\naddr = \"127.0.0.1:1\"\nport = 3\n");
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(e.contains("madoguchi.toml: line 3"), "{e}");
        assert!(e.contains("port"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn misspelt_sip_key_is_refused_and_wildcard_needs_an_advertised_address() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "[sip]\nt1_msec = 100\n");
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(e.contains("t1_msec"), "{e}");
        let p = write(&d, "[sip]\naddr = \"0.0.0.0:5060\"\n");
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(e.contains("sip.advertised_addr"), "{e}");
        let p = write(
            &d,
            "[sip]\naddr = \"0.0.0.0:5060\"\nadvertised_addr = \"192.0.2.10:5060\"\nt1_ms = 250\n",
        );
        let c = load(Some(&p), &env_with_own_passwords(&d)).unwrap();
        assert_eq!(c.sip_advertised.unwrap().to_string(), "192.0.2.10:5060");
        assert_eq!(c.sip.t1.as_millis(), 250);
    }

    /// The shipped sip-config with the demo phone passwords replaced.
    fn env_with_own_passwords(d: &tempfile::TempDir) -> EnvOverrides {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-config");
        let dir = d.path().join("sip-config");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(shipped.join("trunk.toml"), dir.join("trunk.toml")).unwrap();
        let phones = std::fs::read_to_string(shipped.join("phones.toml")).unwrap();
        std::fs::write(
            dir.join("phones.toml"),
            phones.replace("demo-password-", "Kq8v2LxWm4Tz9Rb-"),
        )
        .unwrap();
        EnvOverrides {
            sip_config: Some(dir.display().to_string()),
            ..env_with_profile()
        }
    }

    #[test]
    fn the_shipped_phone_passwords_are_refused_off_loopback() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            &d,
            "[sip]\naddr = \"0.0.0.0:5060\"\nadvertised_addr = \"192.0.2.10:5060\"\n",
        );
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(
            e.contains("phones.toml: phone.password: phone 'op1'") && e.contains("demo"),
            "{e}"
        );
        assert!(
            !e.contains("demo-password-op1"),
            "the password is not printed: {e}"
        );
        let p = write(&d, "[sip]\naddr = \"192.0.2.10:5060\"\n");
        assert!(load(Some(&p), &env_with_profile()).is_err());
        // On loopback (the demo set-up) they are fine; elsewhere with passwords of one's own.
        let p = write(&d, "[sip]\naddr = \"127.0.0.1:5060\"\n");
        assert!(load(Some(&p), &env_with_profile()).is_ok());
        let p = write(&d, "[sip]\naddr = \"192.0.2.10:5060\"\n");
        assert!(load(Some(&p), &env_with_own_passwords(&d)).is_ok());
    }

    #[test]
    fn bad_address_names_key() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "[sip]\naddr = \"localhost\"\n");
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(e.contains("sip.addr") && e.contains("'localhost'"), "{e}");
    }

    #[test]
    fn env_overrides_file_and_bad_env_is_named() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "[http]\naddr = \"127.0.0.1:9000\"\n");
        let mut env = env_with_profile();
        env.http_addr = Some("127.0.0.1:9100".into());
        assert_eq!(load(Some(&p), &env).unwrap().http_addr.port(), 9100);
        env.http_addr = Some("nonsense".into());
        let e = load(Some(&p), &env).unwrap_err().to_string();
        assert!(e.starts_with("MADOGUCHI_HTTP_ADDR"), "{e}");
    }

    #[test]
    fn missing_profile_is_named() {
        let env = EnvOverrides {
            profile: Some("/nonexistent/profile".into()),
            ..Default::default()
        };
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "");
        let e = load(Some(&p), &env).unwrap_err().to_string();
        assert!(
            e.contains("MADOGUCHI_PROFILE") && e.contains("/nonexistent/profile"),
            "{e}"
        );
    }

    #[test]
    fn out_of_range_auth_value_is_named() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "[auth]\nlockout_minutes = 0\n");
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(e.contains("auth.lockout_minutes"), "{e}");
    }

    #[test]
    fn database_url_password_is_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        let env = EnvOverrides {
            database_url: Some("mysql://u:secret@h/db".into()),
            ..env_with_profile()
        };
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "");
        let e = load(Some(&p), &env).unwrap_err().to_string();
        assert!(!e.contains("secret") && e.contains("DATABASE_URL"), "{e}");
    }

    /// Issue 16 item 6: `[http] trusted_proxies` takes addresses and networks; anything
    /// else stops start-up with the key named.
    #[test]
    fn trusted_proxies_parse_and_a_bad_entry_is_named() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            &d,
            "[http]\ntrusted_proxies = [\"127.0.0.1\", \"10.1.2.3/8\", \"::1\"]\n",
        );
        let c = load(Some(&p), &env_with_profile()).unwrap();
        let nets: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        let p = write(&d, "[http]\ntrusted_proxies = [\"nginx.local\"]\n");
        let e = load(Some(&p), &env_with_profile()).unwrap_err().to_string();
        assert!(
            e.contains("http.trusted_proxies") && e.contains("'nginx.local'"),
            "{e}"
        );
        let p = write(&d, "");
        assert!(load(Some(&p), &env_with_profile())
            .unwrap()
            .trusted_proxies
            .is_empty());
    }

    /// The production example in deploy/ has only known keys and valid proxy entries (its
    /// paths are the installed ones, so it is not loaded whole here).
    #[test]
    fn the_deploy_example_config_parses() {
        let p = format!("{}/deploy/madoguchi.toml", env!("CARGO_MANIFEST_DIR"));
        let file: FileConfig = read_toml(Path::new(&p)).unwrap();
        assert!(file.http.secure_cookies);
        assert_eq!(
            parse_trusted_proxies(&file.http.trusted_proxies, &p)
                .unwrap()
                .len(),
            2
        );
        validate_auth(&file.auth, &p).unwrap();
    }
}
