//! In-dialog requests (RFC 3261 §16.12 with Record-Route, §13.2.2.4): ACK, BYE, re-INVITE and
//! the rest follow the route set through us to the other side, and only from the dialog's two
//! sides; a 2xx ACK and responses with no transaction left are relayed statelessly (§16.11).

use std::sync::atomic::Ordering;

use crate::calls::{CallEvent, EndCause, Party};
use crate::sip::txn::TxnId;
use crate::sip::wire::SipMessage;

use super::call::{Call, Phase};
use super::ingress::Source;
use super::{fxhash, same_source, Output, Peer, Proxy, TimerKey, TIMER_C};

impl Proxy {
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

    /// Whether a request that claims to come from `side` of `call` comes from there: the
    /// caller's from the trunk (the trunk filter), the operator's from the phone that
    /// answered (where it is reached, or a flow it registered over) or, while the call rings,
    /// from a phone still ringing. A forked phone knows the Call-ID and the caller's tag, so
    /// the tags alone prove nothing.
    fn is_side(&self, call: &Call, side: Party, source: &Peer) -> bool {
        match side {
            Party::Caller => self.source(source.addr.ip()) == Source::Trunk,
            Party::Operator => match (&call.callee, &call.callee_aor) {
                (Some(callee), aor) => {
                    same_source(callee, source)
                        || aor.as_deref().is_some_and(|a| {
                            self.registrar
                                .flows_of(a)
                                .iter()
                                .any(|f| same_source(f, source))
                        })
                }
                (None, _) => call
                    .branches
                    .iter()
                    .any(|b| b.final_status.is_none() && same_source(&b.peer, source)),
            },
        }
    }

    /// Whether an in-dialog request comes from the side of its call it claims to; one for no
    /// call of ours passes (it gets its 481 later).
    pub(super) fn comes_from_its_side(&self, req: &SipMessage, source: &Peer) -> bool {
        let Some((key, _, side)) = self.dialog_target(req) else {
            return true;
        };
        self.calls
            .get(&key)
            .is_some_and(|c| self.is_side(c, side, source))
    }

    /// Sends an in-dialog request on to the other side; a BYE ends the call in the log.
    pub(super) fn forward_in_dialog(&mut self, id: TxnId, req: SipMessage) {
        let Some((key, target, from)) = self.dialog_target(&req) else {
            self.respond(id, &req, 481, "Call/Transaction Does Not Exist", &[]);
            return;
        };
        let mut fwd = req.clone();
        if let Err((status, reason)) = self.prepare_forward(&mut fwd) {
            self.respond(id, &req, status, reason, &[]);
            return;
        }
        let br = self.next_branch();
        if fwd
            .push_via(&self.via_value(target.transport, &br))
            .is_err()
        {
            self.respond(id, &req, 500, "Server Internal Error", &[]);
            return;
        }
        let Some((client, actions)) = self.txns.send_request(fwd, target.reliable(), target) else {
            self.respond(id, &req, 500, "Server Internal Error", &[]);
            return;
        };
        self.relays.insert(client, id);
        self.queue.txn(actions);
        if req.method() == Some("INVITE") {
            self.queue
                .out(Output::Arm(TimerKey::RelayGuard(client), TIMER_C));
        }
        if req.method() == Some("BYE") && self.end_answered(&key, from) {
            self.bye_ends.insert(id, key);
        }
    }

    /// Logs an answered call as completed, hung up by `by`; true if this ended it.
    fn end_answered(&mut self, key: &str, by: Party) -> bool {
        let Some(call) = self.calls.get_mut(key) else {
            return false;
        };
        let ended = call.phase == Phase::Answered;
        if ended {
            call.phase = Phase::Ended;
            let now = self.clock.now();
            tracing::info!(call = %call.info.key, by = by.as_str(), "call completed");
            self.queue.out(Output::Event(CallEvent::Ended {
                call: call.info.clone(),
                at: now,
                cause: EndCause::Completed,
                hangup_by: Some(by),
                rang_at: call.rang_at,
                answered_at: call.answered_at,
            }));
            self.queue
                .out(Output::Disarm(TimerKey::CallGuard(key.to_string())));
        }
        // Unanswered branches still ringing (a fork answered twice) keep the call until done.
        if self
            .calls
            .get(key)
            .is_some_and(|c| c.branches.iter().all(|b| b.final_status.is_some()))
        {
            self.forget(key);
        }
        ended
    }

