//! The dead-line alarm (issue 16 item 3) with a pinned clock: a trunk that stops answering
//! OPTIONS raises an alarm the manager sees (WebSocket banner message, `/api/alarms`, replayed
//! to a screen that connects later), stored in `alarms` and mailed to the manager through a
//! real SMTP sink; answering again clears it (and mails the clear). No operator phone while
//! the line is open raises one, a phone registering clears it, and outside hours there is
//! none. Run on every backend the tests offer.

use crate::common;
use crate::sharing::{parse_part, SmtpSink};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::rig::{jst, phones};
use common::ua::Phone;
use common::{backends, Kind, TestApp};
use futures_util::StreamExt;
use madoguchi::config::{AlarmConfig, Config};
use madoguchi::sharing::{SharingConfig, SmtpTls};
use madoguchi::sip::carrier::{self, KeepaliveFile};
use madoguchi::sip::wire::{new_tag, SipMessage};
use serde_json::{json, Value};
use sqlx::Row;
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const MANAGER_MAIL: &str = "manager@city.example.jp";

fn alarm_on(c: &mut Config) {
    c.alarm = AlarmConfig {
        enabled: true,
        check_interval_secs: 1,
        silence_minutes: 0,
        ..Default::default()
    };
}

async fn manager_cookie(app: &TestApp) -> String {
    app.user_with_role("manager1", "manager").await;
    let res = reqwest::Client::new()
        .post(app.url("/api/login"))
        .json(&json!({ "username": "manager1", "password": "password-of-manager1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let c = res.headers()["set-cookie"].to_str().unwrap();
    c.split(';').next().unwrap().to_string()
}

async fn connect(app: &TestApp, cookie: &str) -> Ws {
    let url = app.base.replace("http://", "ws://") + "/ws";
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Cookie", cookie.parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket")
        .0
}

/// Reads the screen's messages until the alarms it was last told of satisfy `done`.
async fn alarms_until(ws: &mut Ws, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("screen never saw: {what}"))
            .expect("socket open")
            .expect("message");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "snapshot" || v["type"] == "alarms" {
                let alarms = v["alarms"].as_array().cloned().unwrap_or_default();
                if done(&alarms) {
                    return alarms;
                }
            }
        }
    }
}

async fn api_alarms(app: &TestApp, cookie: &str) -> Vec<Value> {
    let res = reqwest::Client::new()
        .get(app.url("/api/alarms"))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["alarms"].as_array().cloned().unwrap()
}

/// The rows of the alarms table: (kind, cleared?).
async fn stored(app: &TestApp) -> Vec<(String, bool, String)> {
    let db = app.db.open().await;
    sqlx::query("SELECT kind, cleared_at, detail FROM alarms ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let cleared: Option<String> = r.try_get(1).unwrap();
            (
                r.try_get(0).unwrap(),
                cleared.is_some(),
                r.try_get(2).unwrap(),
            )
        })
        .collect()
}

