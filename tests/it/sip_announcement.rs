//! Issue 16 item 4, the closed-hours announcement: outside the hours a caller whose INVITE
//! offers G.711 hears the city's message as early media (183 Session Progress with SDP, RTP
//! to the offer's address), then gets the final 480; the call is logged `closed` with its
//! reason as before. The trunk here is a small UA on 127.0.0.1 and the caller's media a UDP
//! socket of the test.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::rig::{jst, Rig, CALLER, LINE};
use madoguchi::config::Config;
use madoguchi::sip::media::{AnnouncementKind, Audio, Codec};
use madoguchi::sip::wire::{new_tag, SipMessage};
use tokio::net::UdpSocket;

/// A tone of `ms` milliseconds at `hz`, as an announcement.
fn tone(ms: usize, hz: f64) -> Audio {
    let n = ms * 8;
    Audio::from_samples(
        (0..n)
            .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16)
            .collect(),
    )
}

/// One received RTP packet, header read (RFC 3550 §5.1).
#[derive(Debug)]
struct Rtp {
    version: u8,
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: Vec<u8>,
    from: SocketAddr,
}

/// The trunk's side of one call. Its one UDP socket takes the SIP responses and the RTP
/// (the offer names it), so what arrived before the final response is known exactly, in the
/// order the kernel queued it.
struct Caller {
    sock: UdpSocket,
    local: SocketAddr,
    sip: SocketAddr,
    call_id: String,
    from_tag: String,
    branch: String,
    /// RTP packets read so far.
    rtp: Vec<Rtp>,
}

/// An RTP packet's header read (RFC 3550 §5.1).
fn parse_rtp(b: &[u8], from: SocketAddr) -> Rtp {
    assert!(b.len() >= 12, "an RTP packet has a 12-byte header: {b:?}");
    Rtp {
        version: b[0] >> 6,
        marker: b[1] & 0x80 != 0,
        pt: b[1] & 0x7F,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        payload: b[12..].to_vec(),
        from,
    }
}

fn sdp_offer(port: u16, formats: &str, extra: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n{extra}"
    )
}

impl Caller {
    async fn new(sip: SocketAddr) -> Caller {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Caller {
            local: sock.local_addr().unwrap(),
            sock,
            rtp: Vec::new(),
            sip,
            call_id: format!("ann-{}", new_tag()),
            from_tag: new_tag(),
            branch: format!("z9hG4bK{}", new_tag()),
        }
    }

    fn head(&self, method: &str, to_tag: Option<&str>) -> String {
        let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        format!(
            "{method} sip:{LINE}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={br};rport\r\nFrom: <sip:{CALLER}@{ip}>;tag={ft}\r\nTo: <sip:{LINE}@{sip}>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n",
            sip = self.sip,
            me = self.local,
            br = self.branch,
            ip = self.local.ip(),
            ft = self.from_tag,
            cid = self.call_id,
        )
    }

    /// Sends the INVITE, with `sdp` as its body if any.
    async fn invite(&mut self, sdp: Option<&str>) {
        let mut text = self.head("INVITE", None);
        text.push_str(&format!("Contact: <sip:{CALLER}@{}>\r\n", self.local));
        match sdp {
            Some(body) => text.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )),
            None => text.push_str("Content-Length: 0\r\n\r\n"),
        }
        self.sock.send_to(text.as_bytes(), self.sip).await.unwrap();
    }

    async fn cancel(&mut self) {
        let text = format!("{}Content-Length: 0\r\n\r\n", self.head("CANCEL", None));
        self.sock.send_to(text.as_bytes(), self.sip).await.unwrap();
    }

    /// ACKs a non-2xx final (RFC 3261 §17.1.1.3), so the server stops retransmitting it.
    async fn ack(&mut self, fin: &SipMessage) {
        let text = format!(
            "{}Content-Length: 0\r\n\r\n",
            self.head("ACK", fin.to_tag().as_deref())
        );
        self.sock.send_to(text.as_bytes(), self.sip).await.unwrap();
    }

    /// Where the caller takes its media: its own socket.
    fn media_port(&self) -> u16 {
        self.local.port()
    }

    /// The next SIP message, reading the RTP that comes before it; `None` after `limit`.
    async fn recv(&mut self, limit: Duration) -> Option<SipMessage> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, from) = tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            let b = &buf[..n];
            if b[0] >> 6 == 2 {
                self.rtp.push(parse_rtp(b, from));
            } else if let Ok(m) = SipMessage::parse_datagram(b) {
                return Some(m);
            }
        }
    }

    /// Reads RTP for `d` (a SIP message meanwhile is a failure).
    async fn listen(&mut self, d: Duration) {
        if let Some(m) = self.recv(d).await {
            panic!("unexpected SIP message: {m:?}");
        }
    }

    /// Every response to the INVITE up to and including its final one.
    async fn until_final(&mut self, limit: Duration) -> (Vec<SipMessage>, SipMessage) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut provisional = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self
                .recv(left)
                .await
                .unwrap_or_else(|| panic!("no final response within {limit:?}: {provisional:?}"));
            let Some(status) = m.status() else { continue };
            if m.cseq().map(|c| c.1) != Some("INVITE".into()) {
                continue;
            }
            if status < 200 {
                provisional.push(m);
            } else {
                return (provisional, m);
            }
        }
    }

    /// The 183 with its SDP answer (skipping the 100).
    async fn session_progress(&mut self) -> SipMessage {
        loop {
            let m = self
                .recv(Duration::from_secs(5))
                .await
                .expect("183 Session Progress");
            match m.status() {
                Some(100) => continue,
                Some(183) => return m,
                other => panic!("expected 183, got {other:?}: {m:?}"),
            }
        }
    }
}

