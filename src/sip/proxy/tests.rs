//! The seams of the core, driven directly: the routing policy decides what a new call gets,
//! the trunk filter who may start one. (The whole call flow is in `tests/sip_leaks.rs` and the
//! sipp interop tests.)

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::*;
use crate::calls::EndCause;
use crate::clock::ManualClock;
use crate::hours::ClosedReason;
use crate::sip::policy::{LineNow, Route, RoutingPolicy, DRAIN_RETRY_AFTER_SECS};
use crate::sip::settings::{RegistrarSettings, RejectMode};

/// A policy that always answers the same, so each answer can be checked on its own.
struct Always(Route);

impl RoutingPolicy for Always {
    fn route(&self, _line: &LineNow) -> Route {
        self.0.clone()
    }

    fn max_call_duration(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

const TRUNK: &str = "127.0.0.1:5070";

fn proxy(route: Route) -> Proxy {
    let settings = SipSettings {
        trunk_nets: vec!["127.0.0.1/32".parse().unwrap()],
        line_numbers: vec!["0120000000".into()],
        reject: RejectMode::Forbidden,
        registrar: RegistrarSettings::default(),
        phones: Vec::new(),
        t1: Duration::from_millis(500),
        t2: Duration::from_secs(4),
        t4: Duration::from_secs(5),
        limits: Default::default(),
        carrier: Default::default(),
    };
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 25, 1, 0, 0).unwrap());
    Proxy::new(
        settings,
        Always(route),
        Arc::new(clock),
        "127.0.0.1:5060".parse().unwrap(),
        Arc::new(SipCounters::default()),
    )
    .unwrap()
}

fn invite_from(source: &str) -> Input {
    let text = format!(
        "INVITE sip:0120000000@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {source};branch=z9hG4bK-t1\r\nFrom: <sip:0134220001@{source}>;tag=a\r\nTo: <sip:0120000000@127.0.0.1:5060>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let peer = Peer {
        transport: Transport::Udp,
        addr: source.parse::<SocketAddr>().unwrap(),
        flow: None,
    };
    Input::Datagram(Bytes::from(text), peer)
}

/// Feeds one input and drains the outputs.
fn step(proxy: &mut Proxy, input: Input) -> Vec<Output> {
    proxy.handle_input(input);
    std::iter::from_fn(|| proxy.poll_output()).collect()
}

/// The responses sent, in order: (status, Retry-After).
fn answers(out: &[Output]) -> Vec<(u16, Option<String>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(_, b) => SipMessage::parse_datagram(b).ok(),
            _ => None,
        })
        .filter_map(|m| Some((m.status()?, m.header("Retry-After"))))
        .collect()
}