    /// Forwards an ACK for a 2xx (its own transaction, RFC 3261 §13.2.2.4) statelessly.
    pub(super) fn forward_ack(&mut self, mut ack: SipMessage, _peer: Peer) {
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
            self.queue.out(Output::Send(target, ack.to_bytes()));
        }
    }

    /// A response with no transaction left. Only a 2xx to the INVITE of a call we proxied,
    /// from a phone that call was forked to and carrying our Via of that branch, goes on
    /// (RFC 3261 §16.7 forwards every 2xx), and only to that call's caller: never to where
    /// its next Via points, which anyone can write (a forged response would make us an open
    /// reflector, over UDP or over a TCP connection we would open). The rest is dropped and
    /// counted.
    pub(super) fn relay_stateless(&mut self, mut resp: SipMessage, from: Peer) {
        match self.caller_of_stray_2xx(&resp, from) {
            Some(caller) if resp.pop_top_via_value() => {
                self.queue.out(Output::Send(caller, resp.to_bytes()));
            }
            _ => {
                self.counters
                    .stray_responses
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(source = %from.addr, status = ?resp.status(), "stray response dropped");
            }
        }
    }

    /// The caller a transaction-less 2xx belongs to, if it is one of a branch of a call of ours.
    fn caller_of_stray_2xx(&self, resp: &SipMessage, from: Peer) -> Option<Peer> {
        if !(200..300).contains(&resp.status()?) || resp.cseq()?.1 != "INVITE" {
            return None;
        }
        let via = resp.top_via()?;
        if via.sent_by() != self.local.to_string() {
            return None;
        }
        let call = self.calls.get(self.by_call_id.get(&resp.call_id()?)?)?;
        if resp.from_tag()? != call.caller_tag || !resp.has_to_tag() {
            return None;
        }
        let ours = via.branch?;
        call.branches
            .iter()
            .any(|b| {
                same_source(&b.peer, &from)
                    && b.invite.top_via().and_then(|v| v.branch).as_ref() == Some(&ours)
            })
            .then_some(call.caller)
    }

    /// A response to an in-dialog request we relayed: our Via off, on to the other side
    /// through the server transaction (a 100 is hop-by-hop and stops here).
    pub(super) fn relay_response(&mut self, server: TxnId, mut resp: SipMessage) {
        let is_final = resp.status().is_some_and(|s| s >= 200);
        if resp.status() != Some(100) && resp.pop_top_via_value() {
            let actions = self.txns.respond(server, resp);
            // The answer to a BYE that ended a call confirms the hang-up to the other side:
            // it goes out once that end is in the call log.
            match is_final.then(|| self.bye_ends.remove(&server)).flatten() {
                Some(call) => self.queue.txn_when_stored(&call, actions),
                None => self.queue.txn(actions),
            }
        }
    }

    /// Timer C of a relayed re-INVITE fired with no final answer: the other side is
    /// cancelled, the sender gets 408 and our client transaction is given up.
    pub(super) fn on_relay_guard(&mut self, client: TxnId) {
        let Some(server) = self.relays.get(&client).copied() else {
            return;
        };
        if let (Some(fwd), Some(peer)) =
            (self.txns.request(client), self.txns.peer(client).copied())
        {
            if let Ok(c) = SipMessage::cancel_for(&fwd, None) {
                if let Some((_, a)) = self.txns.send_request(c, peer.reliable(), peer) {
                    self.queue.txn(a);
                }
            }
        }
        self.relay_failure(server, 408);
        let actions = self.txns.abandon(client);
        self.queue.txn(actions);
    }

    /// The relayed request got no answer (`408`) or could not be sent (`503`).
    pub(super) fn relay_failure(&mut self, server: TxnId, status: u16) {
        self.bye_ends.remove(&server);
        if let Some(req) = self.txns.request(server) {
            let actions = self.txns.respond(
                server,
                SipMessage::response_to(&req, status, "Request Timeout", None),
            );
            self.queue.txn(actions);
        }
    }
}
