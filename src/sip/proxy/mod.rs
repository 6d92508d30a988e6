//! The proxy core (RFC 3261 §16), Sans-IO: messages and timer firings go in, messages to
//! send, timers to arm and call events come out. The tokio driver (`transport`) does the I/O,
//! so every rule here is testable without sockets or real time (see the leak test).
//!
//! The loop has the shape of str0m's: the driver hands over one input with
//! [`Proxy::handle_input`], then drains [`Proxy::poll_output`] until it returns `None`. Work
//! produced while handling an input (transaction actions included) is queued and worked off
//! in a loop, never by recursion.
//!
//! Modelled on Kamailio's `tm`: one server transaction and N client branches per call, a
//! parallel fork to every registered operator phone, every provisional and every 2xx relayed
//! at once, the best final picked when no branch is left, CANCEL fan-out, Record-Route. The
//! business rules (hours, busy, unstaffed, shutting down) are the [`RoutingPolicy`]'s.
//!
//! The parts, by what happens: `ingress` (entry, trunk filter, request checks, REGISTER,
//! OPTIONS), `forward` (steps every forwarded request takes), `call` (a new call and its
//! branches), `cancel`, `dialog` (in-dialog requests and stateless relays), `timers`.

mod announce;
mod call;
mod cancel;
mod dialog;
mod forward;
mod ingress;
mod shared;
mod timers;
mod uac;

pub use uac::{
    KeepaliveState, KeepaliveStatus, RegState, RegistrationStatus, TrunkStatus, UacTimer,
};

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::calls::callerid;
use crate::calls::CallEvent;
use crate::clock::SharedClock;

use super::policy::RoutingPolicy;
use super::registrar::{Registrar, SavedBinding};
use super::settings::SipSettings;
use super::txn::{TxnAction, TxnEvent, TxnId, TxnTimer, Txns};
use super::wire::{self, branch, SipMessage, WireError};

use call::Call;

pub use announce::{AnnounceOrder, AnnouncePlan};

/// The transport a peer is reached over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Transport {
    /// UDP: the transactions retransmit.
    Udp,
    /// TCP: reliable, framed by Content-Length.
    Tcp,
}

impl Transport {
    /// The transport token of a Via.
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
    /// Whether the transport is reliable (no retransmissions).
    fn reliable(&self) -> bool {
        self.transport == Transport::Tcp
    }
}

