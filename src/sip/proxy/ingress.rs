//! Ingress and filters (RFC 3261 §16.3 request validation, §18 transport): datagrams and
//! framed messages come in here, pass the trunk filter and the checks every request gets, meet
//! the transaction table, and are sent on by method.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::calls::{CallEvent, CallInfo, EndCause};
use crate::sip::limits::overload_response;
use crate::sip::registrar::{BindingTimer, RegisterOutcome};
use crate::sip::settings::RejectMode;
use crate::sip::txn::{Incoming, TxnId};
use crate::sip::wire::{self, uri, validate_request, validate_response, SipMessage, WireError};

use super::{
    new_call_key, same_source, Output, Peer, Proxy, TimerKey, Transport, ALLOW,
    REJECTED_LOGGED_PER_MINUTE,
};

/// Who sent a message, as the trunk filter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The carrier's trunk: the only source that may start a call.
    Trunk,
    /// A registered operator phone: requests inside a call, REGISTER, OPTIONS; never a new call.
    Phone,
    /// Anyone else: an INVITE is refused before it is parsed.
    Stranger,
}

impl Source {
    /// Whether an INVITE from here may start a call through us.
    pub(super) fn may_start_call(self) -> bool {
        self == Source::Trunk
    }
}

impl Proxy {
    /// The trunk filter: the one place that decides who a source is, and so whether it may
    /// start a call (`Trunk`), send an INVITE at all (not `Stranger`), or be answered.
    pub(super) fn source(&self, ip: IpAddr) -> Source {
        if self.settings.is_trunk(ip) {
            Source::Trunk
        } else if self.registrar.phone_ips(|p| p.addr.ip()).contains(&ip) {
            Source::Phone
        } else {
            Source::Stranger
        }
    }

    /// A UDP datagram, unparsed.
    pub(super) fn on_datagram(&mut self, bytes: Bytes, peer: Peer) {
        // The trunk filter reads the first line only: scanners cost no parsing.
        if bytes.starts_with(b"INVITE ") && self.source(peer.addr.ip()) == Source::Stranger {
            self.reject(Some(&bytes), None, peer);
            return;
        }
        match SipMessage::parse_datagram(&bytes) {
            Ok(msg) => self.on_message(msg, peer),
            Err(e) => self.on_unparseable(&e, peer),
        }
    }

