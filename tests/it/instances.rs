//! Several instances on one PostgreSQL database behave as one center (issue 16 item 1), and
//! phones stay registered across a restart (issue 18 item 9, R-LINE-2: an operator phone
//! registered is what makes the line staffed). Real servers, real sipp peers, a real
//! database; the cross-instance tests need PostgreSQL (`DATABASE_URL`; under `CI=true` a
//! missing PostgreSQL fails, see `common::backends`).

use crate::common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::rig::{jst, wait, Rig};
use common::{backends, sipp, Kind, TestApp, TestDb};
use futures_util::StreamExt;
use serde_json::{json, Value};
use sqlx::Row;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Logs `username` in on `rig` without a cookie jar and returns the session cookie.
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

/// The operator screen's WebSocket on `rig`.
async fn screen(rig: &Rig, cookie: &str) -> Ws {
    let url = rig.app.base.replace("http://", "ws://") + "/ws";
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Cookie", cookie.parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket")
        .0
}

/// The next message of `kind` on the screen (15 s at most).
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
            if v["type"] == kind {
                return v;
            }
        }
    }
}

/// 10:00 on a Wednesday inside the call-center period: the line is open.
fn open_hours() -> DateTime<Utc> {
    jst(2026, 11, 25, 10, 0)
}

/// Waits until the database holds `n` bindings of phone `aor` (any instance).
async fn stored_bindings(rig: &Rig, aor: &str, n: i64) {
    let db = rig.app.server.state.db.clone();
    let mut seen = -1;
    for _ in 0..100 {
        seen = sqlx::query("SELECT COUNT(*) FROM registrations WHERE aor = $1")
            .bind(aor)
            .fetch_one(db.pool())
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap();
        if seen == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} stored bindings of {aor} expected, {seen} seen");
}

/// Waits until the SIP status of `rig` lists phone `aor` (5 s at most).
async fn phone_listed(rig: &Rig, aor: &str) -> Value {
    let admin = rig.app.admin().await;
    let mut status = Value::Null;
    for _ in 0..100 {
        status = admin.get("/api/sip/status").await.json().await.unwrap();
        let listed = status["phones"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["username"] == aor));
        if listed {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{aor} never listed: {status}");
}

/// Stops the server of `rig` and hands back its database, which stays, and its sipp
/// directory (the phones started there still run).
async fn stop_keeping_db(rig: Rig) -> (TestDb, tempfile::TempDir) {
    let Rig { app, dir, .. } = rig;
    let TestApp { server, db, .. } = app;
    server.stop().await;
    (db, dir)
}

/// A phone registered before a restart rings for a call right after it, without
/// registering again (issue 18 item 9): before, the restarted server answered such a call
/// 480 (unstaffed) until the phone's next REGISTER, up to `default_expires` later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registered_before_a_restart_rings_right_after_it() {
    for kind in backends() {
        let Some(rig) = Rig::on(kind, open_hours(), |_| {}).await else {
            return;
        };
        let mut phone = rig.sipp_phone("ph1", "phone-answer", &[]).await;
        stored_bindings(&rig, "ph1", 1).await;
        let (db, _dir) = stop_keeping_db(rig).await;

        // The same database, a new process (new SIP port); the phone has not registered again.
        let rig = Rig::on_db(db, open_hours(), |_| {}).await.unwrap();
        let status = phone_listed(&rig, "ph1").await;
        assert_eq!(status["tables"]["bindings"], 1, "{kind:?}: {status}");
        let mut trunk = rig.trunk(
            &sipp::scenario(rig.dir.path(), "trunk-call", &[]),
            "127.0.0.1",
            &["-d", "300"],
        );
        assert_eq!(
            wait(&mut trunk, 20).await,
            0,
            "{kind:?}: the call is answered: {}",
            trunk.errors()
        );
        assert_eq!(
            wait(&mut phone, 10).await,
            0,
            "{kind:?}: {}",
            phone.errors()
        );
        let calls = rig.ended_calls(1).await;
        assert_eq!(calls[0]["end_cause"], "completed", "{kind:?}: {}", calls[0]);
        assert_eq!(
            calls[0]["answered_extension"], "ph1",
            "{kind:?}: {}",
            calls[0]
        );
        rig.stop().await;
    }
}