/// Waits until the sink holds `n` mails; returns their decoded bodies.
async fn mails(sink: &SmtpSink, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = sink.mails();
        if m.len() >= n {
            return m
                .iter()
                .map(|m| {
                    assert_eq!(m.rcpt, vec![MANAGER_MAIL.to_string()]);
                    String::from_utf8(parse_part(&m.data).body).unwrap()
                })
                .collect();
        }
        assert!(Instant::now() < deadline, "{n} mails expected, got {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Answers every OPTIONS arriving on `sock` with 200, as a live trunk does.
fn answer_options(sock: UdpSocket) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            if let Ok(req) = SipMessage::parse_datagram(&buf[..n]) {
                if req.method() == Some("OPTIONS") {
                    let r = SipMessage::response_to(&req, 200, "OK", Some(&new_tag()));
                    let _ = sock.send_to(&r.to_bytes(), from).await;
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_that_stops_answering_options_raises_an_alarm_and_answering_clears_it() {
    for kind in backends() {
        trunk_down_alarm_on(kind).await;
    }
}

async fn trunk_down_alarm_on(kind: Kind) {
    // The trunk: a UDP socket that reads OPTIONS and, for now, never answers.
    let trunk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let trunk_addr: SocketAddr = trunk.local_addr().unwrap();
    let sink = SmtpSink::start().await;
    let keepalive: KeepaliveFile = toml::from_str(&format!(
        "targets = [\"{trunk_addr}\"]\ninterval_secs = 1\ntimeout_secs = 1\nfailures = 2\n"
    ))
    .unwrap();
    let settings = carrier::validate(None, Some(&keepalive)).unwrap();
    let port = sink.port;
    let app = TestApp::spawn_with(kind, |c| {
        c.sip.carrier = settings;
        alarm_on(c);
        c.alarm.no_phone = false;
        c.alarm.mail_to = Some(MANAGER_MAIL.into());
        c.sharing = SharingConfig {
            smtp_host: Some("127.0.0.1".into()),
            smtp_port: Some(port),
            smtp_tls: SmtpTls::None,
            from: Some("madoguchi@city.example.jp".into()),
            ..Default::default()
        };
    })
    .await;
    let cookie = manager_cookie(&app).await;
    let mut ws = connect(&app, &cookie).await;

    // no OPTIONS answer → the alarm reaches the manager's screen.
    let raised = alarms_until(&mut ws, "trunk_down raised", |a| {
        a.iter().any(|x| x["kind"] == "trunk_down")
    })
    .await;
    let alarm = raised.iter().find(|x| x["kind"] == "trunk_down").unwrap();
    assert!(
        alarm["title"]
            .as_str()
            .unwrap()
            .contains("応答していません"),
        "{alarm}"
    );
    assert!(
        alarm["detail"]
            .as_str()
            .unwrap()
            .contains(&trunk_addr.to_string()),
        "{alarm}"
    );
    assert!(
        alarm["check"].as_str().unwrap().contains("キャリア"),
        "{alarm}"
    );
    assert!(alarm["raised_at"].is_string());
    // The dashboard's API, and a screen that connects later, see it too.
    let listed = api_alarms(&app, &cookie).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["kind"], "trunk_down");
    let mut later = connect(&app, &cookie).await;
    alarms_until(&mut later, "replayed on connect", |a| {
        a.iter().any(|x| x["kind"] == "trunk_down")
    })
    .await;
    // Stored once (not once per check), open.
    let rows = stored(&app).await;
    assert_eq!(
        rows.iter()
            .filter(|r| r.0 == "trunk_down")
            .collect::<Vec<_>>()
            .len(),
        1,
        "{rows:?}"
    );
    assert!(!rows[0].1, "still raised: {rows:?}");
    let bodies = mails(&sink, 1).await;
    assert!(
        bodies[0].contains("警報") && bodies[0].contains(&trunk_addr.to_string()),
        "{}",
        bodies[0]
    );

    // The trunk answers again → cleared: the banner goes, the row is closed, a clear mail.
    let responder = answer_options(trunk);
    alarms_until(&mut ws, "trunk_down cleared", |a| a.is_empty()).await;
    assert!(api_alarms(&app, &cookie).await.is_empty());
    let rows = stored(&app).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].1, "cleared_at set: {rows:?}");
    let bodies = mails(&sink, 2).await;
    assert!(bodies[1].contains("解除"), "{}", bodies[1]);
    responder.abort();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_phone_registered_in_opening_hours_raises_an_alarm_until_one_registers() {
    for kind in backends() {
        no_phone_alarm_on(kind).await;
    }
}

async fn no_phone_alarm_on(kind: Kind) {
    let app = TestApp::spawn_with(kind, |c| {
        phones(c);
        alarm_on(c);
    })
    .await;
    // Outside hours (Wednesday 20:00 JST): no phone is expected, no alarm.
    app.clock.set(jst(2026, 11, 25, 20, 0));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        stored(&app).await.is_empty(),
        "no alarm outside opening hours"
    );
    // Thursday 10:00 JST: open for an hour (past the 5-minute grace), no phone → alarm.
    app.clock.set(jst(2026, 11, 26, 10, 0));
    // Logged in after the jump: a session does not outlive the night.
    let cookie = manager_cookie(&app).await;
    let mut ws = connect(&app, &cookie).await;
    let raised = alarms_until(&mut ws, "no_phone raised", |a| {
        a.iter().any(|x| x["kind"] == "no_phone")
    })
    .await;
    assert!(
        raised[0]["title"].as_str().unwrap().contains("電話機"),
        "{raised:?}"
    );
    let rows = stored(&app).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "no_phone");

    // An operator's phone registers → cleared.
    let mut p = Phone::udp(app.server.sip_addr, "ph1", "password-ph1").await;
    assert_eq!(p.register(600).await, 200);
    alarms_until(&mut ws, "no_phone cleared", |a| a.is_empty()).await;
    let rows = stored(&app).await;
    assert!(rows[0].1, "cleared: {rows:?}");
    app.stop().await;
}

