//! The proxy core (RFC 3261 §16), Sans-IO: messages and timer firings go in, messages to
//! send, timers to arm and call events come out. The tokio driver (`transport`) does the I/O,
//! so every rule here is testable without sockets or real time (see the leak test).
//!
//! Modelled on Kamailio's `tm`: one server transaction and N client branches per call, a
//! parallel fork to every registered operator phone, every provisional and every 2xx relayed
//! at once, the best final picked when no branch is left, CANCEL fan-out, Record-Route.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::calls::LineProfile;
use crate::calls::{CallEvent, CallInfo, EndCause, Party};
use crate::clock::SharedClock;
use crate::hours::{OpenState, OpeningHours};

use super::registrar::{split_list, BindingTimer, Registrar};
use super::settings::{line_digits, RejectMode, SipSettings};
use super::txn::{Incoming, TxnAction, TxnEvent, TxnId, TxnTimer, Txns};
use super::wire::{self, branch, uri, validate_request, validate_response, SipMessage, WireError};
use crate::calls::callerid::{self, CallerHeaders, CallerId};

/// The transport a peer is reached over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Transport {
    /// UDP: the transactions retransmit.
    Udp,
    /// TCP: reliable, framed by Content-Length.
    Tcp,
}

impl Transport {
    fn token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// Where a message came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// UDP or TCP.
    pub transport: Transport,
    /// The remote address.
    pub addr: SocketAddr,
    /// The TCP connection, when known (phones are reached over the flow they registered on).
    pub flow: Option<u64>,
}

impl Peer {
    fn reliable(&self) -> bool {
        self.transport == Transport::Tcp
    }
}

/// A timer the core asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TimerKey {
    /// A transaction timer (A, B, E … M).
    Txn(TxnTimer),
    /// The ring timeout of a call.
    Ring(String),
    /// How long a cancelled call waits for its branches before answering 487 anyway.
    CancelGuard(String),
    /// The longest an answered call may last in our books (a lost BYE must not hold the line).
    CallGuard(String),
    /// A registration's expiry (aor, contact).
    Binding(String, String),
}

/// What goes into the core.
#[derive(Debug)]
pub enum Input {
    /// A UDP datagram, unparsed: the trunk filter looks at its first line only.
    Datagram(Bytes, Peer),
    /// A message framed from a TCP stream.
    Message(Box<SipMessage>, Peer),
    /// A framing error on a TCP stream (answer if possible; the driver closes the flow).
    StreamError(Box<WireError>, Peer),
    /// A timer fired.
    Timer(TimerKey),
    /// A TCP connection closed.
    FlowClosed(u64),
    /// The process is shutting down: take no new calls (503 with Retry-After), finish the
    /// calls in progress.
    Drain,
}

/// What the driver must do.
#[derive(Debug)]
pub enum Output {
    /// Send these bytes to the peer.
    Send(Peer, Bytes),
    /// Arm (or re-arm) a timer.
    Arm(TimerKey, Duration),
    /// Disarm a timer.
    Disarm(TimerKey),
    /// Publish a call event.
    Event(CallEvent),
}

/// Counters of the SIP side, readable from anywhere.
#[derive(Debug, Default)]
pub struct SipCounters {
    /// Requests answered 400/505 (or dropped) because they were malformed.
    pub malformed_requests: AtomicU64,
    /// Responses dropped because they were malformed.
    pub malformed_responses: AtomicU64,
    /// INVITEs (or other requests) refused because they did not come from the trunk.
    pub rejected: AtomicU64,
    /// INVITEs for a number that is not our line.
    pub not_our_line: AtomicU64,
    /// Calls that reached routing.
    pub calls: AtomicU64,
    /// REGISTERs that bound a contact.
    pub registrations: AtomicU64,
    /// REGISTERs refused (bad credentials, replays).
    pub registrations_refused: AtomicU64,
    /// New calls refused with 503 while shutting down.
    pub drained: AtomicU64,
}

/// A snapshot of the core's tables, for the status API and the leak test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TableSizes {
    /// Server transactions.
    pub server_txns: usize,
    /// Client transactions.
    pub client_txns: usize,
    /// Calls in progress (incl. ones waiting for their last branch).
    pub calls: usize,
    /// In-dialog requests being relayed.
    pub relays: usize,
    /// Registered contacts.
    pub bindings: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Answered,
    Ended,
}

struct Branch {
    txn: TxnId,
    aor: String,
    peer: Peer,
    invite: SipMessage,
    got_1xx: bool,
    final_status: Option<u16>,
    cancel_pending: Option<Option<&'static str>>,
    cancelled: bool,
}

struct Call {
    info: CallInfo,
    server: TxnId,
    caller: Peer,
    caller_tag: String,
    phase: Phase,
    branches: Vec<Branch>,
    rang_at: Option<DateTime<Utc>>,
    answered_at: Option<DateTime<Utc>>,
    callee: Option<Peer>,
    cancelled: bool,
    timed_out: bool,
    upstream_final: bool,
}

/// The proxy core. Single-threaded by design: the driver feeds it one input at a time.
pub struct Proxy {
    settings: SipSettings,
    line: LineProfile,
    hours: OpeningHours,
    clock: SharedClock,
    local: SocketAddr,
    txns: Txns<Peer>,
    registrar: Registrar<Peer>,
    calls: HashMap<String, Call>,
    by_call_id: HashMap<String, String>,
    server_to_call: HashMap<TxnId, String>,
    branch_of: HashMap<TxnId, (String, usize)>,
    relays: HashMap<TxnId, TxnId>,
    counters: Arc<SipCounters>,
    branch_seq: u32,
    rejected_logged: (i64, u32),
    draining: bool,
}

