//! The SIP adapter must not be abused or fooled from the network (issue 13 items 1, 2, 7, 11,
//! 16), tried over real sockets against the running server: control bytes are refused at the
//! wire, a forged response is not reflected anywhere, a Via that is not SIP/2.0 is refused,
//! only the two sides of a dialog may act in it, and a disabled operator's phone stops
//! answering citizens.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::sip_leaks::{ack_error, in_dialog, invite as trunk_invite, register, reply, udp, Sim};
use common::rig::{jst, wait, Rig};
use common::sipp;
use common::ua::Phone;
use common::{backends, TestApp};
use madoguchi::sip::wire::{new_tag, SipMessage, StreamFramer};
use serde_json::Value;
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// The trunk's address in the shipped sip-config.
const TRUNK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// An address that is not the trunk (loopback, so it is routable here).
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// How long an expected answer may take.
const ANSWER: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tr {
    Udp,
    Tcp,
}

impl Tr {
    fn token(self) -> &'static str {
        match self {
            Tr::Udp => "UDP",
            Tr::Tcp => "TCP",
        }
    }
}

/// A raw SIP client on a chosen source address, over UDP or one TCP connection.
enum Client {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream, StreamFramer, Vec<SipMessage>),
}

impl Client {
    async fn open(tr: Tr, src: Ipv4Addr, srv: SocketAddr) -> Client {
        let local = SocketAddr::new(IpAddr::V4(src), 0);
        match tr {
            Tr::Udp => Client::Udp(UdpSocket::bind(local).await.unwrap(), srv),
            Tr::Tcp => {
                let s = TcpSocket::new_v4().unwrap();
                s.bind(local).unwrap();
                Client::Tcp(
                    s.connect(srv).await.unwrap(),
                    StreamFramer::new(),
                    Vec::new(),
                )
            }
        }
    }

