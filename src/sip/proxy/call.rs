//! A new call and its branches (RFC 3261 §16.5–§16.7): the INVITE from the trunk is routed
//! by the line's policy, forked in parallel to every registered operator phone, every
//! provisional and 2xx relayed at once, and the best final picked when no branch is left.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use crate::calls::callerid::{CallerHeaders, CallerId};
use crate::calls::{CallEvent, CallInfo, EndCause};
use crate::sip::policy::{LineNow, Route};
use crate::sip::registrar::split_list;
use crate::sip::settings::line_digits;
use crate::sip::txn::TxnId;
use crate::sip::wire::{self, uri, SipMessage};

use super::{new_call_key, Output, Peer, Proxy, TimerKey, Transport};

/// Where a call is, as the line sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The phones ring.
    Ringing,
    /// A phone answered; the call holds the line until a BYE (or the call guard).
    Answered,
    /// Over; kept only until every branch has its final answer.
    Ended,
}

/// One operator phone the call was forked to.
pub(super) struct Branch {
    /// Our INVITE client transaction.
    pub(super) txn: TxnId,
    /// The phone's SIP username.
    pub(super) aor: String,
    /// Where the phone is reached.
    pub(super) peer: Peer,
    /// The INVITE as sent, for its CANCEL.
    pub(super) invite: SipMessage,
    /// Whether a provisional came (a CANCEL may be sent only after one, §9.1).
    pub(super) got_1xx: bool,
    /// The branch's final status, once it has one.
    pub(super) final_status: Option<u16>,
    /// A CANCEL waiting for the first provisional, with its Reason.
    pub(super) cancel_pending: Option<Option<&'static str>>,
    /// Whether the CANCEL went out.
    pub(super) cancelled: bool,
}

/// A call from the trunk: one server transaction, N branches.
pub(super) struct Call {
    /// What the call log and the hub know of it.
    pub(super) info: CallInfo,
    /// The caller's INVITE server transaction.
    pub(super) server: TxnId,
    /// Where the caller (the trunk) is reached.
    pub(super) caller: Peer,
    /// The caller's From tag: tells which side sent an in-dialog request.
    pub(super) caller_tag: String,
    pub(super) phase: Phase,
    pub(super) branches: Vec<Branch>,
    pub(super) rang_at: Option<DateTime<Utc>>,
    pub(super) answered_at: Option<DateTime<Utc>>,
    /// The phone that answered.
    pub(super) callee: Option<Peer>,
    /// The SIP username of the phone that answered.
    pub(super) callee_aor: Option<String>,
    /// The caller cancelled.
    pub(super) cancelled: bool,
    /// The ring timeout fired.
    pub(super) timed_out: bool,
    /// The caller has its final response (from us or relayed): later ones go statelessly.
    pub(super) upstream_final: bool,
}

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

/// The final answer to a call the line does not ring, and how it ends in the log.
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) phrase: &'static str,
    pub(super) retry_after_secs: Option<u64>,
    pub(super) cause: EndCause,
}

impl Refusal {
    /// No operator phone to ring.
    const UNSTAFFED: Refusal = Refusal {
        status: 480,
        phrase: "Temporarily Unavailable",
        retry_after_secs: None,
        cause: EndCause::Unstaffed,
    };
}

impl Proxy {
    /// Which of our line's numbers the INVITE is for: Request-URI, P-Called-Party-ID or To.
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

    /// Who is calling, from From, P-Asserted-Identity and Privacy.
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

    /// Calls holding the line: ringing or answered.
    fn active_calls(&self) -> usize {
        self.calls
            .values()
            .filter(|c| c.phase != Phase::Ended)
            .count()
    }