/// a bad `[alarm]` section stops the start with the key named.
#[test]
fn alarm_mail_without_smtp_is_refused_with_the_key() {
    let c = AlarmConfig {
        mail_to: Some(MANAGER_MAIL.into()),
        ..Default::default()
    };
    let (key, msg) = c.validate(&SharingConfig::default()).unwrap_err();
    assert_eq!(key, "alarm.mail_to");
    assert!(msg.contains("smtp_host"), "{msg}");
    let c = AlarmConfig {
        check_interval_secs: 0,
        ..Default::default()
    };
    assert_eq!(
        c.validate(&SharingConfig::default()).unwrap_err().0,
        "alarm.check_interval_secs"
    );
}

/// Answers every REGISTER arriving on `sock` with 403, as a carrier refusing us does.
fn refuse_registers(sock: UdpSocket) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            if let Ok(req) = SipMessage::parse_datagram(&buf[..n]) {
                if req.method() == Some("REGISTER") {
                    let r = SipMessage::response_to(&req, 403, "Forbidden", Some(&new_tag()));
                    let _ = sock.send_to(&r.to_bytes(), from).await;
                }
            }
        }
    })
}

/// the carrier refusing our registration raises `registration_failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_carrier_registration_raises_an_alarm() {
    let registrar = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = registrar.local_addr().unwrap();
    let refusing = refuse_registers(registrar);
    let reg: madoguchi::sip::carrier::RegistrationFile = toml::from_str(&format!(
        "registrar = \"{addr}\"\nusername = \"0120000000\"\npassword = \"carrier-secret-1\"\n"
    ))
    .unwrap();
    let settings = carrier::validate(Some(&reg), None).unwrap();
    let app = TestApp::spawn_with(backends()[0], |c| {
        c.sip.carrier = settings;
        alarm_on(c);
        c.alarm.no_phone = false;
    })
    .await;
    let cookie = manager_cookie(&app).await;
    let mut ws = connect(&app, &cookie).await;
    let raised = alarms_until(&mut ws, "registration_failed raised", |a| {
        a.iter().any(|x| x["kind"] == "registration_failed")
    })
    .await;
    let detail = raised[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("403") && detail.contains(&addr.to_string()),
        "{detail}"
    );
    assert!(!detail.contains("carrier-secret-1"));
    refusing.abort();
    app.stop().await;
}

/// no call for `silence_minutes` of opening hours while the same weekday and time
/// over the past weeks had calls → `silence`, computed from the call log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_when_calls_usually_come_raises_an_alarm() {
    for kind in backends() {
        silence_alarm_on(kind).await;
    }
}