    fn local(&self) -> SocketAddr {
        match self {
            Client::Udp(s, _) => s.local_addr().unwrap(),
            Client::Tcp(s, _, _) => s.local_addr().unwrap(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        match self {
            Client::Udp(s, to) => {
                s.send_to(bytes, *to).await.unwrap();
            }
            Client::Tcp(s, _, _) => s.write_all(bytes).await.unwrap(),
        }
    }

    /// The next message within `wait`.
    async fn recv(&mut self, wait: Duration) -> Option<SipMessage> {
        let fut = async {
            match self {
                Client::Udp(s, _) => {
                    let mut buf = vec![0u8; 65_536];
                    loop {
                        let (n, _) = s.recv_from(&mut buf).await.ok()?;
                        if let Ok(m) = SipMessage::parse_datagram(&buf[..n]) {
                            return Some(m);
                        }
                    }
                }
                Client::Tcp(s, framer, queue) => loop {
                    if !queue.is_empty() {
                        return Some(queue.remove(0));
                    }
                    let mut buf = vec![0u8; 16_384];
                    let n = s.read(&mut buf).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    queue.extend(framer.push(&buf[..n]).messages);
                },
            }
        };
        tokio::time::timeout(wait, fut).await.ok().flatten()
    }

    /// Every status received until a final one (or nothing more comes).
    async fn statuses_until_final(&mut self) -> Vec<u16> {
        let mut seen = Vec::new();
        while let Some(m) = self.recv(ANSWER).await {
            if let Some(s) = m.status() {
                seen.push(s);
                if s >= 200 {
                    break;
                }
            }
        }
        seen
    }
}

/// `\n` → CRLF.
fn crlf(s: &str) -> Vec<u8> {
    s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

/// An INVITE to our line from `host` over `tr`, with `call_id` as raw bytes.
fn invite(srv: SocketAddr, host: SocketAddr, tr: Tr, call_id: &[u8]) -> Vec<u8> {
    let n = new_tag();
    let mut m = crlf(&format!(
        "INVITE sip:0120000000@{srv} SIP/2.0\n\
         Via: SIP/2.0/{t} {host};branch=z9hG4bK{n}\n\
         Max-Forwards: 70\n\
         From: <sip:0134220001@{host}>;tag=f{n}\n\
         To: <sip:0120000000@{srv}>\n\
         Call-ID: ",
        t = tr.token(),
    ));
    m.extend_from_slice(call_id);
    m.extend_from_slice(&crlf(&format!(
        "\nCSeq: 1 INVITE\n\
         Contact: <sip:0134220001@{host}>\n\
         Content-Length: 0\n\n"
    )));
    m
}

/// Rows in the call log, read straight from the database.
async fn call_rows(app: &TestApp) -> i64 {
    let db = app.server.state.db.clone();
    sqlx::query("SELECT COUNT(*) FROM calls")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

async fn sip_status(app: &TestApp) -> Value {
    let admin = app.admin().await;
    let res = admin.get("/api/sip/status").await;
    assert_eq!(res.status(), 200, "GET /api/sip/status");
    res.json().await.unwrap()
}

// ---- Item 1: control bytes are refused at the wire -----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_bytes_in_a_header_are_refused_with_400_before_any_event() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let srv = app.server.sip_addr;
        for src in [OUTSIDER, TRUNK] {
            for tr in [Tr::Udp, Tr::Tcp] {
                for ctl in [0x00u8, 0x01, 0x1b, 0x7f] {
                    let mut c = Client::open(tr, src, srv).await;
                    let mut call_id = format!("ctl-{}-", new_tag()).into_bytes();
                    call_id.push(ctl);
                    call_id.extend_from_slice(b"-x@127.0.0.9");
                    c.send(&invite(srv, c.local(), tr, &call_id)).await;
                    assert_eq!(
                        c.statuses_until_final().await,
                        [400],
                        "{kind:?}: a 0x{ctl:02x} in the Call-ID from {src} over {tr:?} is refused at the wire"
                    );
                }
            }
        }
        // A clean INVITE from outside, after them: its rejected row is written after any row
        // the refused ones could have caused, so once it is there, theirs would be too.
        let mut c = Client::open(Tr::Udp, OUTSIDER, srv).await;
        let clean = format!("clean-{}@127.0.0.2", new_tag());
        c.send(&invite(srv, c.local(), Tr::Udp, clean.as_bytes()))
            .await;
        assert_eq!(c.statuses_until_final().await, [403]);
        let mut rows = 0;
        for _ in 0..100 {
            rows = call_rows(&app).await;
            if rows > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            (rows, call_rows(&app).await),
            (1, 1),
            "{kind:?}: only the clean INVITE is in the call log"
        );
        let status = sip_status(&app).await;
        assert!(
            status["counters"]["malformed_requests"]
                .as_u64()
                .unwrap_or(0)
                >= 16,
            "{kind:?}: counted as malformed: {status}"
        );
        app.stop().await;
    }
}

// ---- Item 2: no open reflector -------------------------------------------------------------

/// A 200 as a forger would send it: our address in the top Via, the victim in the next one.
fn forged_200(srv: SocketAddr, victim: SocketAddr, victim_transport: &str) -> Vec<u8> {
    let n = new_tag();
    let body = "reflected payload: this must never reach the victim\n";
    crlf(&format!(
        "SIP/2.0 200 OK\n\
         Via: SIP/2.0/UDP {srv};branch=z9hG4bKmdg1.7f.3.0\n\
         Via: SIP/2.0/{victim_transport} {victim};branch=z9hG4bKvictim{n}\n\
         From: <sip:0134220001@trunk.example.net>;tag=forged{n}\n\
         To: <sip:0120000000@{srv}>;tag=forged-to{n}\n\
         Call-ID: forged.{n}@127.0.0.3\n\
         CSeq: 1 INVITE\n\
         Content-Type: text/plain\n\
         Content-Length: {len}\n\n{body}",
        len = body.len() + body.matches('\n').count(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_response_is_not_reflected_to_the_address_in_its_via() {
    let app = TestApp::spawn(backends()[0]).await;
    let srv = app.server.sip_addr;
    let victim_udp = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let victim_tcp = tokio::net::TcpListener::bind("127.0.0.4:0").await.unwrap();
    let targets = [
        (victim_udp.local_addr().unwrap(), "UDP"),
        (victim_tcp.local_addr().unwrap(), "TCP"),
    ];
    let forger_src = Ipv4Addr::new(127, 0, 0, 3);
    let mut sent = 0;
    for tr in [Tr::Udp, Tr::Tcp] {
        for (victim, t) in targets {
            let mut forger = Client::open(tr, forger_src, srv).await;
            forger.send(&forged_200(srv, victim, t)).await;
            sent += 1;
            assert!(
                forger.recv(Duration::from_millis(200)).await.is_none(),
                "a response is never answered"
            );
        }
    }
    let mut buf = vec![0u8; 65_536];
    let udp = tokio::time::timeout(Duration::from_secs(1), victim_udp.recv_from(&mut buf)).await;
    assert!(
        udp.is_err(),
        "reflected to the UDP victim: {:?}",
        udp.map(|r| String::from_utf8_lossy(&buf[..r.unwrap().0]).to_string())
    );
    let tcp = tokio::time::timeout(Duration::from_millis(500), victim_tcp.accept()).await;
    assert!(
        tcp.is_err(),
        "the adapter opened a TCP connection to the address in a Via"
    );
    let status = sip_status(&app).await;
    assert!(
        status["counters"]["stray_responses"].as_u64() >= Some(sent),
        "each dropped response is counted: {status}"
    );
    app.stop().await;
}

/// A 2xx as the phone sent it, with the caller's hop in its Via moved to `to`.
fn with_caller_hop_moved(ok: &SipMessage, to: &str) -> SipMessage {
    let text = String::from_utf8_lossy(&ok.to_bytes()).replace("127.0.0.1:5070;branch", to);
    SipMessage::parse_datagram(text.as_bytes()).unwrap()
}

#[test]
fn a_2xx_with_no_transaction_left_goes_only_to_the_caller_of_its_call() {
    let mut sim = Sim::new();
    let (trunk, phone) = (udp(5070), udp(5072));
    let mut cseq = 0;
    register(&mut sim, phone, "UDP", &mut cseq, 3600);
    sim.input(trunk, &trunk_invite("s"));
    let inv = sim.take_one(5072, "INVITE");
    let ok = reply(&inv, 200, "ps");
    sim.send_msg(phone, &ok);
    sim.take_one(5070, "200");
    sim.input(trunk, &in_dialog("ACK", "s", 1, "ps"));
    sim.take_one(5072, "ACK");
    // RFC 6026: the INVITE client transaction is gone 64*T1 after the 2xx.
    sim.advance(Duration::from_secs(40));
    assert_eq!(sim.proxy.table_sizes().client_txns, 0);
    sim.take(5070);

    // The phone, its ACK lost, sends its 200 again: RFC 3261 §16.7 relays it, statelessly.
    sim.send_msg(phone, &ok);
    let relayed = sim.take_one(5070, "200");
    assert_eq!(relayed.via_count(), 1, "our Via popped");
    // The caller's hop in it rewritten: still to the caller of the call, never to the Via.
    sim.send_msg(phone, &with_caller_hop_moved(&ok, "127.0.0.1:7000;branch"));
    sim.take_one(5070, "200");
    assert!(sim.take(7000).is_empty(), "a Via is not where a 2xx goes");
    // The same 200 from anywhere but the phone the call was forked to: dropped.
    sim.send_msg(udp(6000), &ok);
    // A 2xx of no call of ours, or a failure: dropped.
    let other = SipMessage::parse_datagram(
        String::from_utf8_lossy(&ok.to_bytes())
            .replace("Call-ID: s", "Call-ID: unknown")
            .as_bytes(),
    )
    .unwrap();
    sim.send_msg(phone, &other);
    sim.send_msg(phone, &reply(&inv, 486, "ps2"));
    for port in [5070, 5072, 6000, 7000] {
        assert!(sim.take(port).is_empty(), "nothing sent to {port}");
    }
}

#[test]
fn a_2xx_after_our_own_final_still_reaches_the_caller() {
    let mut sim = Sim::new();
    let (trunk, phone) = (udp(5070), udp(5072));
    let mut cseq = 0;
    register(&mut sim, phone, "UDP", &mut cseq, 3600);
    sim.input(trunk, &trunk_invite("l"));
    let inv = sim.take_one(5072, "INVITE");
    sim.send_msg(phone, &reply(&inv, 180, "pl"));
    // The ring timeout: 480 to the caller and a CANCEL to the phone, which answers anyway.
    sim.advance(Duration::from_secs(31));
    sim.take_one(5070, "480");
    sim.take_one(5072, "CANCEL");
    sim.send_msg(phone, &reply(&inv, 200, "pl"));
    let late = sim.take_one(5070, "200");
    assert_eq!(late.to_tag().as_deref(), Some("pl"));
}

// ---- Item 16: only the two sides of a dialog act in it -------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_did_not_answer_cannot_hang_up_the_call() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let server = rig.app.server.sip_addr;
    let mut answerer = Phone::udp(server, "ph1", "password-ph1").await;
    let mut other = Phone::udp(server, "ph2", "password-ph2").await;
    assert_eq!(answerer.register(600).await, 200);
    assert_eq!(other.register(600).await, 200);
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call-wait-bye", &[]),
        "127.0.0.1",
        &[],
    );
    let invite = answerer.expect("INVITE", ANSWER).await;
    let forked = other.expect("INVITE", ANSWER).await;
    let other_tag = new_tag();
    let ringing = SipMessage::response_to(&forked, 180, "Ringing", Some(&other_tag));
    other.send(&ringing).await;
    let mut dialog = answerer.answer(&invite, Duration::from_millis(100)).await;
    answerer.expect("ACK", ANSWER).await;
    // The other phone's branch is cancelled and ends as a phone's would.
    let cancel = other.expect("CANCEL", ANSWER).await;
    other.reply(&cancel, 200, "OK").await;
    let terminated = SipMessage::response_to(&forked, 487, "Request Terminated", Some(&other_tag));
    other.send(&terminated).await;
    other.expect("ACK", ANSWER).await;

    // It knows the Call-ID, the caller's tag and the route: it tries to hang up, and to
    // re-INVITE, as if it were the phone that answered.
    let mut forged = other.dialog_as_if_answered(&forked);
    for method in ["BYE", "INVITE"] {
        other.in_dialog(&mut forged, method).await;
        let answer = other.expect("final", ANSWER).await;
        assert_eq!(answer.status(), Some(403), "{method} from the other phone");
    }
    let admin = rig.app.admin().await;
    let status: Value = admin.get("/api/sip/status").await.json().await.unwrap();
    assert_eq!(status["tables"]["calls"], 1, "the call goes on: {status}");
    assert!(
        status["counters"]["in_dialog_refused"].as_u64() >= Some(2),
        "refusals counted: {status}"
    );

    // The phone that answered still hangs up.
    answerer.in_dialog(&mut dialog, "BYE").await;
    let ok = answerer.expect("final", ANSWER).await;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    let c = &rig.ended_calls(1).await[0];
    assert_eq!(c["end_cause"], "completed");
    assert_eq!(c["answered_extension"], "ph1");
    rig.stop().await;
}

/// An address that is neither the trunk nor a phone, for the simulated core.
fn stranger() -> madoguchi::sip::proxy::Peer {
    madoguchi::sip::proxy::Peer {
        transport: madoguchi::sip::proxy::Transport::Udp,
        addr: "192.0.2.9:5060".parse().unwrap(),
        flow: None,
    }
}

#[test]
fn cancel_and_ack_count_only_from_the_side_that_sent_the_invite() {
    let mut sim = Sim::new();
    let (trunk, phone) = (udp(5070), udp(5072));
    let mut cseq = 0;
    register(&mut sim, phone, "UDP", &mut cseq, 3600);

    // A CANCEL of a ringing call from anywhere but the INVITE's sender: 403, the phone rings on.
    sim.input(trunk, &trunk_invite("c"));
    let inv = sim.take_one(5072, "INVITE");
    sim.send_msg(phone, &reply(&inv, 180, "pc"));
    sim.take(5070);
    let cancel = trunk_invite("c")
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    for from in [stranger(), udp(6000)] {
        sim.input(from, &cancel);
        let sent = sim.take(from.addr.port());
        assert_eq!(
            sent.iter().filter_map(|m| m.status()).collect::<Vec<_>>(),
            [403],
            "CANCEL from {}",
            from.addr
        );
    }
    assert!(sim.take(5072).is_empty(), "no CANCEL reached the phone");
    // The forgers' CANCELs opened no transaction: the caller's own, same branch, is served.
    sim.input(trunk, &cancel);
    sim.take_one(5070, "200");
    let cancel_out = sim.take_one(5072, "CANCEL");
    sim.send_msg(
        phone,
        &SipMessage::response_to(&cancel_out, 200, "OK", None),
    );
    sim.send_msg(phone, &reply(&inv, 487, "pc"));
    let terminated = sim.take_one(5070, "487");
    sim.input(trunk, &ack_error("c", &terminated.to_tag().unwrap()));

    // The ACK of an answered call from elsewhere goes nowhere; the caller's goes on.
    sim.input(trunk, &trunk_invite("a"));
    let inv = sim.take_one(5072, "INVITE");
    sim.send_msg(phone, &reply(&inv, 200, "pa"));
    sim.take_one(5070, "200");
    sim.input(stranger(), &in_dialog("ACK", "a", 1, "pa"));
    assert!(sim.take(5072).is_empty(), "a stranger's ACK is dropped");
    sim.input(trunk, &in_dialog("ACK", "a", 1, "pa"));
    sim.take_one(5072, "ACK");
    // The caller's tag does not make a stranger the caller.
    sim.input(stranger(), &in_dialog("BYE", "a", 2, "pa"));
    assert!(
        sim.take(5072).is_empty(),
        "a stranger's BYE is not forwarded"
    );
    assert_eq!(
        sim.take(5060)
            .iter()
            .filter_map(|m| m.status())
            .collect::<Vec<_>>(),
        [403]
    );
    sim.input(trunk, &in_dialog("BYE", "a", 2, "pa"));
    sim.take_one(5072, "BYE");
}

// ---- Item 11: a disabled operator's phone stops answering citizens -------------------------

/// Creates the operator account `username` as the admin; returns its id.
async fn create_operator(app: &TestApp, username: &str) -> i64 {
    let admin = app.admin().await;
    let res = admin
        .post(
            "/api/users",
            &serde_json::json!({
                "username": username,
                "role": "operator",
                "password": format!("password-of-{username}"),
                "must_change_password": false,
            }),
        )
        .await;
    assert_eq!(res.status(), 201, "create {username}");
    let user: Value = res.json().await.unwrap();
    user["id"].as_i64().unwrap()
}

/// The usernames of the phones registered now.
async fn registered(app: &TestApp) -> Vec<String> {
    let status = sip_status(app).await;
    status["phones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["username"].as_str().unwrap().to_string())
        .collect()
}

/// A trunk call to the line: every status it gets, until the final.
async fn trunk_call_statuses(srv: SocketAddr) -> Vec<u16> {
    let mut trunk = Client::open(Tr::Udp, TRUNK, srv).await;
    trunk
        .send(&invite(
            srv,
            trunk.local(),
            Tr::Udp,
            format!("disabled-{}@127.0.0.1", new_tag()).as_bytes(),
        ))
        .await;
    trunk.statuses_until_final().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_an_operator_unregisters_their_phone_and_refuses_its_register() {
    let app = TestApp::spawn_with(backends()[0], common::rig::phones).await;
    let srv = app.server.sip_addr;
    let id = create_operator(&app, "operator1").await;
    let mut phone = Phone::udp(srv, "ph1", "password-ph1").await;
    assert_eq!(phone.register(600).await, 200);
    assert_eq!(registered(&app).await, ["ph1"]);

    let admin = app.admin().await;
    let res = admin
        .post(&format!("/api/users/{id}/disable"), &serde_json::json!({}))
        .await;
    assert_eq!(res.status(), 200, "disable operator1");
    assert!(
        registered(&app).await.is_empty(),
        "the phone's binding went with the account"
    );
    assert_eq!(
        trunk_call_statuses(srv).await,
        [100, 480],
        "no phone rings: unstaffed"
    );
    assert_eq!(
        phone.register(600).await,
        403,
        "its REGISTER is refused from now on"
    );
    assert!(registered(&app).await.is_empty());

    // After a restart (the CLI can disable accounts with no server running) the account is
    // still disabled for the SIP side.
    let TestApp {
        server, clock, db, ..
    } = app;
    server.stop().await;
    let mut config = common::test_config(&db.url);
    common::rig::phones(&mut config);
    let server = madoguchi::app::start(config, std::sync::Arc::new(clock.clone()), None)
        .await
        .expect("restart");
    let base = format!("http://{}", server.http_addr);
    let app = TestApp {
        server,
        clock,
        db,
        base,
    };
    let mut phone = Phone::udp(app.server.sip_addr, "ph1", "password-ph1").await;
    assert_eq!(
        phone.register(600).await,
        403,
        "still refused after a restart"
    );
    // Another operator's phone is not affected.
    let mut other = Phone::udp(app.server.sip_addr, "ph2", "password-ph2").await;
    assert_eq!(other.register(600).await, 200);
    assert_eq!(registered(&app).await, ["ph2"]);
    app.stop().await;
}
