//! Bindings kept beyond this process: every change of our own bindings goes out as
//! [`Output::Bindings`] (the driver stores it, off the SIP path), bindings stored before a
//! restart come back with [`Input::RestoreBindings`], and other instances' bindings arrive
//! with [`Input::RemoteBindings`] (issue 16 item 1, issue 18 item 9).

use super::timers::contact_peer;
use super::{Output, Peer, Proxy, TimerKey, Transport};
use crate::sip::registrar::{BindingTimer, SavedBinding};

/// How a stored binding names its transport.
fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    }
}

/// Where a stored binding is reached from this process: a UDP phone at the address it
/// registered from; a TCP phone (its connection is gone, or is another instance's) at its
/// Contact like after a closed flow (RFC 3261 §18.1.1), never an RFC 5626 outbound one.
fn reach(b: &SavedBinding) -> Option<Peer> {
    match b.transport.as_str() {
        "udp" => Some(Peer {
            transport: Transport::Udp,
            addr: b.source,
            flow: None,
        }),
        "tcp" if !b.outbound => contact_peer(
            &Peer {
                transport: Transport::Tcp,
                addr: b.source,
                flow: None,
            },
            &b.contact,
        ),
        _ => None,
    }
}

impl Proxy {
    /// Our bindings of `aor` changed: the driver stores what is left.
    pub(super) fn bindings_changed(&mut self, aor: &str) {
        let saved = self.registrar.saved(aor, |p: &Peer| {
            (transport_name(p.transport).to_string(), p.addr)
        });
        self.queue.out(Output::Bindings {
            aor: aor.to_string(),
            saved,
        });
    }

    /// The phones named by a batch of binding timers changed.
    pub(super) fn bindings_changed_by(&mut self, timers: &[BindingTimer]) {
        let mut aors: Vec<&str> = timers
            .iter()
            .map(|t| match t {
                BindingTimer::Arm(aor, ..) | BindingTimer::Disarm(aor, _) => aor.as_str(),
            })
            .collect();
        aors.sort_unstable();
        aors.dedup();
        for aor in aors {
            self.bindings_changed(aor);
        }
    }

    /// Our own bindings stored before a restart: the phones ring again at once instead of
    /// after their next REGISTER.
    pub(super) fn on_restore_bindings(&mut self, saved: Vec<SavedBinding>) {
        let now = self.clock.now();
        let mut restored = 0usize;
        for b in saved {
            let Some(peer) = reach(&b) else { continue };
            if let Some(BindingTimer::Arm(aor, contact, at)) = self.registrar.restore(b, peer, now)
            {
                restored += 1;
                let after = (at - now).to_std().unwrap_or_default();
                self.queue
                    .out(Output::Arm(TimerKey::Binding(aor, contact), after));
            }
        }
        if restored > 0 {
            tracing::info!(restored, "phone registrations taken back from the database");
        }
    }

    /// Another instance's bindings of one phone, as it stored them.
    pub(super) fn on_remote_bindings(
        &mut self,
        instance: &str,
        aor: &str,
        saved: Vec<SavedBinding>,
    ) {
        let list: Vec<(SavedBinding, Peer)> = saved
            .into_iter()
            // A TCP flow is the other instance's: only a UDP phone is reached from here.
            .filter(|b| b.transport == "udp")
            .filter_map(|b| reach(&b).map(|p| (b, p)))
            .collect();
        self.registrar
            .set_remote(instance, aor, list, self.clock.now());
    }
}
