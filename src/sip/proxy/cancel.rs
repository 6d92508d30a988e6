//! CANCEL (RFC 3261 §9, §16.10): a caller's CANCEL is answered at once and fanned out to
//! every branch still ringing; a branch that has sent no provisional yet gets its CANCEL when
//! one comes.

use crate::sip::txn::TxnId;
use crate::sip::wire::SipMessage;

use super::call::Phase;
use super::{Output, Proxy, TimerKey};

impl Proxy {
    /// A CANCEL from the caller: 200 at once, then a CANCEL on every branch (or on to the
    /// other side for a relayed re-INVITE). Ingress has checked it comes from the INVITE's
    /// sender.
    pub(super) fn on_cancel(&mut self, id: TxnId, req: SipMessage) {
        let Some(invite) = self.txns.invite_for_cancel(&req) else {
            self.respond(id, &req, 481, "Call/Transaction Does Not Exist", &[]);
            return;
        };
        self.respond(id, &req, 200, "OK", &[]);
        if self.cancel_announcement(invite) {
            return;
        }
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
                            self.queue.txn(a);
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
            self.cancel_branch(&key, i, None);
        }
        // Normally the phones' 487s end it; this bounds the wait for a silent phone.
        self.queue.out(Output::Arm(
            TimerKey::CancelGuard(key),
            self.settings.t1 * 8,
        ));
    }

    /// Cancels one branch, or marks it to be cancelled when its first provisional comes.
    pub(super) fn cancel_branch(&mut self, key: &str, idx: usize, reason: Option<&'static str>) {
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
            self.queue.txn(actions);
        }
    }
}
