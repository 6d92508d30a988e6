//! The tokio side of the closed-hours announcement: the RTP sockets (one per announcement
//! playing at once, bound at start on the SIP address) and the task that streams one
//! announcement, paced at one 20 ms packet per tick.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::media::{AnnouncementKind, Announcements, RtpStream, PACKET_INTERVAL};
use super::proxy::{AnnounceOrder, AnnouncePlan};

/// The announcements and the sockets they are played from.
#[derive(Debug, Default)]
pub struct RtpPool {
    sockets: HashMap<u16, Arc<UdpSocket>>,
    audio: Announcements,
}

impl RtpPool {
    /// Binds `count` UDP sockets on `ip` (ephemeral ports) for `audio`; none when no
    /// announcement is configured.
    pub async fn bind(ip: IpAddr, count: usize, audio: Announcements) -> std::io::Result<Self> {
        let mut sockets = HashMap::new();
        if audio.any() {
            for _ in 0..count {
                let s = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
                sockets.insert(s.local_addr()?.port(), Arc::new(s));
            }
        }
        Ok(Self { sockets, audio })
    }

    /// What the proxy core may play, each announcement at most `max`.
    pub fn plan(&self, max: Duration) -> AnnouncePlan {
        let mut ports: Vec<u16> = self.sockets.keys().copied().collect();
        ports.sort_unstable();
        let lengths = AnnouncementKind::ALL
            .iter()
            .filter_map(|k| self.audio.get(*k).map(|a| (*k, a.duration())))
            .collect();
        AnnouncePlan {
            lengths,
            ports,
            max,
        }
    }

    /// The stream `order` asks for, until its audio (or its limit) ends or `stop` is
    /// cancelled; `None` when the port or the audio is unknown.
    pub fn stream(
        &self,
        order: &AnnounceOrder,
        stop: CancellationToken,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let sock = self.sockets.get(&order.port)?.clone();
        let audio = self.audio.get(order.kind)?.clone();
        let limit_packets = order
            .limit
            .as_millis()
            .div_ceil(PACKET_INTERVAL.as_millis());
        let packets = audio
            .packets()
            .min(usize::try_from(limit_packets).unwrap_or(usize::MAX));
        let (codec, to) = (order.codec, order.to);
        Some(async move {
            let mut rtp = RtpStream::new(codec);
            let mut tick = tokio::time::interval(PACKET_INTERVAL);
            // A late tick sends the packets it owes at once: the caller's jitter buffer copes,
            // and the message is heard whole.
            tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
            for i in 0..packets {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let packet = rtp.packet(&audio.payload(i, codec));
                if let Err(e) = sock.send_to(&packet, to).await {
                    tracing::debug!(error = %e, %to, "RTP send failed");
                }
            }
        })
    }
}
