//! The registrar (RFC 3261 §10.3): operator phones REGISTER with digest authentication and
//! their bindings (contact, flow, expiry) are what an incoming call forks to.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};

use super::digest::{Algorithm, DigestError, DigestVerifier, PhoneSecret};
use super::settings::{PhoneSettings, RegistrarSettings, SipLimits};
use super::wire::{uri, SipMessage};

/// One registered contact of a phone.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding<F> {
    /// The phone's SIP username (its AOR user).
    pub aor: String,
    /// The contact URI, without header parameters.
    pub contact: String,
    /// How to reach it: the flow the REGISTER came over.
    pub flow: F,
    /// When it lapses.
    pub expires_at: DateTime<Utc>,
    /// The phone's User-Agent, for the dashboard.
    pub user_agent: Option<String>,
    /// The address the REGISTER came from (exempt from its phone's lock-out).
    source: IpAddr,
    /// RFC 5626 (`reg-id` on the Contact): reachable over the registering flow only.
    outbound: bool,
    /// The phone's `+sip.instance` (RFC 5626 §4.1), when it sends one: the same device
    /// whatever its contact.
    instance: Option<String>,
    /// Its `reg-id`, with `instance`.
    reg_id: Option<String>,
    call_id: String,
    cseq: u32,
}

/// A change to the binding timers the driver must make.
#[derive(Debug, Clone, PartialEq)]
pub enum BindingTimer {
    /// (Re-)arm the expiry of (aor, contact) at this instant.
    Arm(String, String, DateTime<Utc>),
    /// Forget it.
    Disarm(String, String),
}

crate::code_enum! {
    /// How a REGISTER ended, for the counters and the logs.
    pub enum RegisterOutcome: "register_outcome" {
        /// A contact was bound (or refreshed, or removed).
        Registered = "registered" / "登録",
        /// Asked for credentials (the normal first answer).
        Challenged = "challenged" / "認証要求",
        /// Wrong credentials or a replayed nonce count.
        Refused = "refused" / "認証失敗",
        /// The phone's operator account is disabled (403).
        Disabled = "disabled" / "利用者無効",
        /// The nonce was too old: asked again with stale=true.
        Stale = "stale" / "認証期限切れ",
        /// The request was malformed.
        BadRequest = "bad_request" / "不正な要求",
        /// An older CSeq than the binding's.
        OutOfOrder = "out_of_order" / "順序違い",
        /// An expiry below Min-Expires (423).
        TooBrief = "too_brief" / "登録期間不足",
        /// Refused (403) without a look at the credentials: too many failures lately.
        LockedOut = "locked_out" / "ロックアウト中",
    }
}

/// The result of one REGISTER.
#[derive(Debug)]
pub struct RegisterResult {
    /// The response to send.
    pub response: SipMessage,
    /// Timer changes.
    pub timers: Vec<BindingTimer>,
    /// For the log: who, and what happened (`registered`, `challenged`, `refused` …).
    pub summary: RegisterOutcome,
}

struct Phone {
    secret: PhoneSecret,
    algorithms: Vec<Algorithm>,
    operator: Option<String>,
}

/// Bindings and credentials of the operator phones.
pub struct Registrar<F> {
    settings: RegistrarSettings,
    verifier: DigestVerifier,
    phones: HashMap<String, Phone>,
    bindings: HashMap<String, Vec<Binding<F>>>,
    /// Bindings other instances hold (shared through the database), by (instance, aor): rung
    /// like ours, but neither stored nor expired by us.
    remote: HashMap<(String, String), Vec<Binding<F>>>,
    /// Operator accounts that are disabled: their phones may not register.
    disabled_operators: HashSet<String>,
    lockouts: Lockouts,
}

/// Source addresses (and usernames) whose failures are tracked at once; when more fail
/// (spoofed UDP sources), the new ones are limited by the other table only.
const MAX_TRACKED: usize = 10_000;
/// Warnings about failed or locked-out REGISTERs logged per minute; the rest are counted.
const WARNINGS_PER_MINUTE: u32 = 10;

/// Failed attempts in the current window, and the lock-out they led to.
#[derive(Debug, Clone)]
struct Tally {
    since: DateTime<Utc>,
    failures: u32,
    locked_until: Option<DateTime<Utc>>,
}

/// Failed digest attempts by source address and by username, and the lock-outs they cause: a
/// guesser gets `register_max_failures` tries per window from one address, and a username is
/// locked after `register_max_failures_per_user` from anywhere (except from where its phone is
/// registered, so a guesser cannot take a working phone off the line).
#[derive(Debug)]
struct Lockouts {
    max_per_source: u32,
    max_per_user: u32,
    window: Duration,
    lockout: Duration,
    sources: HashMap<IpAddr, Tally>,
    users: HashMap<String, Tally>,
    /// (minute, warnings logged in it, warnings left out).
    logged: (i64, u32, u64),
}

impl Tally {
    fn new(now: DateTime<Utc>) -> Self {
        Self {
            since: now,
            failures: 0,
            locked_until: None,
        }
    }
}

/// What one more failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Counted.
    Counted,
    /// Counted, and locked the source or the phone out.
    Locked,
}