fn causes(out: &[Output]) -> Vec<EndCause> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(CallEvent::Ended { cause, .. }) => Some(cause.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_call_the_policy_refuses_gets_100_then_its_final_and_is_logged() {
    let closed = Route::Closed {
        status: 480,
        reason: ClosedReason::Weekend,
        retry_after_secs: Some(3600),
    };
    let cases = [
        (
            closed,
            480,
            Some("3600".to_string()),
            EndCause::Closed(ClosedReason::Weekend),
        ),
        (Route::Busy, 486, None, EndCause::Busy),
        (Route::Unstaffed, 480, None, EndCause::Unstaffed),
    ];
    for (route, status, retry_after, cause) in cases {
        let mut p = proxy(route);
        let out = step(&mut p, invite_from(TRUNK));
        assert_eq!(answers(&out), [(100, None), (status, retry_after)]);
        assert_eq!(causes(&out), [cause]);
        assert_eq!(p.counters.calls.load(Ordering::Relaxed), 1);
    }
}

#[test]
fn draining_answers_503_at_once_and_logs_nothing() {
    let mut p = proxy(Route::Draining {
        retry_after_secs: DRAIN_RETRY_AFTER_SECS,
    });
    let out = step(&mut p, invite_from(TRUNK));
    assert_eq!(answers(&out), [(503, Some("30".to_string()))]);
    assert!(causes(&out).is_empty());
    assert_eq!(p.counters.drained.load(Ordering::Relaxed), 1);
    assert_eq!(p.counters.calls.load(Ordering::Relaxed), 0);
}

#[test]
fn only_the_trunk_may_start_a_call() {
    let mut p = proxy(Route::Unstaffed);
    let out = step(&mut p, invite_from("192.0.2.9:5060"));
    assert_eq!(answers(&out), [(403, None)]);
    assert_eq!(causes(&out), [EndCause::Rejected]);
    assert_eq!(p.counters.rejected.load(Ordering::Relaxed), 1);
    assert_eq!(p.counters.calls.load(Ordering::Relaxed), 0);
    assert_eq!(
        p.source("127.0.0.1".parse().unwrap()),
        ingress::Source::Trunk
    );
    assert_eq!(
        p.source("192.0.2.9".parse().unwrap()),
        ingress::Source::Stranger
    );
}

fn invite_with_sdp(call_id: &str, sdp: &str) -> Input {
    let text = format!(
        "INVITE sip:0120000000@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-{call_id}\r\nFrom: <sip:0134220001@{TRUNK}>;tag=a\r\nTo: <sip:0120000000@127.0.0.1:5060>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let peer = Peer {
        transport: Transport::Udp,
        addr: TRUNK.parse().unwrap(),
        flow: None,
    };
    Input::Datagram(Bytes::from(text), peer)
}

/// Issue 16 item 4, Sans-IO: a closed call with a G.711 offer gets 183 with our SDP answer,
/// an order to play from a free port and a guard timer, no I/O; the driver's "ended" brings
/// the 480 with Retry-After in the same early dialog, and frees the port. With every port in
/// use the next closed call gets the bare 480. Never a 2xx.
#[test]
fn a_closed_call_plays_the_announcement_then_gets_its_final() {
    use crate::sip::media::{AnnouncementKind, Codec};
    let mut p = proxy(Route::Closed {
        status: 480,
        reason: ClosedReason::Weekend,
        retry_after_secs: Some(3600),
    });
    p.set_announcements(AnnouncePlan {
        lengths: [(AnnouncementKind::Closed, Duration::from_secs(9))].into(),
        ports: vec![40000],
        max: Duration::from_secs(5),
    });
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";
    let out = step(&mut p, invite_with_sdp("c1", sdp));
    assert_eq!(answers(&out), [(100, None), (183, None)]);
    let progress = out
        .iter()
        .filter_map(|o| match o {
            Output::Send(_, b) => SipMessage::parse_datagram(b).ok(),
            _ => None,
        })
        .find(|m| m.status() == Some(183))
        .unwrap();
    let body = String::from_utf8(progress.body().to_vec()).unwrap();
    assert!(body.contains("m=audio 40000 RTP/AVP 0\r\n"), "{body}");
    assert!(body.contains("c=IN IP4 127.0.0.1\r\n"), "{body}");
    let order = out
        .iter()
        .find_map(|o| match o {
            Output::Announce(a) => Some(a.clone()),
            _ => None,
        })
        .expect("an order to play");
    assert_eq!(order.port, 40000);
    assert_eq!(order.to, "192.0.2.5:7000".parse().unwrap());
    assert_eq!(order.codec, Codec::Pcmu);
    assert_eq!(order.kind, AnnouncementKind::Closed);
    assert_eq!(order.limit, Duration::from_secs(5), "capped at the maximum");
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Arm(TimerKey::Announcement(k), _) if *k == order.call)));
    assert_eq!(causes(&out), [EndCause::Closed(ClosedReason::Weekend)]);
    assert_eq!(p.table_sizes().calls, 1);

    // The only port is in use: the next closed call gets the bare 480.
    let out = step(&mut p, invite_with_sdp("c2", sdp));
    assert_eq!(
        answers(&out),
        [(100, None), (480, Some("3600".to_string()))]
    );

    let out = step(&mut p, Input::AnnouncementEnded(order.call.clone()));
    assert_eq!(answers(&out), [(480, Some("3600".to_string()))]);
    let fin = out
        .iter()
        .find_map(|o| match o {
            Output::Send(_, b) => SipMessage::parse_datagram(b).ok(),
            _ => None,
        })
        .unwrap();
    assert_eq!(fin.to_tag(), progress.to_tag());
    assert!(out.iter().any(
        |o| matches!(o, Output::StopAnnouncement { call, port: 40000 } if *call == order.call)
    ));
    assert!(causes(&out).is_empty(), "logged once, when it came");
    assert_eq!(p.table_sizes().calls, 0);
    // The port is free again: the guard of a finished call does nothing.
    assert!(answers(&step(
        &mut p,
        Input::Timer(TimerKey::Announcement(order.call))
    ))
    .is_empty());
    let out = step(&mut p, invite_with_sdp("c3", sdp));
    assert_eq!(answers(&out), [(100, None), (183, None)]);
}

