//! Our client side towards the carrier (issue 16 item 2): REGISTER with digest credentials,
//! refreshed before it expires and retried with back-off, and OPTIONS keep-alive. Sans-IO like
//! the rest of the core: requests go through the client transactions of `txn`, their
//! responses come back through the same ingress (a response whose top Via branch is one of
//! ours matches its transaction), and every wait is a [`TimerKey::Uac`] timer.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::sip::carrier::{CarrierSettings, Keepalive, Registration};
use crate::sip::txn::TxnId;
use crate::sip::wire::{self, auth, SipMessage};

use super::{Output, Peer, Proxy, TimerKey, Transport};

/// A timer of the carrier UAC.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UacTimer {
    /// Time to send a REGISTER (first, refresh, or retry).
    Register,
    /// Time to send an OPTIONS to keep-alive target `n`.
    Options(usize),
    /// The OPTIONS to target `n` got no answer in time.
    OptionsTimeout(usize),
}

/// Where the registration with the carrier stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegState {
    /// A REGISTER is on its way (first one, or after a failure).
    Registering,
    /// The carrier accepted it; refreshed before it expires.
    Registered,
    /// The carrier refused it (403, 404, or our credentials): retried after a long wait.
    Refused,
    /// No answer from the registrar: retried with back-off.
    Unreachable,
    /// Another error answer: retried with back-off.
    Failed,
}

/// Whether the trunk answers OPTIONS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepaliveState {
    /// No answer or miss yet.
    Unknown,
    /// It answered the last OPTIONS (any status proves it is there).
    Up,
    /// `failures` OPTIONS in a row went unanswered.
    Down,
}

/// The registration, as the status API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RegistrationStatus {
    /// The registrar's address.
    pub registrar: String,
    /// The user we register.
    pub user: String,
    /// Where it stands.
    pub state: RegState,
    /// When it last changed state.
    pub since: DateTime<Utc>,
    /// The status of the last final answer.
    pub last_status: Option<u16>,
    /// What went wrong, in a few words (never a credential).
    pub detail: Option<String>,
    /// When the carrier's binding runs out (while registered).
    pub expires_at: Option<DateTime<Utc>>,
    /// When the next REGISTER goes (refresh or retry).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// One keep-alive target, as the status API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeepaliveStatus {
    /// Where the OPTIONS go.
    pub target: String,
    /// Up or down.
    pub state: KeepaliveState,
    /// When it last changed state.
    pub since: DateTime<Utc>,
    /// Unanswered OPTIONS in a row.
    pub missed: u32,
    /// When it last answered.
    pub last_answer_at: Option<DateTime<Utc>>,
    /// When the next OPTIONS goes.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// The carrier side of the trunk, for the status API and the dead-line alarm.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrunkStatus {
    /// `None` when registration is not configured.
    pub registration: Option<RegistrationStatus>,
    /// Empty when keep-alive is not configured.
    pub keepalive: Vec<KeepaliveStatus>,
    /// Stopping, and the removal of our binding at the carrier (REGISTER with Expires: 0,
    /// a challenge to it answered) is not finished yet: the drain waits for it, bounded.
    pub unregistering: bool,
}

/// Which of our requests a client transaction carries.
#[derive(Debug, Clone, Copy)]
enum Sent {
    Register,
    Options(usize, u64),
}

struct RegMachine {
    cfg: Registration,
    call_id: String,
    from_tag: String,
    cseq: u32,
    state: RegState,
    since: DateTime<Utc>,
    last_status: Option<u16>,
    detail: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    next_at: Option<DateTime<Utc>>,
    /// Failures in a row, for the back-off.
    failures: u32,
    /// The last challenge (header values, from a proxy?), answered again with nc+1 on refresh.
    challenge: Option<(Vec<String>, bool)>,
    nc: u32,
    /// A challenge received during this attempt was answered: another one means the
    /// credentials are wrong (unless the nonce was only stale).
    answered_fresh: bool,
    /// Lifetime asked for (raised by a 423's Min-Expires).
    expires: u32,
    in_flight: Option<TxnId>,
    /// Shutting down: the binding is being removed (Expires: 0); nothing is retried.
    stopping: bool,
    /// Stopping while a REGISTER was in flight: the un-REGISTER goes when it is answered.
    unregister_after: bool,
}

