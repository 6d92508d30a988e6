//! Phones that go silent halfway through an INVITE, found by the SIP fuzz target (issue 16
//! item 7); each used to leave transactions in the tables forever (pitfall 9 of
//! notes/sip-stack.md):
//! - a phone that rang, answered our CANCEL with 200 and never sent the final answer to the
//!   INVITE (crashed or unplugged while ringing): 64*T1 after the CANCEL the branch is given
//!   up (RFC 3261 §9.1);
//! - a phone that answered a re-INVITE with 180 and never with a final: Timer C (§16.6 step
//!   11) cancels it and answers the caller 408.
//!
//! Virtual time, driven through `sip_leaks`' simulator.

use std::time::Duration;

use madoguchi::calls::CallEvent;
use madoguchi::sip::wire::SipMessage;

use crate::sip_leaks::{in_dialog, invite, register, reply, udp, Sim};

#[test]
fn a_phone_silent_after_our_cancel_does_not_hold_the_call_forever() {
    for caller_cancels in [true, false] {
        let mut sim = Sim::new();
        let (trunk, phone) = (udp(5070), udp(5072));
        let mut cseq = 0;
        register(&mut sim, phone, "UDP", &mut cseq, 3600);

        sim.input(trunk, &invite("silent"));
        let inv = sim.take_one(5072, "INVITE");
        sim.send_msg(phone, &reply(&inv, 180, "ps"));
        if caller_cancels {
            sim.input(
                trunk,
                &invite("silent")
                    .replace("INVITE sip:", "CANCEL sip:")
                    .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL"),
            );
        } else {
            // The ring timeout (30 s in the shipped profile) cancels the branch.
            sim.advance(Duration::from_secs(31));
        }
        let cancel = sim.take_one(5072, "CANCEL");
        sim.send_msg(phone, &SipMessage::response_to(&cancel, 200, "OK", None));
        // … and nothing more from the phone. The caller gets its answer, and after 64*T1
        // (32 s) plus the server transaction's own wait for an ACK, nothing is left.
        sim.advance(Duration::from_secs(120));

        let finals: Vec<u16> = sim
            .take(5070)
            .iter()
            .filter_map(SipMessage::status)
            .filter(|s| *s >= 200)
            .collect();
        let want = if caller_cancels { 487 } else { 480 };
        assert!(
            finals.contains(&want),
            "caller_cancels={caller_cancels}: the caller got {want}: {finals:?}"
        );
        let ended = sim
            .events
            .iter()
            .filter(|e| matches!(e, CallEvent::Ended { .. }))
            .count();
        assert_eq!(ended, 1, "the call is logged as ended once");
        let sizes = sim.proxy.table_sizes();
        assert_eq!(
            (
                sizes.server_txns,
                sizes.client_txns,
                sizes.calls,
                sizes.relays
            ),
            (0, 0, 0, 0),
            "caller_cancels={caller_cancels}: no call or transaction is left: {sizes:?}"
        );
        assert_eq!(sizes.bindings, 1, "the phone is still registered");
    }
}

#[test]
fn a_phone_silent_after_ringing_for_a_re_invite_gets_timer_c() {
    let mut sim = Sim::new();
    let (trunk, phone) = (udp(5070), udp(5072));
    let mut cseq = 0;
    register(&mut sim, phone, "UDP", &mut cseq, 3600);

    // An answered call …
    sim.input(trunk, &invite("re"));
    let inv = sim.take_one(5072, "INVITE");
    sim.send_msg(phone, &reply(&inv, 200, "pr"));
    sim.take_one(5070, "200");
    sim.input(trunk, &in_dialog("ACK", "re", 1, "pr"));
    // … whose re-INVITE the phone only rings for.
    sim.input(trunk, &in_dialog("INVITE", "re", 2, "pr"));
    let reinvite = sim.take_one(5072, "INVITE");
    sim.send_msg(
        phone,
        &SipMessage::response_to(&reinvite, 180, "Ringing", None),
    );
    sim.advance(Duration::from_secs(182));
    let cancel = sim.take_one(5072, "CANCEL");
    assert_eq!(
        cancel.cseq().map(|c| c.0),
        Some(2),
        "the re-INVITE is cancelled"
    );
    let finals: Vec<u16> = sim
        .take(5070)
        .iter()
        .filter_map(SipMessage::status)
        .filter(|s| *s >= 200)
        .collect();
    // (Retransmitted until the caller ACKs it, which this caller does not.)
    assert!(
        !finals.is_empty() && finals.iter().all(|s| *s == 408),
        "the caller's re-INVITE gets 408: {finals:?}"
    );
    // The phone stays silent; the CANCEL and the 408 run out too.
    sim.advance(Duration::from_secs(120));
    let sizes = sim.proxy.table_sizes();
    assert_eq!(
        (sizes.server_txns, sizes.client_txns, sizes.relays),
        (0, 0, 0),
        "no transaction is left: {sizes:?}"
    );
    assert_eq!(sizes.calls, 1, "the call itself goes on");
}
