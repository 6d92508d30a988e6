//! Screen pop and live stats over WebSocket, driven by real sipp calls (R-LINE-3, R-LINE-4,
//! issue 4): the pop arrives with the caller's history, a client that connects mid-call gets
//! the call in its first message, a stuck client delays nobody, and the outcome, wrap-up,
//! callback and statistics APIs reflect what happened. The call-log paths (history, wrap-ups,
//! outcome, callback closing) run on every backend the rig offers (SQLite, and PostgreSQL
//! when DATABASE_URL names one).

use crate::common;

use std::time::Duration;

use common::rig::{jst, wait, Rig};
use common::{backends, sipp};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Logs `username` in without a cookie jar and returns the session cookie.
async fn session_cookie(rig: &Rig, username: &str, password: &str) -> String {
    let res = reqwest::Client::new()
        .post(rig.app.url("/api/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let c = res.headers()["set-cookie"].to_str().unwrap();
    c.split(';').next().unwrap().to_string()
}

async fn connect(rig: &Rig, cookie: &str) -> Ws {
    let url = rig.app.base.replace("http://", "ws://") + "/ws";
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Cookie", cookie.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    ws
}

/// The next message of `kind`, skipping the periodic `stats`.
async fn next(ws: &mut Ws, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} message"))
            .expect("socket open")
            .expect("message");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert!(v["seq"].as_u64().is_some() && v["at"].is_string(), "{v}");
            if v["type"] == kind {
                return v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screen_pop_with_history_answer_end_and_outcome() {
    for kind in backends() {
        eprintln!("backend {kind:?}");
        let Some(rig) = Rig::on(kind, jst(2026, 11, 25, 10, 0), |_| {}).await else {
            return;
        };
        screen_pop_with_history_answer_end_and_outcome_on(rig).await;
    }
}

async fn screen_pop_with_history_answer_end_and_outcome_on(rig: Rig) {
    rig.staff().await;
    let (mut phone, uas_port) = rig.sipp_phone_on("ph1", "phone-answer", &[]).await;
    // An earlier call from the same number, so the pop has history.
    let mut first = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "300"],
    );
    assert_eq!(wait(&mut first, 20).await, 0, "{}", first.errors());
    assert_eq!(wait(&mut phone, 10).await, 0);
    rig.ended_calls(1).await;

    let op_cookie = session_cookie(&rig, "operator1", "password-operator1").await;
    let mgr_cookie = session_cookie(&rig, "manager1", "password-manager1").await;
    let mut a = connect(&rig, &op_cookie).await;
    let mut b = connect(&rig, &mgr_cookie).await;
    let snap = next(&mut a, "snapshot").await;
    assert_eq!(snap["calls"], json!([]));
    next(&mut b, "snapshot").await;

    let mut phone = rig.uas(
        "phone-answer",
        &[("timeout=\"500\"", "timeout=\"1500\"")],
        uas_port,
    );
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "1500"],
    );
    for ws in [&mut a, &mut b] {
        let ring = next(ws, "call.ringing").await;
        assert_eq!(ring["call"]["caller"]["display"], "0134-22-0001");
        assert_eq!(ring["call"]["state"], "ringing");
        let history = ring["call"]["history"]["calls"].as_array().unwrap();
        assert_eq!(history.len(), 1, "the earlier call: {ring}");
        assert_eq!(history[0]["end_cause"], "completed");
    }
    // A page opened (or refreshed) while it rings gets the call in its first message.
    let mut c = connect(&rig, &mgr_cookie).await;
    let snap = next(&mut c, "snapshot").await;
    assert_eq!(snap["calls"].as_array().unwrap().len(), 1, "{snap}");
    assert_eq!(snap["calls"][0]["caller"]["e164"], "+81134220001");

    for ws in [&mut a, &mut b, &mut c] {
        let ans = next(ws, "call.answered").await;
        assert_eq!(ans["by"]["operator"], "operator1");
        assert_eq!(ans["call"]["state"], "talking");
    }
    let ended = next(&mut a, "call.ended").await;
    assert_eq!(ended["cause"], "completed");
    assert_eq!(ended["hangup_by"], "caller");
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    assert_eq!(wait(&mut phone, 10).await, 0);
    let key = ended["call"]["call_key"].as_str().unwrap().to_string();

    // The answered call waits on the operator's wrap-up list until an outcome is saved.
    let op = rig.app.login("operator1", "password-operator1").await;
    rig.ended_calls(2).await;
    let wrap: Value = op.get("/api/calls/wrapups").await.json().await.unwrap();
    assert_eq!(
        wrap["calls"].as_array().unwrap().len(),
        2,
        "both answered calls wait: {wrap}"
    );
    let bad = op
        .client
        .patch(rig.app.url(&format!("/api/calls/{key}")))
        .header("X-CSRF-Token", &op.csrf)
        .json(&json!({ "outcome": "chat" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let saved = op
        .client
        .patch(rig.app.url(&format!("/api/calls/{key}")))
        .header("X-CSRF-Token", &op.csrf)
        .json(&json!({ "outcome": "inquiry", "note": "更新時期の問合せ", "topics": ["renewal"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    let row: Value = saved.json().await.unwrap();
    assert_eq!(row["outcome"], "inquiry");
    assert_eq!(row["outcome_topics"], json!(["renewal"]));
    let wrap: Value = op.get("/api/calls/wrapups").await.json().await.unwrap();
    assert_eq!(wrap["calls"].as_array().unwrap().len(), 1);
    let list: Value = op
        .get("/api/calls?outcome=inquiry")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["calls"][0]["call_key"], key.as_str());
    let audit: Value = rig
        .app
        .admin()
        .await
        .get("/api/audit?action=call.outcome")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["rows"].as_array().unwrap().len(), 1);

    let stats: Value = op.get("/api/stats/live").await.json().await.unwrap();
    assert_eq!(stats["offered"], 2);
    assert_eq!(stats["answered"], 2);
    assert_eq!(stats["line_state"], "idle");
    assert!(stats["asa_seconds"].as_f64().unwrap() > 0.3, "{stats}");
    assert!(stats["formulas"]["service_level"]
        .as_str()
        .unwrap()
        .contains("サービスレベル"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_client_delays_neither_the_call_nor_other_clients() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    rig.staff().await;
    let mut phone = rig.sipp_phone("ph1", "phone-answer", &[]).await;
    let cookie = session_cookie(&rig, "manager1", "password-manager1").await;
    // Connected, and never read from again.
    let _stuck = connect(&rig, &cookie).await;
    let mut live = connect(&rig, &cookie).await;
    next(&mut live, "snapshot").await;
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "500"],
    );
    next(&mut live, "call.ringing").await;
    next(&mut live, "call.answered").await;
    next(&mut live, "call.ended").await;
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    assert_eq!(wait(&mut phone, 10).await, 0);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_calls_wait_once_per_number_for_a_callback() {
    for kind in backends() {
        eprintln!("backend {kind:?}");
        let Some(rig) = Rig::on(kind, jst(2026, 11, 25, 10, 0), |_| {}).await else {
            return;
        };
        missed_calls_wait_once_per_number_for_a_callback_on(rig).await;
    }
}

async fn missed_calls_wait_once_per_number_for_a_callback_on(rig: Rig) {
    rig.staff().await;
    // Two abandoned calls from the same number.
    let (mut phone, port) = rig
        .sipp_phone_on(
            "ph1",
            "phone-answer",
            &[("timeout=\"500\"", "timeout=\"20000\"")],
        )
        .await;
    let mut t = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-cancel", &[]),
        "127.0.0.1",
        &[],
    );
    assert_eq!(wait(&mut t, 20).await, 0, "{}", t.errors());
    assert_eq!(wait(&mut phone, 10).await, 0);
    let mut phone = rig.uas(
        "phone-answer",
        &[("timeout=\"500\"", "timeout=\"20000\"")],
        port,
    );
    let mut t = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-cancel", &[]),
        "127.0.0.1",
        &[],
    );
    assert_eq!(wait(&mut t, 20).await, 0, "{}", t.errors());
    assert_eq!(wait(&mut phone, 10).await, 0);
    rig.ended_calls(2).await;
    let op = rig.app.login("operator1", "password-operator1").await;
    let list: Value = op.get("/api/callbacks").await.json().await.unwrap();
    let cbs = list["callbacks"].as_array().unwrap();
    assert_eq!(cbs.len(), 1, "once per number: {list}");
    assert_eq!(cbs[0]["caller"]["e164"], "+81134220001");
    assert_eq!(cbs[0]["caller"]["display"], "0134-22-0001");
    assert_eq!(cbs[0]["missed_count"], 2);
    assert_eq!(cbs[0]["last_cause"], "abandoned");
    let stats: Value = op.get("/api/stats/live").await.json().await.unwrap();
    assert_eq!(stats["callbacks_waiting"], 1);
    assert_eq!(stats["abandoned"], 2);
    assert_eq!(stats["abandonment_rate"], 1.0);
    assert_eq!(stats["service_level"], 0.0);

    let id = cbs[0]["id"].as_i64().unwrap();
    let bad = op
        .post(
            &format!("/api/callbacks/{id}/close"),
            &json!({ "result": "maybe" }),
        )
        .await;
    assert_eq!(bad.status(), 422);
    let ok = op
        .post(
            &format!("/api/callbacks/{id}/close"),
            &json!({ "result": "called_back", "note": "折り返し済み" }),
        )
        .await;
    assert_eq!(ok.status(), 200);
    let again = op
        .post(
            &format!("/api/callbacks/{id}/close"),
            &json!({ "result": "closed" }),
        )
        .await;
    assert_eq!(again.status(), 409);
    let list: Value = op.get("/api/callbacks").await.json().await.unwrap();
    assert!(list["callbacks"].as_array().unwrap().is_empty());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talk_script_and_presence() {
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    rig.staff().await;
    let _phone = rig.sipp_phone("ph1", "phone-answer", &[]).await;
    let op = rig.app.login("operator1", "password-operator1").await;
    let script: Value = op.get("/api/talk-script").await.json().await.unwrap();
    let sections = script["sections"].as_array().unwrap();
    assert!(sections.len() >= 8, "{script}");
    let renewal: Vec<&Value> = sections
        .iter()
        .filter(|s| s["paths"].as_array().unwrap().contains(&json!("renewal")))
        .collect();
    assert!(
        renewal
            .iter()
            .any(|s| s["html"].as_str().unwrap().contains("資格確認書")),
        "R-BOOK-4a in the renewal path"
    );
    let loss: Vec<&Value> = sections
        .iter()
        .filter(|s| s["paths"].as_array().unwrap().contains(&json!("loss")))
        .collect();
    assert!(
        loss.iter()
            .any(|s| s["html"].as_str().unwrap().contains("2,000")),
        "R-BOOK-4b fee"
    );
    let mgr = rig.app.login("manager1", "password-manager1").await;
    let p: Value = mgr.get("/api/presence").await.json().await.unwrap();
    let op1 = p["staff"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["username"] == "operator1")
        .unwrap();
    assert_eq!(op1["logged_in"], true);
    let ph1 = op1["phones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["username"] == "ph1")
        .unwrap_or_else(|| panic!("ph1 listed: {op1}"));
    assert_eq!(ph1["state"], "available", "{op1}");
    assert_eq!(
        op.get("/api/presence").await.status(),
        403,
        "operators do not see presence"
    );
    rig.stop().await;
}