struct KaTarget {
    addr: std::net::SocketAddr,
    host: String,
    state: KeepaliveState,
    since: DateTime<Utc>,
    missed: u32,
    pending: Option<u64>,
    last_answer_at: Option<DateTime<Utc>>,
    next_at: Option<DateTime<Utc>>,
}

struct KaMachine {
    cfg: Keepalive,
    targets: Vec<KaTarget>,
    seq: u64,
    from_tag: String,
}

/// The UAC's state inside the proxy core.
pub(super) struct Uac {
    reg: Option<RegMachine>,
    ka: Option<KaMachine>,
    sent: HashMap<TxnId, Sent>,
}

impl Uac {
    /// The UAC for `settings`, and the timers that start it.
    pub(super) fn new(settings: &CarrierSettings, now: DateTime<Utc>) -> (Self, Vec<Output>) {
        let mut start = Vec::new();
        let reg = settings.registration.clone().map(|cfg| {
            start.push(Output::Arm(
                TimerKey::Uac(UacTimer::Register),
                Duration::ZERO,
            ));
            RegMachine {
                expires: cfg.expires,
                cfg,
                call_id: wire::new_call_id(),
                from_tag: wire::new_tag(),
                cseq: 0,
                state: RegState::Registering,
                since: now,
                last_status: None,
                detail: None,
                expires_at: None,
                next_at: Some(now),
                failures: 0,
                challenge: None,
                nc: 0,
                answered_fresh: false,
                in_flight: None,
                stopping: false,
                unregister_after: false,
            }
        });
        let ka = settings.keepalive.clone().map(|cfg| {
            let targets = cfg
                .targets
                .iter()
                .enumerate()
                .map(|(i, (addr, host))| {
                    start.push(Output::Arm(
                        TimerKey::Uac(UacTimer::Options(i)),
                        Duration::ZERO,
                    ));
                    KaTarget {
                        addr: *addr,
                        host: host.clone(),
                        state: KeepaliveState::Unknown,
                        since: now,
                        missed: 0,
                        pending: None,
                        last_answer_at: None,
                        next_at: Some(now),
                    }
                })
                .collect();
            KaMachine {
                cfg,
                targets,
                seq: 0,
                from_tag: wire::new_tag(),
            }
        });
        (
            Self {
                reg,
                ka,
                sent: HashMap::new(),
            },
            start,
        )
    }

    /// Whether client transaction `id` carries one of our requests.
    pub(super) fn owns(&self, id: TxnId) -> bool {
        self.sent.contains_key(&id)
    }

    /// The transaction is over.
    pub(super) fn forget(&mut self, id: TxnId) {
        self.sent.remove(&id);
        if let Some(r) = self.reg.as_mut().filter(|r| r.in_flight == Some(id)) {
            r.in_flight = None;
        }
    }