/// Whether a message from `b` came from the peer `a` is reached at: the same TCP connection
/// when both name one, else the same transport and address.
fn same_source(a: &Peer, b: &Peer) -> bool {
    match (a.flow, b.flow) {
        (Some(x), Some(y)) => x == y,
        _ => a.transport == b.transport && a.addr == b.addr,
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
    /// The latest a closed call's announcement may end before its final response goes out.
    Announcement(String),
    /// Our own requests to the carrier: registration and keep-alive.
    Uac(UacTimer),
    /// Timer C (RFC 3261 §16.6 step 11) of a relayed re-INVITE, by our client transaction: a
    /// side that answers 1xx and then never a final must not hold the transactions forever.
    RelayGuard(TxnId),
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
    /// These operator accounts are disabled: their phones' bindings go at once, and their
    /// REGISTERs are refused with 403 from now on.
    DisableOperators(Vec<String>),
    /// A TCP connection to this address could not be opened.
    ConnectFailed(SocketAddr),
    /// The process is shutting down: take no new calls (503 with Retry-After), finish the
    /// calls in progress.
    Drain,
    /// The call log is (`true`) or is no longer (`false`) too far behind to take new calls.
    LogBacklog(bool),
    /// The announcement of this call has played to its end (or could not be sent).
    AnnouncementEnded(String),
    /// Our own bindings stored before a restart (issue 18 item 9).
    RestoreBindings(Vec<SavedBinding>),
    /// Another instance's bindings of one phone now (none: it has none left).
    RemoteBindings {
        /// The other instance's `instance_id`.
        instance: String,
        /// The phone.
        aor: String,
        /// Its bindings there.
        bindings: Vec<SavedBinding>,
    },
    /// Calls the other instances sharing the database carry now (their line slots held):
    /// they count against the line's limit like ours (issue 16 item 1).
    CallsElsewhere(usize),
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
    /// Send these bytes once the end of call `call` is stored in the call log (or after a
    /// short wait if the log is slow): the final answer to a BYE, so that a hang-up confirmed
    /// on the wire is never lost with the process.
    SendWhenStored {
        /// Our call key.
        call: String,
        /// Where to.
        peer: Peer,
        /// What.
        bytes: Bytes,
    },
    /// Play an announcement to a closed call (the driver streams the RTP and reports
    /// [`Input::AnnouncementEnded`]).
    Announce(AnnounceOrder),
    /// Stop the announcement of `call` now (it ended, or the caller cancelled); its port is
    /// free for another.
    StopAnnouncement {
        /// Our call key.
        call: String,
        /// The RTP port it played from.
        port: u16,
    },
    /// Our bindings of phone `aor` changed: store these (none: delete them), off the SIP path.
    Bindings {
        /// The phone.
        aor: String,
        /// Its bindings now.
        saved: Vec<SavedBinding>,
    },
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
    /// New calls refused with 503 while the call log was far behind.
    pub overloaded: AtomicU64,
    /// In-dialog requests and CANCELs refused (403, or an ACK dropped) because they came from
    /// neither side of the dialog (for a CANCEL: not from the sender of the INVITE), and
    /// requests that matched a transaction another source opened.
    pub in_dialog_refused: AtomicU64,
    /// Responses with no transaction that were not a 2xx of a call of ours, dropped (strays,
    /// or forgeries meant to be reflected to the address in their Via).
    pub stray_responses: AtomicU64,
    /// New requests refused (503 to the trunk, silence to others) with the transaction table
    /// full.
    pub txn_table_full: AtomicU64,
    /// REGISTERs refused unread because their source or phone is locked out.
    pub register_locked_out: AtomicU64,
    /// Messages re-sent by a transaction timer (A, E, G over UDP); first sends not counted.
    pub retransmissions: AtomicU64,
    /// Messages that reached the core (datagrams and framed TCP messages), by start line.
    pub messages_in: crate::sip::counts::MessageCounts,
    /// Messages the core sent (or handed to the transport), by start line.
    pub messages_out: crate::sip::counts::MessageCounts,
}

/// A snapshot of the core's tables, for the status API and the leak test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TableSizes {
    /// Server transactions.
    pub server_txns: usize,
    /// Client transactions.
    pub client_txns: usize,
    /// Calls in progress (incl. ones waiting for their last branch, and closed calls hearing
    /// the announcement).
    pub calls: usize,
    /// In-dialog requests being relayed.
    pub relays: usize,
    /// Registered contacts.
    pub bindings: usize,
}

/// The proxy core. Single-threaded by design: the driver feeds it one input at a time.
pub struct Proxy {
    settings: SipSettings,
    policy: Box<dyn RoutingPolicy + Send>,
    clock: SharedClock,
    local: SocketAddr,
    txns: Txns<Peer>,
    registrar: Registrar<Peer>,
    /// Calls by call key, until their last branch has a final answer.
    calls: HashMap<String, Call>,
    /// SIP Call-ID → call key, to find the call of an in-dialog request.
    by_call_id: HashMap<String, String>,
    /// The caller's INVITE server transaction → call key (for CANCEL).
    server_to_call: HashMap<TxnId, String>,
    /// A branch's INVITE client transaction → (call key, branch index).
    branch_of: HashMap<TxnId, (String, usize)>,
    /// A relayed in-dialog request: our client transaction → the server transaction it serves.
    relays: HashMap<TxnId, TxnId>,
    /// A BYE that ended a call in the log: its server transaction → the call, so that its
    /// final answer waits until that end is stored.
    bye_ends: HashMap<TxnId, String>,
    counters: Arc<SipCounters>,
    branch_seq: u32,
    /// (minute, rejected INVITEs logged in it).
    rejected_logged: (i64, u32),
    /// Shutting down: the policy refuses new calls.
    draining: bool,
    /// The call log is far behind: new calls get 503 until it catches up.
    log_backlogged: bool,
    /// Closed calls hearing the announcement.
    announcer: announce::Announcer,
    /// Calls in progress on the other instances sharing the database.
    calls_elsewhere: usize,
    /// Work produced by the current input, not yet carried out.
    queue: WorkQueue,
    /// Outputs waiting for the driver.
    output: VecDeque<Output>,
    /// Our client side towards the carrier (registration, keep-alive).
    uac: uac::Uac,
}

