//! The seed corpus of the SIP fuzz target (`fuzz/fuzz_targets/sip_core.rs`, issue 16 item 7):
//! every malformed and torture message of `sip_malformed` (RFC 4475 and the pitfalls), plus
//! whole call flows (answered, cancelled, declined, re-INVITE) in the target's chunk format,
//! so the fuzzer starts from messages that reach deep into the core. `scripts/test --long`
//! writes them to `fuzz/corpus/sip_core` before it runs the fuzzer.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::sip_malformed::seed_messages;

/// Chunk separator and flags of the fuzz target's input format (see its doc comment).
const SEP: &str = "\n%%\n";
const FROM_TRUNK: u8 = 0;
const FROM_PHONE: u8 = 1;
const FROM_STRANGER: u8 = 2;
const THEN_FIRE_TIMER: u8 = 4;

const PROXY: &str = "127.0.0.1:5060";
const TRUNK: &str = "127.0.0.1:5070";

fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn flow(steps: &[(u8, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (flags, text)) in steps.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(SEP.as_bytes());
        }
        out.push(*flags);
        out.extend_from_slice(crlf(text).as_bytes());
    }
    out
}

fn invite(call: &str) -> String {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    format!(
        "INVITE sip:0120000000@{PROXY} SIP/2.0\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-{call}-1\nFrom: <sip:0134220001@{TRUNK}>;tag=t-{call}\nTo: <sip:0120000000@{PROXY}>\nCall-ID: {call}\nCSeq: 1 INVITE\nContact: <sip:0134220001@{TRUNK}>\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: {}\n\n{sdp}",
        sdp.len()
    )
}

/// The phone's answer to the last request it got ({PHONE_HDRS}: its Via … rows, To last, so
/// the phone's tag goes on it).
fn phone_answer(status: u16, reason: &str) -> String {
    format!(
        "SIP/2.0 {status} {reason}\n{{PHONE_HDRS}};tag=ph-1\nContact: <sip:op2@127.0.0.2:5072>\nContent-Length: 0\n\n"
    )
}

/// The phone's answer to an in-dialog request (its To already carries the phone's tag).
fn phone_answer_in_dialog(status: u16) -> String {
    format!("SIP/2.0 {status} OK\n{{PHONE_HDRS}}\nContent-Length: 0\n\n")
}

fn in_dialog(method: &str, call: &str, cseq: u32) -> String {
    format!(
        "{method} sip:op2@127.0.0.2:5072 SIP/2.0\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-{call}-{method}{cseq}\nRoute: <sip:{PROXY};lr>\nFrom: <sip:0134220001@{TRUNK}>;tag=t-{call}\nTo: <sip:0120000000@{PROXY}>;tag={{TO_TAG}}\nCall-ID: {call}\nCSeq: {cseq} {method}\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
}

fn cancel(call: &str) -> String {
    format!(
        "CANCEL sip:0120000000@{PROXY} SIP/2.0\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-{call}-1\nFrom: <sip:0134220001@{TRUNK}>;tag=t-{call}\nTo: <sip:0120000000@{PROXY}>\nCall-ID: {call}\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
}

fn ack_error(call: &str) -> String {
    format!(
        "ACK sip:0120000000@{PROXY} SIP/2.0\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-{call}-1\nFrom: <sip:0134220001@{TRUNK}>;tag=t-{call}\nTo: <sip:0120000000@{PROXY}>;tag={{TO_TAG}}\nCall-ID: {call}\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
}

/// Whole call flows through the core, each one input of the fuzz target.
fn flows() -> Vec<(&'static str, Vec<u8>)> {
    let answered = flow(&[
        (FROM_TRUNK, invite("f1")),
        (FROM_PHONE, phone_answer(180, "Ringing")),
        (FROM_PHONE, phone_answer(200, "OK")),
        (FROM_TRUNK, in_dialog("ACK", "f1", 1)),
        (FROM_TRUNK, in_dialog("BYE", "f1", 2)),
        (FROM_PHONE, phone_answer_in_dialog(200)),
    ]);
    let reinvite = flow(&[
        (FROM_TRUNK, invite("f2")),
        (FROM_PHONE, phone_answer(200, "OK")),
        (FROM_TRUNK, in_dialog("ACK", "f2", 1)),
        (FROM_TRUNK, in_dialog("INVITE", "f2", 2)),
        (FROM_PHONE, phone_answer_in_dialog(200)),
        (FROM_TRUNK, in_dialog("ACK", "f2", 2)),
        (FROM_TRUNK | THEN_FIRE_TIMER, in_dialog("BYE", "f2", 3)),
        (FROM_PHONE, phone_answer_in_dialog(200)),
    ]);
    let cancelled = flow(&[
        (FROM_TRUNK, invite("f3")),
        (FROM_PHONE, phone_answer(180, "Ringing")),
        (FROM_TRUNK, cancel("f3")),
        (FROM_PHONE, phone_answer_in_dialog(200)),
        (FROM_PHONE, phone_answer(487, "Request Terminated")),
        (FROM_TRUNK, ack_error("f3")),
    ]);
    let declined = flow(&[
        (FROM_TRUNK | THEN_FIRE_TIMER, invite("f4")),
        (FROM_PHONE, phone_answer(486, "Busy Here")),
        (FROM_TRUNK, ack_error("f4")),
    ]);
    let unanswered = flow(&[
        (FROM_TRUNK | THEN_FIRE_TIMER, invite("f5")),
        (FROM_TRUNK | THEN_FIRE_TIMER, invite("f5")),
        (FROM_STRANGER, in_dialog("BYE", "f5", 2)),
    ]);
    vec![
        ("flow-answered", answered),
        ("flow-reinvite", reinvite),
        ("flow-cancelled", cancelled),
        ("flow-declined", declined),
        ("flow-unanswered", unanswered),
    ]
}

/// Writes the seed corpus to `$FUZZ_SEED_DIR` (default `fuzz/corpus/sip_core`).
#[test]
#[ignore = "long tier: scripts/test --long"]
fn write_the_sip_fuzz_seed_corpus() {
    let dir = std::env::var_os("FUZZ_SEED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::common::manifest_dir().join("fuzz/corpus/sip_core"));
    std::fs::create_dir_all(&dir).unwrap();
    let srv: SocketAddr = PROXY.parse().unwrap();
    let trunk: SocketAddr = TRUNK.parse().unwrap();
    let outsider: SocketAddr = "192.0.2.9:5060".parse().unwrap();
    let mut written = 0;
    for (i, (name, from_outside, bytes)) in
        seed_messages(srv, trunk, outsider).into_iter().enumerate()
    {
        let flags = if from_outside {
            FROM_STRANGER
        } else {
            FROM_TRUNK
        };
        let mut input = vec![flags];
        input.extend_from_slice(&bytes);
        let file: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        std::fs::write(dir.join(format!("seed-{i:02}-{file}")), input).unwrap();
        written += 1;
    }
    for (name, input) in flows() {
        std::fs::write(dir.join(name), input).unwrap();
        written += 1;
    }
    assert!(written >= 45, "the case table and the flows: {written}");
    eprintln!("wrote {written} seeds to {}", dir.display());
}