    /// The status API's view.
    pub(super) fn status(&self) -> TrunkStatus {
        TrunkStatus {
            registration: self.reg.as_ref().map(|r| RegistrationStatus {
                registrar: r.cfg.registrar.to_string(),
                user: r.cfg.username.clone(),
                state: r.state,
                since: r.since,
                last_status: r.last_status,
                detail: r.detail.clone(),
                expires_at: r.expires_at,
                next_attempt_at: r.next_at,
            }),
            keepalive: self
                .ka
                .as_ref()
                .map(|k| {
                    k.targets
                        .iter()
                        .map(|t| KeepaliveStatus {
                            target: t.addr.to_string(),
                            state: t.state,
                            since: t.since,
                            missed: t.missed,
                            last_answer_at: t.last_answer_at,
                            next_attempt_at: t.next_at,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            unregistering: self
                .reg
                .as_ref()
                .is_some_and(|r| r.stopping && (r.in_flight.is_some() || r.unregister_after)),
        }
    }
}

/// When to refresh a registration granted for `granted` seconds: at 80 % of it, or 30 s
/// before it runs out when that is earlier (but never sooner than a second from now).
fn refresh_after(granted: u32) -> Duration {
    let g = f64::from(granted);
    let at = if granted >= 60 {
        (g * 0.8).min(g - 30.0)
    } else {
        g * 0.8
    };
    Duration::from_secs_f64(at.max(1.0))
}

/// The wait before retry number `failures` (1 = first): `base` doubled each time, capped at
/// `max`, with ±20 % jitter so many centers do not retry in step after a carrier outage.
fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(max);
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    capped.mul_f64(jitter)
}

/// The lifetime the registrar granted our contact: its Contact's `expires`, else the Expires
/// header, else what we asked for.
fn granted_expires(resp: &SipMessage, our_contact: &str, asked: u32) -> u32 {
    let from_contact = resp
        .headers_all("Contact")
        .iter()
        .flat_map(|v| v.split(','))
        .filter(|c| c.contains(our_contact))
        .find_map(|c| {
            let params = c.rsplit_once('>').map_or(c, |(_, p)| p);
            params.split(';').find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("expires")
                    .then(|| v.trim().parse::<u32>().ok())
                    .flatten()
            })
        });
    from_contact
        .or_else(|| resp.header("Expires").and_then(|v| v.trim().parse().ok()))
        .unwrap_or(asked)
}

impl Proxy {
    /// A UAC timer fired.
    pub(super) fn on_uac_timer(&mut self, t: UacTimer) {
        match t {
            UacTimer::Register => {
                if let Some(r) = self.uac.reg.as_mut() {
                    if r.in_flight.is_some() || r.stopping {
                        return;
                    }
                    r.answered_fresh = false;
                    r.next_at = None;
                    if r.cseq == 0 {
                        tracing::info!(registrar = %r.cfg.registrar, user = %r.cfg.username, "registering with the carrier");
                    }
                }
                self.send_register();
            }
            UacTimer::Options(i) => self.send_options(i),
            UacTimer::OptionsTimeout(i) => self.options_missed(i),
        }
    }

    /// The process is stopping: remove our binding at the carrier (REGISTER with Expires: 0),
    /// so it stops sending calls here, and retry nothing.
    pub(super) fn unregister_from_carrier(&mut self) {
        let Some(r) = self.uac.reg.as_mut() else {
            return;
        };
        if r.stopping {
            return;
        }
        r.stopping = true;
        r.next_at = None;
        self.queue
            .out(Output::Disarm(TimerKey::Uac(UacTimer::Register)));
        // Whatever the state: a REGISTER that failed may still have left a binding, and one
        // in flight may yet create one. That one is answered first (its challenge included):
        // the un-REGISTER goes when it is.
        if r.in_flight.is_some() {
            r.unregister_after = true;
            tracing::info!(registrar = %r.cfg.registrar, "stopping: our registration at the carrier is removed once the REGISTER in flight is answered");
            return;
        }
        self.send_unregister();
    }

    /// Sends the REGISTER with Expires: 0; one challenge to it is answered.
    fn send_unregister(&mut self) {
        let Some(r) = self.uac.reg.as_mut() else {
            return;
        };
        r.unregister_after = false;
        r.expires = 0;
        r.answered_fresh = false;
        tracing::info!(registrar = %r.cfg.registrar, "stopping: removing our registration at the carrier");
        self.send_register();
    }

    /// Our Contact URI (without brackets) at the advertised address.
    fn our_contact(&self, r: &Registration) -> String {
        let t = match r.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        };
        format!("sip:{}@{}{t}", r.contact_user, self.local)
    }

