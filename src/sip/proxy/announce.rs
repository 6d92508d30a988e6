//! The closed-hours announcement (early media, RFC 3960 style): a call the line does not
//! take hears the city's message in a `183 Session Progress` with an SDP answer, then gets
//! the final response it would have got anyway. Never a 2xx: on a toll-free line an
//! unanswered call costs the city nothing.
//!
//! Sans-IO like the rest of the core: it picks one of the RTP ports the driver bound, answers
//! the offer, and asks the driver ([`Output::Announce`]) to stream; the driver tells it when
//! the audio has ended ([`Input::AnnouncementEnded`](super::Input)), a guard timer covers a
//! driver that never does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::calls::{CallEvent, CallInfo, EndCause};
use crate::sip::media::{AnnouncementKind, Codec, Offer};
use crate::sip::txn::TxnId;
use crate::sip::wire::{self, SipMessage};

use super::call::Refusal;
use super::{Output, Peer, Proxy, TimerKey};

/// Slack after the audio's own length before the guard gives the final response anyway.
const GUARD_SLACK: Duration = Duration::from_secs(2);

/// What the core may play: the length of each configured announcement, the RTP ports the
/// driver bound (one per announcement at once), and the cap on how long one plays.
#[derive(Debug, Clone, Default)]
pub struct AnnouncePlan {
    /// How long each kind's audio plays; absent kinds are not configured.
    pub lengths: HashMap<AnnouncementKind, Duration>,
    /// Local RTP ports, each free for one announcement at a time.
    pub ports: Vec<u16>,
    /// `line.announcement_max_secs`.
    pub max: Duration,
}

/// What the driver must play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceOrder {
    /// Our call key.
    pub call: String,
    /// Which message.
    pub kind: AnnouncementKind,
    /// In which codec.
    pub codec: Codec,
    /// From which of the bound RTP ports.
    pub port: u16,
    /// To the offer's c=/m= address.
    pub to: SocketAddr,
    /// Stop after this long even if the audio is longer.
    pub limit: Duration,
}

/// An announcement playing.
pub(super) struct Playing {
    /// The caller's INVITE server transaction.
    server: TxnId,
    /// Our To tag on the 183, kept for the final response (one early dialog).
    tag: String,
    port: u16,
    status: u16,
    phrase: &'static str,
    retry_after_secs: Option<u64>,
}

/// The announcement side of the core.
#[derive(Default)]
pub(super) struct Announcer {
    plan: AnnouncePlan,
    free: Vec<u16>,
    playing: HashMap<String, Playing>,
}

impl Announcer {
    /// Gives back the room of a burst of closed-hours calls.
    pub(super) fn shrink(&mut self) {
        crate::sip::shrink::map(&mut self.playing);
    }

    /// Announcements playing now.
    pub(super) fn len(&self) -> usize {
        self.playing.len()
    }
}

impl Proxy {
    /// Plays announcements as `plan` says (none until this is called).
    pub fn set_announcements(&mut self, plan: AnnouncePlan) {
        self.announcer.free = plan.ports.iter().rev().copied().collect();
        self.announcer.plan = plan;
        self.announcer.playing.clear();
    }

