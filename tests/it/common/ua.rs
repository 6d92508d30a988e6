//! A small SIP phone in Rust for the tests sipp cannot do: SHA-256 digest, a phone over TCP,
//! in-dialog requests from the phone, replayed and stale credentials.

use std::net::SocketAddr;
use std::time::Duration;

use madoguchi::sip::wire::{new_tag, SipMessage, StreamFramer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::digest_client;

enum Sock {
    Udp(UdpSocket),
    Tcp(TcpStream, StreamFramer, Vec<SipMessage>),
}

/// A test phone registered (or not) with the adapter.
pub struct Phone {
    sock: Sock,
    /// Our address.
    pub local: SocketAddr,
    server: SocketAddr,
    /// SIP username.
    pub user: String,
    password: String,
    cseq: u32,
    reg_call_id: String,
    /// The last message sent, to retransmit it as a UDP phone would.
    pub last_sent: Option<SipMessage>,
    /// Where the phone says it is reached (its Contact), if not at `local`.
    contact_at: Option<SocketAddr>,
    /// RFC 5626: reached only over the connection it registered on.
    outbound: bool,
}

/// What a phone keeps of an answered call.
#[derive(Debug, Clone)]
pub struct Dialog {
    call_id: String,
    /// Our To value with our tag (becomes From in our requests).
    local: String,
    /// The caller's From (becomes To in our requests).
    remote: String,
    remote_target: String,
    routes: Vec<String>,
    cseq: u32,
}

fn transport_token(sock: &Sock) -> &'static str {
    match sock {
        Sock::Udp(_) => "UDP",
        Sock::Tcp(..) => "TCP",
    }
}

impl Phone {
    /// A phone over UDP.
    pub async fn udp(server: SocketAddr, user: &str, password: &str) -> Phone {
        Self::udp_from("127.0.0.1", server, user, password).await
    }

    /// A phone over UDP from address `ip` (another loopback address is another host).
    pub async fn udp_from(ip: &str, server: SocketAddr, user: &str, password: &str) -> Phone {
        let s = UdpSocket::bind(format!("{ip}:0")).await.unwrap();
        let local = s.local_addr().unwrap();
        Self::new(Sock::Udp(s), local, server, user, password)
    }

    /// A phone over one TCP connection (it is reached back over the same one).
    pub async fn tcp(server: SocketAddr, user: &str, password: &str) -> Phone {
        let s = TcpStream::connect(server).await.unwrap();
        let local = s.local_addr().unwrap();
        Self::new(
            Sock::Tcp(s, StreamFramer::new(), Vec::new()),
            local,
            server,
            user,
            password,
        )
    }

    /// A phone over one TCP connection whose Contact names `listen` (where it accepts calls)
    /// instead of the connection's own address, as phones on TCP usually do.
    pub async fn tcp_listening_at(
        server: SocketAddr,
        user: &str,
        password: &str,
        listen: SocketAddr,
    ) -> Phone {
        let mut p = Self::tcp(server, user, password).await;
        p.contact_at = Some(listen);
        p
    }

    /// A phone on a TCP connection the server opened to it (accepted where it listens).
    pub fn tcp_accepted(
        stream: TcpStream,
        server: SocketAddr,
        user: &str,
        password: &str,
    ) -> Phone {
        let local = stream.local_addr().unwrap();
        Self::new(
            Sock::Tcp(stream, StreamFramer::new(), Vec::new()),
            local,
            server,
            user,
            password,
        )
    }

    fn new(sock: Sock, local: SocketAddr, server: SocketAddr, user: &str, password: &str) -> Phone {
        Phone {
            sock,
            local,
            server,
            user: user.into(),
            password: password.into(),
            cseq: 0,
            reg_call_id: format!("reg-{}", new_tag()),
            last_sent: None,
            contact_at: None,
            outbound: false,
        }
    }

    /// The phone moves to a new UDP port on the same address, as after a NAT rebinding or a
    /// restart of its SIP stack, keeping its REGISTER Call-ID (RFC 3261 §10.2.4). Returns the
    /// old socket, to check that nothing reaches it any more.
    pub async fn move_to_new_port(&mut self) -> UdpSocket {
        let ip = self.local.ip();
        let s = UdpSocket::bind((ip, 0)).await.unwrap();
        self.local = s.local_addr().unwrap();
        match std::mem::replace(&mut self.sock, Sock::Udp(s)) {
            Sock::Udp(old) => old,
            Sock::Tcp(..) => panic!("move_to_new_port is for UDP phones"),
        }
    }

