//! Resource limits reachable from the network (issue 13, items 4 and 14), over real sockets
//! against the running server: a TCP peer that never reads, a source over its rate, a full
//! transaction table, slow and idle TCP connections, one address holding many connections.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::ua::Phone;
use common::{Kind, TestApp};
use madoguchi::sip::wire::{new_tag, SipMessage};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// `GET /api/sip/status` as the admin sees it.
async fn status(app: &TestApp) -> Value {
    app.admin()
        .await
        .get("/api/sip/status")
        .await
        .json()
        .await
        .unwrap()
}

/// A request without credentials from `local` over `transport` (`UDP` or `TCP`).
fn request(
    method: &str,
    server: SocketAddr,
    local: SocketAddr,
    transport: &str,
    n: usize,
) -> String {
    format!(
        "{method} sip:{server} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{b}\r\nFrom: <sip:ph1@{server}>;tag={tag}\r\nTo: <sip:ph1@{server}>\r\nCall-ID: lim-{tag}\r\nCSeq: {cseq} {method}\r\nContact: <sip:ph1@{local}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        b = new_tag(),
        tag = new_tag(),
        cseq = n + 1,
    )
}

/// Every response that arrives on `sock` within `quiet` of the previous one.
async fn responses(sock: &UdpSocket, quiet: Duration) -> Vec<SipMessage> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok((n, _))) = tokio::time::timeout(quiet, sock.recv_from(&mut buf)).await {
        if let Ok(m) = SipMessage::parse_datagram(&buf[..n]) {
            out.push(m);
        }
    }
    out
}

fn count(status: &Value, counter: &str) -> u64 {
    status["counters"][counter]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {counter} in {status}"))
}

