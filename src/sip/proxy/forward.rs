//! Request forwarding steps shared by new calls and in-dialog requests (RFC 3261 §16.4 route
//! information preprocessing, §16.6 steps 3–8, §16.3 step 4 loop detection): Max-Forwards,
//! our Route values off, our Via and Record-Route on.

use crate::sip::wire::{branch, uri, SipMessage};

use super::{Proxy, Transport};

impl Proxy {
    /// Whether a URI names this proxy.
    fn is_us(&self, u: &uri::SipUri) -> bool {
        let port = u.port.unwrap_or(5060);
        u.host_ip() == Some(self.local.ip()) && port == self.local.port()
    }

    /// Removes our own Route values from the top (loose routing, RFC 3261 §16.4).
    fn strip_our_routes(&self, msg: &mut SipMessage) {
        // A strict-routing previous hop put us in the Request-URI: restore the real target.
        if msg.request_uri().is_some_and(|u| self.is_us(&u)) {
            if let Ok(routes) = msg.routes() {
                if let Some(last) = routes.last().filter(|l| !self.is_us(l)) {
                    let _ = msg.set_request_uri(&last.to_string());
                }
            }
        }
        while let Ok(routes) = msg.routes() {
            match routes.first() {
                Some(r) if self.is_us(r) => {
                    if !matches!(msg.remove_first_route(), Ok(true)) {
                        break;
                    }
                }
                _ => break,
            }
        }
    }

    /// Whether the request already went through us (a loop, §16.3 step 4).
    fn has_our_via(&self, msg: &SipMessage) -> bool {
        let ours = format!("{}", self.local);
        msg.vias()
            .map(|v| {
                v.iter().any(|v| {
                    v.sent_by() == ours
                        && v.branch
                            .as_deref()
                            .is_some_and(|b| b.starts_with("z9hG4bKmdg"))
                })
            })
            .unwrap_or(false)
    }

    /// A fresh branch for a Via of ours.
    pub(super) fn next_branch(&mut self) -> String {
        self.branch_seq = self.branch_seq.wrapping_add(1);
        branch::encode(branch::BranchId {
            slot: self.branch_seq,
            generation: branch::random_generation(),
            branch: 0,
        })
    }

    /// Our Via value for a request sent over `transport`.
    pub(super) fn via_value(&self, transport: Transport, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch}",
            transport.token(),
            self.local
        )
    }

    /// Our Record-Route value for the side reached over `transport`.
    pub(super) fn rr_value(&self, transport: Transport) -> String {
        match transport {
            Transport::Udp => format!("<sip:{};lr>", self.local),
            Transport::Tcp => format!("<sip:{};transport=tcp;lr>", self.local),
        }
    }

    /// Common steps before a request goes on: loop check, Max-Forwards, our routes off.
    pub(super) fn prepare_forward(&self, msg: &mut SipMessage) -> Result<(), (u16, &'static str)> {
        if self.has_our_via(msg) {
            return Err((482, "Loop Detected"));
        }
        if msg.max_forwards_is_zero() {
            return Err((483, "Too Many Hops"));
        }
        let _ = msg.decrement_max_forwards();
        self.strip_our_routes(msg);
        Ok(())
    }
}