    /// Sends a REGISTER, answering the last challenge if we have one.
    fn send_register(&mut self) {
        let branch = self.next_branch();
        let local = self.local;
        let Some(r) = self.uac.reg.as_ref() else {
            return;
        };
        let contact = self.our_contact(&r.cfg);
        let Some(r) = self.uac.reg.as_mut() else {
            return;
        };
        r.cseq += 1;
        let cfg = &r.cfg;
        let aor = format!("sip:{}@{}", cfg.username, cfg.domain);
        let mut text = format!(
            "REGISTER {ruri} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: <{aor}>;tag={tag}\r\nTo: <{aor}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: {exp}\r\nAllow: {allow}\r\nUser-Agent: madoguchi\r\n",
            ruri = cfg.request_uri,
            t = cfg.transport.token(),
            tag = r.from_tag,
            cid = r.call_id,
            cseq = r.cseq,
            exp = r.expires,
            allow = super::ALLOW,
        );
        if let Some((values, from_proxy)) = &r.challenge {
            r.nc += 1;
            let answer = auth::answer(
                values,
                *from_proxy,
                cfg.realm.as_deref(),
                &cfg.auth_username,
                &cfg.password,
                "REGISTER",
                &cfg.request_uri,
                r.nc,
                &wire::new_tag(),
            );
            if let Some(a) = answer {
                text.push_str(&format!("{}: {}\r\n", a.header, a.value));
            }
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        let peer = Peer {
            transport: cfg.transport,
            addr: cfg.registrar,
            flow: None,
        };
        let Ok(msg) = SipMessage::parse_datagram(text.as_bytes()) else {
            tracing::warn!("carrier REGISTER could not be built (check trunk.registration)");
            return;
        };
        if let Some((id, actions)) = self.txns.send_request(msg, peer.reliable(), peer) {
            r.in_flight = Some(id);
            self.uac.sent.insert(id, Sent::Register);
            self.queue.txn(actions);
        }
    }

    /// Sends the keep-alive OPTIONS to target `i` and arms its timeout and the next one.
    fn send_options(&mut self, i: usize) {
        let branch = self.next_branch();
        let local = self.local;
        let now = self.clock.now();
        let Some(ka) = self.uac.ka.as_mut() else {
            return;
        };
        let interval = ka.cfg.interval;
        let timeout = ka.cfg.timeout;
        let transport = ka.cfg.transport;
        ka.seq += 1;
        let seq = ka.seq;
        let from_tag = ka.from_tag.clone();
        let Some(t) = ka.targets.get_mut(i) else {
            return;
        };
        // One still unanswered when the next is due counts as missed now.
        let overdue = t.pending.is_some();
        t.next_at = chrono::Duration::from_std(interval).ok().map(|d| now + d);
        let text = format!(
            "OPTIONS sip:{host} SIP/2.0\r\nVia: SIP/2.0/{tp} {local};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:madoguchi@{local}>;tag={from_tag}\r\nTo: <sip:{host}>\r\nCall-ID: {cid}\r\nCSeq: {seq} OPTIONS\r\nAccept: application/sdp\r\nUser-Agent: madoguchi\r\nContent-Length: 0\r\n\r\n",
            host = t.host,
            tp = transport.token(),
            cid = wire::new_call_id(),
        );
        let peer = Peer {
            transport,
            addr: t.addr,
            flow: None,
        };
        if overdue {
            self.options_missed_now(i);
        }
        if let Some(ka) = self.uac.ka.as_mut() {
            if let Some(t) = ka.targets.get_mut(i) {
                t.pending = Some(seq);
            }
        }
        self.queue.out(Output::Arm(
            TimerKey::Uac(UacTimer::OptionsTimeout(i)),
            timeout,
        ));
        self.queue
            .out(Output::Arm(TimerKey::Uac(UacTimer::Options(i)), interval));
        let Ok(msg) = SipMessage::parse_datagram(text.as_bytes()) else {
            return;
        };
        if let Some((id, actions)) = self.txns.send_request(msg, peer.reliable(), peer) {
            self.uac.sent.insert(id, Sent::Options(i, seq));
            self.queue.txn(actions);
        }
    }

    /// The OPTIONS to target `i` went unanswered for the timeout.
    fn options_missed(&mut self, i: usize) {
        let pending = self
            .uac
            .ka
            .as_ref()
            .and_then(|k| k.targets.get(i))
            .is_some_and(|t| t.pending.is_some());
        if pending {
            self.options_missed_now(i);
        }
    }

    fn options_missed_now(&mut self, i: usize) {
        let now = self.clock.now();
        let Some(ka) = self.uac.ka.as_mut() else {
            return;
        };
        let failures = ka.cfg.failures;
        let Some(t) = ka.targets.get_mut(i) else {
            return;
        };
        t.pending = None;
        t.missed = t.missed.saturating_add(1);
        if t.missed >= failures && t.state != KeepaliveState::Down {
            t.state = KeepaliveState::Down;
            t.since = now;
            tracing::warn!(target_addr = %t.addr, missed = t.missed, "carrier trunk DOWN: OPTIONS keep-alive unanswered");
        } else {
            tracing::debug!(target_addr = %t.addr, missed = t.missed, "OPTIONS keep-alive unanswered");
        }
    }

    /// A final answer to one of our requests, or its transaction gave up (`None`).
    pub(super) fn on_uac_result(&mut self, id: TxnId, resp: Option<SipMessage>) {
        let Some(sent) = self.uac.sent.get(&id).copied() else {
            return;
        };
        if resp
            .as_ref()
            .is_some_and(|r| r.status().is_none_or(|s| s < 200))
        {
            return;
        }
        match sent {
            Sent::Options(i, seq) => {
                if let Some(resp) = resp {
                    self.options_answered(i, seq, &resp);
                }
            }
            Sent::Register => {
                if let Some(r) = self.uac.reg.as_mut() {
                    r.in_flight = None;
                }
                self.uac.sent.remove(&id);
                let unregister_after = self.uac.reg.as_ref().is_some_and(|r| r.unregister_after);
                match resp {
                    Some(resp) => self.register_answered(&resp),
                    None if unregister_after => self.send_unregister(),
                    None => self.register_failed(
                        RegState::Unreachable,
                        None,
                        "no answer from the registrar".into(),
                    ),
                }
            }
        }
    }

    fn options_answered(&mut self, i: usize, seq: u64, resp: &SipMessage) {
        let now = self.clock.now();
        let Some(t) = self.uac.ka.as_mut().and_then(|k| k.targets.get_mut(i)) else {
            return;
        };
        t.last_answer_at = Some(now);
        if t.pending == Some(seq) {
            t.pending = None;
            self.queue
                .out(Output::Disarm(TimerKey::Uac(UacTimer::OptionsTimeout(i))));
        }
        t.missed = 0;
        if t.state != KeepaliveState::Up {
            t.state = KeepaliveState::Up;
            t.since = now;
            tracing::info!(target_addr = %t.addr, status = resp.status().unwrap_or_default(), "carrier trunk up: answers OPTIONS keep-alive");
        }
    }

    fn register_answered(&mut self, resp: &SipMessage) {
        let status = resp.status().unwrap_or_default();
        let now = self.clock.now();
        let Some(r) = self.uac.reg.as_ref() else {
            return;
        };
        let contact = self.our_contact(&r.cfg);
        let Some(r) = self.uac.reg.as_mut() else {
            return;
        };
        r.last_status = Some(status);
        if r.unregister_after {
            // The answer to the REGISTER sent before we were stopping: whatever it says,
            // remove the binding it may have left (its challenge is answered with ours).
            if status == 401 || status == 407 {
                let from_proxy = status == 407;
                let name = if from_proxy {
                    "Proxy-Authenticate"
                } else {
                    "WWW-Authenticate"
                };
                r.challenge = Some((resp.headers_all(name), from_proxy));
                r.nc = 0;
            }
            self.send_unregister();
            return;
        }
        if r.stopping && status != 401 && status != 407 {
            if (200..300).contains(&status) && r.expires == 0 {
                r.expires_at = None;
                tracing::info!(registrar = %r.cfg.registrar, "registration at the carrier removed");
            }
            return;
        }
        match status {
            200..=299 => {
                let granted = granted_expires(resp, &contact, r.expires);
                if granted == 0 {
                    self.register_failed(
                        RegState::Failed,
                        Some(status),
                        "the registrar granted no time".into(),
                    );
                    return;
                }
                let refresh = refresh_after(granted);
                r.failures = 0;
                r.detail = None;
                r.expires_at = Some(now + chrono::Duration::seconds(i64::from(granted)));
                r.next_at = chrono::Duration::from_std(refresh).ok().map(|d| now + d);
                if r.state != RegState::Registered {
                    r.state = RegState::Registered;
                    r.since = now;
                    tracing::info!(registrar = %r.cfg.registrar, expires = granted, "registered with the carrier");
                } else {
                    tracing::debug!(registrar = %r.cfg.registrar, expires = granted, "carrier registration refreshed");
                }
                self.queue
                    .out(Output::Arm(TimerKey::Uac(UacTimer::Register), refresh));
            }
            401 | 407 => {
                let from_proxy = status == 407;
                let name = if from_proxy {
                    "Proxy-Authenticate"
                } else {
                    "WWW-Authenticate"
                };
                let values = resp.headers_all(name);
                let usable = auth::answer(
                    &values,
                    from_proxy,
                    r.cfg.realm.as_deref(),
                    "probe",
                    "probe",
                    "REGISTER",
                    &r.cfg.request_uri,
                    1,
                    "probe",
                );
                match usable {
                    None => self.register_failed(
                        RegState::Failed,
                        Some(status),
                        "no digest challenge we can answer (algorithm or realm)".into(),
                    ),
                    Some(a) if r.answered_fresh && !a.stale => self.register_failed(
                        RegState::Refused,
                        Some(status),
                        "the carrier refused our credentials".into(),
                    ),
                    Some(_) => {
                        r.challenge = Some((values, from_proxy));
                        r.nc = 0;
                        r.answered_fresh = true;
                        self.send_register();
                    }
                }
            }
            423 => {
                let min = resp
                    .header("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > r.expires && m <= 86_400 => {
                        r.expires = m;
                        self.send_register();
                    }
                    _ => self.register_failed(
                        RegState::Failed,
                        Some(status),
                        "423 without a usable Min-Expires".into(),
                    ),
                }
            }
            403 | 404 => self.register_failed(
                RegState::Refused,
                Some(status),
                format!("the registrar answered {status}"),
            ),
            _ => self.register_failed(
                RegState::Failed,
                Some(status),
                format!("the registrar answered {status}"),
            ),
        }
    }