    fn contact(&self) -> String {
        let at = self.contact_at.unwrap_or(self.local);
        match self.sock {
            Sock::Udp(_) => format!("<sip:{}@{}>", self.user, at),
            Sock::Tcp(..) => format!("<sip:{}@{};transport=tcp>", self.user, at),
        }
    }

    /// Registers as an RFC 5626 (outbound) client: `reg-id` and `+sip.instance` on the
    /// Contact of its REGISTERs.
    pub fn use_outbound(&mut self) {
        self.outbound = true;
    }

    fn register_contact(&self) -> String {
        if self.outbound {
            format!(
                "{};reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-{:012}>\"",
                self.contact(),
                self.local.port()
            )
        } else {
            self.contact()
        }
    }

    /// Sends raw text (CRLF line ends are added; Content-Length is the caller's business).
    pub async fn send_text(&mut self, text: &str) {
        let bytes = text.replace("\r\n", "\n").replace('\n', "\r\n");
        self.send_bytes(bytes.as_bytes()).await;
    }

    /// Sends raw bytes.
    pub async fn send_bytes(&mut self, b: &[u8]) {
        match &mut self.sock {
            Sock::Udp(s) => {
                s.send_to(b, self.server).await.unwrap();
            }
            Sock::Tcp(s, _, _) => s.write_all(b).await.unwrap(),
        }
    }

    /// Sends a message.
    pub async fn send(&mut self, m: &SipMessage) {
        self.send_bytes(&m.to_bytes()).await;
        self.last_sent = Some(m.clone());
    }

