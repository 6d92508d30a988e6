//! Resource limits reachable from the network (issue 13, items 4 and 14), over real sockets
//! against the running server: a TCP peer that never reads, a source over its rate, a full
//! transaction table, slow and idle TCP connections, one address holding many connections.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Kind, TestApp};
use madoguchi::sip::wire::{new_tag, SipMessage};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, UdpSocket};

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
