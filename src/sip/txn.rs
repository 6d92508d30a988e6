//! Transactions (RFC 3261 §17, RFC 6026): our table around the SIP crate's Sans-IO machines.
//!
//! This and `wire` are the only modules that name the SIP crate's types. The table is ours
//! (not the crate's `TransactionLayer`) because a proxy needs what the layer lacks: timers
//! keyed by side, the legacy-ACK match fix, and a destination kept per transaction
//! (`docs/spike-sipx.md`, "Transaction gotchas").

use std::collections::HashMap;
use std::time::Duration;

use sipx_sip::{
    ClientTransaction, Message, Method, Output, Reliability, ServerTransaction, Timer, Timers,
    TransactionKey, TuEvent,
};

use super::wire::SipMessage;

/// Our handle on one transaction.
pub type TxnId = u64;

/// A transaction timer: which transaction, which RFC timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxnTimer {
    /// The transaction.
    pub id: TxnId,
    timer: Timer,
}

impl TxnTimer {
    /// Every timer a transaction can have, to disarm them all when it ends.
    pub fn all_of(id: TxnId) -> impl Iterator<Item = TxnTimer> {
        Timer::ALL
            .into_iter()
            .map(move |timer| TxnTimer { id, timer })
    }
}

/// What a transaction tells its user (the proxy core).
#[derive(Debug)]
pub enum TxnEvent {
    /// A new request (server side), seen once however often it is retransmitted.
    Request(SipMessage),
    /// A response (client side); every 2xx is delivered (forks, retransmissions).
    Response(SipMessage),
    /// An ACK for a 2xx that matched a server INVITE transaction in Accepted.
    Ack(SipMessage),
    /// No final answer in time (Timer B/F), or no ACK (Timer H).
    Timeout,
    /// The transport could not deliver.
    TransportError,
}

/// Something the driver must do for a transaction.
#[derive(Debug)]
pub enum TxnAction<D> {
    /// Put this message on the wire to `to`.
    Send {
        /// Destination kept with the transaction.
        to: D,
        /// The message.
        msg: SipMessage,
    },
    /// Fire this timer after the delay, replacing a pending one with the same key.
    Arm(TxnTimer, Duration),
    /// Forget a pending timer.
    Disarm(TxnTimer),
    /// Tell the proxy core.
    Event(TxnId, TxnEvent),
    /// The transaction is over and has left the table.
    Terminated(TxnId),
}

/// How an incoming message met the table.
#[derive(Debug)]
pub enum Incoming<D> {
    /// It belonged to a transaction; these are the consequences (maybe none).
    Matched(Vec<TxnAction<D>>),
    /// A new server transaction was created for it.
    New(TxnId, Vec<TxnAction<D>>),
    /// An ACK that matches no transaction: the end-to-end ACK of a 2xx.
    UnmatchedAck(SipMessage),
    /// A response that matches no client transaction (a stray or late one).
    UnmatchedResponse(SipMessage),
    /// The message has no usable transaction identity (no Via, no CSeq …).
    Unkeyable(SipMessage),
    /// It matches a server transaction another source opened: not part of it. Its key is
    /// copied from a message the sender saw (a forked phone sees the caller's branch), so
    /// it must neither reach that transaction nor answer in its name.
    Foreign(SipMessage),
    /// A new request, but the table holds as many server transactions as its sender may fill.
    Full(SipMessage),
}

enum Machine {
    Server(ServerTransaction),
    Client(ClientTransaction),
}

struct Entry<D> {
    key: TransactionKey,
    machine: Machine,
    peer: D,
}

/// The transaction table.
pub struct Txns<D> {
    timers: Timers,
    next_id: TxnId,
    server: HashMap<TransactionKey, TxnId>,
    client: HashMap<TransactionKey, TxnId>,
    entries: HashMap<TxnId, Entry<D>>,
}

fn reliability(reliable: bool) -> Reliability {
    if reliable {
        Reliability::Reliable
    } else {
        Reliability::Unreliable
    }
}

impl<D: Clone> Txns<D> {
    /// An empty table with RFC 3261 timer constants T1, T2, T4.
    pub fn new(t1: Duration, t2: Duration, t4: Duration) -> Self {
        Self {
            timers: Timers { t1, t2, t4 },
            next_id: 1,
            server: HashMap::new(),
            client: HashMap::new(),
            entries: HashMap::new(),
        }
    }

    /// (server, client) transactions alive; both 0 when idle.
    pub fn len(&self) -> (usize, usize) {
        (self.server.len(), self.client.len())
    }

    /// Whether no transaction is alive.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The request that opened transaction `id`.
    pub fn request(&self, id: TxnId) -> Option<SipMessage> {
        self.entries.get(&id).map(|e| match &e.machine {
            Machine::Server(m) => SipMessage::from_inner(Message::Request(m.request().clone())),
            Machine::Client(m) => SipMessage::from_inner(Message::Request(m.request().clone())),
        })
    }