#[tokio::test]
async fn a_tcp_peer_that_never_reads_is_closed_once_its_write_queue_is_full() {
    let app = TestApp::spawn_with(Kind::Sqlite, |c| {
        c.sip.limits.tcp_write_queue_bytes = 64 * 1024;
    })
    .await;
    let server = app.server.sip_addr;
    let sock = TcpSocket::new_v4().unwrap();
    // A small receive window, so the kernel's buffers fill soon and our queue is what grows.
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stream = sock.connect(server).await.unwrap();
    let local = stream.local_addr().unwrap();
    // Each REGISTER gets a 401 of about 600 bytes that the peer never reads.
    let mut sent = 0;
    let mut closed = false;
    while sent < 50_000 {
        let text = request("REGISTER", server, local, "TCP", sent);
        match tokio::time::timeout(Duration::from_secs(3), stream.write_all(text.as_bytes())).await
        {
            Ok(Ok(())) => sent += 1,
            // Reset by the server, or the server stopped reading: closed.
            Ok(Err(_)) | Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = status(&app).await;
        if s["counters"]["tcp_write_overflow"].as_u64() == Some(1) && s["tcp_flows"] == 0 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "after {sent} REGISTERs (writes failing: {closed}) the flow is still open: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(count(&s, "tcp_write_overflow"), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_stranger_over_its_rate_is_dropped_and_the_trunk_over_its_rate_gets_503() {
    let app = TestApp::spawn_with(Kind::Sqlite, |c| {
        c.sip.limits.source_messages_per_sec = 10;
        c.sip.limits.trunk_messages_per_sec = 10;
    })
    .await;
    let server = app.server.sip_addr;
    // A stranger: 100 OPTIONS at once. A burst of twice the rate is answered (403), the rest
    // are dropped without a word.
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let local = stranger.local_addr().unwrap();
    for i in 0..100 {
        let text = request("OPTIONS", server, local, "UDP", i);
        stranger.send_to(text.as_bytes(), server).await.unwrap();
    }
    let got = responses(&stranger, Duration::from_millis(700)).await;
    assert!(
        (15..=25).contains(&got.len()),
        "about 20 of 100 answered: {}",
        got.len()
    );
    // The trunk: the same, but what is over its rate is answered 503 with Retry-After.
    let trunk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = trunk.local_addr().unwrap();
    for i in 0..100 {
        let text = request("OPTIONS", server, local, "UDP", i);
        trunk.send_to(text.as_bytes(), server).await.unwrap();
    }
    let got = responses(&trunk, Duration::from_millis(700)).await;
    let ok = got.iter().filter(|m| m.status() == Some(200)).count();
    let busy: Vec<&SipMessage> = got.iter().filter(|m| m.status() == Some(503)).collect();
    assert!(
        (15..=25).contains(&ok),
        "about 20 OPTIONS answered 200: {ok}"
    );
    assert_eq!(ok + busy.len(), 100, "every trunk request answered");
    assert!(
        busy.iter().all(|m| m.header("Retry-After").is_some()),
        "503 with Retry-After"
    );
    let s = status(&app).await;
    assert!(count(&s, "rate_limited") >= 150, "{s}");
    app.stop().await;
}

#[tokio::test]
async fn the_transaction_table_is_capped_and_strangers_fill_only_half_of_it() {
    let app = TestApp::spawn_with(Kind::Sqlite, |c| {
        c.sip.limits.max_server_transactions = 40;
        c.sip.limits.source_messages_per_sec = 10_000;
    })
    .await;
    let server = app.server.sip_addr;
    // A stranger's REGISTERs over UDP: each transaction is held 32 s after its 401.
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let local = stranger.local_addr().unwrap();
    for i in 0..60 {
        let text = request("REGISTER", server, local, "UDP", i);
        stranger.send_to(text.as_bytes(), server).await.unwrap();
    }
    let got = responses(&stranger, Duration::from_millis(700)).await;
    assert_eq!(
        got.len(),
        20,
        "half the table for strangers, the rest dropped"
    );
    // The trunk still has room; beyond the cap it gets 503 with Retry-After.
    let trunk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = trunk.local_addr().unwrap();
    for i in 0..30 {
        let text = request("OPTIONS", server, local, "UDP", i);
        trunk.send_to(text.as_bytes(), server).await.unwrap();
    }
    let got = responses(&trunk, Duration::from_millis(700)).await;
    let ok = got.iter().filter(|m| m.status() == Some(200)).count();
    let busy: Vec<&SipMessage> = got.iter().filter(|m| m.status() == Some(503)).collect();
    assert_eq!((ok, busy.len()), (20, 10), "the table full at 40");
    assert!(busy.iter().all(|m| m.header("Retry-After").is_some()));
    let s = status(&app).await;
    assert_eq!(s["tables"]["server_txns"], 40, "{s}");
    assert_eq!(count(&s, "txn_table_full"), 40 + 10, "{s}");
    app.stop().await;
}

/// A TCP connection from `ip` (any port).
async fn connect_from(ip: &str, server: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    sock.connect(server).await.unwrap()
}

/// Whether the server has closed `stream`: a read ends (EOF or reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn a_client_sending_one_byte_a_second_is_cut_off_at_the_message_deadline() {
    let app = TestApp::spawn_with(Kind::Sqlite, |c| {
        c.sip.limits.tcp_message_timeout_secs = 3;
    })
    .await;
    let server = app.server.sip_addr;
    let mut stream = connect_from("127.0.0.2", server).await;
    let local = stream.local_addr().unwrap();
    let text = request("REGISTER", server, local, "TCP", 0);
    let started = Instant::now();
    let mut closed = false;
    for b in text.as_bytes().iter().take(12) {
        if stream.write_all(&[*b]).await.is_err()
            || closed_within(&mut stream, Duration::from_secs(1)).await
        {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "still open after {took:?} of one byte a second");
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(6),
        "cut off at the 3 s deadline, not per read: {took:?}"
    );
    let s = status(&app).await;
    assert_eq!(count(&s, "tcp_timed_out"), 1, "{s}");
    app.stop().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_crlf_keep_alives_keep_one_open() {
    let app = TestApp::spawn_with(Kind::Sqlite, |c| {
        c.sip.limits.tcp_idle_timeout_secs = 2;
    })
    .await;
    let server = app.server.sip_addr;
    let mut silent = connect_from("127.0.0.2", server).await;
    let mut pinging = connect_from("127.0.0.2", server).await;
    let started = Instant::now();
    let mut pongs = 0;
    // RFC 5626 §4.4.1: a double CRLF ping every half second, each answered by a CRLF pong.
    while started.elapsed() < Duration::from_secs(4) {
        pinging.write_all(b"\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 16];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), pinging.read(&mut buf)).await
        {
            assert!(n > 0, "the pinging connection stays open");
            assert_eq!(&buf[..n], b"\r\n", "a pong");
            pongs += 1;
        }
    }
    assert!(pongs >= 4, "pongs: {pongs}");
    assert!(
        closed_within(&mut silent, Duration::from_millis(100)).await,
        "the silent connection is closed after 2 s"
    );
    assert!(!closed_within(&mut pinging, Duration::from_millis(300)).await);
    let s = status(&app).await;
    assert_eq!(s["tcp_flows"], 1, "{s}");
    assert_eq!(count(&s, "tcp_timed_out"), 1, "{s}");
    app.stop().await;
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_cap_while_another_still_connects() {
    let app = TestApp::spawn_with(Kind::Sqlite, |c| {
        c.sip.limits.max_tcp_connections_per_address = 2;
    })
    .await;
    let server = app.server.sip_addr;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(connect_from("127.0.0.2", server).await);
    }
    let mut third = connect_from("127.0.0.2", server).await;
    assert!(
        closed_within(&mut third, Duration::from_secs(2)).await,
        "the third connection from 127.0.0.2 is closed at once"
    );
    let mut other = connect_from("127.0.0.3", server).await;
    assert!(
        !closed_within(&mut other, Duration::from_millis(500)).await,
        "127.0.0.3 still gets in"
    );
    for h in &mut held {
        assert!(!closed_within(h, Duration::from_millis(50)).await);
    }
    let s = status(&app).await;
    assert_eq!(s["tcp_flows"], 3, "{s}");
    assert_eq!(count(&s, "tcp_refused_per_address"), 1, "{s}");
    // A slot freed is a slot taken again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect_from("127.0.0.2", server).await;
    assert!(!closed_within(&mut again, Duration::from_millis(500)).await);
    app.stop().await;
}

#[tokio::test]
async fn wrong_passwords_lock_their_source_out_while_another_source_still_registers() {
    let app = TestApp::spawn_with(Kind::Sqlite, |c| {
        common::rig::phones(c);
        c.sip.limits.register_max_failures = 3;
    })
    .await;
    let server = app.server.sip_addr;
    // A guesser at 127.0.0.2: three wrong passwords are each challenged again (401) ...
    let mut guesser = Phone::udp_from("127.0.0.2", server, "ph1", "wrong-password").await;
    for i in 0..3 {
        assert_eq!(guesser.register(600).await, 401, "guess {i}");
    }
    // ... then the address is locked out: 403 to anything, even the right password.
    assert_eq!(guesser.register(600).await, 403, "locked out");
    let mut right = Phone::udp_from("127.0.0.2", server, "ph1", "password-ph1").await;
    assert_eq!(
        right.register(600).await,
        403,
        "the right password too, from there"
    );
    // The phone itself, elsewhere, still registers.
    let mut phone = Phone::udp_from("127.0.0.3", server, "ph1", "password-ph1").await;
    assert_eq!(phone.register(600).await, 200, "another source registers");
    let s = status(&app).await;
    assert_eq!(count(&s, "register_locked_out"), 2, "{s}");
    assert_eq!(count(&s, "registrations_refused"), 3, "{s}");
    app.stop().await;
}