    /// An INVITE outside a dialog: the trunk filter, our line, the routing policy, then the
    /// fork to every registered phone.
    pub(super) fn on_new_call(&mut self, id: TxnId, req: SipMessage, peer: Peer) {
        if !self.source(peer.addr.ip()).may_start_call() {
            // A phone may re-INVITE inside a dialog, never start a call through us.
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            self.respond(id, &req, 403, "Forbidden", &[]);
            return;
        }
        let Some(line) = self.line_number(&req) else {
            self.counters.not_our_line.fetch_add(1, Ordering::Relaxed);
            self.respond(id, &req, 404, "Not Found", &[]);
            return;
        };
        let now = self.clock.now();
        let targets = self.registrar.targets(now);
        let state = LineNow {
            now,
            // The line is one across instances: their calls take its slots too.
            active_calls: self.active_calls() + self.calls_elsewhere,
            registered_phones: targets.len(),
            draining: self.draining,
            log_backlogged: self.log_backlogged,
        };
        let answer = match self.policy.route(&state) {
            Route::Draining { retry_after_secs } => {
                // Shutting down: answered at once, neither counted nor logged; the carrier
                // retries or fails over to its other trunk target.
                self.counters.drained.fetch_add(1, Ordering::Relaxed);
                let retry = [("Retry-After", retry_after_secs.to_string())];
                self.respond(id, &req, 503, "Service Unavailable", &retry);
                return;
            }
            Route::Overloaded { retry_after_secs } => {
                self.counters.overloaded.fetch_add(1, Ordering::Relaxed);
                let retry = [("Retry-After", retry_after_secs.to_string())];
                self.respond(id, &req, 503, "Service Unavailable", &retry);
                return;
            }
            Route::Ring { ring_for } => Ok(ring_for),
            Route::Closed {
                status,
                reason,
                retry_after_secs,
            } => Err(Refusal {
                status,
                phrase: closed_phrase(status),
                retry_after_secs,
                cause: EndCause::Closed(reason),
            }),
            Route::Busy => Err(Refusal {
                status: 486,
                phrase: "Busy Here",
                retry_after_secs: None,
                cause: EndCause::Busy,
            }),
            Route::Unstaffed => Err(Refusal::UNSTAFFED),
        };
        // Every other answer comes after the loop check and our 100, and is logged.
        let mut fwd = req.clone();
        if let Err((status, reason)) = self.prepare_forward(&mut fwd) {
            self.respond(id, &req, status, reason, &[]);
            return;
        }
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        // 100 at once: the carrier stops retransmitting while we decide.
        self.respond(id, &req, 100, "Trying", &[]);
        let info = CallInfo {
            key: new_call_key(now),
            sip_call_id: req.call_id().unwrap_or_default(),
            caller: Some(Self::caller_id(&req)),
            line_number: Some(line),
            source: peer.addr.to_string(),
            arrived_at: now,
        };
        tracing::info!(call = %info.key, "incoming call");
        let ring_for = match answer {
            Ok(ring_for) => ring_for,
            Err(refusal) => {
                if self.try_announce(id, &req, peer, &info, &refusal) {
                    return;
                }
                self.refuse(id, &req, &info, refusal, now);
                return;
            }
        };
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
            callee_aor: None,
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
            self.refuse(id, &req, &call.info, Refusal::UNSTAFFED, now);
            return;
        }
        self.queue.out(Output::Event(CallEvent::Ringing {
            call: call.info.clone(),
            at: now,
        }));
        self.queue
            .out(Output::Arm(TimerKey::Ring(key.clone()), ring_for));
        self.server_to_call.insert(id, key.clone());
        self.by_call_id
            .insert(call.info.sip_call_id.clone(), key.clone());
        self.calls.insert(key, call);
        self.queue.txn(actions);
    }

    /// Answers a call the line does not ring, and logs how it ended.
    fn refuse(
        &mut self,
        id: TxnId,
        req: &SipMessage,
        info: &CallInfo,
        refusal: Refusal,
        now: DateTime<Utc>,
    ) {
        let extra: Vec<_> = refusal
            .retry_after_secs
            .map(|secs| ("Retry-After", secs.to_string()))
            .into_iter()
            .collect();
        self.respond(id, req, refusal.status, refusal.phrase, &extra);
        self.queue.out(Output::Event(CallEvent::Ended {
            call: info.clone(),
            at: now,
            cause: refusal.cause,
            hangup_by: None,
            rang_at: None,
            answered_at: None,
        }));
    }

    /// A response on a branch: provisionals and 2xx go to the caller at once (the first 2xx
    /// answers the call and cancels the other branches); a failure is the branch's own.
    pub(super) fn on_branch_response(&mut self, key: &str, idx: usize, mut resp: SipMessage) {
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
                self.cancel_branch(key, idx, reason);
                return;
            }
            if call.phase == Phase::Ringing && !call.cancelled && !call.timed_out {
                let server = call.server;
                let actions = self.txns.respond(server, resp);
                self.queue.txn(actions);
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
                call.callee_aor = Some(aor.clone());
                let operator = self.registrar.operator_of(&aor).map(str::to_string);
                tracing::info!(call = %call.info.key, phone = %aor, "call answered");
                self.queue.out(Output::Event(CallEvent::Answered {
                    call: call.info.clone(),
                    at: now,
                    operator,
                    extension: aor,
                }));
                self.queue
                    .out(Output::Disarm(TimerKey::Ring(key.to_string())));
                self.queue
                    .out(Output::Disarm(TimerKey::CancelGuard(key.to_string())));
                let limit = self.policy.max_call_duration();
                self.queue
                    .out(Output::Arm(TimerKey::CallGuard(key.to_string()), limit));
            }
            if late {
                // A 2xx after our own final to the caller (the ring timeout): the server
                // transaction would swallow it, but RFC 3261 §16.7 forwards every 2xx, so it
                // goes statelessly; the caller's UA then ACKs and hangs up the stray dialog.
                let caller = call.caller;
                self.queue.out(Output::Send(caller, resp.to_bytes()));
                self.maybe_forget(key);
                return;
            }
            let actions = self.txns.respond(server, resp);
            self.queue.txn(actions);
            if first {
                let Some(n) = self.calls.get(key).map(|c| c.branches.len()) else {
                    return;
                };
                for i in (0..n).filter(|i| *i != idx) {
                    self.cancel_branch(key, i, Some(wire::REASON_COMPLETED_ELSEWHERE));
                }
            }
            return;
        }
        // A final failure of this branch: a phone's 486/603 is its own business (branch-local),
        // the others keep ringing.
        self.branch_final(key, idx, status);
    }

    /// A branch's final failure (or timeout); when none is left ringing the best one answers
    /// the caller (§16.7 step 6).
    pub(super) fn branch_final(&mut self, key: &str, idx: usize, status: u16) {
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
            self.finish_unanswered(key, status, cause);
        }
        self.maybe_forget(key);
    }

    /// Gives the caller our final response to a call nobody answered, and logs how it ended.
    pub(super) fn finish_unanswered(&mut self, key: &str, status: u16, cause: EndCause) {
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
        self.queue.out(Output::Event(CallEvent::Ended {
            call: call.info.clone(),
            at: now,
            cause: detail_cause,
            hangup_by: None,
            rang_at: call.rang_at,
            answered_at: None,
        }));
        self.queue
            .out(Output::Disarm(TimerKey::Ring(key.to_string())));
        self.queue
            .out(Output::Disarm(TimerKey::CancelGuard(key.to_string())));
        if let Some(req) = self.txns.request(server) {
            let reason = match status {
                487 => "Request Terminated",
                480 => "Temporarily Unavailable",
                486 => "Busy Here",
                603 => "Decline",
                _ => "No Answer",
            };
            self.respond(server, &req, status, reason, &[]);
        }
    }

    /// Forgets an unanswered call once no branch can still answer.
    pub(super) fn maybe_forget(&mut self, key: &str) {
        let done = self.calls.get(key).is_some_and(|c| {
            c.phase == Phase::Ended && c.branches.iter().all(|b| b.final_status.is_some())
        });
        if done {
            self.forget(key);
        }
    }

    /// Drops a call from every table.
    pub(super) fn forget(&mut self, key: &str) {
        if let Some(call) = self.calls.remove(key) {
            // The wait for silent branches may still be armed (see `guard_silent_branches`).
            self.queue
                .out(Output::Disarm(TimerKey::CancelGuard(key.to_string())));
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

/// The reason phrase for the status a closed line answers with.
fn closed_phrase(status: u16) -> &'static str {
    match status {
        403 => "Forbidden",
        486 => "Busy Here",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Temporarily Unavailable",
    }
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