    /// Whether server transaction `id` has sent a final response already.
    pub fn server_has_final(&self, id: TxnId) -> bool {
        match self.entries.get(&id).map(|e| &e.machine) {
            Some(Machine::Server(m)) => !matches!(
                m.state(),
                sipx_sip::transaction::ServerState::Trying
                    | sipx_sip::transaction::ServerState::Proceeding
            ),
            _ => true,
        }
    }

    /// Feeds an incoming request from `from` (over a reliable transport or not). A request
    /// that would open a server transaction while `room` or more are held is [`Incoming::Full`].
    pub fn on_request(
        &mut self,
        msg: SipMessage,
        reliable: bool,
        from: D,
        room: usize,
    ) -> Incoming<D>
    where
        D: PartialEq,
    {
        let Message::Request(req) = msg.inner() else {
            return Incoming::Unkeyable(msg);
        };
        let Some(key) = TransactionKey::from_request(req) else {
            return Incoming::Unkeyable(msg);
        };
        let is_ack = req.method == Method::Ack;
        let found = self.server.get(&key).copied().or_else(|| {
            // RFC 2543 peers: the ACK carries our To tag, the INVITE had none; the crate's
            // legacy key includes the To tag, so look again without it.
            match (&key, is_ack) {
                (TransactionKey::Legacy { .. }, true) => {
                    let mut k = key.clone();
                    if let TransactionKey::Legacy { to_tag, .. } = &mut k {
                        to_tag.clear();
                    }
                    self.server.get(&k).copied()
                }
                _ => None,
            }
        });
        if let Some(id) = found {
            let Some(entry) = self.entries.get_mut(&id) else {
                return Incoming::Unkeyable(msg);
            };
            if entry.peer != from {
                return Incoming::Foreign(msg);
            }
            let out = match &mut entry.machine {
                Machine::Server(m) => m.on_request(req),
                Machine::Client(_) => Vec::new(),
            };
            return Incoming::Matched(self.map(id, out));
        }
        if is_ack {
            return Incoming::UnmatchedAck(msg);
        }
        if self.server.len() >= room {
            return Incoming::Full(msg);
        }
        let id = self.alloc();
        let (machine, out) =
            ServerTransaction::new(req.clone(), reliability(reliable), self.timers);
        self.server.insert(key.clone(), id);
        self.entries.insert(
            id,
            Entry {
                key,
                machine: Machine::Server(machine),
                peer: from,
            },
        );
        Incoming::New(id, self.map(id, out))
    }

    /// Feeds an incoming response.
    pub fn on_response(&mut self, msg: SipMessage) -> Incoming<D> {
        let Message::Response(resp) = msg.inner() else {
            return Incoming::Unkeyable(msg);
        };
        let Some(key) = TransactionKey::from_response(resp) else {
            return Incoming::Unkeyable(msg);
        };
        let Some(id) = self.client.get(&key).copied() else {
            return Incoming::UnmatchedResponse(msg);
        };
        let out = match self.entries.get_mut(&id).map(|e| &mut e.machine) {
            Some(Machine::Client(m)) => m.on_response(resp.clone()),
            _ => Vec::new(),
        };
        Incoming::Matched(self.map(id, out))
    }

    /// Sends a response through server transaction `id`.
    pub fn respond(&mut self, id: TxnId, msg: SipMessage) -> Vec<TxnAction<D>> {
        let Message::Response(resp) = msg.into_inner() else {
            return Vec::new();
        };
        let out = match self.entries.get_mut(&id).map(|e| &mut e.machine) {
            Some(Machine::Server(m)) => m.on_tu_response(resp),
            _ => Vec::new(),
        };
        self.map(id, out)
    }

    /// Starts a client transaction sending `msg` to `to`. `None` if `msg` is not a request
    /// with a top Via branch of ours.
    pub fn send_request(
        &mut self,
        msg: SipMessage,
        reliable: bool,
        to: D,
    ) -> Option<(TxnId, Vec<TxnAction<D>>)> {
        let Message::Request(req) = msg.into_inner() else {
            return None;
        };
        let key = TransactionKey::from_sent_request(&req)?;
        let id = self.alloc();
        let (machine, out) = ClientTransaction::new(req, reliability(reliable), self.timers);
        self.client.insert(key.clone(), id);
        self.entries.insert(
            id,
            Entry {
                key,
                machine: Machine::Client(machine),
                peer: to,
            },
        );
        Some((id, self.map(id, out)))
    }