/// A phone that unregistered before the restart is not rung after it: the line is
/// unstaffed (480), as the phone asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_unregistered_is_not_taken_back_after_a_restart() {
    let kind = backends()[0];
    let Some(rig) = Rig::on(kind, open_hours(), |_| {}).await else {
        return;
    };
    let server = rig.app.server.sip_addr;
    let mut phone = common::ua::Phone::udp(server, "ph2", "password-ph2").await;
    assert_eq!(phone.register(600).await, 200);
    stored_bindings(&rig, "ph2", 1).await;
    assert_eq!(phone.register(0).await, 200);
    stored_bindings(&rig, "ph2", 0).await;
    let (db, _dir) = stop_keeping_db(rig).await;

    let rig = Rig::on_db(db, open_hours(), |_| {}).await.unwrap();
    let mut trunk = rig.trunk(
        &common::rig::expect_final(rig.dir.path(), 480, false),
        "127.0.0.1",
        &[],
    );
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    let calls = rig.ended_calls(1).await;
    assert_eq!(calls[0]["end_cause"], "unstaffed", "{}", calls[0]);
    rig.stop().await;
}

/// Two servers on one fresh PostgreSQL database, instance ids `a` and `b`; `None` without
/// PostgreSQL or sipp (outside CI).
async fn two_instances() -> Option<(Rig, Rig)> {
    if !backends().contains(&Kind::Postgres) {
        return None;
    }
    let a = Rig::on(Kind::Postgres, open_hours(), |c| c.instance_id = "a".into()).await?;
    let url = a.app.db.url.clone();
    let b = Rig::on_db(TestDb::shared(&url), open_hours(), |c| {
        c.instance_id = "b".into()
    })
    .await?;
    Some((a, b))
}

/// A phone registered on instance A rings for a call arriving on instance B (issue 16
/// item 1: registrations shared through the database, announced with NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registered_on_one_instance_rings_for_a_call_arriving_on_another() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    let mut phone = a.sipp_phone("ph1", "phone-answer", &[]).await;
    let status = phone_listed(&b, "ph1").await;
    assert_eq!(
        status["tables"]["bindings"], 0,
        "B holds no binding of its own: {status}"
    );
    let mut trunk = b.trunk(
        &sipp::scenario(b.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "300"],
    );
    assert_eq!(
        wait(&mut trunk, 20).await,
        0,
        "the call to B is answered: {}",
        trunk.errors()
    );
    assert_eq!(wait(&mut phone, 10).await, 0, "{}", phone.errors());
    let calls = b.ended_calls(1).await;
    assert_eq!(calls[0]["end_cause"], "completed", "{}", calls[0]);
    assert_eq!(calls[0]["answered_extension"], "ph1", "{}", calls[0]);
    b.stop().await;
    a.stop().await;
}

/// A call arriving on instance A pops on an operator's screen connected to instance B, with
/// its answer and its end, and B's live figures count it: the line shows as talking on B
/// while A carries the call (issue 16 item 1, R-LINE-4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_one_instance_pops_on_a_screen_connected_to_another() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    a.staff().await;
    let mut phone = a.sipp_phone("ph1", "phone-answer", &[]).await;
    let cookie = session_cookie(&b, "operator1", "password-operator1").await;
    let mut ws = screen(&b, &cookie).await;
    let snap = next(&mut ws, "snapshot").await;
    assert_eq!(snap["calls"], json!([]), "{snap}");

    let mut trunk = a.trunk(
        &sipp::scenario(a.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "1500"],
    );
    let ring = next(&mut ws, "call.ringing").await;
    assert_eq!(ring["call"]["caller"]["display"], "0134-22-0001", "{ring}");
    let key = ring["call"]["call_key"].as_str().unwrap().to_string();
    let answered = next(&mut ws, "call.answered").await;
    assert_eq!(answered["call"]["call_key"], key.as_str());
    assert_eq!(answered["by"]["operator"], "operator1", "{answered}");
    let op = b.app.login("operator1", "password-operator1").await;
    let stats: Value = op.get("/api/stats/live").await.json().await.unwrap();
    assert_eq!(
        stats["line_state"], "talking",
        "B sees the line busy with A's call: {stats}"
    );

    let ended = next(&mut ws, "call.ended").await;
    assert_eq!(ended["call"]["call_key"], key.as_str());
    assert_eq!(ended["cause"], "completed", "{ended}");
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    assert_eq!(wait(&mut phone, 10).await, 0, "{}", phone.errors());
    a.ended_calls(1).await;
    // B's screen gets the figures of A's stored call.
    loop {
        let s = next(&mut ws, "stats").await;
        if s["stats"]["answered"] == 1 {
            assert_eq!(s["stats"]["offered"], 1, "{s}");
            assert_eq!(s["stats"]["line_state"], "idle", "{s}");
            break;
        }
    }
    let on_a: Value = a
        .app
        .login("operator1", "password-operator1")
        .await
        .get("/api/stats/live")
        .await
        .json()
        .await
        .unwrap();
    let on_b: Value = op.get("/api/stats/live").await.json().await.unwrap();
    for field in ["offered", "answered", "line_state", "abandoned"] {
        assert_eq!(on_a[field], on_b[field], "{field}: A {on_a} B {on_b}");
    }
    drop(ws);
    b.stop().await;
    a.stop().await;
}

