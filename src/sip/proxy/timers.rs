//! Timers and flows: transaction timers (RFC 3261 §17), the ring timeout, the wait for
//! branches after a CANCEL, the guard on an answered call whose BYE never comes, registration
//! expiry, and a TCP connection that closed (RFC 5626-style flows).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use crate::calls::{CallEvent, EndCause};
use crate::sip::registrar::BindingTimer;
use crate::sip::txn::TxnAction;
use crate::sip::txn::TxnId;
use crate::sip::wire::uri;

use super::call::Phase;
use super::{Output, Peer, Proxy, TimerKey, Transport};

impl Proxy {
    /// A timer fired.
    pub(super) fn on_timer(&mut self, key: TimerKey) {
        match key {
            TimerKey::Txn(t) => {
                let actions = self.txns.on_timer(t);
                // A send caused by a transaction timer is a retransmission (A, E, G).
                let resent = actions
                    .iter()
                    .filter(|a| matches!(a, TxnAction::Send { .. }))
                    .count();
                self.counters
                    .retransmissions
                    .fetch_add(resent as u64, Ordering::Relaxed);
                self.queue.txn(actions);
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
                    self.finish_unanswered(&k, 480, EndCause::NoAnswer);
                    let n = self.calls.get(&k).map_or(0, |c| c.branches.len());
                    for i in 0..n {
                        self.cancel_branch(&k, i, None);
                    }
                    self.guard_silent_branches(&k);
                    self.maybe_forget(&k);
                }
            }
            TimerKey::CancelGuard(k) => {
                if self.calls.get(&k).is_some_and(|c| c.upstream_final) {
                    // The caller has its answer and a phone still has not answered our
                    // CANCEL's INVITE (crashed, unplugged): give its branch up.
                    self.abandon_silent_branches(&k);
                } else {
                    self.finish_unanswered(&k, 487, EndCause::Abandoned);
                    self.guard_silent_branches(&k);
                }
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
                    self.queue.out(Output::Event(CallEvent::Ended {
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
            TimerKey::Announcement(k) => self.announcement_ended(&k),
            TimerKey::RelayGuard(client) => self.on_relay_guard(client),
            TimerKey::Binding(aor, contact) => {
                if self.registrar.expire(&aor, &contact, self.clock.now()) {
                    self.bindings_changed(&aor);
                }
            }
            TimerKey::Uac(t) => self.on_uac_timer(t),
        }
    }

    /// Bounds the wait for branches still without a final answer after they were cancelled
    /// (RFC 3261 §9.1, 64*T1; Timer C of §16.8 for the same case): without it, a phone that
    /// never sends its 487 would hold the call and its transaction forever.
    fn guard_silent_branches(&mut self, key: &str) {
        let silent = self
            .calls
            .get(key)
            .is_some_and(|c| c.branches.iter().any(|b| b.final_status.is_none()));
        if silent {
            self.queue.out(Output::Arm(
                TimerKey::CancelGuard(key.to_string()),
                self.settings.t1 * 64,
            ));
        }
    }

    /// Ends every branch of `key` still without a final answer as if it had timed out (408).
    fn abandon_silent_branches(&mut self, key: &str) {
        let silent: Vec<(usize, TxnId)> = self.calls.get(key).map_or_else(Vec::new, |c| {
            c.branches
                .iter()
                .enumerate()
                .filter(|(_, b)| b.final_status.is_none())
                .map(|(i, b)| (i, b.txn))
                .collect()
        });
        for (idx, txn) in silent {
            let actions = self.txns.abandon(txn);
            self.queue.txn(actions);
            self.branch_final(key, idx, 408);
        }
    }

    /// A TCP connection closed: transactions sending over it fail; its bindings are reached
    /// at their Contact from now on, or go when there is no other way (RFC 5626 outbound).
    pub(super) fn on_flow_closed(&mut self, flow: u64) {
        self.flow_gone(|p| p.flow == Some(flow), contact_peer);
    }

    /// A TCP connection to `addr` could not be opened: what was to be sent there fails, and
    /// the bindings reached there go (the phone registers again when it is back).
    pub(super) fn on_connect_failed(&mut self, addr: SocketAddr) {
        let dead = |p: &Peer| p.transport == Transport::Tcp && p.flow.is_none() && p.addr == addr;
        self.flow_gone(dead, |_, _| None);
    }

    fn flow_gone(
        &mut self,
        dead: impl Fn(&Peer) -> bool,
        reach: impl Fn(&Peer, &str) -> Option<Peer>,
    ) {
        let timers = self.registrar.flow_closed(&dead, reach);
        self.bindings_changed_by(&timers);
        for t in timers {
            if let BindingTimer::Disarm(aor, contact) = t {
                self.queue
                    .out(Output::Disarm(TimerKey::Binding(aor, contact)));
            }
        }
        for id in self.txns.clients_to(&dead) {
            let actions = self.txns.on_transport_error(id);
            self.queue.txn(actions);
        }
    }
}

/// Where a phone whose registering connection closed is reached (RFC 3261 §18.1.1): at its
/// Contact, over the transport the Contact names (TCP for `transport=tcp`, else UDP), but
/// only on the host it registered from, so a Contact cannot send us to a third party.
pub(super) fn contact_peer(flow: &Peer, contact: &str) -> Option<Peer> {
    let u = uri::parse(contact).ok()?;
    let ip = u.host_ip()?;
    if ip != flow.addr.ip() {
        return None;
    }
    let transport = match u.transport().as_deref() {
        None => Transport::Udp,
        Some(t) if t.eq_ignore_ascii_case("udp") => Transport::Udp,
        Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
        Some(_) => return None,
    };
    Some(Peer {
        transport,
        addr: SocketAddr::new(ip, u.port.unwrap_or(5060)),
        flow: None,
    })
}