    /// The attempt failed: note why, and retry after the back-off (a refusal waits longest).
    fn register_failed(&mut self, state: RegState, status: Option<u16>, detail: String) {
        let now = self.clock.now();
        let Some(r) = self.uac.reg.as_mut() else {
            return;
        };
        if r.stopping {
            return;
        }
        r.failures = r.failures.saturating_add(1);
        let wait = if state == RegState::Refused {
            backoff(r.cfg.retry_max, r.cfg.retry_max, 1)
        } else {
            backoff(r.cfg.retry, r.cfg.retry_max, r.failures)
        };
        r.next_at = chrono::Duration::from_std(wait).ok().map(|d| now + d);
        if r.expires_at.is_some_and(|e| e <= now) {
            r.expires_at = None;
        }
        if status.is_some() {
            r.last_status = status;
        }
        if r.state != state || r.detail.as_deref() != Some(detail.as_str()) {
            r.state = state;
            r.since = now;
            tracing::warn!(
                registrar = %r.cfg.registrar,
                state = ?state,
                status,
                retry_in_secs = wait.as_secs(),
                "carrier registration failed: {detail}"
            );
        }
        r.detail = Some(detail);
        // A challenge that led nowhere is not answered again blindly.
        if state == RegState::Refused {
            r.challenge = None;
        }
        self.queue
            .out(Output::Arm(TimerKey::Uac(UacTimer::Register), wait));
    }

    /// The carrier side of the trunk, for the status API.
    pub fn trunk_status(&self) -> TrunkStatus {
        self.uac.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_comes_before_expiry() {
        assert_eq!(refresh_after(3600), Duration::from_secs(2880));
        assert_eq!(refresh_after(100), Duration::from_secs(70));
        assert_eq!(refresh_after(5), Duration::from_secs(4));
        assert_eq!(refresh_after(1), Duration::from_secs(1));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_secs(30);
        let max = Duration::from_secs(600);
        for (n, expect) in [(1, 30.0), (2, 60.0), (3, 120.0), (6, 600.0), (40, 600.0)] {
            let w = backoff(base, max, n).as_secs_f64();
            assert!(
                w >= expect * 0.8 && w <= expect * 1.2,
                "retry {n}: {w} not within 20 % of {expect}"
            );
        }
    }
}