/// Retry-After of the 503 a new call gets while the process shuts down.
const DRAIN_RETRY_AFTER_SECS: u32 = 30;

const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK";
/// Rejected INVITEs written to the call log per minute; the rest are only counted, so a
/// scanner cannot flood the database.
const REJECTED_LOGGED_PER_MINUTE: u32 = 30;

/// RFC 3261 §16.7 step 6 with Kamailio's order: 6xx > 3xx > auth/retry-able 4xx > 4xx > 5xx.
fn rank(status: u16) -> u32 {
    match status {
        200..=299 => 0,
        600..=699 => 1,
        300..=399 => 2,
        401 | 407 | 415 | 420 | 484 => 3,
        400..=499 => 4,
        _ => 5,
    }
}

impl Proxy {
    /// A core serving `local` (the advertised address of our SIP socket).
    pub fn new(
        settings: SipSettings,
        line: LineProfile,
        hours: OpeningHours,
        clock: SharedClock,
        local: SocketAddr,
        counters: Arc<SipCounters>,
    ) -> Result<Self, String> {
        let registrar = Registrar::new(&settings.registrar, &settings.phones)?;
        // The number metadata loads on first use; do it now, not while the first caller waits
        // for our 100 Trying.
        let _ = callerid::to_e164("0134000000");
        let txns = Txns::new(settings.t1, settings.t2, settings.t4);
        Ok(Self {
            settings,
            line,
            hours,
            clock,
            local,
            txns,
            registrar,
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            server_to_call: HashMap::new(),
            branch_of: HashMap::new(),
            relays: HashMap::new(),
            counters,
            branch_seq: branch::random_generation(),
            rejected_logged: (0, 0),
            draining: false,
        })
    }

    /// Sizes of every table; all zero when nothing is going on and no phone is registered.
    pub fn table_sizes(&self) -> TableSizes {
        let (server_txns, client_txns) = self.txns.len();
        TableSizes {
            server_txns,
            client_txns,
            calls: self.calls.len(),
            relays: self.relays.len(),
            bindings: self.registrar.len(),
        }
    }

    /// The phones registered now: (SIP username, operator account, contact, transport).
    pub fn registered_phones(&self) -> Vec<(String, Option<String>, String, Transport)> {
        self.registrar
            .targets(self.clock.now())
            .into_iter()
            .map(|b| {
                let op = self.registrar.operator_of(&b.aor).map(str::to_string);
                (b.aor, op, b.contact, b.flow.transport)
            })
            .collect()
    }