/// The one-line limit holds across instances (R-LINE-2, issue 16 item 1): while a call is
/// in progress on A, a second call arriving on B is refused busy (486), although B has a
/// phone of its own that would answer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_progress_on_one_instance_makes_the_line_busy_on_another() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    let mut phone_a = a.sipp_phone("ph1", "phone-answer", &[]).await;
    // ph2 registers on B and would answer a call there. Both phones ring for A's call (the
    // bindings are shared): ph2 rings longer, so ph1 answers and ph2 gets the CANCEL.
    let slow = [("timeout=\"500\"", "timeout=\"2000\"")];
    let (mut phone_b, port_b) = b.sipp_phone_on("ph2", "phone-answer", &slow).await;
    let mut first = a.trunk(
        &sipp::scenario(a.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "4000"],
    );
    let admin = b.app.admin().await;
    let mut status = Value::Null;
    for _ in 0..200 {
        status = admin.get("/api/sip/status").await.json().await.unwrap();
        if status["calls_elsewhere"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        status["calls_elsewhere"], 1,
        "B knows of A's call: {status}"
    );
    let mut second = b.trunk(
        &common::rig::expect_final(b.dir.path(), 486, false),
        "127.0.0.1",
        &[],
    );
    assert_eq!(
        wait(&mut second, 10).await,
        0,
        "the call to B gets 486: {}",
        second.errors()
    );
    assert_eq!(wait(&mut first, 20).await, 0, "{}", first.errors());
    assert_eq!(wait(&mut phone_a, 10).await, 0, "{}", phone_a.errors());
    assert_eq!(wait(&mut phone_b, 10).await, 0, "{}", phone_b.errors());
    let on_b = b.ended_calls(2).await;
    let causes: Vec<&str> = on_b
        .iter()
        .map(|c| c["end_cause"].as_str().unwrap())
        .collect();
    assert!(
        causes.contains(&"busy") && causes.contains(&"completed"),
        "one call log for both: {causes:?}"
    );
    // Once A's call is over, B takes calls again: its own phone answers.
    for _ in 0..200 {
        status = admin.get("/api/sip/status").await.json().await.unwrap();
        if status["calls_elsewhere"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status["calls_elsewhere"], 0, "{status}");
    let mut phone_b = b.uas("phone-answer", &[], port_b);
    let mut third = b.trunk(
        &sipp::scenario(b.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "300"],
    );
    assert_eq!(wait(&mut third, 20).await, 0, "{}", third.errors());
    assert_eq!(wait(&mut phone_b, 10).await, 0, "{}", phone_b.errors());
    b.stop().await;
    a.stop().await;
}

/// Bookings never collide across instances (issue 16 item 1, R-BOOK-3): attempts at the
/// same visit slot sent at once to A and to B make one booking; every other attempt gets
/// the conflict (409 `slot_taken`), and the reception numbers have no gap. The half-day's
/// row lock and the unique index are the database's, so they hold across processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_bookings_on_two_instances_make_one() {
    if !backends().contains(&Kind::Postgres) {
        return;
    }
    let a = TestApp::spawn_at(Kind::Postgres, open_hours(), |c| c.instance_id = "a".into()).await;
    let b = TestApp::spawn_at_on(TestDb::shared(&a.db.url), open_hours(), |c| {
        c.instance_id = "b".into()
    })
    .await;
    let db = a.db.open().await;
    sqlx::query("INSERT INTO visit_days (visit_date, kind, pm_extra_open, updated_at) VALUES ('2026-12-10', 'home', 0, '2026-11-01T00:00:00.000000Z')")
        .execute(db.pool())
        .await
        .unwrap();
    a.user_with_role("op1", "operator").await;
    let on_a = a.login("op1", "password-of-op1").await;
    let on_b = b.login("op1", "password-of-op1").await;
    let body = json!({
        "slot": { "date": "2026-12-10", "half_day": "am", "position": 1 },
        "address": "小樽市架空町1-2-3",
        "manual_travel_minutes": 10,
        "contact_phone": "0134-22-0001",
        "caller_relation": "household",
        "caller_name": "試験 花子",
        "going_out_difficulty": "歩行が困難",
        "parking": true,
        "applicants": [{
            "name": "試験 太郎",
            "name_kana": "しけん たろう",
            "birth_date": "1945-05-05",
            "application_kind": "new",
            "id_documents": ["insurance_certificate", "care_insurance"],
            "insurance_use": true
        }],
        "guidance_given": ["prepare"]
    });
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { &on_a } else { &on_b };
        let (client, csrf, base) = (s.client.clone(), s.csrf.clone(), s.base.clone());
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(format!("{base}/api/bookings"))
                .header("X-CSRF-Token", csrf)
                .json(&body)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }));
    }
    let (mut made, mut refused) = (0, 0);
    for t in tasks {
        let (status, v) = t.await.unwrap();
        match status {
            201 => made += 1,
            409 => {
                assert_eq!(v["error"], "slot_taken", "{v}");
                refused += 1;
            }
            s => panic!("{s}: {v}"),
        }
    }
    assert_eq!((made, refused), (1, 19));
    let numbers: Vec<i64> =
        sqlx::query_scalar("SELECT reception_number FROM bookings ORDER BY reception_number")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(numbers, vec![1], "one booking, number 1");
    db.close().await;
    b.stop().await;
    a.stop().await;
}

