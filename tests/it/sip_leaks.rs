//! Virtual time: after a mixed run (answered calls, CANCELs, ring timeouts, a silent phone,
//! REGISTER refreshes, a TCP flow that dies), every table of the proxy core is empty again
//! and no timer is left (pitfall 9 of notes/sip-stack.md). The core is Sans-IO, so this
//! drives it directly with a simulated clock: no sockets, no sleeping. Other tests use its
//! simulator (`Sim`) too.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::digest_client;
use common::{a_working_morning, manifest_dir, profile_dir};
use madoguchi::calls::{CallEvent, EndCause};
use madoguchi::clock::ManualClock;
use madoguchi::config::{load_sip, Profile};
use madoguchi::hours::OpeningHours;
use madoguchi::sip::policy::LinePolicy;
use madoguchi::sip::proxy::{
    Input, Output, Peer, Proxy, SipCounters, TableSizes, TimerKey, Transport,
};
use madoguchi::sip::wire::{new_tag, SipMessage};

pub(crate) const PROXY: &str = "127.0.0.1:5060";

pub(crate) struct Sim {
    pub(crate) proxy: Proxy,
    clock: ManualClock,
    now: Duration,
    timers: BTreeMap<(Duration, u64), TimerKey>,
    index: HashMap<TimerKey, (Duration, u64)>,
    seq: u64,
    sent: Vec<(Peer, SipMessage)>,
    pub(crate) events: Vec<CallEvent>,
}

pub(crate) fn udp(port: u16) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        flow: None,
    }
}

/// Feeds one input to the core and drains what it asks for.
pub(crate) fn step(proxy: &mut Proxy, input: Input) -> Vec<Output> {
    proxy.handle_input(input);
    std::iter::from_fn(|| proxy.poll_output()).collect()
}

fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

impl Sim {
    pub(crate) fn new() -> Sim {
        let profile = Profile::load(&profile_dir()).unwrap();
        let sip = load_sip(
            &manifest_dir().join("sip-config"),
            &Default::default(),
            "test",
        )
        .unwrap();
        let clock = ManualClock::new(a_working_morning());
        let hours = OpeningHours::new(&profile.hours).unwrap();
        let local: SocketAddr = PROXY.parse().unwrap();
        let proxy = Proxy::new(
            sip,
            LinePolicy::new(hours, profile.line),
            Arc::new(clock.clone()),
            local,
            Arc::new(SipCounters::default()),
        )
        .unwrap();
        Sim {
            proxy,
            clock,
            now: Duration::ZERO,
            timers: BTreeMap::new(),
            index: HashMap::new(),
            seq: 0,
            sent: vec![],
            events: vec![],
        }
    }

    pub(crate) fn apply(&mut self, out: Vec<Output>) {
        for o in out {
            match o {
                // In virtual time the log is instant: a held BYE answer goes out at once.
                Output::Send(peer, bytes) | Output::SendWhenStored { peer, bytes, .. } => {
                    let m = SipMessage::parse_datagram(&bytes).expect("the proxy sends valid SIP");
                    self.sent.push((peer, m));
                }
                Output::Arm(k, after) => {
                    if let Some(old) = self.index.remove(&k) {
                        self.timers.remove(&old);
                    }
                    self.seq += 1;
                    let at = (self.now + after, self.seq);
                    self.timers.insert(at, k.clone());
                    self.index.insert(k, at);
                }
                Output::Disarm(k) => {
                    if let Some(old) = self.index.remove(&k) {
                        self.timers.remove(&old);
                    }
                }
                Output::Event(e) => self.events.push(e),
                // No announcement is configured in the simulation.
                Output::Announce(_) | Output::StopAnnouncement { .. } => {}
                // Stored off the SIP path; nothing of the core's state.
                Output::Bindings { .. } => {}
            }
        }
    }

    pub(crate) fn input(&mut self, from: Peer, text: &str) {
        let out = match from.transport {
            Transport::Udp => step(
                &mut self.proxy,
                Input::Datagram(crlf(text).into_bytes().into(), from),
            ),
            Transport::Tcp => {
                let m = SipMessage::parse_datagram(crlf(text).as_bytes()).unwrap();
                step(&mut self.proxy, Input::Message(Box::new(m), from))
            }
        };
        self.apply(out);
    }

    pub(crate) fn send_msg(&mut self, from: Peer, m: &SipMessage) {
        let out = match from.transport {
            Transport::Udp => step(&mut self.proxy, Input::Datagram(m.to_bytes(), from)),
            Transport::Tcp => step(&mut self.proxy, Input::Message(Box::new(m.clone()), from)),
        };
        self.apply(out);
    }

