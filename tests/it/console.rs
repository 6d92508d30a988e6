//! The operator console's guarantees over real HTTP and WebSocket, with call events published
//! straight into the running server (no SIP needed): who may save a call's outcome, and what
//! the screen pop's WebSocket delivers, to whom, for how long and with which 取扱記録 rows.

use crate::common;

use chrono::{DateTime, Utc};
use common::{backends, Session, TestApp};
use madoguchi::calls::callerid::CallerId;
use madoguchi::calls::{CallEvent, CallInfo, EndCause, Party};
use madoguchi::clock::Clock;
use serde_json::{json, Value};

/// A caller with a valid number.
pub fn number(national: &str) -> Option<CallerId> {
    let e164 = madoguchi::calls::callerid::to_e164(national).expect("a valid number");
    Some(CallerId::Number {
        display: madoguchi::calls::callerid::display_national(&e164),
        e164,
    })
}

/// A caller whose digits form no valid number.
pub fn raw_digits(digits: &str) -> Option<CallerId> {
    Some(CallerId::Unparsed {
        raw_digits: digits.to_string(),
    })
}

pub fn call(key: &str, caller: Option<CallerId>, at: DateTime<Utc>) -> CallInfo {
    CallInfo {
        key: key.to_string(),
        sip_call_id: format!("{key}@trunk.example.net"),
        caller,
        line_number: Some("0120000000".into()),
        source: "192.0.2.10:5060".into(),
        arrived_at: at,
    }
}

pub fn ringing(app: &TestApp, call: &CallInfo) {
    app.server.state.events.publish(CallEvent::Ringing {
        call: call.clone(),
        at: call.arrived_at,
    });
}

/// The call rings, `operator` answers and the caller hangs up; returns once it is logged.
pub async fn answered_call(app: &TestApp, call: &CallInfo, operator: &str) {
    let at = call.arrived_at;
    let events = &app.server.state.events;
    ringing(app, call);
    events.publish(CallEvent::Answered {
        call: call.clone(),
        at,
        operator: Some(operator.to_string()),
        extension: "ph1".into(),
    });
    events.publish(CallEvent::Ended {
        call: call.clone(),
        at,
        cause: EndCause::Completed,
        hangup_by: Some(Party::Caller),
        rang_at: Some(at),
        answered_at: Some(at),
    });
    logged(app, &call.key).await;
}