/// One piece of work produced while handling an input, not yet carried out.
enum Work {
    /// An output for the driver.
    Out(Output),
    /// A transaction action: an output, a table clean-up, or an event for the proxy logic.
    Txn(TxnAction<Peer>),
    /// A transaction action whose sending waits until the end of this call is stored.
    TxnWhenStored(String, TxnAction<Peer>),
}

/// Work in the order it was produced. A field of its own, so a handler can queue work while it
/// holds a call borrowed from the proxy's tables.
#[derive(Default)]
struct WorkQueue(VecDeque<Work>);

impl WorkQueue {
    /// Queues an output for the driver.
    fn out(&mut self, o: Output) {
        self.0.push_back(Work::Out(o));
    }

    /// Queues what a transaction asked for.
    fn txn(&mut self, actions: Vec<TxnAction<Peer>>) {
        self.0.extend(actions.into_iter().map(Work::Txn));
    }

    /// Queues what a transaction asked for; what it sends waits until call `key`'s end is
    /// stored.
    fn txn_when_stored(&mut self, key: &str, actions: Vec<TxnAction<Peer>>) {
        self.0.extend(
            actions
                .into_iter()
                .map(|a| Work::TxnWhenStored(key.to_string(), a)),
        );
    }

    fn next(&mut self) -> Option<Work> {
        self.0.pop_front()
    }

    /// Takes the queued work out, so what comes next is queued before it.
    fn set_aside(&mut self) -> VecDeque<Work> {
        std::mem::take(&mut self.0)
    }

    /// Queues work set aside after what was queued since.
    fn put_back(&mut self, later: VecDeque<Work>) {
        self.0.extend(later);
    }
}

/// The methods we answer or relay, for Allow headers.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK";
/// Timer C: "greater than 3 minutes" (RFC 3261 §16.6 step 11).
const TIMER_C: Duration = Duration::from_secs(181);
/// Rejected INVITEs written to the call log per minute; the rest are only counted, so a
/// scanner cannot flood the database.
const REJECTED_LOGGED_PER_MINUTE: u32 = 30;

impl Proxy {
    /// A core serving `local` (the advertised address of our SIP socket), routing new calls
    /// as `policy` says.
    pub fn new(
        settings: SipSettings,
        policy: impl RoutingPolicy + Send + 'static,
        clock: SharedClock,
        local: SocketAddr,
        counters: Arc<SipCounters>,
    ) -> Result<Self, String> {
        let registrar = Registrar::new(&settings.registrar, &settings.phones, &settings.limits)?;
        // The number metadata loads on first use; do it now, not while the first caller waits
        // for our 100 Trying.
        let _ = callerid::to_e164("0134000000");
        let txns = Txns::new(settings.t1, settings.t2, settings.t4);
        // The carrier UAC starts with the driver's first `poll_output`.
        let (uac, start) = uac::Uac::new(&settings.carrier, clock.now());
        Ok(Self {
            settings,
            policy: Box::new(policy),
            clock,
            local,
            txns,
            registrar,
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            server_to_call: HashMap::new(),
            branch_of: HashMap::new(),
            relays: HashMap::new(),
            bye_ends: HashMap::new(),
            counters,
            branch_seq: branch::random_generation(),
            rejected_logged: (0, 0),
            draining: false,
            log_backlogged: false,
            announcer: announce::Announcer::default(),
            calls_elsewhere: 0,
            queue: WorkQueue::default(),
            output: start.into(),
            uac,
        })
    }