    /// Moves virtual time forward by `d`, firing due timers in order.
    pub(crate) fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some((&(at, seq), _)) = self.timers.iter().next() {
            if at > end {
                break;
            }
            let key = self.timers.remove(&(at, seq)).unwrap();
            self.index.remove(&key);
            self.clock
                .advance(chrono::Duration::from_std(at - self.now).unwrap());
            self.now = at;
            let out = step(&mut self.proxy, Input::Timer(key));
            self.apply(out);
        }
        self.clock
            .advance(chrono::Duration::from_std(end - self.now).unwrap());
        self.now = end;
    }

    /// Messages sent to `port` since the last call, oldest first.
    pub(crate) fn take(&mut self, port: u16) -> Vec<SipMessage> {
        let (mine, rest): (Vec<_>, Vec<_>) = self
            .sent
            .drain(..)
            .partition(|(p, _)| p.addr.port() == port);
        self.sent = rest;
        mine.into_iter().map(|(_, m)| m).collect()
    }

    pub(crate) fn take_one(&mut self, port: u16, what: &str) -> SipMessage {
        let msgs = self.take(port);
        msgs.into_iter()
            .find(|m| {
                m.method() == Some(what)
                    || m.status().map(|s| s.to_string()).as_deref() == Some(what)
            })
            .unwrap_or_else(|| panic!("no {what} sent to port {port}"))
    }
}

pub(crate) fn register(sim: &mut Sim, from: Peer, transport: &str, cseq: &mut u32, expires: u32) {
    let call_id = format!("reg-{}", from.addr.port());
    let text = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:{PROXY} SIP/2.0\nVia: SIP/2.0/{transport} {a};branch=z9hG4bK{b}\nFrom: <sip:op2@{PROXY}>;tag=r1\nTo: <sip:op2@{PROXY}>\nCall-ID: {call_id}\nCSeq: {cseq} REGISTER\nContact: <sip:op2@{a};transport={t}>{ob}\nExpires: {expires}\n{auth}Max-Forwards: 70\nContent-Length: 0\n\n",
            a = from.addr,
            b = new_tag(),
            t = transport.to_lowercase(),
            // The TCP phone is an RFC 5626 client: reached over its connection only.
            ob = if transport == "TCP" {
                ";reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000000000001>\""
            } else {
                ""
            },
        )
    };
    *cseq += 1;
    sim.input(from, &text(*cseq, ""));
    let challenge = sim.take_one(from.addr.port(), "401");
    let auth = digest_client::authorization(
        &challenge.headers_all("WWW-Authenticate"),
        "op2",
        "demo-password-op2",
        "REGISTER",
        &format!("sip:{PROXY}"),
        1,
        "c1",
    )
    .unwrap();
    *cseq += 1;
    sim.input(from, &text(*cseq, &format!("Authorization: {auth}\n")));
    sim.take_one(from.addr.port(), "200");
}