    /// Handles one input.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Datagram(bytes, peer) => self.on_datagram(bytes, peer, &mut out),
            Input::Message(msg, peer) => self.on_message(*msg, peer, &mut out),
            Input::StreamError(err, peer) => {
                if let Some(resp) = err.response() {
                    self.counters
                        .malformed_requests
                        .fetch_add(1, Ordering::Relaxed);
                    out.push(Output::Send(peer, resp.to_bytes()));
                }
            }
            Input::Timer(key) => self.on_timer(key, &mut out),
            Input::FlowClosed(flow) => self.on_flow_closed(flow, &mut out),
            Input::Drain => self.draining = true,
        }
        out
    }

    // ---- ingress ------------------------------------------------------------------------

    fn known_source(&self, ip: IpAddr) -> bool {
        self.settings.is_trunk(ip) || self.registrar.phone_ips(|p| p.addr.ip()).contains(&ip)
    }

    fn on_datagram(&mut self, bytes: Bytes, peer: Peer, out: &mut Vec<Output>) {
        // The trunk filter reads the first line only: scanners cost no parsing.
        if bytes.starts_with(b"INVITE ") && !self.known_source(peer.addr.ip()) {
            self.reject(Some(&bytes), None, peer, out);
            return;
        }
        match SipMessage::parse_datagram(&bytes) {
            Ok(msg) => self.on_message(msg, peer, out),
            Err(e) => {
                if let Some(resp) = e.response() {
                    self.counters
                        .malformed_requests
                        .fetch_add(1, Ordering::Relaxed);
                    out.push(Output::Send(peer, resp.to_bytes()));
                } else {
                    self.counters
                        .malformed_responses
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%e, "dropped unparseable datagram");
                }
            }
        }
    }

    fn reject(
        &mut self,
        bytes: Option<&Bytes>,
        msg: Option<SipMessage>,
        peer: Peer,
        out: &mut Vec<Output>,
    ) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::info!(source = %peer.addr, "INVITE from outside the trunk rejected");
        if self.settings.reject == RejectMode::Drop {
            return;
        }
        let msg = match (msg, bytes) {
            (Some(m), _) => m,
            (None, Some(b)) => match SipMessage::parse_datagram(b) {
                Ok(m) => m,
                Err(_) => return,
            },
            (None, None) => return,
        };
        out.push(Output::Send(
            peer,
            SipMessage::response_to(&msg, 403, "Forbidden", Some(&wire::new_tag())).to_bytes(),
        ));
        let now = self.clock.now();
        let minute = now.timestamp() / 60;
        if self.rejected_logged.0 != minute {
            self.rejected_logged = (minute, 0);
        }
        if self.rejected_logged.1 < REJECTED_LOGGED_PER_MINUTE {
            self.rejected_logged.1 += 1;
            let call = CallInfo {
                key: new_call_key(now),
                sip_call_id: msg
                    .call_id()
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect(),
                caller: None,
                line_number: None,
                source: peer.addr.to_string(),
                arrived_at: now,
            };
            out.push(Output::Event(CallEvent::Ended {
                call,
                at: now,
                cause: EndCause::Rejected,
                hangup_by: None,
                rang_at: None,
                answered_at: None,
            }));
        }
    }

    fn on_message(&mut self, mut msg: SipMessage, peer: Peer, out: &mut Vec<Output>) {
        if !msg.is_request() {
            if validate_response(&msg).is_err() {
                self.counters
                    .malformed_responses
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.on_response(msg, out);
            return;
        }
        if msg.method() == Some("INVITE")
            && peer.transport == Transport::Tcp
            && !self.known_source(peer.addr.ip())
        {
            self.reject(None, Some(msg), peer, out);
            return;
        }
        if let Err((status, reason)) = validate_request(&msg) {
            self.counters
                .malformed_requests
                .fetch_add(1, Ordering::Relaxed);
            if msg.method() != Some("ACK") {
                out.push(Output::Send(
                    peer,
                    SipMessage::response_to(&msg, status, reason, None).to_bytes(),
                ));
            }
            return;
        }
        let _ = msg.set_received_rport(peer.addr.ip(), peer.addr.port());
        match self.txns.on_request(msg, peer.reliable(), peer) {
            Incoming::Matched(actions) => self.run(actions, out),
            Incoming::New(_, actions) => self.run(actions, out),
            Incoming::UnmatchedAck(ack) => self.forward_ack(ack, peer, out),
            Incoming::UnmatchedResponse(_) => {}
            Incoming::Unkeyable(m) => {
                self.counters
                    .malformed_requests
                    .fetch_add(1, Ordering::Relaxed);
                if m.method() != Some("ACK") {
                    out.push(Output::Send(
                        peer,
                        SipMessage::response_to(&m, 400, "Bad Via", None).to_bytes(),
                    ));
                }
            }
        }
    }

    fn on_response(&mut self, msg: SipMessage, out: &mut Vec<Output>) {
        match self.txns.on_response(msg) {
            Incoming::Matched(actions) => self.run(actions, out),
            Incoming::UnmatchedResponse(m) => self.relay_stateless(m, out),
            _ => {}
        }
    }

    /// Runs transaction actions, turning their events into proxy logic.
    fn run(&mut self, actions: Vec<TxnAction<Peer>>, out: &mut Vec<Output>) {
        for a in actions {
            match a {
                TxnAction::Send { to, msg } => out.push(Output::Send(to, msg.to_bytes())),
                TxnAction::Arm(t, d) => out.push(Output::Arm(TimerKey::Txn(t), d)),
                TxnAction::Disarm(t) => out.push(Output::Disarm(TimerKey::Txn(t))),
                TxnAction::Event(id, ev) => self.on_txn_event(id, ev, out),
                TxnAction::Terminated(id) => {
                    self.server_to_call.remove(&id);
                    self.branch_of.remove(&id);
                    self.relays.remove(&id);
                }
            }
        }
    }

    fn on_txn_event(&mut self, id: TxnId, ev: TxnEvent, out: &mut Vec<Output>) {
        match ev {
            TxnEvent::Request(req) => {
                let Some(peer) = self.txns.peer(id).copied() else {
                    return;
                };
                self.on_new_request(id, req, peer, out);
            }
            TxnEvent::Ack(ack) => {
                let Some(peer) = self.txns.peer(id).copied() else {
                    return;
                };
                self.forward_ack(ack, peer, out);
            }
            TxnEvent::Response(resp) => {
                if let Some((key, idx)) = self.branch_of.get(&id).cloned() {
                    self.on_branch_response(&key, idx, resp, out);
                } else if let Some(server) = self.relays.get(&id).copied() {
                    let mut resp = resp;
                    if resp.status() != Some(100) && resp.pop_top_via_value() {
                        let actions = self.txns.respond(server, resp);
                        self.run(actions, out);
                    }
                }
            }
            TxnEvent::Timeout | TxnEvent::TransportError => {
                let status = if matches!(ev, TxnEvent::Timeout) {
                    408
                } else {
                    503
                };
                if let Some((key, idx)) = self.branch_of.get(&id).cloned() {
                    self.branch_final(&key, idx, status, out);
                } else if let Some(server) = self.relays.get(&id).copied() {
                    if let Some(req) = self.txns.request(server) {
                        let actions = self.txns.respond(
                            server,
                            SipMessage::response_to(&req, status, "Request Timeout", None),
                        );
                        self.run(actions, out);
                    }
                }
            }
        }
    }

    fn respond(
        &mut self,
        id: TxnId,
        req: &SipMessage,
        status: u16,
        reason: &str,
        extra: &[(&str, String)],
        out: &mut Vec<Output>,
    ) {
        let tag = (status > 100).then(wire::new_tag);
        let mut r = SipMessage::response_to(req, status, reason, tag.as_deref());
        for (k, v) in extra {
            let _ = r.add_header(k, v);
        }
        let actions = self.txns.respond(id, r);
        self.run(actions, out);
    }

    fn on_new_request(&mut self, id: TxnId, req: SipMessage, peer: Peer, out: &mut Vec<Output>) {
        let method = req.method().unwrap_or_default().to_string();
        let in_dialog = req.to_tag().is_some();
        // RFC 3261 §16.3 step 2: a scheme we cannot route or answer.
        if req
            .request_uri()
            .is_some_and(|u| matches!(u.scheme, uri::Scheme::Other(_)))
        {
            self.respond(id, &req, 416, "Unsupported URI Scheme", &[], out);
            return;
        }
        // §16.3 step 5: we support no proxy extension; §8.2.2.3: nor any extension in a
        // request we answer ourselves (Require on a forwarded request is end-to-end).
        let answered_here = !in_dialog && !matches!(method.as_str(), "INVITE" | "CANCEL");
        let mut unsupported: Vec<String> = req.headers_all("Proxy-Require");
        if answered_here {
            unsupported.extend(req.headers_all("Require"));
        }
        let unsupported: Vec<String> = unsupported
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if !unsupported.is_empty() && method != "CANCEL" {
            self.respond(
                id,
                &req,
                420,
                "Bad Extension",
                &[("Unsupported", unsupported.join(", "))],
                out,
            );
            return;
        }
        match method.as_str() {
            "CANCEL" => self.on_cancel(id, req, out),
            "REGISTER" => {
                let now = self.clock.now();
                let result = self.registrar.register(&req, peer, now);
                let counter = if result.summary == "registered" {
                    &self.counters.registrations
                } else {
                    &self.counters.registrations_refused
                };
                if matches!(result.summary, "registered" | "refused") {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                for t in result.timers {
                    match t {
                        BindingTimer::Arm(aor, contact, at) => {
                            let after = (at - now).to_std().unwrap_or_default();
                            out.push(Output::Arm(TimerKey::Binding(aor, contact), after));
                        }
                        BindingTimer::Disarm(aor, contact) => {
                            out.push(Output::Disarm(TimerKey::Binding(aor, contact)))
                        }
                    }
                }
                let actions = self.txns.respond(id, result.response);
                self.run(actions, out);
            }
            "INVITE" if !in_dialog => self.on_new_call(id, req, peer, out),
            "OPTIONS" if !in_dialog => {
                let extra = [
                    ("Allow", ALLOW.to_string()),
                    ("Accept", "application/sdp".to_string()),
                ];
                if self.known_source(peer.addr.ip()) {
                    self.respond(id, &req, 200, "OK", &extra, out);
                } else if self.settings.reject == RejectMode::Forbidden {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    self.respond(id, &req, 403, "Forbidden", &[], out);
                } else {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ if in_dialog => self.forward_in_dialog(id, req, out),
            _ => self.respond(
                id,
                &req,
                405,
                "Method Not Allowed",
                &[("Allow", ALLOW.to_string())],
                out,
            ),
        }
    }

    // ---- routing helpers -----------------------------------------------------------------

    fn is_us(&self, u: &uri::SipUri) -> bool {
        let port = u.port.unwrap_or(5060);
        u.host_ip() == Some(self.local.ip()) && port == self.local.port()
    }

    /// Removes our own Route values from the top (loose routing, RFC 3261 §16.4).
    fn strip_our_routes(&self, msg: &mut SipMessage) {
        // A strict-routing previous hop put us in the Request-URI: restore the real target.
        if msg.request_uri().is_some_and(|u| self.is_us(&u)) {
            if let Ok(routes) = msg.routes() {
                if let Some(last) = routes.last().filter(|l| !self.is_us(l)) {
                    let _ = msg.set_request_uri(&last.to_string());
                }
            }
        }
        while let Ok(routes) = msg.routes() {
            match routes.first() {
                Some(r) if self.is_us(r) => {
                    if !matches!(msg.remove_first_route(), Ok(true)) {
                        break;
                    }
                }
                _ => break,
            }
        }
    }

    fn has_our_via(&self, msg: &SipMessage) -> bool {
        let ours = format!("{}", self.local);
        msg.vias()
            .map(|v| {
                v.iter().any(|v| {
                    v.sent_by() == ours
                        && v.branch
                            .as_deref()
                            .is_some_and(|b| b.starts_with("z9hG4bKmdg"))
                })
            })
            .unwrap_or(false)
    }

    fn next_branch(&mut self) -> String {
        self.branch_seq = self.branch_seq.wrapping_add(1);
        branch::encode(branch::BranchId {
            slot: self.branch_seq,
            generation: branch::random_generation(),
            branch: 0,
        })
    }

    fn via_value(&self, transport: Transport, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch}",
            transport.token(),
            self.local
        )
    }

    fn rr_value(&self, transport: Transport) -> String {
        match transport {
            Transport::Udp => format!("<sip:{};lr>", self.local),
            Transport::Tcp => format!("<sip:{};transport=tcp;lr>", self.local),
        }
    }

    /// Common steps before a request goes on: loop check, Max-Forwards, our routes off.
    fn prepare_forward(&self, msg: &mut SipMessage) -> Result<(), (u16, &'static str)> {
        if self.has_our_via(msg) {
            return Err((482, "Loop Detected"));
        }
        if msg.max_forwards_is_zero() {
            return Err((483, "Too Many Hops"));
        }
        let _ = msg.decrement_max_forwards();
        self.strip_our_routes(msg);
        Ok(())
    }

    // ---- a new call ------------------------------------------------------------------------

    fn line_number(&self, req: &SipMessage) -> Option<String> {
        let candidates = [
            req.request_uri().and_then(|u| u.user),
            req.header("P-Called-Party-ID")
                .and_then(|v| uri::user_part(&v)),
            req.header("To").and_then(|v| uri::user_part(&v)),
        ];
        candidates
            .into_iter()
            .flatten()
            .map(|u| line_digits(&String::from_utf8_lossy(&uri::percent_decode(&u))))
            .find(|d| self.settings.line_numbers.contains(d))
    }

    fn caller_id(req: &SipMessage) -> CallerId {
        let from = req.header("From").unwrap_or_default();
        let headers = CallerHeaders {
            from_display_name: uri::display_name(&from),
            from_uri: uri::name_addr_uri(&from)
                .map(|u| u.to_string())
                .unwrap_or_default(),
            pai: req
                .headers_all("P-Asserted-Identity")
                .iter()
                .flat_map(|v| split_list(v))
                .collect(),
            privacy: Some(req.headers_all("Privacy").join(",")).filter(|p| !p.is_empty()),
        };
        CallerId::from_headers(&headers)
    }

    fn active_calls(&self) -> usize {
        self.calls
            .values()
            .filter(|c| c.phase != Phase::Ended)
            .count()
    }

    fn on_new_call(&mut self, id: TxnId, req: SipMessage, peer: Peer, out: &mut Vec<Output>) {
        if !self.settings.is_trunk(peer.addr.ip()) {
            // A phone may re-INVITE inside a dialog, never start a call through us.
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            self.respond(id, &req, 403, "Forbidden", &[], out);
            return;
        }
        let Some(line) = self.line_number(&req) else {
            self.counters.not_our_line.fetch_add(1, Ordering::Relaxed);
            self.respond(id, &req, 404, "Not Found", &[], out);
            return;
        };
        if self.draining {
            // Shutting down: the carrier retries or fails over to its other trunk target.
            self.counters.drained.fetch_add(1, Ordering::Relaxed);
            let retry = [("Retry-After", DRAIN_RETRY_AFTER_SECS.to_string())];
            self.respond(id, &req, 503, "Service Unavailable", &retry, out);
            return;
        }
        let mut fwd = req.clone();
        if let Err((status, reason)) = self.prepare_forward(&mut fwd) {
            self.respond(id, &req, status, reason, &[], out);
            return;
        }
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        // 100 at once: the carrier stops retransmitting while we decide.
        self.respond(id, &req, 100, "Trying", &[], out);
        let now = self.clock.now();
        let info = CallInfo {
            key: new_call_key(now),
            sip_call_id: req.call_id().unwrap_or_default(),
            caller: Some(Self::caller_id(&req)),
            line_number: Some(line),
            source: peer.addr.to_string(),
            arrived_at: now,
        };
        tracing::info!(call = %info.key, "incoming call");
        let ended = |info: &CallInfo, cause: EndCause| CallEvent::Ended {
            call: info.clone(),
            at: now,
            cause,
            hangup_by: None,
            rang_at: None,
            answered_at: None,
        };
        if let OpenState::Closed { reason } = self.hours.is_open_at(now) {
            let mut extra = Vec::new();
            if let Some(secs) = self.hours.retry_after_secs(now) {
                extra.push(("Retry-After", secs.to_string()));
            }
            let status = self.line.closed_status;
            self.respond(id, &req, status, closed_phrase(status), &extra, out);
            out.push(Output::Event(ended(&info, EndCause::Closed(reason))));
            return;
        }
        if self.active_calls() >= self.line.max_concurrent_calls as usize {
            self.respond(id, &req, 486, "Busy Here", &[], out);
            out.push(Output::Event(ended(&info, EndCause::Busy)));
            return;
        }
        let targets = self.registrar.targets(now);
        if targets.is_empty() {
            self.respond(id, &req, 480, "Temporarily Unavailable", &[], out);
            out.push(Output::Event(ended(&info, EndCause::Unstaffed)));
            return;
        }
        let key = info.key.clone();
        let mut call = Call {
            info,
            server: id,
            caller: peer,
            caller_tag: req.from_tag().unwrap_or_default(),
            phase: Phase::Ringing,
            branches: Vec::new(),
            rang_at: Some(now),
            answered_at: None,
            callee: None,
            cancelled: false,
            timed_out: false,
            upstream_final: false,
        };
        let mut actions = Vec::new();
        for mut b in targets {
            b.flow = reach(&b.contact, b.flow);
            let mut m = fwd.clone();
            if m.set_request_uri(&b.contact).is_err() {
                continue;
            }
            if b.flow.transport != peer.transport {
                // Two Record-Routes, one per side, so each side reaches us over its own transport.
                let _ = m.add_record_route(&self.rr_value(peer.transport));
            }
            let _ = m.add_record_route(&self.rr_value(b.flow.transport));
            let br = self.next_branch();
            if m.push_via(&self.via_value(b.flow.transport, &br)).is_err() {
                continue;
            }
            let Some((cid, acts)) = self.txns.send_request(m.clone(), b.flow.reliable(), b.flow)
            else {
                continue;
            };
            self.branch_of
                .insert(cid, (key.clone(), call.branches.len()));
            call.branches.push(Branch {
                txn: cid,
                aor: b.aor.clone(),
                peer: b.flow,
                invite: m,
                got_1xx: false,
                final_status: None,
                cancel_pending: None,
                cancelled: false,
            });
            actions.extend(acts);
        }
        if call.branches.is_empty() {
            self.respond(id, &req, 480, "Temporarily Unavailable", &[], out);
            out.push(Output::Event(ended(&call.info, EndCause::Unstaffed)));
            return;
        }
        out.push(Output::Event(CallEvent::Ringing {
            call: call.info.clone(),
            at: now,
        }));
        out.push(Output::Arm(
            TimerKey::Ring(key.clone()),
            Duration::from_secs(u64::from(self.line.ring_timeout_secs)),
        ));
        self.server_to_call.insert(id, key.clone());
        self.by_call_id
            .insert(call.info.sip_call_id.clone(), key.clone());
        self.calls.insert(key, call);
        self.run(actions, out);
    }

    fn on_branch_response(
        &mut self,
        key: &str,
        idx: usize,
        mut resp: SipMessage,
        out: &mut Vec<Output>,
    ) {
        let Some(status) = resp.status() else { return };
        if status == 100 {
            return;
        }
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        let Some(branch) = call.branches.get_mut(idx) else {
            return;
        };
        if !resp.pop_top_via_value() {
            return;
        }
        if (101..200).contains(&status) {
            branch.got_1xx = true;
            if let Some(reason) = branch.cancel_pending.take() {
                self.cancel_branch(key, idx, reason, out);
                return;
            }
            if call.phase == Phase::Ringing && !call.cancelled && !call.timed_out {
                let server = call.server;
                let actions = self.txns.respond(server, resp);
                self.run(actions, out);
            }
            return;
        }
        if (200..300).contains(&status) {
            branch.final_status = Some(status);
            let server = call.server;
            let first = call.phase == Phase::Ringing;
            let late = call.upstream_final;
            if first {
                let now = self.clock.now();
                call.phase = Phase::Answered;
                call.answered_at = Some(now);
                call.callee = Some(branch.peer);
                let aor = branch.aor.clone();
                let operator = self.registrar.operator_of(&aor).map(str::to_string);
                tracing::info!(call = %call.info.key, phone = %aor, "call answered");
                out.push(Output::Event(CallEvent::Answered {
                    call: call.info.clone(),
                    at: now,
                    operator,
                    extension: aor,
                }));
                out.push(Output::Disarm(TimerKey::Ring(key.to_string())));
                out.push(Output::Disarm(TimerKey::CancelGuard(key.to_string())));
                let limit = Duration::from_secs(u64::from(self.line.max_call_minutes) * 60);
                out.push(Output::Arm(TimerKey::CallGuard(key.to_string()), limit));
            }
            if late {
                // A 2xx after our own final to the caller (the ring timeout): the server
                // transaction would swallow it, but RFC 3261 §16.7 forwards every 2xx, so it
                // goes statelessly; the caller's UA then ACKs and hangs up the stray dialog.
                let caller = call.caller;
                out.push(Output::Send(caller, resp.to_bytes()));
                self.maybe_forget(key);
                return;
            }
            let actions = self.txns.respond(server, resp);
            self.run(actions, out);
            if first {
                let others: Vec<usize> = (0..self.calls[key].branches.len())
                    .filter(|i| *i != idx)
                    .collect();
                for i in others {
                    self.cancel_branch(key, i, Some(wire::REASON_COMPLETED_ELSEWHERE), out);
                }
            }
            return;
        }
        // A final failure of this branch: a phone's 486/603 is its own business (branch-local),
        // the others keep ringing.
        self.branch_final(key, idx, status, out);
    }

    fn branch_final(&mut self, key: &str, idx: usize, status: u16, out: &mut Vec<Output>) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        let Some(branch) = call.branches.get_mut(idx) else {
            return;
        };
        if branch.final_status.is_none() {
            branch.final_status = Some(status);
        }
        let all_done = call.branches.iter().all(|b| b.final_status.is_some());
        if !all_done {
            return;
        }
        if call.phase == Phase::Ringing && !call.upstream_final {
            let best = call
                .branches
                .iter()
                .filter_map(|b| b.final_status)
                .min_by_key(|s| (rank(*s), *s))
                .unwrap_or(480);
            let (status, cause) = if call.cancelled {
                (487, EndCause::Abandoned)
            } else {
                let s = if best == 503 { 500 } else { best };
                (s, EndCause::NoAnswer)
            };
            self.finish_unanswered(key, status, cause, out);
        }
        self.maybe_forget(key);
    }

    fn finish_unanswered(
        &mut self,
        key: &str,
        status: u16,
        cause: EndCause,
        out: &mut Vec<Output>,
    ) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if call.upstream_final {
            return;
        }
        call.upstream_final = true;
        call.phase = Phase::Ended;
        let now = self.clock.now();
        let server = call.server;
        let detail_cause = match (&cause, status) {
            (EndCause::NoAnswer, s) if s != 480 && s != 408 => EndCause::Refused(s),
            _ => cause,
        };
        tracing::info!(call = %call.info.key, cause = detail_cause.as_str(), "call ended");
        out.push(Output::Event(CallEvent::Ended {
            call: call.info.clone(),
            at: now,
            cause: detail_cause,
            hangup_by: None,
            rang_at: call.rang_at,
            answered_at: None,
        }));
        out.push(Output::Disarm(TimerKey::Ring(key.to_string())));
        out.push(Output::Disarm(TimerKey::CancelGuard(key.to_string())));
        if let Some(req) = self.txns.request(server) {
            let reason = match status {
                487 => "Request Terminated",
                480 => "Temporarily Unavailable",
                486 => "Busy Here",
                603 => "Decline",
                _ => "No Answer",
            };
            self.respond(server, &req, status, reason, &[], out);
        }
    }

    /// Forgets an unanswered call once no branch can still answer.
    fn maybe_forget(&mut self, key: &str) {
        let done = self.calls.get(key).is_some_and(|c| {
            c.phase == Phase::Ended && c.branches.iter().all(|b| b.final_status.is_some())
        });
        if done {
            self.forget(key);
        }
    }

    fn forget(&mut self, key: &str) {
        if let Some(call) = self.calls.remove(key) {
            if self
                .by_call_id
                .get(&call.info.sip_call_id)
                .is_some_and(|k| k == key)
            {
                self.by_call_id.remove(&call.info.sip_call_id);
            }
            self.server_to_call.remove(&call.server);
            for b in &call.branches {
                self.branch_of.remove(&b.txn);
            }
        }
    }

    fn cancel_branch(
        &mut self,
        key: &str,
        idx: usize,
        reason: Option<&'static str>,
        out: &mut Vec<Output>,
    ) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        let Some(b) = call.branches.get_mut(idx) else {
            return;
        };
        if b.final_status.is_some() || b.cancelled {
            return;
        }
        if !b.got_1xx {
            // RFC 3261 §9.1: no CANCEL before a provisional; send it when one comes.
            b.cancel_pending = Some(reason);
            return;
        }
        b.cancelled = true;
        let Ok(cancel) = SipMessage::cancel_for(&b.invite, reason) else {
            return;
        };
        let peer = b.peer;
        if let Some((_, actions)) = self.txns.send_request(cancel, peer.reliable(), peer) {
            self.run(actions, out);
        }
    }

    fn on_cancel(&mut self, id: TxnId, req: SipMessage, out: &mut Vec<Output>) {
        let Some(invite) = self.txns.invite_for_cancel(&req) else {
            self.respond(id, &req, 481, "Call/Transaction Does Not Exist", &[], out);
            return;
        };
        self.respond(id, &req, 200, "OK", &[], out);
        let Some(key) = self.server_to_call.get(&invite).cloned() else {
            // A re-INVITE being relayed: pass the CANCEL on.
            if let Some((client, _)) = self
                .relays
                .iter()
                .find(|(_, s)| **s == invite)
                .map(|(c, s)| (*c, *s))
            {
                if let (Some(fwd), Some(peer)) =
                    (self.txns.request(client), self.txns.peer(client).copied())
                {
                    if let Ok(c) = SipMessage::cancel_for(&fwd, None) {
                        if let Some((_, a)) = self.txns.send_request(c, peer.reliable(), peer) {
                            self.run(a, out);
                        }
                    }
                }
            }
            return;
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.phase != Phase::Ringing || call.upstream_final {
            return;
        }
        call.cancelled = true;
        let n = call.branches.len();
        for i in 0..n {
            self.cancel_branch(&key, i, None, out);
        }
        // Normally the phones' 487s end it; this bounds the wait for a silent phone.
        out.push(Output::Arm(
            TimerKey::CancelGuard(key),
            self.settings.t1 * 8,
        ));
    }

    // ---- in-dialog ---------------------------------------------------------------------

    /// Which way an in-dialog request goes, and to whom; `None` if the dialog is not ours.
    fn dialog_target(&self, req: &SipMessage) -> Option<(String, Peer, Party)> {
        let cid = req.call_id()?;
        let key = self.by_call_id.get(&cid)?;
        let call = self.calls.get(key)?;
        if req.from_tag().as_deref() == Some(call.caller_tag.as_str()) {
            Some((key.clone(), call.callee?, Party::Caller))
        } else {
            Some((key.clone(), call.caller, Party::Operator))
        }
    }

    fn forward_in_dialog(&mut self, id: TxnId, req: SipMessage, out: &mut Vec<Output>) {
        let Some((key, target, from)) = self.dialog_target(&req) else {
            self.respond(id, &req, 481, "Call/Transaction Does Not Exist", &[], out);
            return;
        };
        let mut fwd = req.clone();
        if let Err((status, reason)) = self.prepare_forward(&mut fwd) {
            self.respond(id, &req, status, reason, &[], out);
            return;
        }
        let br = self.next_branch();
        if fwd
            .push_via(&self.via_value(target.transport, &br))
            .is_err()
        {
            self.respond(id, &req, 500, "Server Internal Error", &[], out);
            return;
        }
        let Some((client, actions)) = self.txns.send_request(fwd, target.reliable(), target) else {
            self.respond(id, &req, 500, "Server Internal Error", &[], out);
            return;
        };
        self.relays.insert(client, id);
        self.run(actions, out);
        if req.method() == Some("BYE") {
            self.end_answered(&key, from, out);
        }
    }

    fn end_answered(&mut self, key: &str, by: Party, out: &mut Vec<Output>) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if call.phase == Phase::Answered {
            call.phase = Phase::Ended;
            let now = self.clock.now();
            tracing::info!(call = %call.info.key, by = by.as_str(), "call completed");
            out.push(Output::Event(CallEvent::Ended {
                call: call.info.clone(),
                at: now,
                cause: EndCause::Completed,
                hangup_by: Some(by),
                rang_at: call.rang_at,
                answered_at: call.answered_at,
            }));
            out.push(Output::Disarm(TimerKey::CallGuard(key.to_string())));
        }
        // Unanswered branches still ringing (a fork answered twice) keep the call until done.
        if self
            .calls
            .get(key)
            .is_some_and(|c| c.branches.iter().all(|b| b.final_status.is_some()))
        {
            self.forget(key);
        }
    }

    /// Forwards an ACK for a 2xx (its own transaction, RFC 3261 §13.2.2.4) statelessly.
    fn forward_ack(&mut self, mut ack: SipMessage, _peer: Peer, out: &mut Vec<Output>) {
        let Some((_, target, _)) = self.dialog_target(&ack) else {
            return;
        };
        if self.prepare_forward(&mut ack).is_err() {
            return;
        }
        // The same ACK retransmitted gets the same branch: derived from the incoming one.
        let incoming = ack.top_via().and_then(|v| v.branch).unwrap_or_default();
        let br = format!("z9hG4bKmdgack.{:x}", fxhash(&incoming));
        if ack.push_via(&self.via_value(target.transport, &br)).is_ok() {
            out.push(Output::Send(target, ack.to_bytes()));
        }
    }

    /// A response with no transaction (e.g. a 2xx retransmitted after ours ended): pop our
    /// Via and send it to the next one (RFC 3261 §16.11).
    fn relay_stateless(&mut self, mut resp: SipMessage, out: &mut Vec<Output>) {
        let ours = self.local.to_string();
        if resp.top_via().is_none_or(|v| v.sent_by() != ours) || !resp.pop_top_via_value() {
            return;
        }
        let Some(next) = resp.top_via() else { return };
        let (host, port) = next.response_target();
        let Ok(ip) = host.parse::<IpAddr>() else {
            return;
        };
        let transport = if next.transport.eq_ignore_ascii_case("TCP") {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        out.push(Output::Send(
            Peer {
                transport,
                addr: SocketAddr::new(ip, port),
                flow: None,
            },
            resp.to_bytes(),
        ));
    }

    // ---- timers and flows --------------------------------------------------------------

    fn on_timer(&mut self, key: TimerKey, out: &mut Vec<Output>) {
        match key {
            TimerKey::Txn(t) => {
                let actions = self.txns.on_timer(t);
                self.run(actions, out);
            }
            TimerKey::Ring(k) => {
                let ringing = self
                    .calls
                    .get(&k)
                    .is_some_and(|c| c.phase == Phase::Ringing && !c.upstream_final);
                if ringing {
                    if let Some(c) = self.calls.get_mut(&k) {
                        c.timed_out = true;
                    }
                    self.finish_unanswered(&k, 480, EndCause::NoAnswer, out);
                    let n = self.calls.get(&k).map_or(0, |c| c.branches.len());
                    for i in 0..n {
                        self.cancel_branch(&k, i, None, out);
                    }
                    self.maybe_forget(&k);
                }
            }
            TimerKey::CancelGuard(k) => {
                self.finish_unanswered(&k, 487, EndCause::Abandoned, out);
                self.maybe_forget(&k);
            }
            TimerKey::CallGuard(k) => {
                // No BYE reached us (a phone that crashed, a lost packet): end the call in our
                // books so the one line is free again. The phones' own timers end the media.
                if let Some(call) = self
                    .calls
                    .get_mut(&k)
                    .filter(|c| c.phase == Phase::Answered)
                {
                    call.phase = Phase::Ended;
                    tracing::warn!(call = %call.info.key, "answered call reached line.max_call_minutes without a BYE");
                    out.push(Output::Event(CallEvent::Ended {
                        call: call.info.clone(),
                        at: self.clock.now(),
                        cause: EndCause::Expired,
                        hangup_by: None,
                        rang_at: call.rang_at,
                        answered_at: call.answered_at,
                    }));
                }
                self.forget(&k);
            }
            TimerKey::Binding(aor, contact) => {
                self.registrar.expire(&aor, &contact, self.clock.now());
            }
        }
    }

    fn on_flow_closed(&mut self, flow: u64, out: &mut Vec<Output>) {
        for t in self.registrar.flow_closed(|p| p.flow == Some(flow)) {
            if let BindingTimer::Disarm(aor, contact) = t {
                out.push(Output::Disarm(TimerKey::Binding(aor, contact)));
            }
        }
        for id in self.txns.clients_to(|p| p.flow == Some(flow)) {
            let actions = self.txns.on_transport_error(id);
            self.run(actions, out);
        }
    }
}