/// Calls left open by an instance that is gone are closed as interrupted by the others
/// (its alive lock stays free for 30 s); the open calls of a live instance are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calls_of_a_gone_instance_are_closed_as_interrupted_by_another() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    let db = b.app.server.state.db.clone();
    for (key, instance) in [("call-of-gone", "gone"), ("call-of-a", "a")] {
        sqlx::query(
            "INSERT INTO calls (call_key, sip_call_id, caller_kind, arrived_at, rang_at, instance) \
             VALUES ($1, $1, 'unknown', '2026-11-25T00:59:00.000Z', '2026-11-25T00:59:00.000Z', $2)",
        )
        .bind(key)
        .bind(instance)
        .execute(db.pool())
        .await
        .unwrap();
    }
    let cause = |key: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query("SELECT end_cause FROM calls WHERE call_key = $1")
                .bind(key)
                .fetch_one(db.pool())
                .await
                .unwrap()
                .try_get::<Option<String>, _>(0)
                .unwrap()
        }
    };
    let mut closed = None;
    for _ in 0..120 {
        closed = cause("call-of-gone").await;
        if closed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(closed.as_deref(), Some("interrupted"));
    assert_eq!(
        cause("call-of-a").await,
        None,
        "a live instance's call stays open"
    );
    b.stop().await;
    a.stop().await;
}

/// When the connection listening to the other instances is cut (a PostgreSQL restart, a
/// network blip), it is opened again and everything is read again from the database: a
/// registration stored without an announcement reaching B (here written straight into the
/// table, as by an instance `c`) rings for calls on B after the reconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_listener_reconnects_and_catches_up_with_the_registrations() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    let db = b.app.server.state.db.clone();
    // Both instances are listening (they connect while starting).
    let mut listening = 0;
    for _ in 0..200 {
        listening = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        if listening == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(listening, 2);
    let port = sipp::port();
    let mut phone = b.uas("phone-answer", &[], port);
    sqlx::query(
        "INSERT INTO registrations (instance, aor, contact, transport, source, outbound, expires_at, user_agent, call_id, cseq) \
         VALUES ('c', 'ph1', $1, 'udp', $2, 0, '2099-01-01T00:00:00.000Z', NULL, 'reg-c', 1)",
    )
    .bind(format!("sip:ph1@127.0.0.1:{port}"))
    .bind(format!("127.0.0.1:{port}"))
    .execute(db.pool())
    .await
    .unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(cut, vec![true, true], "A's and B's listeners were cut");
    let status = phone_listed(&b, "ph1").await;
    assert_eq!(status["tables"]["bindings"], 0, "{status}");
    let mut trunk = b.trunk(
        &sipp::scenario(b.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "300"],
    );
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    assert_eq!(wait(&mut phone, 10).await, 0, "{}", phone.errors());
    b.stop().await;
    a.stop().await;
}