pub(crate) fn invite(call: &str) -> String {
    format!(
        "INVITE sip:0120000000@{PROXY} SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{call}-1\nFrom: <sip:0134220001@127.0.0.1:5070>;tag=t-{call}\nTo: <sip:0120000000@{PROXY}>\nCall-ID: {call}\nCSeq: 1 INVITE\nContact: <sip:0134220001@127.0.0.1:5070>\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
}

pub(crate) fn ack_error(call: &str, to_tag: &str) -> String {
    format!(
        "ACK sip:0120000000@{PROXY} SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{call}-1\nFrom: <sip:0134220001@127.0.0.1:5070>;tag=t-{call}\nTo: <sip:0120000000@{PROXY}>;tag={to_tag}\nCall-ID: {call}\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
}

pub(crate) fn in_dialog(method: &str, call: &str, cseq: u32, to_tag: &str) -> String {
    format!(
        "{method} sip:op2@127.0.0.1:5072 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{call}-{method}{cseq}\nRoute: <sip:{PROXY};lr>\nFrom: <sip:0134220001@127.0.0.1:5070>;tag=t-{call}\nTo: <sip:0120000000@{PROXY}>;tag={to_tag}\nCall-ID: {call}\nCSeq: {cseq} {method}\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
}

pub(crate) fn reply(inv: &SipMessage, status: u16, tag: &str) -> SipMessage {
    let mut r = SipMessage::response_to(inv, status, "x", Some(tag));
    for rr in inv.headers_all("Record-Route") {
        r.add_header("Record-Route", &rr).unwrap();
    }
    r
}

fn causes(sim: &Sim) -> Vec<String> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            CallEvent::Ended { cause, .. } => Some(cause.as_str().to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn tables_and_timers_empty_after_a_mixed_run() {
    let mut sim = Sim::new();
    let (trunk, phone) = (udp(5070), udp(5072));
    let mut cseq = 0;
    register(&mut sim, phone, "UDP", &mut cseq, 120);

    // 1. Answered, ACKed, hung up by the caller.
    sim.input(trunk, &invite("a"));
    let inv = sim.take_one(5072, "INVITE");
    sim.send_msg(phone, &reply(&inv, 180, "pa"));
    sim.send_msg(phone, &reply(&inv, 200, "pa"));
    sim.take_one(5070, "200");
    sim.input(trunk, &in_dialog("ACK", "a", 1, "pa"));
    sim.take_one(5072, "ACK");
    sim.input(trunk, &in_dialog("BYE", "a", 2, "pa"));
    let bye = sim.take_one(5072, "BYE");
    sim.send_msg(phone, &SipMessage::response_to(&bye, 200, "OK", None));
    sim.take_one(5070, "200");

    // 2. Cancelled by the caller while ringing.
    sim.input(trunk, &invite("b"));
    let inv = sim.take_one(5072, "INVITE");
    sim.send_msg(phone, &reply(&inv, 180, "pb"));
    sim.take(5070);
    sim.input(
        trunk,
        &invite("b")
            .replace("INVITE sip:", "CANCEL sip:")
            .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL"),
    );
    let cancel = sim.take_one(5072, "CANCEL");
    sim.send_msg(phone, &SipMessage::response_to(&cancel, 200, "OK", None));
    sim.send_msg(phone, &reply(&inv, 487, "pb"));
    let ended = sim.take(5070);
    assert!(
        ended.iter().any(|m| m.status() == Some(487)),
        "the caller got 487"
    );
    sim.input(trunk, &ack_error("b", "pb"));

    // 3. Rings until the ring timeout; the phone answers the CANCEL.
    sim.input(trunk, &invite("c"));
    let inv = sim.take_one(5072, "INVITE");
    sim.send_msg(phone, &reply(&inv, 180, "pc"));
    sim.advance(Duration::from_secs(31));
    let to_trunk = sim.take(5070);
    let final_c = to_trunk
        .iter()
        .find(|m| m.status() == Some(480))
        .expect("480 after the ring timeout");
    let tag_c = final_c.to_tag().unwrap();
    let cancel = sim.take_one(5072, "CANCEL");
    sim.send_msg(phone, &SipMessage::response_to(&cancel, 200, "OK", None));
    sim.send_msg(phone, &reply(&inv, 487, "pc"));
    sim.input(trunk, &ack_error("c", &tag_c));

    // 4. A phone that never answers at all (not even 180): ring timeout, then Timer B.
    sim.input(trunk, &invite("d"));
    sim.take(5072);
    sim.advance(Duration::from_secs(31));
    let final_d = sim
        .take(5070)
        .into_iter()
        .find(|m| m.status() == Some(480))
        .expect("480");
    sim.input(trunk, &ack_error("d", &final_d.to_tag().unwrap()));

    // 5. A refresh, and a TCP phone whose connection dies.
    register(&mut sim, phone, "UDP", &mut cseq, 120);
    let tcp = Peer {
        transport: Transport::Tcp,
        addr: "127.0.0.1:40000".parse().unwrap(),
        flow: Some(9),
    };
    let mut tcp_cseq = 0;
    register(&mut sim, tcp, "TCP", &mut tcp_cseq, 3600);
    assert_eq!(sim.proxy.table_sizes().bindings, 2);
    let out = step(&mut sim.proxy, Input::FlowClosed(9));
    sim.apply(out);
    assert_eq!(
        sim.proxy.table_sizes().bindings,
        1,
        "a dead flow's outbound binding goes at once"
    );

    // 6. Answered, and the BYE never comes: the call guard frees the line.
    sim.input(trunk, &invite("e"));
    let inv = sim.take_one(5072, "INVITE");
    sim.send_msg(phone, &reply(&inv, 200, "pe"));
    sim.input(trunk, &in_dialog("ACK", "e", 1, "pe"));
    sim.take(5070);
    sim.take(5072);
    sim.advance(Duration::from_secs(121 * 60));
    assert_eq!(
        sim.proxy.table_sizes().calls,
        0,
        "no call held after line.max_call_minutes"
    );

    assert_eq!(
        causes(&sim),
        [
            "completed",
            "abandoned",
            "no_answer",
            "no_answer",
            "expired"
        ]
    );
    assert!(sim.events.iter().any(|e| matches!(
        e,
        CallEvent::Ended {
            cause: EndCause::Completed,
            hangup_by: Some(_),
            ..
        }
    )));

    // Ten virtual minutes later everything has run its course.
    sim.advance(Duration::from_secs(600));
    assert_eq!(
        sim.proxy.table_sizes(),
        TableSizes {
            server_txns: 0,
            client_txns: 0,
            calls: 0,
            relays: 0,
            bindings: 0
        },
        "timers left: {:?}",
        sim.timers.values().collect::<Vec<_>>()
    );
    assert!(sim.timers.is_empty(), "{:?}", sim.timers);
}