    /// A call refused because the line is closed: plays its announcement when one is
    /// configured, a port is free and the INVITE offers G.711 we can send to; `false` (nothing
    /// done) otherwise, and the caller gets the bare final response.
    pub(super) fn try_announce(
        &mut self,
        id: TxnId,
        req: &SipMessage,
        peer: Peer,
        info: &CallInfo,
        refusal: &Refusal,
    ) -> bool {
        let EndCause::Closed(reason) = refusal.cause else {
            return false;
        };
        let kind = AnnouncementKind::for_reason(reason);
        let Some(length) = self.announcer.plan.lengths.get(&kind).copied() else {
            return false;
        };
        let is_sdp = req
            .header("Content-Type")
            .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/sdp"));
        if !is_sdp {
            return false;
        }
        let Some(offer) = Offer::parse(req.body()) else {
            return false;
        };
        // Our RTP socket has the address family of our SIP address.
        let Some(choice) = offer
            .choose()
            .filter(|c| c.remote.is_ipv4() == self.local.is_ipv4())
        else {
            return false;
        };
        let Some(port) = self.announcer.free.pop() else {
            tracing::debug!(call = %info.key, "every announcement port busy; bare final response");
            return false;
        };
        let ours = SocketAddr::new(self.local.ip(), port);
        let answer = offer.answer(&choice, ours, rand::random::<u32>().into());
        let tag = wire::new_tag();
        let mut resp = SipMessage::response_to(req, 183, "Session Progress", Some(&tag));
        let contact = format!("<sip:{};transport={}>", self.local, peer.transport.token());
        if resp.add_header("Contact", &contact).is_err()
            || resp
                .set_body(Some("application/sdp"), answer.as_bytes())
                .is_err()
        {
            self.announcer.free.push(port);
            return false;
        }
        let actions = self.txns.respond(id, resp);
        self.queue.txn(actions);
        let limit = length.min(self.announcer.plan.max);
        tracing::info!(call = %info.key, ?kind, codec = choice.codec.name(), "line closed: playing the announcement");
        // Logged now, exactly as a bare refusal is: the row does not depend on the caller
        // listening to the end, nor on the process living that long.
        self.queue.out(Output::Event(CallEvent::Ended {
            call: info.clone(),
            at: self.clock.now(),
            cause: EndCause::Closed(reason),
            hangup_by: None,
            rang_at: None,
            answered_at: None,
        }));
        self.queue.out(Output::Announce(AnnounceOrder {
            call: info.key.clone(),
            kind,
            codec: choice.codec,
            port,
            to: choice.remote,
            limit,
        }));
        self.queue.out(Output::Arm(
            TimerKey::Announcement(info.key.clone()),
            limit + GUARD_SLACK,
        ));
        self.announcer.playing.insert(
            info.key.clone(),
            Playing {
                server: id,
                tag,
                port,
                status: refusal.status,
                phrase: refusal.phrase,
                retry_after_secs: refusal.retry_after_secs,
            },
        );
        true
    }

    /// The audio of call `key` has ended (or its guard fired): the final response.
    pub(super) fn announcement_ended(&mut self, key: &str) {
        let Some(p) = self.stop_announcement(key) else {
            return;
        };
        let extra: Vec<_> = p
            .retry_after_secs
            .map(|secs| ("Retry-After", secs.to_string()))
            .into_iter()
            .collect();
        self.respond_tagged(p.server, p.status, p.phrase, &p.tag, &extra);
    }

    /// A CANCEL for INVITE `invite`: if it is playing an announcement, the audio stops and the
    /// INVITE gets 487. `false` when it is not one of ours.
    pub(super) fn cancel_announcement(&mut self, invite: TxnId) -> bool {
        let Some(key) = self
            .announcer
            .playing
            .iter()
            .find(|(_, p)| p.server == invite)
            .map(|(k, _)| k.clone())
        else {
            return false;
        };
        if let Some(p) = self.stop_announcement(&key) {
            tracing::info!(call = %key, "caller hung up during the announcement");
            self.respond_tagged(p.server, 487, "Request Terminated", &p.tag, &[]);
        }
        true
    }

    /// Forgets the announcement of `key`, tells the driver to stop and frees its port.
    fn stop_announcement(&mut self, key: &str) -> Option<Playing> {
        let p = self.announcer.playing.remove(key)?;
        self.queue
            .out(Output::Disarm(TimerKey::Announcement(key.to_string())));
        self.queue.out(Output::StopAnnouncement {
            call: key.to_string(),
            port: p.port,
        });
        self.announcer.free.push(p.port);
        Some(p)
    }

    /// Answers server transaction `id` with the To tag of its 183.
    fn respond_tagged(
        &mut self,
        id: TxnId,
        status: u16,
        phrase: &str,
        tag: &str,
        extra: &[(&str, String)],
    ) {
        let Some(req) = self.txns.request(id) else {
            return;
        };
        let mut r = SipMessage::response_to(&req, status, phrase, Some(tag));
        for (k, v) in extra {
            let _ = r.add_header(k, v);
        }
        let actions = self.txns.respond(id, r);
        self.queue.txn(actions);
    }
}