/// An instance started while another carries a call shows that call on its screens (read
/// from the call log when it starts listening), and its end when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_mid_call_shows_the_call_in_progress_elsewhere() {
    if !backends().contains(&Kind::Postgres) {
        return;
    }
    let Some(a) = Rig::on(Kind::Postgres, open_hours(), |c| c.instance_id = "a".into()).await
    else {
        return;
    };
    a.staff().await;
    let mut phone = a.sipp_phone("ph1", "phone-answer", &[]).await;
    let mut trunk = a.trunk(
        &sipp::scenario(a.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "4000"],
    );
    // The call is answered on A (its row says so) before B starts.
    let db = a.app.server.state.db.clone();
    let mut answered = 0;
    for _ in 0..200 {
        answered = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM calls WHERE answered_at IS NOT NULL AND ended_at IS NULL",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        if answered == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(answered, 1);
    let b = Rig::on_db(TestDb::shared(&a.app.db.url), open_hours(), |c| {
        c.instance_id = "b".into()
    })
    .await
    .unwrap();
    let cookie = session_cookie(&b, "operator1", "password-operator1").await;
    let mut ws = screen(&b, &cookie).await;
    let snap = next(&mut ws, "snapshot").await;
    let shown = match snap["calls"].as_array().unwrap().first() {
        Some(c) => c.clone(),
        None => next(&mut ws, "call.ringing").await["call"].clone(),
    };
    assert_eq!(shown["state"], "talking", "{shown}");
    assert_eq!(shown["caller"]["display"], "0134-22-0001", "{shown}");
    let ended = next(&mut ws, "call.ended").await;
    assert_eq!(ended["call"]["call_key"], shown["call_key"]);
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    assert_eq!(wait(&mut phone, 10).await, 0, "{}", phone.errors());
    drop(ws);
    b.stop().await;
    a.stop().await;
}

/// An operator account disabled by the admin on instance B takes its phone off the line on
/// every instance (review of issue 16 item 1; R-PII-1: a disabled account's phone must not
/// ring with the caller's number): a call arriving on A rings the other operator's phone,
/// never the disabled one's, although that phone is registered on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_disabled_on_one_instance_is_not_rung_on_another() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    b.staff().await;
    // ph1 (operator1) on A answers at once; ph2 (operator2) on B answers later.
    let ph1 = a.sipp_phone("ph1", "phone-answer", &[]).await;
    let slow = [("timeout=\"500\"", "timeout=\"2000\"")];
    let mut ph2 = b.sipp_phone("ph2", "phone-answer", &slow).await;
    // Disabling accounts is the admin's (the manager gets 403).
    let admin = b.app.admin().await;
    let users: Value = admin.get("/api/users").await.json().await.unwrap();
    let id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "operator1")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let res = admin
        .post(&format!("/api/users/{id}/disable"), &json!({}))
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // A takes ph1 off its line once told.
    let admin_a = a.app.admin().await;
    let mut status = Value::Null;
    for _ in 0..100 {
        status = admin_a.get("/api/sip/status").await.json().await.unwrap();
        let listed = status["phones"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["username"] == "ph1"));
        if !listed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !status["phones"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["username"] == "ph1"),
        "A no longer lists the disabled operator's phone: {status}"
    );
    let mut trunk = a.trunk(
        &sipp::scenario(a.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "300"],
    );
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    assert_eq!(wait(&mut ph2, 10).await, 0, "{}", ph2.errors());
    let calls = a.ended_calls(1).await;
    assert_eq!(calls[0]["end_cause"], "completed", "{}", calls[0]);
    assert_eq!(calls[0]["answered_extension"], "ph2", "{}", calls[0]);
    // ph1 was never rung: its sipp still waits for an INVITE and is killed.
    drop(ph1);
    b.stop().await;
    a.stop().await;
}