    /// Sizes of every table; all zero when nothing is going on and no phone is registered.
    pub fn table_sizes(&self) -> TableSizes {
        let (server_txns, client_txns) = self.txns.len();
        TableSizes {
            server_txns,
            client_txns,
            calls: self.calls.len() + self.announcer.len(),
            relays: self.relays.len() + self.bye_ends.len(),
            bindings: self.registrar.len(),
        }
    }

    /// Calls in progress on the other instances, as last told.
    pub fn calls_elsewhere(&self) -> usize {
        self.calls_elsewhere
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

    /// Takes one input and does everything it causes; the outputs wait for [`Self::poll_output`].
    pub fn handle_input(&mut self, input: Input) {
        match input {
            Input::Datagram(bytes, peer) => {
                self.counters.messages_in.count_bytes(&bytes);
                self.on_datagram(bytes, peer)
            }
            Input::Message(msg, peer) => {
                match (msg.method(), msg.status()) {
                    (Some(m), _) => self.counters.messages_in.count_request(m),
                    (None, Some(s)) => self.counters.messages_in.count_response(s),
                    (None, None) => {}
                }
                self.on_message(*msg, peer)
            }
            Input::StreamError(err, peer) => {
                if let Some(resp) = err.response() {
                    self.counters
                        .malformed_requests
                        .fetch_add(1, Ordering::Relaxed);
                    self.queue.out(Output::Send(peer, resp.to_bytes()));
                }
            }
            Input::Timer(key) => self.on_timer(key),
            Input::FlowClosed(flow) => self.on_flow_closed(flow),
            Input::DisableOperators(names) => self.on_operators_disabled(names),
            Input::ConnectFailed(addr) => self.on_connect_failed(addr),
            Input::Drain => {
                self.draining = true;
                self.unregister_from_carrier();
            }
            Input::LogBacklog(behind) => self.log_backlogged = behind,
            Input::AnnouncementEnded(key) => self.announcement_ended(&key),
            Input::RestoreBindings(saved) => self.on_restore_bindings(saved),
            Input::RemoteBindings {
                instance,
                aor,
                bindings,
            } => self.on_remote_bindings(&instance, &aor, bindings),
            Input::CallsElsewhere(n) => self.calls_elsewhere = n,
        }
        self.work_off();
    }

    /// The next thing the driver must do; drain it until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.output.pop_front();
        if let Some(Output::Send(_, bytes) | Output::SendWhenStored { bytes, .. }) = &out {
            self.counters.messages_out.count_bytes(bytes);
        }
        out
    }