/// Waits until the call-log writer has written the call's end.
pub async fn logged(app: &TestApp, key: &str) {
    for _ in 0..200 {
        if let Ok(Some(row)) = app.server.state.calls.get_by_key(key).await {
            if row.end_cause.is_some() {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("call {key} was not logged");
}

async fn patch_outcome(s: &Session, key: &str) -> reqwest::Response {
    s.client
        .patch(format!("{}/api/calls/{key}", s.base))
        .header("X-CSRF-Token", &s.csrf)
        .json(&json!({ "outcome": "inquiry", "note": "" }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn only_the_answering_operator_or_a_manager_saves_a_calls_outcome() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let op1 = app.user_with_role("operator1", "operator").await;
        let op2 = app.user_with_role("operator2", "operator").await;
        let mgr = app.user_with_role("manager1", "manager").await;
        let c = call("k-outcome", number("0134220001"), app.clock.now());
        answered_call(&app, &c, "operator1").await;

        let other = patch_outcome(&op2, "k-outcome").await;
        assert_eq!(other.status(), 403, "{kind:?}: another operator");
        let body: Value = other.json().await.unwrap();
        assert_eq!(body["error"], "not_your_call");
        assert!(
            body["message"].as_str().unwrap().contains("応答した"),
            "{body}"
        );
        let row = app.server.state.calls.get_by_key("k-outcome").await;
        assert_eq!(
            row.unwrap().unwrap().outcome,
            None,
            "{kind:?}: nothing saved"
        );

        assert_eq!(patch_outcome(&op1, "k-outcome").await.status(), 200);
        assert_eq!(
            patch_outcome(&mgr, "k-outcome").await.status(),
            200,
            "{kind:?}: a manager corrects anyone's"
        );
        let rows: Value = app
            .admin()
            .await
            .get("/api/audit?action=call.outcome")
            .await
            .json()
            .await
            .unwrap();
        let outcomes: Vec<(&str, &str)> = rows["rows"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .map(|r| {
                (
                    r["actor_username"].as_str().unwrap(),
                    r["outcome"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                ("operator2", "denied"),
                ("operator1", "ok"),
                ("manager1", "ok")
            ],
            "{kind:?}"
        );
        app.stop().await;
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A browser's login without a cookie jar: the session cookie and the anti-CSRF token.
pub struct Login {
    pub cookie: String,
    pub csrf: String,
}

pub async fn login(app: &TestApp, username: &str, password: &str) -> Login {
    let res = reqwest::Client::new()
        .post(app.url("/api/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "login as {username}");
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let body: Value = res.json().await.unwrap();
    Login {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap().to_string(),
    }
}

impl Login {
    pub async fn post(&self, app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(app.url(path))
            .header("Cookie", &self.cookie)
            .header("X-CSRF-Token", &self.csrf)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

/// Opens the console's WebSocket with `login`'s cookie and reads its snapshot.
pub async fn screen(app: &TestApp, login: &Login) -> (Ws, Value) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = app.base.replace("http://", "ws://") + "/ws";
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Cookie", login.cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    let snapshot = next(&mut ws, "snapshot").await;
    (ws, snapshot)
}

/// The next message of `kind`, skipping others.
pub async fn next(ws: &mut Ws, kind: &str) -> Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} message"))
            .unwrap_or_else(|| panic!("socket closed before {kind}"))
            .unwrap_or_else(|e| panic!("socket failed before {kind}: {e}"));
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == kind {
                return v;
            }
        }
    }
}

/// The next message about a call (ringing, answered, ended), skipping statistics.
pub async fn next_call_message(ws: &mut Ws) -> Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a call message")
            .expect("socket open")
            .expect("message");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"].as_str().is_some_and(|t| t.starts_with("call.")) {
                return v;
            }
        }
    }
}

/// Reads until the server closes the socket; fails if it stays open `secs` longer, or if a
/// message carrying a caller (a pop) arrives first. Returns the close code, if one was sent.
pub async fn closed_without_pops(ws: &mut Ws, secs: u64) -> Option<u16> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("the socket is still open after {secs} s"));
        match msg {
            None | Some(Err(_)) => return None,
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert!(
                    !matches!(
                        v["type"].as_str(),
                        Some("call.ringing" | "call.answered" | "call.ended")
                    ),
                    "a pop reached a screen that must not get it: {v}"
                );
            }
            Some(Ok(_)) => {}
        }
    }
}

/// The session-end tests: an operator watching the screen, and a ringing call to publish.
async fn watching(app: &TestApp, name: &str) -> (Login, Ws) {
    drop(app.user_with_role(name, "operator").await);
    let login = login(app, name, &format!("password-of-{name}")).await;
    let (ws, _) = screen(app, &login).await;
    (login, ws)
}

fn ring_once(app: &TestApp, key: &str) {
    ringing(app, &call(key, number("0134220002"), app.clock.now()));
}

#[tokio::test]
async fn the_screen_pop_closes_at_logout() {
    let app = TestApp::spawn(backends()[0]).await;
    let (login, mut ws) = watching(&app, "sato").await;
    assert_eq!(
        login.post(&app, "/api/logout", &json!({})).await.status(),
        200
    );
    ring_once(&app, "k-logout");
    assert_eq!(closed_without_pops(&mut ws, 5).await, Some(4401));
    app.stop().await;
}