impl Lockouts {
    fn new(limits: &SipLimits) -> Self {
        let secs = |s: u64| Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000));
        Self {
            max_per_source: limits.register_max_failures,
            max_per_user: limits.register_max_failures_per_user,
            window: secs(limits.register_failure_window_secs),
            lockout: secs(limits.register_lockout_secs),
            sources: HashMap::new(),
            users: HashMap::new(),
            logged: (0, 0, 0),
        }
    }

    fn is_locked(tally: Option<&Tally>, now: DateTime<Utc>) -> bool {
        tally.and_then(|t| t.locked_until).is_some_and(|u| u > now)
    }

    /// Whether a REGISTER from `source` for `user` is refused unread; `registered_there`
    /// exempts a phone's own address from the phone's lock-out.
    fn locked(
        &self,
        source: IpAddr,
        user: &str,
        registered_there: bool,
        now: DateTime<Utc>,
    ) -> bool {
        Self::is_locked(self.sources.get(&source), now)
            || (!registered_there && Self::is_locked(self.users.get(user), now))
    }

    /// Counts one failed attempt from `source` for `user`. Unknown usernames are counted like
    /// phones', so a lock-out does not tell a guesser which names exist.
    fn failed(&mut self, source: IpAddr, user: &str, now: DateTime<Utc>) -> Failure {
        let (window, lockout) = (self.window, self.lockout);
        let mut locked = false;
        if Self::make_room(&mut self.sources, &source, window, now) {
            let t = self
                .sources
                .entry(source)
                .or_insert_with(|| Tally::new(now));
            locked |= Self::count(t, self.max_per_source, window, lockout, now);
        }
        let user = user.to_string();
        if Self::make_room(&mut self.users, &user, window, now) {
            let t = self.users.entry(user).or_insert_with(|| Tally::new(now));
            locked |= Self::count(t, self.max_per_user, window, lockout, now);
        }
        if locked {
            Failure::Locked
        } else {
            Failure::Counted
        }
    }

    /// One more failure on `t`; `true` if it locks.
    fn count(
        t: &mut Tally,
        max: u32,
        window: Duration,
        lockout: Duration,
        now: DateTime<Utc>,
    ) -> bool {
        if now - t.since > window {
            t.since = now;
            t.failures = 0;
        }
        t.failures += 1;
        if t.failures >= max {
            t.locked_until = Some(now + lockout);
            t.since = now;
            t.failures = 0;
            return true;
        }
        false
    }

    /// A success from `source` forgives its earlier failures (a phone with a typo fixed).
    fn succeeded(&mut self, source: IpAddr, now: DateTime<Utc>) {
        if !Self::is_locked(self.sources.get(&source), now) {
            self.sources.remove(&source);
        }
    }

    /// Whether `key` is or can be tracked in `table`: when it is full, entries whose window
    /// and lock-out are over are forgotten first.
    fn make_room<K: std::hash::Hash + Eq>(
        table: &mut HashMap<K, Tally>,
        key: &K,
        window: Duration,
        now: DateTime<Utc>,
    ) -> bool {
        if table.contains_key(key) || table.len() < MAX_TRACKED {
            return true;
        }
        table.retain(|_, t| now - t.since <= window || t.locked_until.is_some_and(|u| u > now));
        table.len() < MAX_TRACKED
    }

    /// Whether a warning may be logged now; `Some(left out since the last one)` if so.
    fn may_warn(&mut self, now: DateTime<Utc>) -> Option<u64> {
        let minute = now.timestamp() / 60;
        if self.logged.0 != minute {
            self.logged.0 = minute;
            self.logged.1 = 0;
        }
        if self.logged.1 < WARNINGS_PER_MINUTE {
            self.logged.1 += 1;
            Some(std::mem::take(&mut self.logged.2))
        } else {
            self.logged.2 += 1;
            None
        }
    }
}

