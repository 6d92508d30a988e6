//! The SIP adapter must not be abused or fooled from the network (issue 13 items 1, 2, 7, 11,
//! 16), tried over real sockets against the running server: control bytes are refused at the
//! wire, a forged response is not reflected anywhere, a Via that is not SIP/2.0 is refused,
//! only the two sides of a dialog may act in it, and a disabled operator's phone stops
//! answering citizens.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

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
