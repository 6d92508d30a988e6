//! The SIP adapter against real peers: sipp as the carrier's trunk and as operator phones,
//! and a Rust test phone for what sipp cannot do (SHA-256 digest, TCP phone, re-INVITE).
//! Each case ends correctly on the wire and is logged with the right cause (R-LINE-1..3,
//! R-HOURS-1).

use crate::common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::rig::{expect_final, jst, wait, Rig, LINE};
use common::sipp;
use common::ua::Phone;
use madoguchi::config::Config;
use madoguchi::sip::settings::PhoneSettings;
use serde_json::Value;

fn secs(v: &Value) -> f64 {
    v.as_f64().unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_then_caller_hangs_up() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let mut phone = rig.sipp_phone("ph1", "phone-answer", &[]).await;
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "1500"],
    );
    assert_eq!(wait(&mut trunk, 20).await, 0, "trunk: {}", trunk.errors());
    assert_eq!(wait(&mut phone, 10).await, 0, "phone: {}", phone.errors());
    let calls = rig.ended_calls(1).await;
    let c = &calls[0];
    assert_eq!(c["end_cause"], "completed");
    assert_eq!(c["hangup_by"], "caller");
    assert_eq!(c["answered_by"], "operator1");
    assert_eq!(c["answered_extension"], "ph1");
    assert_eq!(c["caller"]["display"], "0134-22-0001");
    assert_eq!(c["caller"]["e164"], "+81134220001");
    assert_eq!(c["line_number"], LINE);
    assert!(
        (0.3..3.0).contains(&secs(&c["ring_seconds"])),
        "rang about 0.5 s: {c}"
    );
    assert!(
        (1.3..5.0).contains(&secs(&c["talk_seconds"])),
        "talked about 1.5 s: {c}"
    );
    // Record-Route put us in the dialog: the phone saw the BYE come through the adapter.
    assert!(phone
        .messages()
        .contains(&format!("Record-Route: <sip:{};lr>", rig.sip)));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_then_operator_hangs_up() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let mut phone = rig.sipp_phone("ph1", "phone-answer-bye", &[]).await;
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call-wait-bye", &[]),
        "127.0.0.1",
        &[],
    );
    assert_eq!(wait(&mut trunk, 20).await, 0, "trunk: {}", trunk.errors());
    assert_eq!(wait(&mut phone, 10).await, 0, "phone: {}", phone.errors());
    let c = &rig.ended_calls(1).await[0];
    assert_eq!(c["end_cause"], "completed");
    assert_eq!(c["hangup_by"], "operator");
    assert!((0.8..4.0).contains(&secs(&c["talk_seconds"])), "{c}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_cancels_while_ringing_is_abandoned() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let mut phone = rig
        .sipp_phone(
            "ph1",
            "phone-answer",
            &[("timeout=\"500\"", "timeout=\"20000\"")],
        )
        .await;
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-cancel", &[]),
        "127.0.0.1",
        &[],
    );
    assert_eq!(
        wait(&mut trunk, 20).await,
        0,
        "trunk got 200 to CANCEL and 487: {}",
        trunk.errors()
    );
    assert_eq!(
        wait(&mut phone, 10).await,
        0,
        "phone got the CANCEL: {}",
        phone.errors()
    );
    let c = &rig.ended_calls(1).await[0];
    assert_eq!(c["end_cause"], "abandoned");
    assert!(c["answered_at"].is_null());
    assert!(secs(&c["ring_seconds"]) >= 0.2, "{c}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_call_during_the_first_is_busy() {
    // R-LINE-2: one line.
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let mut phone = rig.sipp_phone("ph1", "phone-answer", &[]).await;
    let mut first = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "3000"],
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut second = rig.trunk(&expect_final(rig.dir.path(), 486, false), "127.0.0.1", &[]);
    assert_eq!(
        wait(&mut second, 10).await,
        0,
        "second call got 486: {}",
        second.errors()
    );
    assert_eq!(
        wait(&mut first, 20).await,
        0,
        "first call completes: {}",
        first.errors()
    );
    assert_eq!(wait(&mut phone, 10).await, 0);
    let calls = rig.ended_calls(2).await;
    let causes: Vec<&str> = calls
        .iter()
        .map(|c| c["end_cause"].as_str().unwrap())
        .collect();
    assert!(
        causes.contains(&"busy") && causes.contains(&"completed"),
        "{causes:?}"
    );
    rig.stop().await;
}

