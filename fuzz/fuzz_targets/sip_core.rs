//! Fuzzes the SIP message path (issue 16 item 7): bytes go into the proxy core as UDP
//! datagrams from the trunk, from a registered operator phone and from a stranger
//! (parse → transaction → route → fork → relay), with a manual clock; timers fire when the
//! input asks and all of them at the end. A panic anywhere is a crash; so is a table that is
//! not empty once every timer has fired (a leak: pitfall 9 of notes/sip-stack.md).
//!
//! Input format: chunks separated by `SEP`. A chunk's first byte is its flags, the rest one
//! datagram: bits 0–1 the source (0 trunk, 1 phone, 2 stranger, 3 phone), bit 2 "then fire
//! the next timer". Before sending, `{PHONE_HDRS}` becomes the Via, Record-Route, From,
//! Call-ID, CSeq and (last) To rows of the last request the core sent to the phone (so a
//! seeded phone answer matches its branch), `{TO_TAG}` the To tag of the last response the
//! core sent to the trunk. The seeds are written by `tests/it/fuzz_seeds.rs`.

#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use madoguchi::clock::ManualClock;
use madoguchi::config::{load_sip, Profile};
use madoguchi::hours::OpeningHours;
use madoguchi::sip::policy::LinePolicy;
use madoguchi::sip::proxy::{Input, Output, Peer, Proxy, SipCounters, TimerKey, Transport};
use madoguchi::sip::settings::SipSettings;
use madoguchi::sip::wire::SipMessage;

const SEP: &[u8] = b"\n%%\n";
const PROXY: &str = "127.0.0.1:5060";
const TRUNK: &str = "127.0.0.1:5070";
const PHONE: &str = "127.0.0.2:5072";
const STRANGER: &str = "192.0.2.9:5060";
/// Timer firings per input at most (a re-arming loop must not hang the fuzzer).
const MAX_FIRINGS: usize = 2_000;

struct Setup {
    profile: Profile,
    sip: SipSettings,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let profile = Profile::load(&root.join("profiles/otaru-2026")).expect("profile");
        let sip =
            load_sip(&root.join("sip-config"), &Default::default(), "fuzz").expect("sip-config");
        Setup { profile, sip }
    })
}

fn udp(addr: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr.parse::<SocketAddr>().unwrap(),
        flow: None,
    }
}

struct Harness {
    proxy: Proxy,
    clock: ManualClock,
    now: Duration,
    seq: u64,
    timers: BTreeMap<(Duration, u64), TimerKey>,
    index: HashMap<TimerKey, (Duration, u64)>,
    /// The last request the core sent to the phone, and the last response to the trunk.
    to_phone: Option<SipMessage>,
    to_trunk: Option<SipMessage>,
}

