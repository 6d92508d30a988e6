//! The manager's presence list (issue 18 item 5, R-LINE-6): each operator's extension once,
//! with its state (受付可 / 通話中 / 未登録); a binding replaced by a new registration from the
//! same phone is neither shown nor rung.

use crate::common;

use std::time::Duration;

use common::rig::{jst, wait, Rig};
use common::sipp;
use common::ua::Phone;
use serde_json::{json, Value};

/// The presence entries of `user`'s phones, polled until `done` holds (5 s at most).
async fn phones_of(mgr: &common::Session, user: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut phones = Value::Null;
    for _ in 0..100 {
        let p: Value = mgr.get("/api/presence").await.json().await.unwrap();
        phones = p["staff"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["username"] == user)
            .map(|s| s["phones"].clone())
            .unwrap_or(Value::Null);
        if done(&phones) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    phones
}

/// (extension, state, registrations) of the test phones `ph1`/`ph2` (the demo profile's
/// own phones are listed too).
fn states(phones: &Value) -> Vec<(String, String, u64)> {
    phones
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["username"].as_str().is_some_and(|u| u.starts_with("ph")))
                .map(|p| {
                    (
                        p["username"].as_str().unwrap_or_default().to_string(),
                        p["state"].as_str().unwrap_or_default().to_string(),
                        p["registrations"].as_u64().unwrap_or(99),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registered_again_from_a_new_port_rings_once_and_shows_once() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    rig.staff().await;
    let server = rig.app.server.sip_addr;
    let mgr = rig.app.login("manager1", "password-manager1").await;
    let _op = rig.app.login("operator1", "password-operator1").await;
    let one = |s: &str| vec![("ph1".to_string(), s.to_string(), 1)];

    // Before any registration the extension is listed, 未登録.
    let p = phones_of(&mgr, "operator1", |_| true).await;
    assert_eq!(
        states(&p),
        vec![("ph1".to_string(), "unregistered".to_string(), 0)],
        "{p}"
    );

    let mut phone = Phone::udp(server, "ph1", "password-ph1").await;
    assert_eq!(phone.register(600).await, 200);
    // The phone's SIP stack restarts on a new port (same REGISTER Call-ID) and registers
    // again: the old binding is replaced, not kept beside the new one.
    let old = phone.move_to_new_port().await;
    assert_eq!(phone.register(600).await, 200);
    let p = phones_of(&mgr, "operator1", |p| states(p) == one("available")).await;
    assert_eq!(states(&p), one("available"), "shown once, 受付可: {p}");
    let admin = rig.app.admin().await;
    let mut status = Value::Null;
    for _ in 0..100 {
        status = admin.get("/api/sip/status").await.json().await.unwrap();
        if status["tables"]["bindings"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status["tables"]["bindings"], 1,
        "one binding held: {status}"
    );
    // Another operator's phone that never registered stays 未登録.
    rig.app.user_with_role("operator2", "operator").await;
    let p2 = phones_of(&mgr, "operator2", |_| true).await;
    assert_eq!(
        states(&p2),
        vec![("ph2".to_string(), "unregistered".to_string(), 0)],
        "{p2}"
    );

    // A call rings the phone once, at its new port; the old port hears nothing.
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "1500"],
    );
    let invite = phone.expect("INVITE", Duration::from_secs(5)).await;
    phone.answer(&invite, Duration::from_millis(100)).await;
    phone.expect("ACK", Duration::from_secs(5)).await;
    let p = phones_of(&mgr, "operator1", |p| states(p) == one("talking")).await;
    assert_eq!(states(&p), one("talking"), "通話中 while it talks: {p}");
    let mut buf = [0u8; 2048];
    let stale = tokio::time::timeout(Duration::from_millis(300), old.recv_from(&mut buf)).await;
    assert!(
        stale.is_err(),
        "the replaced binding was rung: {:?}",
        stale.map(|r| r.map(|(n, _)| String::from_utf8_lossy(&buf[..n]).to_string()))
    );
    let bye = phone.expect("BYE", Duration::from_secs(10)).await;
    phone.reply(&bye, 200, "OK").await;
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    let p = phones_of(&mgr, "operator1", |p| states(p) == one("available")).await;
    assert_eq!(
        states(&p),
        one("available"),
        "受付可 again after the call: {p}"
    );

    // The labels the screen shows come from the one label table.
    let labels: Value = mgr.get("/api/labels").await.json().await.unwrap();
    assert_eq!(
        labels["presence_state"],
        json!({"available": "受付可", "talking": "通話中", "unregistered": "未登録"})
    );
    rig.stop().await;
}