/// The answer's m=audio port and formats.
fn answered_audio(resp: &SipMessage) -> (u16, Vec<String>, String) {
    assert_eq!(
        resp.header("Content-Type").as_deref(),
        Some("application/sdp")
    );
    let body = String::from_utf8(resp.body().to_vec()).unwrap();
    let m = body
        .lines()
        .find(|l| l.starts_with("m=audio "))
        .unwrap_or_else(|| panic!("an audio m-line: {body}"));
    let parts: Vec<&str> = m.split_whitespace().collect();
    (
        parts[1].parse().unwrap(),
        parts[3..].iter().map(|s| s.to_string()).collect(),
        body,
    )
}

/// Packets of one stream: version 2, one SSRC, `pt`, the marker on the first only,
/// consecutive sequence numbers and timestamps 160 apart, all from `port`.
fn assert_one_stream(packets: &[Rtp], pt: u8, port: u16) {
    assert!(!packets.is_empty());
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p.version, 2, "packet {i}");
        assert_eq!(p.pt, pt, "packet {i}");
        assert_eq!(p.marker, i == 0, "marker on the first packet only: {i}");
        assert_eq!(p.ssrc, packets[0].ssrc, "packet {i}");
        assert_eq!(p.payload.len(), 160, "20 ms of G.711: packet {i}");
        assert_eq!(p.from.port(), port, "sent from the port of the SDP answer");
        if i > 0 {
            let prev = &packets[i - 1];
            assert_eq!(p.seq, prev.seq.wrapping_add(1), "packet {i}");
            assert_eq!(p.ts, prev.ts.wrapping_add(160), "packet {i}");
        }
    }
}

async fn rig(at: DateTime<Utc>, tweak: impl FnOnce(&mut Config)) -> Option<Rig> {
    Rig::new(at, tweak).await
}

/// Issue 16 item 4 acceptance, R-HOURS-1: a call at 18:00 on a weekday of the period gets
/// 183 with SDP, the shipped closed-hours message as PCMU RTP at the offer's address, then
/// 480 with Retry-After; logged closed (outside the hours) on each database backend. Never
/// a 2xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_at_six_pm_hears_the_closed_message_then_480() {
    for kind in common::backends() {
        let Some(rig) = Rig::on(kind, jst(2026, 11, 25, 18, 0), |_| {}).await else {
            return;
        };
        six_pm_call(rig).await;
    }
}

async fn six_pm_call(rig: Rig) {
    let shipped =
        Audio::load(&common::profile_dir().join("announcements/closed.wav")).expect("shipped");
    let mut caller = Caller::new(rig.app.server.sip_addr).await;
    let offer = sdp_offer(
        caller.media_port(),
        "0 8 101",
        "a=rtpmap:101 telephone-event/8000\r\n",
    );
    caller.invite(Some(&offer)).await;
    let progress = caller.session_progress().await;
    let (port, formats, body) = answered_audio(&progress);
    assert_eq!(formats, ["0"], "the offerer's first G.711 codec: {body}");
    assert!(port != 0 && body.contains("a=sendonly"), "{body}");
    assert!(body.contains("c=IN IP4 127.0.0.1"), "{body}");
    let (more, fin) = caller
        .until_final(shipped.duration() + Duration::from_secs(10))
        .await;
    assert!(
        more.iter().all(|m| m.status() != Some(183)),
        "one 183: {more:?}"
    );
    assert_eq!(fin.status(), Some(480), "never answered: {fin:?}");
    assert_eq!(fin.reason().as_deref(), Some("Temporarily Unavailable"));
    let retry: u64 = fin.header("Retry-After").unwrap().parse().unwrap();
    assert!(
        (53_900..=54_000).contains(&retry),
        "about 15 h to Thursday 09:00: {retry}"
    );
    assert_eq!(fin.to_tag(), progress.to_tag(), "one early dialog");
    caller.ack(&fin).await;
    let before_final = caller.rtp.len();
    assert_one_stream(&caller.rtp, 0, port);
    assert_eq!(
        before_final,
        shipped.packets(),
        "the whole message, in 20 ms packets, before the final response"
    );
    for (i, p) in caller.rtp.iter().enumerate() {
        assert_eq!(p.payload, shipped.payload(i, Codec::Pcmu), "packet {i}");
    }
    caller.listen(Duration::from_millis(300)).await;
    assert_eq!(
        caller.rtp.len(),
        before_final,
        "nothing after the final response"
    );
    let c = &rig.ended_calls(1).await[0];
    assert_eq!(c["end_cause"], "closed");
    assert_eq!(c["end_detail"], "outside_hours");
    assert!(c["answered_at"].is_null() && c["rang_at"].is_null(), "{c}");
    rig.stop().await;
}