async fn silence_alarm_on(kind: Kind) {
    let test_db = common::TestDb::new(kind).await;
    // The call log of the past four Wednesdays: three calls each between 09:40 and 09:50
    // JST; today (Wednesday 10:00 JST, open since 09:00) none in the last 30 minutes.
    let db = test_db.open().await;
    let now = common::a_working_morning();
    for week in 1..=4 {
        for i in 0..3 {
            let at = now - chrono::Duration::weeks(week) - chrono::Duration::minutes(12 + i);
            sqlx::query(
                "INSERT INTO calls (call_key, sip_call_id, caller_kind, arrived_at, ended_at, end_cause) \
                 VALUES ($1, $2, 'withheld', $3, $3, 'abandoned')",
            )
            .bind(format!("past-{week}-{i}"))
            .bind(format!("sip-{week}-{i}"))
            .bind(madoguchi::clock::to_db_time(at))
            .execute(db.pool())
            .await
            .unwrap();
        }
    }
    let mut config = common::test_config(&test_db.url);
    alarm_on(&mut config);
    config.alarm.no_phone = false;
    config.alarm.silence_minutes = 30;
    config.alarm.silence_min_usual_calls = 3.0;
    let clock = madoguchi::clock::ManualClock::new(now);
    let server = madoguchi::app::start(config, std::sync::Arc::new(clock), None)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let row = loop {
        let rows = stored_in(&db).await;
        if let Some(r) = rows.into_iter().find(|r| r.0 == "silence") {
            break r;
        }
        assert!(Instant::now() < deadline, "no silence alarm");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        row.2.contains("0件") && row.2.contains("3.0件"),
        "detail says none now and the usual 3: {}",
        row.2
    );
    server.stop().await;
    db.close().await;
    test_db.cleanup().await;
}

async fn stored_in(db: &madoguchi::store::Db) -> Vec<(String, bool, String)> {
    sqlx::query("SELECT kind, cleared_at, detail FROM alarms ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let cleared: Option<String> = r.try_get(1).unwrap();
            (
                r.try_get(0).unwrap(),
                cleared.is_some(),
                r.try_get(2).unwrap(),
            )
        })
        .collect()
}

/// on screen: the manager's dashboard shows the alarm banner in Japanese (what, since
/// when, what to check) and the trunk's keep-alive state; the banner goes when it clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_sees_the_alarm_banner_and_the_trunk_state() {
    use crate::browser::{browser, login, text, tools, until};
    let Some((chrome, chromedriver)) = tools() else {
        return;
    };
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let keepalive: KeepaliveFile = toml::from_str(&format!(
        "targets = [\"{}\"]\ninterval_secs = 1\ntimeout_secs = 1\nfailures = 1\n",
        silent.local_addr().unwrap()
    ))
    .unwrap();
    let settings = carrier::validate(None, Some(&keepalive)).unwrap();
    let app = TestApp::spawn_with(backends()[0], |c| {
        phones(c);
        alarm_on(c);
        c.sip.carrier = settings;
        c.alarm.trunk_down = false;
    })
    .await;
    app.user_with_role("kanri", "manager").await;
    let (_d, c) = browser(&chrome, &chromedriver).await;
    login(&c, &app.base, "kanri", "password-of-kanri").await;
    c.execute(
        "document.querySelector('#nav a[data-view=\"manager\"]').click();",
        vec![],
    )
    .await
    .unwrap();
    until(
        &c,
        "the no-phone banner",
        "!document.getElementById('alarm-banner').hidden && /電話機が1台も登録されていません/.test(document.getElementById('alarm-banner').textContent)",
    )
    .await;
    let banner = text(&c, "document.getElementById('alarm-banner').textContent").await;
    assert!(
        banner.contains("発生") && banner.contains("確認"),
        "{banner}"
    );
    until(
        &c,
        "the keep-alive line on the presence panel",
        "/回線監視 OPTIONS.*応答なし/.test(document.getElementById('trunk-status').textContent)",
    )
    .await;
    if let Ok(png) = c.screenshot().await {
        crate::browser::artifact("alarm-banner.png", &png);
    }
    let mut p = Phone::udp(app.server.sip_addr, "ph1", "password-ph1").await;
    assert_eq!(p.register(600).await, 200);
    until(
        &c,
        "the banner gone",
        "document.getElementById('alarm-banner').hidden",
    )
    .await;
    app.stop().await;
}