/// How to reach a registered contact. Over TCP always the registering connection (RFC 5626
/// style). Over UDP the Contact's address when it names the same host the REGISTER came
/// from; otherwise the phone is behind NAT and its source address (rport) is used.
fn reach(contact: &str, flow: Peer) -> Peer {
    if flow.transport == Transport::Tcp {
        return flow;
    }
    let Ok(u) = uri::parse(contact) else {
        return flow;
    };
    match (u.host_ip(), u.transport()) {
        (Some(ip), None) if ip == flow.addr.ip() => Peer {
            transport: Transport::Udp,
            addr: SocketAddr::new(ip, u.port.unwrap_or(5060)),
            flow: None,
        },
        (Some(ip), Some(t)) if ip == flow.addr.ip() && t.eq_ignore_ascii_case("udp") => Peer {
            transport: Transport::Udp,
            addr: SocketAddr::new(ip, u.port.unwrap_or(5060)),
            flow: None,
        },
        _ => flow,
    }
}

fn closed_phrase(status: u16) -> &'static str {
    match status {
        403 => "Forbidden",
        486 => "Busy Here",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Temporarily Unavailable",
    }
}

/// A unique, sortable call key: time in ms, then random.
fn new_call_key(now: DateTime<Utc>) -> String {
    format!("{:x}-{}", now.timestamp_millis(), wire::new_tag())
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_response_follows_the_note() {
        let mut v = vec![503, 486, 603, 407, 302];
        v.sort_by_key(|s| (rank(*s), *s));
        assert_eq!(v, vec![603, 302, 407, 486, 503]);
    }
}