#[tokio::test]
async fn the_screen_pop_closes_when_the_account_is_disabled() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let (_, mut ws) = watching(&app, "sato").await;
        let admin = app.admin().await;
        let users: Value = admin.get("/api/users").await.json().await.unwrap();
        let id = users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == "sato")
            .unwrap()["id"]
            .as_i64()
            .unwrap();
        let res = admin
            .post(&format!("/api/users/{id}/disable"), &json!({}))
            .await;
        assert_eq!(res.status(), 200);
        ring_once(&app, "k-disabled");
        assert_eq!(closed_without_pops(&mut ws, 5).await, Some(4401));
        app.stop().await;
    }
}

#[tokio::test]
async fn the_screen_pop_closes_when_the_password_changes() {
    let app = TestApp::spawn(backends()[0]).await;
    // Changed by the operator ...
    let (login, mut own) = watching(&app, "sato").await;
    let res = login
        .post(
            &app,
            "/api/me/password",
            &json!({ "current_password": "password-of-sato", "new_password": "a-new-password-1" }),
        )
        .await;
    assert_eq!(res.status(), 200);
    ring_once(&app, "k-own-password");
    assert_eq!(closed_without_pops(&mut own, 5).await, Some(4401));
    // ... or reset by an admin.
    let (_, mut reset) = watching(&app, "suzuki").await;
    let admin = app.admin().await;
    let users: Value = admin.get("/api/users").await.json().await.unwrap();
    let id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "suzuki")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let res = admin
        .post(
            &format!("/api/users/{id}/password"),
            &json!({ "password": "reset-by-the-admin" }),
        )
        .await;
    assert_eq!(res.status(), 200);
    ring_once(&app, "k-reset-password");
    assert_eq!(closed_without_pops(&mut reset, 5).await, Some(4401));
    app.stop().await;
}

#[tokio::test]
async fn the_screen_pop_closes_when_the_session_expires() {
    let app = TestApp::spawn_with(backends()[0], |c| {
        c.auth.session_idle_minutes = 15;
        c.auth.session_max_hours = 1;
        c.auth.session_recheck_secs = 1;
    })
    .await;
    // An open screen is not activity: the session goes idle all the same ...
    let (_, mut idle) = watching(&app, "sato").await;
    app.clock.advance(chrono::Duration::minutes(16));
    assert_eq!(closed_without_pops(&mut idle, 5).await, Some(4401));
    // ... and ends at its latest end however busy it is.
    let (busy, mut ws) = watching(&app, "suzuki").await;
    for _ in 0..4 {
        app.clock.advance(chrono::Duration::minutes(12));
        let me = reqwest::Client::new()
            .get(app.url("/api/me"))
            .header("Cookie", &busy.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200, "used, so not idle");
    }
    app.clock.advance(chrono::Duration::minutes(13));
    assert_eq!(closed_without_pops(&mut ws, 5).await, Some(4401));
    app.stop().await;
}