/// The rows of the alarms table with their instance: (instance, kind, cleared?, mailed?).
async fn stored_by_instance(db: &madoguchi::store::Db) -> Vec<(String, String, bool, bool)> {
    sqlx::query("SELECT instance, kind, cleared_at, mailed_at FROM alarms ORDER BY kind")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let cleared: Option<String> = r.try_get(2).unwrap();
            let mailed: Option<String> = r.try_get(3).unwrap();
            (
                r.try_get(0).unwrap(),
                r.try_get(1).unwrap(),
                cleared.is_some(),
                mailed.is_some(),
            )
        })
        .collect()
}

/// with several instances on one PostgreSQL (issue 16 item 1, review of the alarm):
/// instance A's trunk stops answering, B's facts are fine. A's alarm stays raised (B does not
/// clear it), only A's banner shows it, and it is mailed once. The silence alarm, a fact of
/// the shared call log, is one shared row mailed once although both instances see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_keep_their_own_alarms_and_share_the_silence_alarm() {
    if !backends().contains(&Kind::Postgres) {
        return;
    }
    let test_db = common::TestDb::new(Kind::Postgres).await;
    let url = test_db.url.clone();
    // Four busy past Wednesdays and a silent morning (as in the silence test).
    let db = test_db.open().await;
    let now = common::a_working_morning();
    for week in 1..=4 {
        for i in 0..3 {
            let at = now - chrono::Duration::weeks(week) - chrono::Duration::minutes(12 + i);
            sqlx::query(
                "INSERT INTO calls (call_key, sip_call_id, caller_kind, arrived_at, ended_at, end_cause) \
                 VALUES ($1, $2, 'withheld', $3, $3, 'abandoned')",
            )
            .bind(format!("past-{week}-{i}"))
            .bind(format!("sip-{week}-{i}"))
            .bind(madoguchi::clock::to_db_time(at))
            .execute(db.pool())
            .await
            .unwrap();
        }
    }
    let trunk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let trunk_addr = trunk.local_addr().unwrap();
    let keepalive: KeepaliveFile = toml::from_str(&format!(
        "targets = [\"{trunk_addr}\"]\ninterval_secs = 1\ntimeout_secs = 1\nfailures = 2\n"
    ))
    .unwrap();
    let settings = carrier::validate(None, Some(&keepalive)).unwrap();
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let tweak = move |c: &mut Config| {
        alarm_on(c);
        c.alarm.no_phone = false;
        c.alarm.silence_minutes = 30;
        c.alarm.mail_to = Some(MANAGER_MAIL.into());
        c.sharing = SharingConfig {
            smtp_host: Some("127.0.0.1".into()),
            smtp_port: Some(port),
            smtp_tls: SmtpTls::None,
            from: Some("madoguchi@city.example.jp".into()),
            ..Default::default()
        };
    };
    let a = TestApp::spawn_at_on(test_db, now, |c| {
        tweak(c);
        c.instance_id = "a".into();
        c.sip.carrier = settings;
    })
    .await;
    let b = TestApp::spawn_at_on(common::TestDb::shared(&url), now, |c| {
        tweak(c);
        c.instance_id = "b".into();
    })
    .await;

    // A raises trunk_down (its own row) and one of them the shared silence row.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = stored_by_instance(&db).await;
        let has = |i: &str, k: &str| rows.iter().any(|r| r.0 == i && r.1 == k && !r.2);
        if has("a", "trunk_down") && has("*", "silence") {
            break;
        }
        assert!(Instant::now() < deadline, "alarms not raised: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several checks of both instances later (every second), nothing changed: B did not clear
    // A's alarm, nobody raised a second silence row, and no more mail went out.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        stored_by_instance(&db).await,
        vec![
            ("*".to_string(), "silence".to_string(), false, true),
            ("a".to_string(), "trunk_down".to_string(), false, true),
        ],
        "one open mailed row each: A's own and the shared one"
    );
    let bodies = mails(&sink, 2).await;
    assert_eq!(bodies.len(), 2, "one mail per alarm: {bodies:?}");
    assert!(bodies.iter().any(|b| b.contains(&trunk_addr.to_string())));
    assert!(bodies.iter().any(|b| b.contains("着信が途絶えています")));

    // A's banner: its trunk and the shared silence; B's: the silence only.
    let kinds = |v: Vec<Value>| {
        let mut k: Vec<String> = v
            .iter()
            .map(|x| x["kind"].as_str().unwrap().to_string())
            .collect();
        k.sort();
        k
    };
    let cookie_a = manager_cookie(&a).await;
    assert_eq!(
        kinds(api_alarms(&a, &cookie_a).await),
        vec!["silence", "trunk_down"]
    );
    let res = reqwest::Client::new()
        .post(b.url("/api/login"))
        .json(&json!({ "username": "manager1", "password": "password-of-manager1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie_b = res.headers()["set-cookie"].to_str().unwrap();
    let cookie_b = cookie_b.split(';').next().unwrap().to_string();
    assert_eq!(kinds(api_alarms(&b, &cookie_b).await), vec!["silence"]);

    // A's trunk answers again: A clears its own row and mails the clear.
    let responder = answer_options(trunk);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = stored_by_instance(&db).await;
        if rows.iter().any(|r| r.1 == "trunk_down" && r.2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "trunk_down not cleared: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bodies = mails(&sink, 3).await;
    assert!(bodies[2].contains("解除"), "{}", bodies[2]);
    responder.abort();
    db.close().await;
    b.stop().await;
    a.stop().await;
}

/// across a restart (review of the alarm): alarms left open in the table are taken back
/// by the instance that raised them. The one whose raise was mailed (`mailed_at`) gets its
/// "cleared" mail when it clears after the restart; the one never mailed (held back by the
/// rate limit) clears without a mail; another instance's row is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_only_a_mailed_raise_gets_its_clear_mail() {
    for kind in backends() {
        clear_mail_after_restart_on(kind).await;
    }
}

async fn clear_mail_after_restart_on(kind: Kind) {
    let test_db = common::TestDb::new(kind).await;
    let db = test_db.open().await;
    let now = common::a_working_morning();
    let before = madoguchi::clock::to_db_time(now - chrono::Duration::minutes(10));
    for (instance, kind, mailed) in [
        ("a", "trunk_down", Some(before.clone())),
        ("a", "registration_failed", None),
        ("other", "trunk_down", Some(before.clone())),
    ] {
        sqlx::query(
            "INSERT INTO alarms (instance, kind, raised_at, detail, mailed_at) \
             VALUES ($1, $2, $3, 'before the restart', $4)",
        )
        .bind(instance)
        .bind(kind)
        .bind(&before)
        .bind(mailed)
        .execute(db.pool())
        .await
        .unwrap();
    }
    let sink = SmtpSink::start().await;
    let port = sink.port;
    // No trunk and no carrier registration configured: both of A's alarms clear at once.
    let app = TestApp::spawn_at_on(test_db, now, |c| {
        alarm_on(c);
        c.instance_id = "a".into();
        c.alarm.no_phone = false;
        c.alarm.mail_to = Some(MANAGER_MAIL.into());
        c.sharing = SharingConfig {
            smtp_host: Some("127.0.0.1".into()),
            smtp_port: Some(port),
            smtp_tls: SmtpTls::None,
            from: Some("madoguchi@city.example.jp".into()),
            ..Default::default()
        };
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = stored_by_instance(&db).await;
        if rows.iter().filter(|r| r.0 == "a" && r.2).count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "not cleared: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bodies = mails(&sink, 1).await;
    // A few more checks: no second mail (the unmailed raise's clear is not sent).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sink.mails().len(), 1, "one clear mail: {bodies:?}");
    assert!(
        bodies[0].contains("解除") && bodies[0].contains("応答していません"),
        "the trunk's clear: {}",
        bodies[0]
    );
    let rows = stored_by_instance(&db).await;
    assert!(
        rows.iter().any(|r| r.0 == "other" && !r.2),
        "another instance's alarm stays open: {rows:?}"
    );
    db.close().await;
    app.stop().await;
}