async fn closed_case(at: DateTime<Utc>, reason: &str, tweak: impl FnOnce(&mut Config)) {
    // R-HOURS-1: not offered to operators, answered "closed" with Retry-After, still counted.
    let Some(rig) = Rig::new(at, tweak).await else {
        return;
    };
    let phone = rig.sipp_phone("ph1", "phone-answer", &[]).await;
    // sipp's INVITE offers PCMU: the closed-hours message plays first (issue 16 item 4).
    let mut trunk = rig.trunk(&expect_final(rig.dir.path(), 480, true), "127.0.0.1", &[]);
    assert_eq!(
        wait(&mut trunk, 40).await,
        0,
        "closed → 183 with the message, then 480 with Retry-After: {}",
        trunk.errors()
    );
    let seen = trunk.messages();
    assert!(
        seen.contains("SIP/2.0 183 Session Progress") && seen.contains("a=sendonly"),
        "early media before the 480: {seen}"
    );
    assert!(!seen.contains("SIP/2.0 200"), "never answered: {seen}");
    let c = &rig.ended_calls(1).await[0];
    assert_eq!(c["end_cause"], "closed");
    assert_eq!(c["end_detail"], reason);
    assert!(c["rang_at"].is_null(), "never offered to the phones");
    assert!(
        !phone.messages().contains("INVITE sip:"),
        "the phone did not ring"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_outside_hours() {
    closed_case(jst(2026, 11, 25, 17, 0), "outside_hours", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_on_the_citizens_holiday_2026_09_22() {
    closed_case(jst(2026, 9, 22, 10, 0), "national_holiday", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_at_year_end_12_30() {
    // The shipped period ends 12/24; extended here so the year-end rule itself answers.
    closed_case(jst(2026, 12, 30, 10, 0), "year_end", |c| {
        c.profile.hours.period_end = chrono::NaiveDate::from_ymd_opt(2027, 1, 8).unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_registered_is_unstaffed() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let mut trunk = rig.trunk(&expect_final(rig.dir.path(), 480, false), "127.0.0.1", &[]);
    assert_eq!(wait(&mut trunk, 10).await, 0, "{}", trunk.errors());
    let c = &rig.ended_calls(1).await[0];
    assert_eq!(c["end_cause"], "unstaffed");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_timeout_is_no_answer() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |c| {
        c.profile.line.ring_timeout_secs = 5
    })
    .await
    else {
        return;
    };
    let mut phone = rig
        .sipp_phone(
            "ph1",
            "phone-answer",
            &[("timeout=\"500\"", "timeout=\"30000\"")],
        )
        .await;
    let mut trunk = rig.trunk(&expect_final(rig.dir.path(), 480, false), "127.0.0.1", &[]);
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    assert_eq!(
        wait(&mut phone, 10).await,
        0,
        "the phone was CANCELled: {}",
        phone.errors()
    );
    let c = &rig.ended_calls(1).await[0];
    assert_eq!(c["end_cause"], "no_answer");
    assert!(
        (4.5..8.0).contains(&secs(&c["ring_seconds"])),
        "rang for the 5 s timeout: {c}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_from_outside_the_trunk_is_rejected() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let phone = rig.sipp_phone("ph1", "phone-answer", &[]).await;
    let mut scanner = rig.trunk(&expect_final(rig.dir.path(), 403, false), "127.0.0.2", &[]);
    assert_eq!(
        wait(&mut scanner, 10).await,
        0,
        "403 to 127.0.0.2: {}",
        scanner.errors()
    );
    let c = &rig.ended_calls(1).await[0];
    assert_eq!(c["end_cause"], "rejected");
    assert!(
        c["caller"]["e164"].is_null(),
        "nothing of a scanner's claims is stored"
    );
    assert!(!phone.messages().contains("INVITE sip:"));
    let status: Value = rig
        .app
        .admin()
        .await
        .get("/api/sip/status")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["counters"]["rejected"], 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phones_ring_first_answer_wins_other_is_cancelled_with_reason() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let mut winner = rig.sipp_phone("ph1", "phone-answer", &[]).await;
    // The loser must see `Reason: SIP;cause=200` on its CANCEL (no missed-call entry).
    let mut loser = rig
        .sipp_phone(
            "ph2",
            "phone-answer",
            &[
                ("timeout=\"500\"", "timeout=\"20000\""),
                (
                    r#"<ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" check_it="true" assign_to="cseqn"/>"#,
                    r#"<ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" check_it="true" assign_to="cseqn"/>
      <ereg regexp="cause=200" search_in="hdr" header="Reason:" check_it="true" assign_to="reason"/>
      <log message="reason [$reason]"/>"#,
                ),
            ],
        )
        .await;
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "500"],
    );
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    assert_eq!(wait(&mut winner, 10).await, 0, "{}", winner.errors());
    assert_eq!(
        wait(&mut loser, 10).await,
        0,
        "loser CANCELled with Reason: {}",
        loser.errors()
    );
    assert!(loser.messages().contains("Call completed elsewhere"));
    let c = &rig.ended_calls(1).await[0];
    assert_eq!(c["answered_extension"], "ph1");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_phone_declining_does_not_stop_the_other() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let mut decliner = rig.sipp_phone("ph1", "phone-decline", &[]).await;
    let mut answerer = rig
        .sipp_phone(
            "ph2",
            "phone-answer",
            &[("timeout=\"500\"", "timeout=\"1000\"")],
        )
        .await;
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "500"],
    );
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    assert_eq!(
        wait(&mut decliner, 10).await,
        0,
        "603 was ACKed: {}",
        decliner.errors()
    );
    assert_eq!(wait(&mut answerer, 10).await, 0, "{}", answerer.errors());
    let c = &rig.ended_calls(1).await[0];
    assert_eq!(c["end_cause"], "completed");
    assert_eq!(c["answered_by"], "operator2");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmissions_make_one_call() {
    // Pitfall 3 over UDP: the trunk sends its INVITE twice (the first "lost"), the phone
    // retransmits its 200 after ignoring the first ACK (as if lost), the trunk re-ACKs.
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let mut phone = Phone::udp(rig.app.server.sip_addr, "ph1", "password-ph1").await;
    assert_eq!(phone.register(600).await, 200);
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-retrans", &[]),
        "127.0.0.1",
        &["-d", "1500"],
    );
    let invite = phone.expect("INVITE", Duration::from_secs(5)).await;
    let _dialog = phone.answer(&invite, Duration::from_millis(200)).await;
    let ok = phone.last_sent.clone().unwrap();
    phone.expect("ACK", Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    phone.send(&ok).await;
    let ack = phone.expect("ACK", Duration::from_secs(5)).await;
    assert_eq!(ack.call_id(), invite.call_id(), "the re-ACK was forwarded");
    let bye = phone.expect("BYE", Duration::from_secs(5)).await;
    phone.reply(&bye, 200, "OK").await;
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    // Nothing else reached the phone: the duplicate INVITE was absorbed by the adapter.
    while let Some(m) = phone.recv(Duration::from_millis(300)).await {
        assert_ne!(
            m.method(),
            Some("INVITE"),
            "a duplicate INVITE leaked through"
        );
    }
    let calls = rig.ended_calls(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = rig.ended_calls(1).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(again.len(), 1, "logged once");
    assert_eq!(calls[0]["end_cause"], "completed");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_udp_phone_tcp_reinvite_and_bye_both_ways() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |c| {
        c.sip.phones.push(PhoneSettings {
            username: "tcp1".into(),
            password: "password-tcp1".into(),
            algorithms: vec!["SHA-256".into(), "MD5".into()],
            operator: Some("operator1".into()),
        });
    })
    .await
    else {
        return;
    };
    let server = rig.app.server.sip_addr;
    let mut phone = Phone::tcp(server, "tcp1", "password-tcp1").await;
    assert_eq!(phone.register(600).await, 200, "SHA-256 over TCP");

    // Call 1: the phone re-INVITEs, then the caller hangs up.
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call-reinvite", &[]),
        "127.0.0.1",
        &[],
    );
    let invite = phone.expect("INVITE", Duration::from_secs(5)).await;
    let rr = invite.headers_all("Record-Route");
    assert_eq!(rr.len(), 2, "two Record-Routes across UDP and TCP: {rr:?}");
    assert!(
        rr[0].contains("transport=tcp"),
        "the phone-facing one on top: {rr:?}"
    );
    let mut d = phone.answer(&invite, Duration::from_millis(200)).await;
    phone.expect("ACK", Duration::from_secs(5)).await;
    phone.in_dialog(&mut d, "INVITE").await;
    let ok = phone.expect("final", Duration::from_secs(5)).await;
    assert_eq!(ok.status(), Some(200), "re-INVITE answered by the caller");
    phone.in_dialog(&mut d, "ACK").await;
    let bye = phone.expect("BYE", Duration::from_secs(5)).await;
    phone.reply(&bye, 200, "OK").await;
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());

    // Call 2: the phone hangs up.
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call-wait-bye", &[]),
        "127.0.0.1",
        &[],
    );
    let invite = phone.expect("INVITE", Duration::from_secs(5)).await;
    let mut d = phone.answer(&invite, Duration::from_millis(100)).await;
    phone.expect("ACK", Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    phone.in_dialog(&mut d, "BYE").await;
    let ok = phone.expect("final", Duration::from_secs(5)).await;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());

    let calls = rig.ended_calls(2).await;
    let by: Vec<&str> = calls
        .iter()
        .map(|c| c["hangup_by"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(by, ["operator", "caller"], "newest first");

    // The phone's connection closes: its flow goes at once; its binding stays, reached at
    // its Contact from now on (RFC 3261 §18.1.1; tests/it/sip_reach.rs).
    drop(phone);
    let admin = rig.app.admin().await;
    let mut status = Value::Null;
    for _ in 0..50 {
        status = admin.get("/api/sip/status").await.json().await.unwrap();
        if status["tcp_flows"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["tcp_flows"], 0, "{status}");
    assert_eq!(status["tables"]["bindings"], 1, "{status}");
    rig.stop().await;
}