    /// Fires a timer; a timer of a gone transaction does nothing.
    pub fn on_timer(&mut self, t: TxnTimer) -> Vec<TxnAction<D>> {
        let out = match self.entries.get_mut(&t.id).map(|e| &mut e.machine) {
            Some(Machine::Server(m)) => m.on_timer(t.timer),
            Some(Machine::Client(m)) => m.on_timer(t.timer),
            None => return Vec::new(),
        };
        self.map(t.id, out)
    }

    /// Tells transaction `id` its transport failed.
    pub fn on_transport_error(&mut self, id: TxnId) -> Vec<TxnAction<D>> {
        let out = match self.entries.get_mut(&id).map(|e| &mut e.machine) {
            Some(Machine::Server(m)) => m.on_transport_error(),
            Some(Machine::Client(m)) => m.on_transport_error(),
            None => return Vec::new(),
        };
        self.map(id, out)
    }

    /// Gives up transaction `id` without waiting for its machine (RFC 3261 §9.1: an INVITE
    /// with no final answer 64*T1 after its CANCEL is considered cancelled and destroyed): it
    /// leaves the table and its timers go. No event is delivered.
    pub fn abandon(&mut self, id: TxnId) -> Vec<TxnAction<D>> {
        let Some(e) = self.entries.remove(&id) else {
            return Vec::new();
        };
        match e.machine {
            Machine::Server(_) => self.server.remove(&e.key),
            Machine::Client(_) => self.client.remove(&e.key),
        };
        let mut actions: Vec<_> = TxnTimer::all_of(id).map(TxnAction::Disarm).collect();
        actions.push(TxnAction::Terminated(id));
        actions
    }

    /// Client transactions whose destination satisfies `pred` (e.g. all over a dead flow).
    pub fn clients_to(&self, pred: impl Fn(&D) -> bool) -> Vec<TxnId> {
        self.client
            .values()
            .copied()
            .filter(|id| self.entries.get(id).is_some_and(|e| pred(&e.peer)))
            .collect()
    }

    /// Where the server INVITE transaction a CANCEL refers to came from.
    pub fn invite_sender_for_cancel(&self, cancel: &SipMessage) -> Option<&D> {
        self.invite_for_cancel(cancel).and_then(|id| self.peer(id))
    }

    /// The server INVITE transaction a CANCEL refers to.
    pub fn invite_for_cancel(&self, cancel: &SipMessage) -> Option<TxnId> {
        let Message::Request(req) = cancel.inner() else {
            return None;
        };
        let key = TransactionKey::for_cancelled_invite(req)?;
        self.server.get(&key).copied()
    }

    /// Where transaction `id` sends.
    pub fn peer(&self, id: TxnId) -> Option<&D> {
        self.entries.get(&id).map(|e| &e.peer)
    }

    fn alloc(&mut self) -> TxnId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn map(&mut self, id: TxnId, out: Vec<Output>) -> Vec<TxnAction<D>> {
        let mut actions = Vec::with_capacity(out.len());
        let mut terminated = false;
        for o in out {
            match o {
                Output::Send(m) => {
                    if let Some(e) = self.entries.get(&id) {
                        actions.push(TxnAction::Send {
                            to: e.peer.clone(),
                            msg: SipMessage::from_inner(*m),
                        });
                    }
                }
                Output::SetTimer { timer, after } => {
                    actions.push(TxnAction::Arm(TxnTimer { id, timer }, after))
                }
                Output::ClearTimer(timer) => {
                    actions.push(TxnAction::Disarm(TxnTimer { id, timer }))
                }
                Output::ToTu(ev) => {
                    let ev = match *ev {
                        TuEvent::Request(r) => {
                            TxnEvent::Request(SipMessage::from_inner(Message::Request(*r)))
                        }
                        TuEvent::Response(r) => {
                            TxnEvent::Response(SipMessage::from_inner(Message::Response(*r)))
                        }
                        TuEvent::Ack(r) => {
                            TxnEvent::Ack(SipMessage::from_inner(Message::Request(*r)))
                        }
                        TuEvent::Timeout => TxnEvent::Timeout,
                        TuEvent::TransportError => TxnEvent::TransportError,
                        _ => continue,
                    };
                    actions.push(TxnAction::Event(id, ev));
                }
                Output::Terminated(_) => terminated = true,
                _ => {}
            }
        }
        if terminated {
            if let Some(e) = self.entries.remove(&id) {
                match e.machine {
                    Machine::Server(_) => self.server.remove(&e.key),
                    Machine::Client(_) => self.client.remove(&e.key),
                };
            }
            actions.extend(TxnTimer::all_of(id).map(TxnAction::Disarm));
            actions.push(TxnAction::Terminated(id));
        }
        actions
    }
}

impl<D> Txns<D> {
    /// Gives back the room of a burst the tables no longer need (issue 17).
    pub fn shrink(&mut self) {
        super::shrink::map(&mut self.server);
        super::shrink::map(&mut self.client);
        super::shrink::map(&mut self.entries);
    }
}