/// On a holiday the holiday message plays; an offer of PCMA only is answered in PCMA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holiday_call_hears_the_holiday_message_in_pcma() {
    let holiday = tone(500, 1000.0);
    let closed = tone(300, 400.0);
    let (h, c) = (holiday.clone(), closed.clone());
    // 2026-09-22, 国民の休日, 10:00.
    let Some(rig) = rig(jst(2026, 9, 22, 10, 0), move |cfg| {
        let a = &mut cfg.profile.announcements;
        a.set(AnnouncementKind::Holiday, Some(h));
        a.set(AnnouncementKind::Closed, Some(c));
    })
    .await
    else {
        return;
    };
    let mut caller = Caller::new(rig.app.server.sip_addr).await;
    let offer = sdp_offer(caller.media_port(), "8", "a=recvonly\r\n");
    caller.invite(Some(&offer)).await;
    let progress = caller.session_progress().await;
    let (port, formats, body) = answered_audio(&progress);
    assert_eq!(formats, ["8"], "{body}");
    assert!(body.contains("a=rtpmap:8 PCMA/8000"), "{body}");
    let (_, fin) = caller.until_final(Duration::from_secs(10)).await;
    assert_eq!(fin.status(), Some(480));
    caller.ack(&fin).await;
    assert_one_stream(&caller.rtp, 8, port);
    assert_eq!(
        caller.rtp.len(),
        holiday.packets(),
        "the holiday message's length"
    );
    for (i, p) in caller.rtp.iter().enumerate() {
        assert_eq!(p.payload, holiday.payload(i, Codec::Pcma), "packet {i}");
    }
    let c = &rig.ended_calls(1).await[0];
    assert_eq!(c["end_cause"], "closed");
    assert_eq!(c["end_detail"], "national_holiday");
    rig.stop().await;
}

/// No SDP, no G.711, a caller that will not receive, or an SDP we cannot read: the bare
/// 480 as before, no 183, no RTP, still logged closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_usable_offer_the_caller_gets_the_bare_480() {
    let Some(rig) = rig(jst(2026, 11, 25, 18, 0), |cfg| {
        cfg.profile
            .announcements
            .set(AnnouncementKind::Closed, Some(tone(200, 400.0)));
    })
    .await
    else {
        return;
    };
    let offers: [fn(u16) -> Option<String>; 6] = [
        |_| None,
        |p| Some(sdp_offer(p, "18", "")),
        |p| Some(sdp_offer(p, "0", "a=sendonly\r\n")),
        |p| Some(sdp_offer(p, "0", "a=inactive\r\n")),
        |p| Some(format!("v=0\r\nm=audio {p} RTP/AVP 0\r\n")),
        |_| Some("this is not SDP".to_string()),
    ];
    for make in offers {
        let mut caller = Caller::new(rig.app.server.sip_addr).await;
        let offer = make(caller.media_port());
        caller.invite(offer.as_deref()).await;
        let (provisional, fin) = caller.until_final(Duration::from_secs(5)).await;
        assert!(
            provisional.iter().all(|m| m.status() == Some(100)),
            "no 183 for {offer:?}: {provisional:?}"
        );
        assert_eq!(fin.status(), Some(480), "{offer:?}");
        assert!(fin.header("Retry-After").is_some());
        caller.ack(&fin).await;
        caller.listen(Duration::from_millis(100)).await;
        assert!(caller.rtp.is_empty(), "no RTP for {offer:?}");
    }
    let calls = rig.ended_calls(offers.len()).await;
    assert!(
        calls
            .iter()
            .all(|c| c["end_cause"] == "closed" && c["end_detail"] == "outside_hours"),
        "{calls:?}"
    );
    rig.stop().await;
}