/// A core registering with a carrier at `registrar`.
fn registering_proxy(registrar: &str) -> Proxy {
    let reg: crate::sip::carrier::RegistrationFile = toml::from_str(&format!(
        "registrar = \"{registrar}\"\nusername = \"0120000000\"\npassword = \"carrier-secret\"\nexpires = 300\n"
    ))
    .unwrap();
    let mut p = proxy(Route::Unstaffed);
    let carrier = crate::sip::carrier::validate(Some(&reg), None).unwrap();
    let settings = SipSettings {
        carrier,
        ..p.settings.clone()
    };
    p = Proxy::new(
        settings,
        Always(Route::Unstaffed),
        p.clock.clone(),
        p.local,
        Arc::new(SipCounters::default()),
    )
    .unwrap();
    p
}

/// The requests sent, parsed.
fn sent(out: &[Output]) -> Vec<(Peer, SipMessage)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(peer, b) => Some((*peer, SipMessage::parse_datagram(b).ok()?)),
            _ => None,
        })
        .collect()
}

/// Sans-IO: the UAC starts at once, answers a SHA-256 challenge with a digest our own
/// verifier accepts, takes the granted time from the Contact, and arms the refresh before it;
/// its responses go to the UAC (no stray-response count).
#[test]
fn the_carrier_uac_answers_the_challenge_and_arms_the_refresh() {
    use crate::sip::digest::{Algorithm, DigestVerifier, PhoneSecret};
    let mut p = registering_proxy("127.0.0.1:5070");
    let start: Vec<Output> = std::iter::from_fn(|| p.poll_output()).collect();
    assert!(start.iter().any(|o| matches!(
        o,
        Output::Arm(TimerKey::Uac(UacTimer::Register), d) if d.is_zero()
    )));
    let out = step(&mut p, Input::Timer(TimerKey::Uac(UacTimer::Register)));
    let reqs = sent(&out);
    assert_eq!(reqs.len(), 1);
    let (peer, first) = &reqs[0];
    assert_eq!(peer.addr, "127.0.0.1:5070".parse().unwrap());
    assert_eq!(first.method(), Some("REGISTER"));
    assert_eq!(
        first.header("Contact").as_deref(),
        Some("<sip:0120000000@127.0.0.1:5060>")
    );
    assert!(first.header("Authorization").is_none());

    let verifier = DigestVerifier::new("carrier.test").unwrap();
    let now = 1_800_000_000;
    let mut challenge = SipMessage::response_to(first, 401, "Unauthorized", Some("x"));
    for c in verifier.challenges(&[Algorithm::Sha256], false, now) {
        challenge.add_header("WWW-Authenticate", &c).unwrap();
    }
    let out = step(&mut p, Input::Datagram(challenge.to_bytes(), *peer));
    let reqs = sent(&out);
    assert_eq!(reqs.len(), 1, "one answered REGISTER");
    let (_, second) = &reqs[0];
    let auth = second.header("Authorization").expect("Authorization");
    let lookup = |u: &str| {
        (u == "0120000000").then(|| PhoneSecret::password("carrier-secret", &[Algorithm::Sha256]))
    };
    let user = verifier
        .verify(&auth, "REGISTER", lookup, now)
        .expect("our own verifier accepts the answer");
    assert_eq!(user.username, "0120000000");
    assert_eq!(second.call_id(), first.call_id(), "same registration");
    assert_eq!(second.cseq().unwrap().0, first.cseq().unwrap().0 + 1);

    let mut ok = SipMessage::response_to(second, 200, "OK", Some("x"));
    ok.add_header("Contact", "<sip:0120000000@127.0.0.1:5060>;expires=120")
        .unwrap();
    let out = step(&mut p, Input::Datagram(ok.to_bytes(), *peer));
    let refresh = out.iter().find_map(|o| match o {
        Output::Arm(TimerKey::Uac(UacTimer::Register), d) => Some(*d),
        _ => None,
    });
    assert_eq!(
        refresh,
        Some(Duration::from_secs(90)),
        "min(80 %, 120 − 30)"
    );
    let s = p.trunk_status().registration.unwrap();
    assert_eq!(s.state, RegState::Registered);
    assert_eq!(s.last_status, Some(200));
    assert_eq!(p.counters.stray_responses.load(Ordering::Relaxed), 0);
}

