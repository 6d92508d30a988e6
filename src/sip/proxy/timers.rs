//! Timers and flows: transaction timers (RFC 3261 §17), the ring timeout, the wait for
//! branches after a CANCEL, the guard on an answered call whose BYE never comes, registration
//! expiry, and a TCP connection that closed (RFC 5626-style flows).

use crate::calls::{CallEvent, EndCause};
use crate::sip::registrar::BindingTimer;

use super::call::Phase;
use super::{Output, Proxy, TimerKey};

impl Proxy {
    /// A timer fired.
    pub(super) fn on_timer(&mut self, key: TimerKey) {
        match key {
            TimerKey::Txn(t) => {
                let actions = self.txns.on_timer(t);
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
                    self.maybe_forget(&k);
                }
            }
            TimerKey::CancelGuard(k) => {
                self.finish_unanswered(&k, 487, EndCause::Abandoned);
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
            TimerKey::Binding(aor, contact) => {
                self.registrar.expire(&aor, &contact, self.clock.now());
            }
        }
    }

    /// A TCP connection closed: its bindings go, and transactions sending over it fail.
    pub(super) fn on_flow_closed(&mut self, flow: u64) {
        for t in self.registrar.flow_closed(|p| p.flow == Some(flow)) {
            if let BindingTimer::Disarm(aor, contact) = t {
                self.queue
                    .out(Output::Disarm(TimerKey::Binding(aor, contact)));
            }
        }
        for id in self.txns.clients_to(|p| p.flow == Some(flow)) {
            let actions = self.txns.on_transport_error(id);
            self.queue.txn(actions);
        }
    }
}