    /// The next message, or `None` after `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Option<SipMessage> {
        let fut = async {
            match &mut self.sock {
                Sock::Udp(s) => {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let (n, _) = s.recv_from(&mut buf).await.ok()?;
                        if let Ok(m) = SipMessage::parse_datagram(&buf[..n]) {
                            return Some(m);
                        }
                    }
                }
                Sock::Tcp(s, framer, queue) => loop {
                    if !queue.is_empty() {
                        return Some(queue.remove(0));
                    }
                    let mut buf = vec![0u8; 16384];
                    let n = s.read(&mut buf).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    queue.extend(framer.push(&buf[..n]).messages);
                },
            }
        };
        tokio::time::timeout(timeout, fut).await.ok().flatten()
    }

    /// The next message that is a response with a final status or `method` request, skipping
    /// provisionals and other chatter.
    pub async fn expect(&mut self, what: &str, timeout: Duration) -> SipMessage {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self
                .recv(left)
                .await
                .unwrap_or_else(|| panic!("{}: no {what} within {timeout:?}", self.user));
            let ok = match what {
                "final" => m.status().is_some_and(|s| s >= 200),
                method => m.method() == Some(method),
            };
            if ok {
                return m;
            }
        }
    }

    /// A REGISTER request text.
    pub fn register_text(&mut self, expires: u32, authorization: Option<&str>) -> String {
        self.cseq += 1;
        let auth = authorization
            .map(|a| format!("Authorization: {a}\n"))
            .unwrap_or_default();
        format!(
            "REGISTER sip:{server} SIP/2.0\nVia: SIP/2.0/{t} {local};branch=z9hG4bK{b}\nFrom: <sip:{u}@{server}>;tag={tag}\nTo: <sip:{u}@{server}>\nCall-ID: {cid}\nCSeq: {cseq} REGISTER\nContact: {contact}\nExpires: {expires}\nMax-Forwards: 70\n{auth}User-Agent: madoguchi-test-phone\nContent-Length: 0\n\n",
            server = self.server,
            t = transport_token(&self.sock),
            local = self.local,
            b = new_tag(),
            u = self.user,
            tag = new_tag(),
            cid = self.reg_call_id,
            cseq = self.cseq,
            contact = self.register_contact(),
        )
    }

    /// The Authorization answering `challenge_response`'s first usable challenge.
    pub fn authorization(&self, challenge_response: &SipMessage, nc: u32) -> String {
        let challenges = challenge_response.headers_all("WWW-Authenticate");
        digest_client::authorization(
            &challenges,
            &self.user,
            &self.password,
            "REGISTER",
            &format!("sip:{}", self.server),
            nc,
            "0a4f113b",
        )
        .expect("a usable challenge")
    }

    /// Registers with digest authentication; returns the final status.
    pub async fn register(&mut self, expires: u32) -> u16 {
        let text = self.register_text(expires, None);
        self.send_text(&text).await;
        let challenge = self.expect("final", Duration::from_secs(3)).await;
        if challenge.status() != Some(401) {
            return challenge.status().unwrap_or(0);
        }
        let auth = self.authorization(&challenge, 1);
        let text = self.register_text(expires, Some(&auth));
        self.send_text(&text).await;
        self.expect("final", Duration::from_secs(3))
            .await
            .status()
            .unwrap_or(0)
    }

    /// Rings (180) then answers (200 with SDP) an INVITE; returns the dialog.
    pub async fn answer(&mut self, invite: &SipMessage, ring: Duration) -> Dialog {
        let tag = new_tag();
        let rr = invite.headers_all("Record-Route");
        let mut ringing = SipMessage::response_to(invite, 180, "Ringing", Some(&tag));
        for r in &rr {
            ringing.add_header("Record-Route", r).unwrap();
        }
        ringing.add_header("Contact", &self.contact()).unwrap();
        self.send(&ringing).await;
        tokio::time::sleep(ring).await;
        let mut ok = SipMessage::response_to(invite, 200, "OK", Some(&tag));
        for r in &rr {
            ok.add_header("Record-Route", r).unwrap();
        }
        ok.add_header("Contact", &self.contact()).unwrap();
        let sdp = format!("v=0\r\no=- 2 2 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n", ip = self.local.ip());
        ok.set_body(Some("application/sdp"), sdp.as_bytes())
            .unwrap();
        self.send(&ok).await;
        let to = ok.header("To").unwrap();
        Dialog {
            call_id: invite.call_id().unwrap(),
            local: to,
            remote: invite.header("From").unwrap(),
            remote_target: invite
                .header("Contact")
                .and_then(|c| madoguchi::sip::wire::uri::name_addr_uri(&c))
                .map(|u| u.to_string())
                .unwrap(),
            routes: rr,
            cseq: 1,
        }
    }

    /// The dialog this phone would have had, had it answered `invite`: what a phone that did
    /// not answer knows (Call-ID, tags, route set) to send requests it must not be able to.
    pub fn dialog_as_if_answered(&self, invite: &SipMessage) -> Dialog {
        let ok = SipMessage::response_to(invite, 200, "OK", Some(&new_tag()));
        Dialog {
            call_id: invite.call_id().unwrap(),
            local: ok.header("To").unwrap(),
            remote: invite.header("From").unwrap(),
            remote_target: invite
                .header("Contact")
                .and_then(|c| madoguchi::sip::wire::uri::name_addr_uri(&c))
                .map(|u| u.to_string())
                .unwrap(),
            routes: invite.headers_all("Record-Route"),
            cseq: 1,
        }
    }

    /// Answers a request with `status` (copying Via etc.).
    pub async fn reply(&mut self, req: &SipMessage, status: u16, reason: &str) {
        let r = SipMessage::response_to(req, status, reason, None);
        self.send(&r).await;
    }

    /// Sends an in-dialog request (BYE, INVITE, UPDATE, INFO, ACK) along the route set.
    pub async fn in_dialog(&mut self, d: &mut Dialog, method: &str) -> String {
        if method != "ACK" {
            d.cseq += 1;
        }
        let routes: String = d.routes.iter().map(|r| format!("Route: {r}\n")).collect();
        let branch = new_tag();
        let text = format!(
            "{method} {target} SIP/2.0\nVia: SIP/2.0/{t} {local};branch=z9hG4bK{branch}\n{routes}From: {from}\nTo: {to}\nCall-ID: {cid}\nCSeq: {cseq} {method}\nContact: {contact}\nMax-Forwards: 70\nContent-Length: 0\n\n",
            target = d.remote_target,
            t = transport_token(&self.sock),
            local = self.local,
            from = d.local,
            to = d.remote,
            cid = d.call_id,
            cseq = d.cseq,
            contact = self.contact(),
        );
        self.send_text(&text).await;
        branch
    }
}