/// stopping removes our binding at the carrier (Expires: 0) and retries nothing.
#[test]
fn draining_unregisters_from_the_carrier() {
    let mut p = registering_proxy("127.0.0.1:5070");
    let _: Vec<Output> = std::iter::from_fn(|| p.poll_output()).collect();
    let out = step(&mut p, Input::Timer(TimerKey::Uac(UacTimer::Register)));
    let (peer, first) = sent(&out).remove(0);
    let mut ok = SipMessage::response_to(&first, 200, "OK", Some("x"));
    ok.add_header("Expires", "300").unwrap();
    step(&mut p, Input::Datagram(ok.to_bytes(), peer));
    let out = step(&mut p, Input::Drain);
    let reqs = sent(&out);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].1.header("Expires").as_deref(), Some("0"));
    let ok = SipMessage::response_to(&reqs[0].1, 200, "OK", Some("x"));
    let out = step(&mut p, Input::Datagram(ok.to_bytes(), peer));
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Arm(TimerKey::Uac(UacTimer::Register), _))),
        "no refresh after the removal"
    );
    assert!(p.trunk_status().registration.unwrap().expires_at.is_none());
}

/// a second challenge to our answer means the credentials are wrong (`refused`, the
/// long back-off) unless the carrier says the nonce was only stale (answered again).
#[test]
fn a_stale_nonce_is_answered_again_but_a_refused_answer_is_refused() {
    let challenge = |req: &SipMessage, stale: bool| {
        let mut r = SipMessage::response_to(req, 401, "Unauthorized", Some("x"));
        let extra = if stale { ", stale=true" } else { "" };
        r.add_header(
            "WWW-Authenticate",
            &format!(
                "Digest realm=\"c\", nonce=\"n{}\", qop=\"auth\", algorithm=MD5{extra}",
                wire::new_tag()
            ),
        )
        .unwrap();
        r.to_bytes()
    };
    let mut p = registering_proxy("127.0.0.1:5070");
    let _: Vec<Output> = std::iter::from_fn(|| p.poll_output()).collect();
    let out = step(&mut p, Input::Timer(TimerKey::Uac(UacTimer::Register)));
    let (peer, req) = sent(&out).remove(0);
    let out = step(&mut p, Input::Datagram(challenge(&req, false), peer));
    let (_, answered) = sent(&out).remove(0);
    assert!(answered.header("Authorization").is_some());
    let out = step(&mut p, Input::Datagram(challenge(&answered, true), peer));
    let (_, again) = sent(&out).remove(0);
    assert!(
        again.header("Authorization").is_some(),
        "stale: answered again"
    );
    let out = step(&mut p, Input::Datagram(challenge(&again, false), peer));
    assert!(sent(&out).is_empty(), "no third guess");
    let retry = out.iter().find_map(|o| match o {
        Output::Arm(TimerKey::Uac(UacTimer::Register), d) => Some(*d),
        _ => None,
    });
    assert!(
        retry.is_some_and(|d| d >= Duration::from_secs(480)),
        "long back-off: {retry:?}"
    );
    let s = p.trunk_status().registration.unwrap();
    assert_eq!(s.state, RegState::Refused);
    assert_eq!(s.last_status, Some(401));
}

