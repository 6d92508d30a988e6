//! In-dialog requests (RFC 3261 §16.12 with Record-Route, §13.2.2.4): ACK, BYE, re-INVITE and
//! the rest follow the route set through us to the other side; a 2xx ACK and responses with no
//! transaction left are relayed statelessly (§16.11).

use std::net::{IpAddr, SocketAddr};

use crate::calls::{CallEvent, EndCause, Party};
use crate::sip::txn::TxnId;
use crate::sip::wire::SipMessage;

use super::call::Phase;
use super::{fxhash, Output, Peer, Proxy, TimerKey, Transport};

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

    /// A response with no transaction (e.g. a 2xx retransmitted after ours ended): pop our
    /// Via and send it to the next one (RFC 3261 §16.11).
    pub(super) fn relay_stateless(&mut self, mut resp: SipMessage) {
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
        self.queue.out(Output::Send(
            Peer {
                transport,
                addr: SocketAddr::new(ip, port),
                flow: None,
            },
            resp.to_bytes(),
        ));
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