    /// Bytes that did not parse: a 400/413/513 if they deserve one, else dropped.
    fn on_unparseable(&mut self, e: &WireError, peer: Peer) {
        if let Some(resp) = e.response() {
            self.counters
                .malformed_requests
                .fetch_add(1, Ordering::Relaxed);
            self.queue.out(Output::Send(peer, resp.to_bytes()));
        } else {
            self.counters
                .malformed_responses
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%e, "dropped unparseable datagram");
        }
    }

    /// Refuses an INVITE from a stranger (403, or silence), logging a few per minute. A
    /// broken one is answered 400 instead and leaves no trace in the call log.
    fn reject(&mut self, bytes: Option<&Bytes>, msg: Option<SipMessage>, peer: Peer) {
        if self.settings.reject == RejectMode::Drop {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::info!(source = %peer.addr, "INVITE from outside the trunk dropped");
            return;
        }
        let msg = match (msg, bytes) {
            (Some(m), _) => m,
            (None, Some(b)) => match SipMessage::parse_datagram(b) {
                Ok(m) => m,
                Err(e) => {
                    self.on_unparseable(&e, peer);
                    return;
                }
            },
            (None, None) => return,
        };
        if let Err((status, reason)) = validate_request(&msg) {
            self.refuse_malformed(&msg, peer, status, reason);
            return;
        }
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::info!(source = %peer.addr, "INVITE from outside the trunk rejected");
        self.queue.out(Output::Send(
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
            self.queue.out(Output::Event(CallEvent::Ended {
                call,
                at: now,
                cause: EndCause::Rejected,
                hangup_by: None,
                rang_at: None,
                answered_at: None,
            }));
        }
    }

    /// A parsed message (from a datagram, or framed from a TCP stream).
    pub(super) fn on_message(&mut self, mut msg: SipMessage, peer: Peer) {
        if !msg.is_request() {
            if validate_response(&msg).is_err() {
                self.counters
                    .malformed_responses
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.on_response(msg, peer);
            return;
        }
        if let Err((status, reason)) = validate_request(&msg) {
            self.refuse_malformed(&msg, peer, status, reason);
            return;
        }
        if msg.method() == Some("INVITE")
            && peer.transport == Transport::Tcp
            && self.source(peer.addr.ip()) == Source::Stranger
        {
            self.reject(None, Some(msg), peer);
            return;
        }
        let _ = msg.set_received_rport(peer.addr.ip(), peer.addr.port());
        // Only the sender of an INVITE may cancel it (RFC 3261 §9.1: a CANCEL goes where its
        // INVITE went, hop by hop), and only the two sides of a call act in its dialog. Both
        // are checked before the request opens a transaction: one opened by a forger would
        // absorb the real request whose branch it copied (a forked phone sees the caller's).
        let foreign_cancel = msg.method() == Some("CANCEL")
            && self
                .txns
                .invite_sender_for_cancel(&msg)
                .is_some_and(|sender| !same_source(sender, &peer));
        if foreign_cancel || (msg.has_to_tag() && !self.comes_from_its_side(&msg, &peer)) {
            self.refuse_foreign(&msg, peer);
            return;
        }
        // Half the table is kept for the trunk: a flood from elsewhere cannot stop calls.
        let trunk = self.settings.is_trunk(peer.addr.ip());
        let cap = self.settings.limits.max_server_transactions;
        let room = if trunk { cap } else { cap / 2 };
        match self.txns.on_request(msg, peer.reliable(), peer, room) {
            Incoming::Full(m) => self.table_full(&m, peer, trunk),
            Incoming::Matched(actions) => self.queue.txn(actions),
            Incoming::New(_, actions) => self.queue.txn(actions),
            Incoming::UnmatchedAck(ack) => self.forward_ack(ack, peer),
            Incoming::UnmatchedResponse(_) => {}
            Incoming::Foreign(m) => self.refuse_foreign(&m, peer),
            Incoming::Unkeyable(m) => {
                self.counters
                    .malformed_requests
                    .fetch_add(1, Ordering::Relaxed);
                if m.method() != Some("ACK") {
                    self.queue.out(Output::Send(
                        peer,
                        SipMessage::response_to(&m, 400, "Bad Via", None).to_bytes(),
                    ));
                }
            }
        }
    }

    /// Answers a request that failed the checks of `validate_request` (an ACK gets nothing).
    fn refuse_malformed(&mut self, msg: &SipMessage, peer: Peer, status: u16, reason: &str) {
        self.counters
            .malformed_requests
            .fetch_add(1, Ordering::Relaxed);
        if msg.method() != Some("ACK") {
            self.queue.out(Output::Send(
                peer,
                SipMessage::response_to(msg, status, reason, None).to_bytes(),
            ));
        }
    }

    /// Refuses a request that claims a transaction or a dialog of another source: 403 (an
    /// ACK gets nothing), sent statelessly, and counted.
    pub(super) fn refuse_foreign(&mut self, msg: &SipMessage, peer: Peer) {
        self.counters
            .in_dialog_refused
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            source = %peer.addr,
            method = msg.method().unwrap_or_default(),
            "request claiming another source's transaction or dialog refused"
        );
        if msg.method() != Some("ACK") {
            let resp = SipMessage::response_to(msg, 403, "Forbidden", Some(&wire::new_tag()));
            self.queue.out(Output::Send(peer, resp.to_bytes()));
        }
    }

    /// A new request while the transaction table is full: 503 with Retry-After to the trunk,
    /// silence to anyone else; counted, and logged now and then.
    fn table_full(&mut self, req: &SipMessage, peer: Peer, trunk: bool) {
        let n = self.counters.txn_table_full.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                refused = n,
                trunk,
                "SIP transaction table full; refusing new requests"
            );
        }
        if trunk {
            if let Some(r) = overload_response(req) {
                self.queue.out(Output::Send(peer, r.to_bytes()));
            }
        }
    }

    /// A response: to its client transaction, or on statelessly when none is left.
    fn on_response(&mut self, msg: SipMessage, peer: Peer) {
        match self.txns.on_response(msg) {
            Incoming::Matched(actions) => self.queue.txn(actions),
            Incoming::UnmatchedResponse(m) => self.relay_stateless(m, peer),
            _ => {}
        }
    }

    /// A request that opened a server transaction: checked (RFC 3261 §16.3), then sent on by
    /// method.
    pub(super) fn on_new_request(&mut self, id: TxnId, req: SipMessage, peer: Peer) {
        let method = req.method().unwrap_or_default().to_string();
        let in_dialog = req.has_to_tag();
        // RFC 3261 §16.3 step 2: a scheme we cannot route or answer.
        if req
            .request_uri()
            .is_some_and(|u| matches!(u.scheme, uri::Scheme::Other(_)))
        {
            self.respond(id, &req, 416, "Unsupported URI Scheme", &[]);
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
            );
            return;
        }
        match method.as_str() {
            "CANCEL" => self.on_cancel(id, req),
            "REGISTER" => self.on_register(id, req, peer),
            "INVITE" if !in_dialog => self.on_new_call(id, req, peer),
            "OPTIONS" if !in_dialog => {
                let extra = [
                    ("Allow", ALLOW.to_string()),
                    ("Accept", "application/sdp".to_string()),
                ];
                if self.source(peer.addr.ip()) != Source::Stranger {
                    self.respond(id, &req, 200, "OK", &extra);
                } else if self.settings.reject == RejectMode::Forbidden {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    self.respond(id, &req, 403, "Forbidden", &[]);
                } else {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ if in_dialog => self.forward_in_dialog(id, req),
            _ => self.respond(
                id,
                &req,
                405,
                "Method Not Allowed",
                &[("Allow", ALLOW.to_string())],
            ),
        }
    }

    /// Operator accounts were disabled: their phones stop ringing now.
    pub(super) fn on_operators_disabled(&mut self, names: Vec<String>) {
        let timers = self.registrar.disable_operators(names);
        self.bindings_changed_by(&timers);
        for t in timers {
            if let BindingTimer::Disarm(aor, contact) = t {
                tracing::info!(phone = %aor, "binding dropped: its operator account is disabled");
                self.queue
                    .out(Output::Disarm(TimerKey::Binding(aor, contact)));
            }
        }
    }

    /// A REGISTER, for the registrar; its bindings' expiry timers go to the driver.
    fn on_register(&mut self, id: TxnId, req: SipMessage, peer: Peer) {
        let now = self.clock.now();
        let result = self.registrar.register(&req, peer, peer.addr.ip(), now);
        let counter = match result.summary {
            RegisterOutcome::Registered => Some(&self.counters.registrations),
            RegisterOutcome::Refused | RegisterOutcome::Disabled => {
                Some(&self.counters.registrations_refused)
            }
            RegisterOutcome::LockedOut => Some(&self.counters.register_locked_out),
            _ => None,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.bindings_changed_by(&result.timers);
        for t in result.timers {
            match t {
                BindingTimer::Arm(aor, contact, at) => {
                    let after = (at - now).to_std().unwrap_or_default();
                    self.queue
                        .out(Output::Arm(TimerKey::Binding(aor, contact), after));
                }
                BindingTimer::Disarm(aor, contact) => self
                    .queue
                    .out(Output::Disarm(TimerKey::Binding(aor, contact))),
            }
        }
        let actions = self.txns.respond(id, result.response);
        self.queue.txn(actions);
    }
}