    /// Carries out the queued work in the order it was produced, until none is left. A
    /// transaction event is handled here, in the loop, not where it was produced; what it
    /// causes goes before the work queued after it, so the order is that of a direct call.
    fn work_off(&mut self) {
        while let Some(work) = self.queue.next() {
            match work {
                Work::Out(o) => self.output.push_back(o),
                Work::Txn(TxnAction::Send { to, msg }) => {
                    self.output.push_back(Output::Send(to, msg.to_bytes()))
                }
                Work::TxnWhenStored(call, TxnAction::Send { to, msg }) => {
                    self.output.push_back(Output::SendWhenStored {
                        call,
                        peer: to,
                        bytes: msg.to_bytes(),
                    })
                }
                Work::TxnWhenStored(_, other) => {
                    let later = self.queue.set_aside();
                    self.queue.0.push_back(Work::Txn(other));
                    self.queue.put_back(later);
                }
                Work::Txn(TxnAction::Arm(t, d)) => {
                    self.output.push_back(Output::Arm(TimerKey::Txn(t), d))
                }
                Work::Txn(TxnAction::Disarm(t)) => {
                    self.output.push_back(Output::Disarm(TimerKey::Txn(t)))
                }
                Work::Txn(TxnAction::Terminated(id)) => {
                    self.uac.forget(id);
                    self.server_to_call.remove(&id);
                    self.branch_of.remove(&id);
                    if self.relays.remove(&id).is_some() {
                        self.output
                            .push_back(Output::Disarm(TimerKey::RelayGuard(id)));
                    }
                    self.bye_ends.remove(&id);
                }
                Work::Txn(TxnAction::Event(id, ev)) => {
                    let later = self.queue.set_aside();
                    self.on_txn_event(id, ev);
                    self.queue.put_back(later);
                }
            }
        }
    }

    /// What a transaction tells us: a new request, a response on a branch or a relayed
    /// request, an ACK for a 2xx, or that it got no answer.
    fn on_txn_event(&mut self, id: TxnId, ev: TxnEvent) {
        match ev {
            TxnEvent::Request(req) => {
                let Some(peer) = self.txns.peer(id).copied() else {
                    return;
                };
                self.on_new_request(id, req, peer);
            }
            TxnEvent::Ack(ack) => {
                let Some(peer) = self.txns.peer(id).copied() else {
                    return;
                };
                self.forward_ack(ack, peer);
            }
            TxnEvent::Response(resp) if self.uac.owns(id) => self.on_uac_result(id, Some(resp)),
            TxnEvent::Timeout | TxnEvent::TransportError if self.uac.owns(id) => {
                self.on_uac_result(id, None)
            }
            TxnEvent::Response(resp) => {
                if let Some((key, idx)) = self.branch_of.get(&id).cloned() {
                    self.on_branch_response(&key, idx, resp);
                } else if let Some(server) = self.relays.get(&id).copied() {
                    self.relay_response(server, resp);
                }
            }
            TxnEvent::Timeout | TxnEvent::TransportError => {
                let status = if matches!(ev, TxnEvent::Timeout) {
                    408
                } else {
                    503
                };
                if let Some((key, idx)) = self.branch_of.get(&id).cloned() {
                    self.branch_final(&key, idx, status);
                } else if let Some(server) = self.relays.get(&id).copied() {
                    self.relay_failure(server, status);
                }
            }
        }
    }

    /// Answers server transaction `id` (a fresh To tag on anything above 100).
    fn respond(
        &mut self,
        id: TxnId,
        req: &SipMessage,
        status: u16,
        reason: &str,
        extra: &[(&str, String)],
    ) {
        let tag = (status > 100).then(wire::new_tag);
        let mut r = SipMessage::response_to(req, status, reason, tag.as_deref());
        for (k, v) in extra {
            let _ = r.add_header(k, v);
        }
        let actions = self.txns.respond(id, r);
        self.queue.txn(actions);
    }
}

/// A unique, sortable call key: time in ms, then random.
fn new_call_key(now: DateTime<Utc>) -> String {
    format!("{:x}-{}", now.timestamp_millis(), wire::new_tag())
}

/// FNV-1a: a stable hash for the branch of a relayed ACK.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Proxy {
    /// Gives back the room of a burst the tables no longer need (issue 17): the driver calls
    /// it every few seconds; nothing in the tables changes.
    pub fn shrink_tables(&mut self) {
        use super::shrink::{map, queue};
        self.txns.shrink();
        map(&mut self.calls);
        map(&mut self.by_call_id);
        map(&mut self.server_to_call);
        map(&mut self.branch_of);
        map(&mut self.relays);
        map(&mut self.bye_ends);
        queue(&mut self.output);
        queue(&mut self.queue.0);
        self.announcer.shrink();
    }
}