fn digest_challenge(req: &SipMessage) -> bytes::Bytes {
    let mut r = SipMessage::response_to(req, 401, "Unauthorized", Some("x"));
    r.add_header(
        "WWW-Authenticate",
        &format!(
            "Digest realm=\"c\", nonce=\"n{}\", qop=\"auth\", algorithm=MD5",
            wire::new_tag()
        ),
    )
    .unwrap();
    r.to_bytes()
}

/// R-16.2 (review: shutdown and the carrier unregister): a challenge to the un-REGISTER is
/// answered with our credentials, and the drain waits until the removal is answered.
#[test]
fn a_challenge_to_the_unregister_is_answered() {
    let mut p = registering_proxy("127.0.0.1:5070");
    let _: Vec<Output> = std::iter::from_fn(|| p.poll_output()).collect();
    let out = step(&mut p, Input::Timer(TimerKey::Uac(UacTimer::Register)));
    let (peer, first) = sent(&out).remove(0);
    let mut ok = SipMessage::response_to(&first, 200, "OK", Some("x"));
    ok.add_header("Expires", "300").unwrap();
    step(&mut p, Input::Datagram(ok.to_bytes(), peer));
    assert!(!p.trunk_status().unregistering);

    let out = step(&mut p, Input::Drain);
    let (_, unreg) = sent(&out).remove(0);
    assert_eq!(unreg.header("Expires").as_deref(), Some("0"));
    assert!(p.trunk_status().unregistering, "the drain waits for it");
    let out = step(&mut p, Input::Datagram(digest_challenge(&unreg), peer));
    let reqs = sent(&out);
    assert_eq!(reqs.len(), 1, "the challenge is answered once");
    let (_, answered) = &reqs[0];
    assert_eq!(answered.header("Expires").as_deref(), Some("0"));
    assert!(answered.header("Authorization").is_some());
    assert!(p.trunk_status().unregistering);

    let ok = SipMessage::response_to(answered, 200, "OK", Some("x"));
    step(&mut p, Input::Datagram(ok.to_bytes(), peer));
    assert!(!p.trunk_status().unregistering);
    assert!(p.trunk_status().registration.unwrap().expires_at.is_none());
}

/// R-16.2 (review): stopping while the first REGISTER is in flight: once it is answered (200,
/// a binding now exists), the un-REGISTER goes out.
#[test]
fn draining_while_the_first_register_is_in_flight_unregisters_after_its_answer() {
    let mut p = registering_proxy("127.0.0.1:5070");
    let _: Vec<Output> = std::iter::from_fn(|| p.poll_output()).collect();
    let out = step(&mut p, Input::Timer(TimerKey::Uac(UacTimer::Register)));
    let (peer, first) = sent(&out).remove(0);
    assert_eq!(first.header("Expires").as_deref(), Some("300"));

    let out = step(&mut p, Input::Drain);
    assert!(sent(&out).is_empty(), "one REGISTER at a time");
    assert!(p.trunk_status().unregistering);

    let mut ok = SipMessage::response_to(&first, 200, "OK", Some("x"));
    ok.add_header("Expires", "300").unwrap();
    let out = step(&mut p, Input::Datagram(ok.to_bytes(), peer));
    let reqs = sent(&out);
    assert_eq!(reqs.len(), 1, "the un-REGISTER follows the 200");
    let (_, unreg) = &reqs[0];
    assert_eq!(unreg.header("Expires").as_deref(), Some("0"));
    assert_eq!(unreg.call_id(), first.call_id());
    assert!(p.trunk_status().unregistering);

    let ok = SipMessage::response_to(unreg, 200, "OK", Some("x"));
    step(&mut p, Input::Datagram(ok.to_bytes(), peer));
    assert!(!p.trunk_status().unregistering);
}