/// The caller hangs up during the message: 200 to the CANCEL, 487 to the INVITE, the RTP
/// stops; the call stays logged closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_the_message_stops_it_with_487() {
    let long = tone(5000, 400.0);
    let l = long.clone();
    let Some(rig) = rig(jst(2026, 11, 25, 18, 0), move |cfg| {
        cfg.profile
            .announcements
            .set(AnnouncementKind::Closed, Some(l));
    })
    .await
    else {
        return;
    };
    let mut caller = Caller::new(rig.app.server.sip_addr).await;
    let offer = sdp_offer(caller.media_port(), "0", "");
    caller.invite(Some(&offer)).await;
    caller.session_progress().await;
    while caller.rtp.len() < 10 {
        if let Some(m) = caller.recv(Duration::from_millis(100)).await {
            panic!("nothing but RTP while the message plays: {m:?}");
        }
    }
    caller.cancel().await;
    let (mut cancel_ok, mut fin) = (false, None);
    while !cancel_ok || fin.is_none() {
        let m = caller
            .recv(Duration::from_secs(5))
            .await
            .expect("answers to CANCEL and INVITE");
        match (m.status(), m.cseq().map(|c| c.1).as_deref()) {
            (Some(200), Some("CANCEL")) => cancel_ok = true,
            (Some(s), Some("INVITE")) if s >= 200 => fin = Some(m),
            _ => {}
        }
    }
    let fin = fin.unwrap();
    assert_eq!(fin.status(), Some(487), "{fin:?}");
    caller.ack(&fin).await;
    // At most a packet in flight after the 487; then silence.
    caller.listen(Duration::from_millis(200)).await;
    let heard = caller.rtp.len();
    caller.listen(Duration::from_millis(500)).await;
    assert_eq!(caller.rtp.len(), heard, "the RTP stopped");
    assert!(
        heard < long.packets(),
        "the message did not play to its end: {heard} of {}",
        long.packets()
    );
    let c = &rig.ended_calls(1).await[0];
    assert_eq!(c["end_cause"], "closed");
    assert_eq!(c["end_detail"], "outside_hours");
    rig.stop().await;
}

/// `line.max_announcements`: one message at a time here, so a second closed call while it
/// plays gets the bare 480.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_cap_a_closed_call_gets_the_bare_480() {
    let Some(rig) = rig(jst(2026, 11, 25, 18, 0), |cfg| {
        cfg.profile.line.max_announcements = 1;
        cfg.profile
            .announcements
            .set(AnnouncementKind::Closed, Some(tone(2000, 400.0)));
    })
    .await
    else {
        return;
    };
    let mut first = Caller::new(rig.app.server.sip_addr).await;
    let offer = sdp_offer(first.media_port(), "0", "");
    first.invite(Some(&offer)).await;
    first.session_progress().await;
    let mut second = Caller::new(rig.app.server.sip_addr).await;
    let offer = sdp_offer(second.media_port(), "0", "");
    second.invite(Some(&offer)).await;
    let (provisional, fin) = second.until_final(Duration::from_secs(5)).await;
    assert!(provisional.iter().all(|m| m.status() == Some(100)));
    assert_eq!(fin.status(), Some(480));
    second.ack(&fin).await;
    let (_, fin) = first.until_final(Duration::from_secs(15)).await;
    assert_eq!(fin.status(), Some(480));
    first.ack(&fin).await;
    assert!(!first.rtp.is_empty());
    assert!(second.rtp.is_empty(), "no RTP to the second caller");
    rig.stop().await;
}

/// A WAV the line cannot play stops the load with the option, the file and the problem.
#[test]
fn a_wav_in_the_wrong_format_is_a_config_error() {
    let d = tempfile::tempdir().unwrap();
    common::copy_profile(d.path());
    // 44.1 kHz 16-bit PCM, the usual export of an editor.
    let mut wav = b"RIFF\x28\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x44\xac\0\0\x88\x58\x01\0\x02\0\x10\0data\x04\0\0\0".to_vec();
    wav.extend_from_slice(&[0, 0, 0, 0]);
    std::fs::write(d.path().join("announcements/closed.wav"), &wav).unwrap();
    let e = madoguchi::config::Profile::load(d.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line.closed_announcement")
            && e.contains("closed.wav")
            && e.contains("44100 Hz; it must be 8000 Hz"),
        "{e}"
    );
    // Stereo at 8 kHz.
    wav[22] = 2;
    wav[24..28].copy_from_slice(&8000u32.to_le_bytes());
    std::fs::write(d.path().join("announcements/closed.wav"), &wav).unwrap();
    let e = madoguchi::config::Profile::load(d.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 channels; it must be mono"), "{e}");
}
