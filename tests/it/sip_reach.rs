//! Phones registered over TCP stay reachable (issue 13 item 6, RFC 3261 §18.1.1/§18.2): a
//! phone that registers over a short-lived connection and then listens at its Contact is
//! called there; only an RFC 5626 (outbound) binding, reachable over its own connection
//! alone, goes with the connection.

use crate::common;

use std::time::Duration;

use common::rig::{jst, wait, Rig};
use common::sipp;
use common::ua::Phone;
use serde_json::Value;
use tokio::net::TcpListener;

/// Polls the status until `done` holds (5 s at most); returns the last one.
async fn status_until(rig: &Rig, done: impl Fn(&Value) -> bool) -> Value {
    let admin = rig.app.admin().await;
    let mut status = Value::Null;
    for _ in 0..100 {
        status = admin.get("/api/sip/status").await.json().await.unwrap();
        if done(&status) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_registered_over_a_closed_tcp_connection_answers_at_its_contact() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let server = rig.app.server.sip_addr;
    // The phone listens on its own port and registers over a connection it then closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listen = listener.local_addr().unwrap();
    let mut phone = Phone::tcp_listening_at(server, "ph1", "password-ph1", listen).await;
    assert_eq!(phone.register(600).await, 200);
    drop(phone);
    let s = status_until(&rig, |s| s["tcp_flows"] == 0).await;
    assert_eq!(s["tcp_flows"], 0, "{s}");
    assert_eq!(
        s["tables"]["bindings"], 1,
        "the binding outlives the connection: {s}"
    );

    // The carrier calls; we connect to the Contact and the phone answers there.
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "300"],
    );
    let (stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("we connect to the phone's Contact")
        .unwrap();
    let mut phone = Phone::tcp_accepted(stream, server, "ph1", "password-ph1");
    let invite = phone.expect("INVITE", Duration::from_secs(5)).await;
    phone.answer(&invite, Duration::from_millis(100)).await;
    phone.expect("ACK", Duration::from_secs(5)).await;
    let bye = phone.expect("BYE", Duration::from_secs(5)).await;
    phone.reply(&bye, 200, "OK").await;
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    let calls = rig.ended_calls(1).await;
    assert_eq!(calls[0]["end_cause"], "completed", "{}", calls[0]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_binding_goes_with_its_connection_and_a_dead_contact_with_the_first_call() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let server = rig.app.server.sip_addr;
    // RFC 5626: reg-id and +sip.instance mean "reach me over this connection only".
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut outbound = Phone::tcp_listening_at(
        server,
        "ph1",
        "password-ph1",
        listener.local_addr().unwrap(),
    )
    .await;
    outbound.use_outbound();
    assert_eq!(outbound.register(600).await, 200);
    drop(outbound);
    let s = status_until(&rig, |s| s["tables"]["bindings"] == 0).await;
    assert_eq!(s["tables"]["bindings"], 0, "{s}");

    // A plain TCP phone whose Contact nobody listens at any more: kept until a call finds
    // the Contact dead, then dropped (the phone registers again when it is back).
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone_at = gone.local_addr().unwrap();
    drop(gone);
    let mut phone = Phone::tcp_listening_at(server, "ph2", "password-ph2", gone_at).await;
    assert_eq!(phone.register(600).await, 200);
    drop(phone);
    let s = status_until(&rig, |s| s["tcp_flows"] == 0).await;
    assert_eq!(s["tables"]["bindings"], 1, "{s}");
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &[],
    );
    // The call fails (no phone answers) rather than ringing nothing until the timeout.
    assert_ne!(wait(&mut trunk, 10).await, 0);
    let s = status_until(&rig, |s| s["tables"]["bindings"] == 0).await;
    assert_eq!(
        s["tables"]["bindings"], 0,
        "the dead Contact is dropped: {s}"
    );
    let calls = rig.ended_calls(1).await;
    assert_ne!(calls[0]["end_cause"], "completed", "{}", calls[0]);
    rig.stop().await;
}
