//! The proxy core (RFC 3261 §16), Sans-IO: messages and timer firings go in, messages to
//! send, timers to arm and call events come out. The tokio driver (`transport`) does the I/O,
//! so every rule here is testable without sockets or real time (see the leak test).
//!
//! Modelled on Kamailio's `tm`: one server transaction and N client branches per call, a
//! parallel fork to every registered operator phone, every provisional and every 2xx relayed
//! at once, the best final picked when no branch is left, CANCEL fan-out, Record-Route.

mod call;
mod cancel;
mod dialog;
mod forward;
mod ingress;
mod timers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::calls::callerid;
use crate::calls::{CallEvent, LineProfile};
use crate::clock::SharedClock;
use crate::hours::OpeningHours;

use super::registrar::Registrar;
use super::settings::SipSettings;
use super::txn::{TxnAction, TxnEvent, TxnId, TxnTimer, Txns};
use super::wire::{self, branch, SipMessage, WireError};

use call::Call;

/// The transport a peer is reached over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Transport {
    /// UDP: the transactions retransmit.
    Udp,
    /// TCP: reliable, framed by Content-Length.
    Tcp,
}

impl Transport {
    pub(super) fn token(self) -> &'static str {
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
    pub(super) fn reliable(&self) -> bool {
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
pub(super) const DRAIN_RETRY_AFTER_SECS: u32 = 30;

pub(super) const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK";
/// Rejected INVITEs written to the call log per minute; the rest are only counted, so a
/// scanner cannot flood the database.
pub(super) const REJECTED_LOGGED_PER_MINUTE: u32 = 30;

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

    /// Runs transaction actions, turning their events into proxy logic.
    pub(super) fn run(&mut self, actions: Vec<TxnAction<Peer>>, out: &mut Vec<Output>) {
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

    pub(super) fn respond(
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
}

/// A unique, sortable call key: time in ms, then random.
pub(super) fn new_call_key(now: DateTime<Utc>) -> String {
    format!("{:x}-{}", now.timestamp_millis(), wire::new_tag())
}

pub(super) fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