/// The `call.pop` rows, oldest first, as (user, call key, first message that showed it).
async fn pop_rows(app: &TestApp) -> Vec<(String, String, String)> {
    let rows: Value = app
        .admin()
        .await
        .get("/api/audit?action=call.pop&limit=1000")
        .await
        .json()
        .await
        .unwrap();
    let mut rows: Vec<_> = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["target_kind"], "call", "{r}");
            (
                r["actor_username"].as_str().unwrap().to_string(),
                r["target_id"].as_str().unwrap().to_string(),
                r["detail"]["via"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    rows.reverse();
    rows
}

fn row(user: &str, key: &str, via: &str) -> (String, String, String) {
    (user.to_string(), key.to_string(), via.to_string())
}

#[tokio::test]
async fn each_screen_pop_is_recorded_once_per_screen_and_call() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let (_, mut op) = watching(&app, "sato").await;
        drop(app.user_with_role("suzuki", "manager").await);
        let mgr_login = login(&app, "suzuki", "password-of-suzuki").await;
        let (mut mgr, _) = screen(&app, &mgr_login).await;
        let now = app.clock.now();

        // A number: rings, is answered and ends — three messages, one row per screen.
        let numbered = call("k-number", number("0134220001"), now);
        answered_call(&app, &numbered, "sato").await;
        // Digits that form no number are a caller's number all the same.
        ringing(&app, &call("k-digits", raw_digits("12345"), now));
        // Withheld: nothing of the caller is shown, nothing to record.
        let withheld = Some(CallerId::Withheld {
            reason: madoguchi::calls::callerid::WithheldReason::Anonymous,
        });
        ringing(&app, &call("k-withheld", withheld, now));
        for ws in [&mut op, &mut mgr] {
            next(ws, "call.ringing").await;
            next(ws, "call.answered").await;
            next(ws, "call.ended").await;
            assert_eq!(
                next(ws, "call.ringing").await["call"]["call_key"],
                "k-digits"
            );
            assert_eq!(
                next(ws, "call.ringing").await["call"]["call_key"],
                "k-withheld"
            );
        }
        // A call refused as not from the carrier is no caller of ours: no screen shows it.
        app.server.state.events.publish(CallEvent::Ended {
            call: call("k-rejected", number("0134220009"), now),
            at: now,
            cause: EndCause::Rejected,
            hangup_by: None,
            rang_at: None,
            answered_at: None,
        });
        ringing(&app, &call("k-after", None, now));
        for ws in [&mut op, &mut mgr] {
            let after = next_call_message(ws).await;
            assert_eq!(after["call"]["call_key"], "k-after", "{after}");
        }
        // A screen opened while they ring gets them in its snapshot: a delivery of its own.
        let (_, snapshot) = screen(&app, &mgr_login).await;
        assert_eq!(snapshot["calls"].as_array().unwrap().len(), 3, "{snapshot}");

        let mut rows = pop_rows(&app).await;
        rows.sort();
        let mut expected = vec![
            row("sato", "k-number", "call.ringing"),
            row("suzuki", "k-number", "call.ringing"),
            row("sato", "k-digits", "call.ringing"),
            row("suzuki", "k-digits", "call.ringing"),
            row("suzuki", "k-digits", "snapshot"),
        ];
        expected.sort();
        assert_eq!(rows, expected, "{kind:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_pop_that_cannot_be_recorded_is_not_delivered() {
    let app = TestApp::spawn(backends()[0]).await;
    let (_, mut ws) = watching(&app, "sato").await;
    // From here no `call.pop` row can be written, as with a full disk.
    sqlx::query(
        "CREATE TRIGGER pops_down BEFORE INSERT ON audit_log WHEN NEW.action = 'call.pop' \
         BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END",
    )
    .execute(app.server.state.db.pool())
    .await
    .unwrap();
    ring_once(&app, "k-unrecorded");
    assert_eq!(closed_without_pops(&mut ws, 5).await, Some(1011));
    app.stop().await;
}

#[tokio::test]
async fn reading_calls_with_raw_digit_numbers_is_recorded() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let op = app.user_with_role("sato", "operator").await;
        let at = app.clock.now();
        let digits = call("k-raw", raw_digits("12345"), at);
        app.server.state.events.publish(CallEvent::Ended {
            call: digits,
            at,
            cause: EndCause::Abandoned,
            hangup_by: None,
            rang_at: Some(at),
            answered_at: None,
        });
        logged(&app, "k-raw").await;
        let list: Value = op.get("/api/calls").await.json().await.unwrap();
        assert_eq!(list["calls"][0]["caller"]["display"], "12345");
        let id = list["calls"][0]["id"].as_i64().unwrap();
        let reads: Value = app
            .admin()
            .await
            .get("/api/audit?action=call.read&actor=sato")
            .await
            .json()
            .await
            .unwrap();
        let reads = reads["rows"].as_array().unwrap();
        assert_eq!(reads.len(), 1, "{kind:?}: {reads:?}");
        assert_eq!(reads[0]["detail"]["call_ids"], json!([id]));
        app.stop().await;
    }
}