/// Splits a header row at top-level commas (not inside quotes or `<>`).
pub fn split_list(value: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut angle, mut esc) =
        (Vec::new(), String::new(), false, false, false);
    for c in value.chars() {
        if esc {
            esc = false;
        } else if quoted && c == '\\' {
            esc = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c == '<' {
            angle = true;
        } else if !quoted && c == '>' {
            angle = false;
        } else if !quoted && !angle && c == ',' {
            out.push(std::mem::take(&mut cur).trim().to_string());
            continue;
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The header parameters of a name-addr (after the `>` that closes the URI), e.g. `expires`.
fn header_param(value: &str, name: &str) -> Option<String> {
    // The first `<` outside a quoted display name opens the URI, the next `>` closes it; a
    // later `>` may be inside a parameter (`+sip.instance="<urn:uuid:…>"`).
    let mut quoted = false;
    let mut open = None;
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => {
                open = Some(i);
                break;
            }
            _ => {}
        }
    }
    let tail = match open.and_then(|o| value[o..].find('>').map(|c| o + c)) {
        Some(i) => &value[i + 1..],
        None => value.split_once(';').map(|(_, t)| t).unwrap_or(""),
    };
    tail.split(';').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Whether a new contact (with these `+sip.instance` and `reg-id`, registered in the REGISTER
/// dialog `call_id`) is the same phone as the bound `old` one, and so replaces it:
/// - the same instance (and reg-id): RFC 5626 §6 step 3, RFC 5627 §4.1;
/// - otherwise the same REGISTER Call-ID: RFC 3261 §10.2.4 keeps it for a UA's boot cycle, so
///   a new contact in it is the same UA moved (a NAT binding or its SIP stack changed its
///   port or address). Contacts named together in one REGISTER stay together.
///
/// The source address alone decides nothing: phones behind one NAT or SBC share it. A phone
/// rebooted with a new Call-ID, a new contact and no instance is not caught: its old binding
/// lapses at its expiry.
fn replaces<F>(
    old: &Binding<F>,
    instance: &Option<String>,
    reg_id: &Option<String>,
    call_id: &str,
) -> bool {
    if let (Some(new), Some(was)) = (instance, &old.instance) {
        return new == was && reg_id == &old.reg_id;
    }
    !call_id.is_empty() && old.call_id == call_id
}

fn unix(now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp()).unwrap_or(0)
}

impl<F: Clone + PartialEq> Registrar<F> {
    /// A registrar for `phones` under `settings`, locking out password guessers as `limits`
    /// say.
    pub fn new(
        settings: &RegistrarSettings,
        phones: &[PhoneSettings],
        limits: &SipLimits,
    ) -> Result<Self, String> {
        let verifier = DigestVerifier::new(settings.realm.clone())
            .map_err(|e| e.to_string())?
            .with_nonce_lifetime(settings.nonce_lifetime_secs);
        let mut map = HashMap::new();
        for p in phones {
            let algorithms: Vec<Algorithm> = p
                .algorithms
                .iter()
                .filter_map(|a| Algorithm::parse(Some(a)))
                .collect();
            map.insert(
                p.username.clone(),
                Phone {
                    secret: PhoneSecret::password(p.password.clone(), &algorithms),
                    algorithms,
                    operator: p.operator.clone(),
                },
            );
        }
        Ok(Self {
            settings: settings.clone(),
            verifier,
            phones: map,
            bindings: HashMap::new(),
            remote: HashMap::new(),
            disabled_operators: HashSet::new(),
            lockouts: Lockouts::new(limits),
        })
    }

    /// The operator account of a phone.
    pub fn operator_of(&self, aor: &str) -> Option<&str> {
        self.phones.get(aor).and_then(|p| p.operator.as_deref())
    }

    /// Marks operator accounts disabled: the bindings of their phones (phones.toml's
    /// `operator`) go at once, and their REGISTERs are refused from now on. Returns the
    /// timers to disarm.
    pub fn disable_operators(
        &mut self,
        names: impl IntoIterator<Item = String>,
    ) -> Vec<BindingTimer> {
        self.disabled_operators.extend(names);
        let gone: Vec<String> = self
            .bindings
            .keys()
            .filter(|aor| self.operator_disabled(aor))
            .cloned()
            .collect();
        gone.iter()
            .filter_map(|aor| self.bindings.remove(aor))
            .flatten()
            .map(|b| BindingTimer::Disarm(b.aor, b.contact))
            .collect()
    }

    /// Whether the phone `aor` belongs to a disabled operator account.
    fn operator_disabled(&self, aor: &str) -> bool {
        self.operator_of(aor)
            .is_some_and(|op| self.disabled_operators.contains(op))
    }

    /// Live bindings, all phones.
    pub fn targets(&self, now: DateTime<Utc>) -> Vec<Binding<F>> {
        let mut v: Vec<Binding<F>> = self
            .bindings
            .values()
            .flatten()
            .filter(|b| b.expires_at > now)
            .cloned()
            .collect();
        // Another instance's binding of a contact we hold ourselves is the same phone: ring it
        // once, over our own flow. Disabled operators' phones are not rung from anywhere.
        let remote: Vec<Binding<F>> = self
            .remote
            .values()
            .flatten()
            .filter(|b| b.expires_at > now && !self.operator_disabled(&b.aor))
            .filter(|b| !v.iter().any(|l| l.aor == b.aor && l.contact == b.contact))
            .cloned()
            .collect();
        for b in remote {
            if !v.iter().any(|l| l.aor == b.aor && l.contact == b.contact) {
                v.push(b);
            }
        }
        v.sort_by(|a, b| a.aor.cmp(&b.aor).then(a.contact.cmp(&b.contact)));
        v
    }

    /// Number of bindings held (expired ones included until their timer fires).
    pub fn len(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    /// Whether no binding is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Source addresses phones registered from (they may send in-dialog INVITEs).
    pub fn phone_ips(&self, ip_of: impl Fn(&F) -> IpAddr) -> Vec<IpAddr> {
        self.bindings
            .values()
            .chain(self.remote.values())
            .flatten()
            .map(|b| ip_of(&b.flow))
            .collect()
    }

    /// How the phone `aor` is bound: the flows its bindings were registered over.
    pub fn flows_of(&self, aor: &str) -> Vec<F> {
        self.bindings
            .get(aor)
            .map(|l| l.iter().map(|b| b.flow.clone()).collect())
            .unwrap_or_default()
    }

    /// Drops a binding whose expiry fired; `true` if one went.
    pub fn expire(&mut self, aor: &str, contact: &str, now: DateTime<Utc>) -> bool {
        let Some(list) = self.bindings.get_mut(aor) else {
            return false;
        };
        let before = list.len();
        list.retain(|b| !(b.contact == contact && b.expires_at <= now));
        let gone = list.len() != before;
        if list.is_empty() {
            self.bindings.remove(aor);
        }
        gone
    }

    /// A flow closed (or could not be opened): a binding over it that `reach` can reach
    /// otherwise, at its Contact (RFC 3261 §18.1.1), is kept and re-pointed there; the others
    /// (RFC 5626 outbound ones, or no other way) go. Returns the timers to disarm.
    pub fn flow_closed(
        &mut self,
        dead: impl Fn(&F) -> bool,
        reach: impl Fn(&F, &str) -> Option<F>,
    ) -> Vec<BindingTimer> {
        let mut timers = Vec::new();
        for list in self.bindings.values_mut() {
            list.retain_mut(|b| {
                if !dead(&b.flow) {
                    return true;
                }
                let other = (!b.outbound).then(|| reach(&b.flow, &b.contact)).flatten();
                match other {
                    Some(f) => {
                        b.flow = f;
                        true
                    }
                    None => {
                        timers.push(BindingTimer::Disarm(b.aor.clone(), b.contact.clone()));
                        false
                    }
                }
            });
        }
        self.bindings.retain(|_, l| !l.is_empty());
        timers
    }

    fn challenge(
        &self,
        req: &SipMessage,
        algorithms: &[Algorithm],
        stale: bool,
        now: DateTime<Utc>,
    ) -> SipMessage {
        let mut r =
            SipMessage::response_to(req, 401, "Unauthorized", Some(&super::wire::new_tag()));
        for c in self.verifier.challenges(algorithms, stale, unix(now)) {
            let _ = r.add_header("WWW-Authenticate", &c);
        }
        r
    }

    /// Handles one REGISTER that arrived over `flow` from address `source`.
    pub fn register(
        &mut self,
        req: &SipMessage,
        flow: F,
        source: IpAddr,
        now: DateTime<Utc>,
    ) -> RegisterResult {
        let reply = |status: u16, reason: &str| {
            SipMessage::response_to(req, status, reason, Some(&super::wire::new_tag()))
        };
        let Some(aor) = req.header("To").and_then(|t| uri::user_part(&t)) else {
            return RegisterResult {
                response: reply(400, "Bad To"),
                timers: vec![],
                summary: RegisterOutcome::BadRequest,
            };
        };
        // Only a configured phone's name is tracked or logged: what a guesser types as a
        // username could be anything (a password, a number).
        let phone = self.phones.contains_key(&aor).then_some(aor.as_str());
        let registered_there = self
            .bindings
            .get(&aor)
            .is_some_and(|l| l.iter().any(|b| b.source == source));
        if self.lockouts.locked(source, &aor, registered_there, now) {
            if let Some(left_out) = self.lockouts.may_warn(now) {
                tracing::warn!(%source, phone = phone.unwrap_or("(not a phone)"), left_out, "REGISTER refused: locked out after repeated failures");
            }
            return RegisterResult {
                response: reply(403, "Forbidden"),
                timers: vec![],
                summary: RegisterOutcome::LockedOut,
            };
        }
        // Unknown usernames are challenged exactly like known ones: nothing to enumerate.
        let offered: Vec<Algorithm> = self
            .phones
            .get(&aor)
            .map(|p| p.algorithms.clone())
            .unwrap_or_else(|| vec![Algorithm::Sha256, Algorithm::Md5]);
        let auth = req.headers_all("Authorization");
        let Some(auth) = auth
            .iter()
            .find(|a| a.to_ascii_lowercase().contains("username"))
        else {
            return RegisterResult {
                response: self.challenge(req, &offered, false, now),
                timers: vec![],
                summary: RegisterOutcome::Challenged,
            };
        };
        let phones = &self.phones;
        let verified = self.verifier.verify(
            auth,
            "REGISTER",
            |u| phones.get(u).map(|p| p.secret.clone()),
            unix(now),
        );
        match verified {
            // Authenticated, but no longer allowed: the account behind the phone is disabled.
            Ok(v) if v.username == aor && self.operator_disabled(&aor) => {
                return RegisterResult {
                    response: reply(403, "Forbidden"),
                    timers: vec![],
                    summary: RegisterOutcome::Disabled,
                }
            }
            Ok(v) if v.username == aor => self.lockouts.succeeded(source, now),
            Ok(_) => {
                self.failed(source, &aor, phone.is_some(), now);
                return RegisterResult {
                    response: reply(403, "Forbidden"),
                    timers: vec![],
                    summary: RegisterOutcome::Refused,
                };
            }
            Err(DigestError::Stale) => {
                return RegisterResult {
                    response: self.challenge(req, &offered, true, now),
                    timers: vec![],
                    summary: RegisterOutcome::Stale,
                }
            }
            Err(DigestError::Malformed(_)) => {
                return RegisterResult {
                    response: reply(400, "Bad Authorization"),
                    timers: vec![],
                    summary: RegisterOutcome::BadRequest,
                }
            }
            Err(_) => {
                self.failed(source, &aor, phone.is_some(), now);
                return RegisterResult {
                    response: self.challenge(req, &offered, false, now),
                    timers: vec![],
                    summary: RegisterOutcome::Refused,
                };
            }
        }
        self.apply_bindings(req, &aor, flow, source, now)
    }

    /// Counts a failed attempt for `user` and warns about it (a few a minute; never the
    /// credentials, and the username only if it is a phone's).
    fn failed(&mut self, source: IpAddr, user: &str, known: bool, now: DateTime<Utc>) {
        let what = self.lockouts.failed(source, user, now);
        if let Some(left_out) = self.lockouts.may_warn(now) {
            let phone = if known { user } else { "(not a phone)" };
            match what {
                Failure::Locked => {
                    tracing::warn!(%source, phone, left_out, "REGISTER failures: source or phone locked out")
                }
                Failure::Counted => {
                    tracing::warn!(%source, phone, left_out, "REGISTER with wrong credentials")
                }
            }
        }
    }

    fn apply_bindings(
        &mut self,
        req: &SipMessage,
        aor: &str,
        flow: F,
        source: IpAddr,
        now: DateTime<Utc>,
    ) -> RegisterResult {
        let reply = |status: u16, reason: &str| {
            SipMessage::response_to(req, status, reason, Some(&super::wire::new_tag()))
        };
        let call_id = req.call_id().unwrap_or_default();
        let cseq = req.cseq().map(|c| c.0).unwrap_or(0);
        let expires_header: Option<u32> = match req.header("Expires") {
            Some(v) => match v.trim().parse() {
                Ok(n) => Some(n),
                Err(_) => {
                    return RegisterResult {
                        response: reply(400, "Bad Expires"),
                        timers: vec![],
                        summary: RegisterOutcome::BadRequest,
                    }
                }
            },
            None => None,
        };
        let contacts: Vec<String> = req
            .headers_all("Contact")
            .iter()
            .flat_map(|v| split_list(v))
            .collect();
        let mut timers = Vec::new();
        let list = self.bindings.entry(aor.to_string()).or_default();
        // RFC 3261 §10.3 step 7: an older request of the same Call-ID must not undo a newer one.
        if list
            .iter()
            .any(|b| b.call_id == call_id && b.cseq >= cseq && !contacts.is_empty())
        {
            return RegisterResult {
                response: reply(500, "Out of Order"),
                timers,
                summary: RegisterOutcome::OutOfOrder,
            };
        }
        if contacts.iter().any(|c| c.trim() == "*") {
            if contacts.len() != 1 || expires_header != Some(0) {
                return RegisterResult {
                    response: reply(400, "Invalid Wildcard"),
                    timers,
                    summary: RegisterOutcome::BadRequest,
                };
            }
            for b in list.drain(..) {
                timers.push(BindingTimer::Disarm(b.aor, b.contact));
            }
        }
        let mut changes = Vec::new();
        for c in contacts.iter().filter(|c| c.trim() != "*") {
            let Some(u) = uri::name_addr_uri(c) else {
                return RegisterResult {
                    response: reply(400, "Bad Contact"),
                    timers,
                    summary: RegisterOutcome::BadRequest,
                };
            };
            let expires = match header_param(c, "expires") {
                Some(e) => match e.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => {
                        return RegisterResult {
                            response: reply(400, "Bad Contact expires"),
                            timers,
                            summary: RegisterOutcome::BadRequest,
                        }
                    }
                },
                None => expires_header.unwrap_or(self.settings.default_expires),
            };
            if expires != 0 && expires < self.settings.min_expires {
                let mut r = reply(423, "Interval Too Brief");
                let _ = r.add_header("Min-Expires", &self.settings.min_expires.to_string());
                return RegisterResult {
                    response: r,
                    timers,
                    summary: RegisterOutcome::TooBrief,
                };
            }
            let reg_id = header_param(c, "reg-id");
            changes.push((
                u.to_string(),
                expires.min(self.settings.max_expires),
                reg_id,
                header_param(c, "+sip.instance"),
            ));
        }
        let named: HashSet<String> = changes.iter().map(|c| c.0.clone()).collect();
        for (contact, expires, reg_id, instance) in changes {
            list.retain(|b| b.contact != contact);
            if expires == 0 {
                timers.push(BindingTimer::Disarm(aor.to_string(), contact));
                continue;
            }
            // A new contact of a phone that is already bound replaces its old one: a phone
            // rebooted or moved to another port must not be rung twice, nor shown twice.
            let mut replaced = Vec::new();
            list.retain(|b| {
                let same = !named.contains(&b.contact) && replaces(b, &instance, &reg_id, &call_id);
                if same {
                    replaced.push(b.contact.clone());
                }
                !same
            });
            for old in replaced {
                timers.push(BindingTimer::Disarm(aor.to_string(), old));
            }
            let expires_at = now + Duration::seconds(i64::from(expires));
            timers.push(BindingTimer::Arm(
                aor.to_string(),
                contact.clone(),
                expires_at,
            ));
            list.push(Binding {
                aor: aor.to_string(),
                contact,
                flow: flow.clone(),
                expires_at,
                user_agent: req
                    .header("User-Agent")
                    .map(|u| u.chars().take(100).collect()),
                source,
                outbound: reg_id.is_some(),
                instance,
                reg_id,
                call_id: call_id.clone(),
                cseq,
            });
        }
        let mut ok = reply(200, "OK");
        for b in list.iter() {
            let left = (b.expires_at - now).num_seconds().max(0);
            let _ = ok.add_header("Contact", &format!("<{}>;expires={left}", b.contact));
        }
        let _ = ok.add_header("Date", &now.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
        if list.is_empty() {
            self.bindings.remove(aor);
        }
        RegisterResult {
            response: ok,
            timers,
            summary: RegisterOutcome::Registered,
        }
    }
}

/// A binding as it is stored in the database and shared with the other instances: what it
/// takes to ring the phone again after a restart, or from another instance.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedBinding {
    /// The phone's SIP username.
    pub aor: String,
    /// The contact URI.
    pub contact: String,
    /// `udp` or `tcp`: the transport the REGISTER came over.
    pub transport: String,
    /// The address the REGISTER came from (where a UDP phone is reached, NAT included).
    pub source: std::net::SocketAddr,
    /// RFC 5626 outbound: reachable over the registering flow only.
    pub outbound: bool,
    /// When it lapses.
    pub expires_at: DateTime<Utc>,
    /// The phone's User-Agent.
    pub user_agent: Option<String>,
    /// The REGISTER's Call-ID and CSeq (RFC 3261 §10.3 step 7 after a restart).
    pub call_id: String,
    /// See `call_id`.
    pub cseq: u32,
    /// The phone's `+sip.instance` (RFC 5626), if it sent one: a later registration of the
    /// same instance replaces this binding, whatever its flow.
    #[serde(default)]
    pub instance: Option<String>,
    /// Its `reg-id`, with `instance`.
    #[serde(default)]
    pub reg_id: Option<String>,
}

impl<F: Clone + PartialEq> Registrar<F> {
    /// Our own bindings of `aor` as they are to be stored (none: the phone has none left).
    pub fn saved(
        &self,
        aor: &str,
        wire: impl Fn(&F) -> (String, std::net::SocketAddr),
    ) -> Vec<SavedBinding> {
        self.bindings
            .get(aor)
            .map(|l| {
                l.iter()
                    .map(|b| {
                        let (transport, source) = wire(&b.flow);
                        SavedBinding {
                            aor: b.aor.clone(),
                            contact: b.contact.clone(),
                            transport,
                            source,
                            outbound: b.outbound,
                            expires_at: b.expires_at,
                            user_agent: b.user_agent.clone(),
                            call_id: b.call_id.clone(),
                            cseq: b.cseq,
                            instance: b.instance.clone(),
                            reg_id: b.reg_id.clone(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn from_saved(b: SavedBinding, flow: F) -> Binding<F> {
        Binding {
            aor: b.aor,
            contact: b.contact,
            flow,
            expires_at: b.expires_at,
            user_agent: b.user_agent,
            source: b.source.ip(),
            outbound: b.outbound,
            instance: b.instance,
            reg_id: b.reg_id,
            call_id: b.call_id,
            cseq: b.cseq,
        }
    }

    /// Takes back one of our own bindings stored before a restart (a phone that is not
    /// configured any more, or whose operator is disabled, or that lapsed, is left out).
    /// Returns the expiry timer to arm.
    pub fn restore(
        &mut self,
        b: SavedBinding,
        flow: F,
        now: DateTime<Utc>,
    ) -> Option<BindingTimer> {
        if b.expires_at <= now
            || !self.phones.contains_key(&b.aor)
            || self.operator_disabled(&b.aor)
        {
            return None;
        }
        let list = self.bindings.entry(b.aor.clone()).or_default();
        if list.iter().any(|l| l.contact == b.contact) {
            return None;
        }
        let timer = BindingTimer::Arm(b.aor.clone(), b.contact.clone(), b.expires_at);
        list.push(Self::from_saved(b, flow));
        Some(timer)
    }

    /// Another instance's bindings of `aor` are now these (empty: none left); lapsed ones and
    /// phones not configured here are left out.
    pub fn set_remote(
        &mut self,
        instance: &str,
        aor: &str,
        list: Vec<(SavedBinding, F)>,
        now: DateTime<Utc>,
    ) {
        let key = (instance.to_string(), aor.to_string());
        let list: Vec<Binding<F>> = list
            .into_iter()
            .filter(|(b, _)| b.aor == aor && b.expires_at > now && self.phones.contains_key(aor))
            .map(|(b, f)| Self::from_saved(b, f))
            .collect();
        // Lapsed bindings of other instances go whenever something changes.
        self.remote
            .retain(|_, l| l.iter().any(|b| b.expires_at > now));
        if list.is_empty() {
            self.remote.remove(&key);
        } else {
            self.remote.insert(key, list);
        }
    }

    /// Bindings other instances hold for us to ring.
    pub fn remote_len(&self) -> usize {
        self.remote.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_outside_quotes_and_brackets() {
        assert_eq!(
            split_list(r#""A, B" <sip:a@h;x=1,2>;expires=60, <sip:b@h>"#),
            vec![
                r#""A, B" <sip:a@h;x=1,2>;expires=60"#.to_string(),
                "<sip:b@h>".to_string()
            ]
        );
        assert_eq!(split_list("*"), vec!["*".to_string()]);
    }

    fn lockouts() -> Lockouts {
        Lockouts::new(&SipLimits {
            register_max_failures: 3,
            register_max_failures_per_user: 5,
            register_failure_window_secs: 600,
            register_lockout_secs: 900,
            ..SipLimits::default()
        })
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn failures_from_one_source_lock_it_out_for_a_while() {
        let t0 = Utc::now();
        let mut l = lockouts();
        assert_eq!(l.failed(ip(1), "op1", t0), Failure::Counted);
        assert_eq!(l.failed(ip(1), "op2", t0), Failure::Counted);
        assert!(!l.locked(ip(1), "op1", false, t0));
        assert_eq!(l.failed(ip(1), "op1", t0), Failure::Locked);
        assert!(l.locked(ip(1), "op3", false, t0), "every name from there");
        assert!(!l.locked(ip(2), "op1", false, t0), "not the phone yet");
        let later = t0 + Duration::seconds(901);
        assert!(!l.locked(ip(1), "op1", false, later), "the lock-out ends");
        // Failures spread beyond the window do not add up.
        let mut l = lockouts();
        for i in 0..6 {
            let t = t0 + Duration::seconds(601 * i);
            assert_eq!(l.failed(ip(1), "op1", t), Failure::Counted);
        }
    }

    #[test]
    fn failures_from_many_sources_lock_the_phone_but_not_where_it_is_registered() {
        let t0 = Utc::now();
        let mut l = lockouts();
        for n in 1..=4 {
            assert_eq!(l.failed(ip(n), "op1", t0), Failure::Counted);
        }
        assert_eq!(l.failed(ip(5), "op1", t0), Failure::Locked);
        assert!(l.locked(ip(9), "op1", false, t0), "op1 from a new address");
        assert!(
            !l.locked(ip(9), "op1", true, t0),
            "op1 from where it is registered"
        );
        assert!(!l.locked(ip(9), "op2", false, t0), "another phone");
        // A name that is no phone is counted alike: a lock-out reveals nothing.
        for n in 10..15 {
            l.failed(ip(n), "nobody", t0);
        }
        assert!(l.locked(ip(9), "nobody", false, t0));
    }

    #[test]
    fn the_tables_are_bounded() {
        let t0 = Utc::now();
        let mut l = lockouts();
        for i in 0..MAX_TRACKED as u32 + 50 {
            l.failed(IpAddr::from(i.to_be_bytes()), &format!("u{i}"), t0);
        }
        assert_eq!(l.sources.len(), MAX_TRACKED);
        assert_eq!(l.users.len(), MAX_TRACKED);
        // Once their window is over, old entries make room.
        let later = t0 + Duration::seconds(601);
        l.failed(ip(200), "late", later);
        assert_eq!((l.sources.len(), l.users.len()), (1, 1));
    }

    fn registrar() -> Registrar<u8> {
        let phone = |u: &str, op: &str| PhoneSettings {
            username: u.into(),
            password: "pw".into(),
            algorithms: vec!["MD5".into()],
            operator: Some(op.into()),
        };
        Registrar::new(
            &RegistrarSettings::default(),
            &[phone("ph1", "op1"), phone("ph2", "op2")],
            &SipLimits::default(),
        )
        .unwrap()
    }

    fn saved(aor: &str, contact: &str, expires_at: DateTime<Utc>) -> SavedBinding {
        SavedBinding {
            aor: aor.into(),
            contact: contact.into(),
            transport: "udp".into(),
            source: "192.0.2.1:5060".parse().unwrap(),
            outbound: false,
            expires_at,
            user_agent: None,
            call_id: "c".into(),
            cseq: 1,
            instance: None,
            reg_id: None,
        }
    }

    #[test]
    fn restored_bindings_ring_until_they_lapse_and_unknown_phones_are_left_out() {
        let now = Utc::now();
        let mut r = registrar();
        let later = now + Duration::seconds(600);
        assert!(r
            .restore(saved("ph1", "sip:ph1@192.0.2.1", later), 1, now)
            .is_some());
        assert!(
            r.restore(saved("ph9", "sip:ph9@192.0.2.1", later), 1, now)
                .is_none(),
            "not a configured phone"
        );
        assert!(
            r.restore(saved("ph2", "sip:ph2@192.0.2.1", now), 1, now)
                .is_none(),
            "lapsed"
        );
        assert_eq!(r.targets(now).len(), 1);
        assert_eq!(
            r.saved("ph1", |_| ("udp".into(), "192.0.2.1:5060".parse().unwrap()))[0].expires_at,
            later
        );
        r.disable_operators(["op1".to_string()]);
        assert!(
            r.targets(now).is_empty(),
            "a disabled operator's phone goes"
        );
    }

    #[test]
    fn another_instances_binding_rings_once_and_goes_when_it_says_so() {
        let now = Utc::now();
        let mut r = registrar();
        let later = now + Duration::seconds(600);
        r.set_remote(
            "b",
            "ph2",
            vec![(saved("ph2", "sip:ph2@192.0.2.2", later), 7)],
            now,
        );
        assert_eq!(r.targets(now).len(), 1);
        assert_eq!(r.len(), 0, "not ours: neither stored nor expired by us");
        assert!(r.phone_ips(|_| ip(2)).contains(&ip(2)));
        // The same contact bound here too: rung once, over our flow.
        r.restore(saved("ph2", "sip:ph2@192.0.2.2", later), 1, now);
        let t = r.targets(now);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].flow, 1);
        r.set_remote("b", "ph2", vec![], now);
        assert_eq!(r.remote_len(), 0);
        assert!(r.targets(now + Duration::seconds(601)).is_empty());
    }

    /// A REGISTER of ph1 binding `contact` (a full Contact header value).
    fn register_of(contact: &str, call_id: &str, cseq: u32) -> SipMessage {
        let text = format!(
            "REGISTER sip:example.jp SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{call_id}{cseq}\r\n\
             From: <sip:ph1@example.jp>;tag=1\r\n\
             To: <sip:ph1@example.jp>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: {contact}\r\n\
             Expires: 600\r\n\
             Content-Length: 0\r\n\r\n"
        );
        SipMessage::parse_datagram(text.as_bytes()).unwrap()
    }

    /// Binds `contact` for ph1 as a REGISTER in dialog `call_id` over flow `flow` (from the
    /// address `ip(flow)`) would.
    fn bind(
        r: &mut Registrar<u8>,
        contact: &str,
        call_id: &str,
        flow: u8,
        now: DateTime<Utc>,
    ) -> RegisterResult {
        r.apply_bindings(
            &register_of(contact, call_id, 1),
            "ph1",
            flow,
            ip(flow),
            now,
        )
    }

    fn contacts(r: &Registrar<u8>, now: DateTime<Utc>) -> Vec<(String, u8)> {
        r.targets(now)
            .into_iter()
            .map(|b| (b.contact, b.flow))
            .collect()
    }

    #[test]
    fn a_phone_on_a_new_port_replaces_its_old_binding() {
        // Issue 18 item 5: the same REGISTER dialog (Call-ID) from a new port is the same
        // phone; the old contact is neither rung nor shown, and its timer goes.
        let now = Utc::now();
        let mut r = registrar();
        let first = bind(&mut r, "<sip:ph1@192.0.2.1:5060>", "boot1", 1, now);
        assert_eq!(first.response.status(), Some(200));
        let moved = r.apply_bindings(
            &register_of("<sip:ph1@192.0.2.1:5072>", "boot1", 2),
            "ph1",
            2,
            ip(1),
            now,
        );
        assert_eq!(
            contacts(&r, now),
            vec![("sip:ph1@192.0.2.1:5072".to_string(), 2)]
        );
        assert!(moved.timers.contains(&BindingTimer::Disarm(
            "ph1".into(),
            "sip:ph1@192.0.2.1:5060".into()
        )));
        // Another device of the same account (its own Call-ID) is kept beside it, even from
        // the same address and port (phones behind one NAT or SBC share them).
        bind(&mut r, "<sip:ph1@192.0.2.7:5060>", "desk2", 2, now);
        assert_eq!(contacts(&r, now).len(), 2);
    }

    #[test]
    fn the_same_instance_replaces_and_two_contacts_in_one_register_stay() {
        let now = Utc::now();
        let mut r = registrar();
        let inst = |c: &str, reg: u8| {
            format!("<{c}>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000000000001>\";reg-id={reg}")
        };
        bind(&mut r, &inst("sip:ph1@192.0.2.1:5060", 1), "a", 1, now);
        // Rebooted: new Call-ID, new address, same instance and reg-id.
        bind(&mut r, &inst("sip:ph1@192.0.2.9:5062", 1), "b", 9, now);
        assert_eq!(
            contacts(&r, now),
            vec![("sip:ph1@192.0.2.9:5062".to_string(), 9)]
        );
        // A second flow of the same instance (RFC 5626 reg-id 2) is kept.
        bind(&mut r, &inst("sip:ph1@192.0.2.9:5064", 2), "c", 8, now);
        assert_eq!(contacts(&r, now).len(), 2);
        // Stored and taken back after a restart, the instance still identifies the phone: a
        // reboot onto a new flow with a new Call-ID replaces the restored binding.
        let stored = r.saved("ph1", |_| ("udp".into(), "192.0.2.9:5062".parse().unwrap()));
        let mut r = registrar();
        for b in stored {
            r.restore(b, 9, now);
        }
        assert_eq!(contacts(&r, now).len(), 2);
        bind(
            &mut r,
            &inst("sip:ph1@192.0.2.20:5070", 1),
            "after-restart",
            20,
            now,
        );
        let mut left = contacts(&r, now);
        left.sort();
        assert_eq!(
            left,
            vec![
                ("sip:ph1@192.0.2.20:5070".to_string(), 20),
                ("sip:ph1@192.0.2.9:5064".to_string(), 9)
            ],
            "reg-id 1 replaced, reg-id 2 kept"
        );
        // Two contacts named in one REGISTER do not replace each other.
        let mut r = registrar();
        bind(
            &mut r,
            "<sip:ph1@192.0.2.1:5060>, <sip:ph1@192.0.2.1:5061>",
            "d",
            1,
            now,
        );
        assert_eq!(contacts(&r, now).len(), 2);
    }

    #[test]
    fn expires_param_is_read_after_the_uri() {
        assert_eq!(
            header_param("<sip:a@h;expires=5>;expires=60", "expires").as_deref(),
            Some("60")
        );
        assert_eq!(header_param("<sip:a@h>", "expires"), None);
        let outbound =
            r#""A>B" <sip:a@h;transport=tcp>;reg-id=1;+sip.instance="<urn:uuid:1>";expires=60"#;
        assert_eq!(header_param(outbound, "reg-id").as_deref(), Some("1"));
        assert_eq!(header_param(outbound, "expires").as_deref(), Some("60"));
    }
}