impl Harness {
    fn new() -> Harness {
        let s = setup();
        // Wednesday 2026-11-25 10:00 JST: open, so a call from the trunk is routed.
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 25, 1, 0, 0).unwrap());
        let hours = OpeningHours::new(&s.profile.hours).unwrap();
        let proxy = Proxy::new(
            s.sip.clone(),
            LinePolicy::new(hours, s.profile.line.clone()),
            Arc::new(clock.clone()),
            PROXY.parse().unwrap(),
            Arc::new(SipCounters::default()),
        )
        .unwrap();
        let mut h = Harness {
            proxy,
            clock,
            now: Duration::ZERO,
            seq: 0,
            timers: BTreeMap::new(),
            index: HashMap::new(),
            to_phone: None,
            to_trunk: None,
        };
        h.register_phone();
        h
    }

    /// Registers op2 at PHONE with digest, as a phone does, so calls fork to it.
    fn register_phone(&mut self) {
        let text = |cseq: u32, auth: &str| {
            format!(
                "REGISTER sip:{PROXY} SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bKreg{cseq}\r\nFrom: <sip:op2@{PROXY}>;tag=r1\r\nTo: <sip:op2@{PROXY}>\r\nCall-ID: reg-fuzz\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:op2@{PHONE}>\r\nExpires: 600\r\n{auth}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let out = self.feed(udp(PHONE), text(1, "").into_bytes());
        let challenge = out
            .iter()
            .find(|m| m.status() == Some(401))
            .expect("the registrar challenges");
        let challenges: Vec<_> = challenge
            .headers_all("WWW-Authenticate")
            .iter()
            .filter_map(|v| sipx_sip::auth::Challenge::parse(v.as_bytes(), false))
            .collect();
        let first = sipx_sip::auth::topmost_supported(challenges).expect("a usable challenge");
        let creds = sipx_sip::auth::Credentials::new("op2", "demo-password-op2");
        let auth =
            sipx_sip::auth::respond(&first, &creds, "REGISTER", &format!("sip:{PROXY}"), 1, "c1");
        let out = self.feed(
            udp(PHONE),
            text(2, &format!("Authorization: {auth}\r\n")).into_bytes(),
        );
        assert!(
            out.iter().any(|m| m.status() == Some(200)),
            "the fuzz phone registers"
        );
    }

    /// One input; returns the messages the core sent (parsed), keeps its timers.
    fn step(&mut self, input: Input) -> Vec<SipMessage> {
        self.proxy.handle_input(input);
        let mut sent = Vec::new();
        while let Some(o) = self.proxy.poll_output() {
            match o {
                Output::Send(peer, bytes) | Output::SendWhenStored { peer, bytes, .. } => {
                    // What the core sends must be SIP a peer can read, except an error answer:
                    // it copies the sender's Via rows as they came (RFC 3261 §8.2.6.2), broken
                    // ones included, and goes back to that sender only.
                    let m = match SipMessage::parse_datagram(&bytes) {
                        Ok(m) => m,
                        Err(_)
                            if bytes.starts_with(b"SIP/2.0 4")
                                || bytes.starts_with(b"SIP/2.0 5") =>
                        {
                            continue
                        }
                        Err(e) => panic!(
                            "the core sent an unparseable message ({e:?}): {}",
                            String::from_utf8_lossy(&bytes)
                        ),
                    };
                    if peer.addr == udp(PHONE).addr && m.is_request() {
                        self.to_phone = Some(m.clone());
                    }
                    if peer.addr == udp(TRUNK).addr && !m.is_request() {
                        self.to_trunk = Some(m.clone());
                    }
                    sent.push(m);
                }
                Output::Arm(key, d) => {
                    if let Some(old) = self.index.remove(&key) {
                        self.timers.remove(&old);
                    }
                    self.seq += 1;
                    let at = (self.now + d, self.seq);
                    self.timers.insert(at, key.clone());
                    self.index.insert(key, at);
                }
                Output::Disarm(key) => {
                    if let Some(old) = self.index.remove(&key) {
                        self.timers.remove(&old);
                    }
                }
                // Media and shared-registration orders go to the driver; nothing of the
                // message path's state.
                Output::Event(_)
                | Output::Announce(_)
                | Output::StopAnnouncement { .. }
                | Output::Bindings { .. } => {}
            }
        }
        sent
    }

    fn feed(&mut self, from: Peer, bytes: Vec<u8>) -> Vec<SipMessage> {
        self.step(Input::Datagram(bytes.into(), from))
    }

    /// Fires the earliest timer, moving the clock to it; false when none is armed.
    fn fire_next(&mut self) -> bool {
        let Some((&(at, seq), _)) = self.timers.iter().next() else {
            return false;
        };
        let key = self.timers.remove(&(at, seq)).unwrap();
        self.index.remove(&key);
        if at > self.now {
            self.clock
                .advance(chrono::Duration::from_std(at - self.now).expect("a short step"));
            self.now = at;
        }
        self.step(Input::Timer(key));
        true
    }

    fn fill(&self, chunk: &[u8]) -> Vec<u8> {
        let mut out = chunk.to_vec();
        if let Some(req) = &self.to_phone {
            let mut hdrs = String::new();
            for name in ["Via", "Record-Route", "From", "Call-ID", "CSeq", "To"] {
                for v in req.headers_all(name) {
                    hdrs.push_str(&format!("{name}: {v}\r\n"));
                }
            }
            // The phone answers with the headers it got, minus the final CRLF (the template
            // has it).
            let hdrs = hdrs.trim_end_matches("\r\n").to_string();
            out = replace(&out, b"{PHONE_HDRS}", hdrs.as_bytes());
        }
        let tag = self
            .to_trunk
            .as_ref()
            .and_then(SipMessage::to_tag)
            .unwrap_or_default();
        replace(&out, b"{TO_TAG}", tag.as_bytes())
    }
}

fn replace(hay: &[u8], what: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(what) {
            out.extend_from_slice(with);
            i += what.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(SEP.len()).position(|w| w == SEP) {
        out.push(&rest[..i]);
        rest = &rest[i + SEP.len()..];
    }
    out.push(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    let mut h = Harness::new();
    for chunk in chunks(data).into_iter().take(64) {
        let Some((&flags, msg)) = chunk.split_first() else {
            continue;
        };
        let from = match flags & 3 {
            0 => TRUNK,
            2 => STRANGER,
            _ => PHONE,
        };
        let bytes = h.fill(msg);
        h.feed(udp(from), bytes);
        if flags & 4 != 0 {
            h.fire_next();
        }
    }
    // Let every timer run out: calls end, transactions terminate, the phone's binding expires.
    let mut firings = 0;
    while h.fire_next() {
        firings += 1;
        assert!(
            firings < MAX_FIRINGS,
            "timers keep re-arming: {:?}",
            h.timers
        );
    }
    let sizes = h.proxy.table_sizes();
    assert_eq!(
        (
            sizes.server_txns,
            sizes.client_txns,
            sizes.calls,
            sizes.relays,
            sizes.bindings
        ),
        (0, 0, 0, 0, 0),
        "every table is empty once every timer has fired: {sizes:?}"
    );
});
