//! `/metrics`, `/healthz`, `/readyz` and JSON logs (issue 16 item 5): the real server, real
//! calls from sipp and a test phone, the scrape parsed by a Prometheus text parser.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::rig::{expect_final, jst, wait, Rig};
use common::ua::Phone;
use common::{backends, profile_dir, sipp, Kind, TestApp};
use futures_util::StreamExt;
use prometheus_parse::{Sample, Scrape, Value as PromValue};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Scrapes `/metrics` over HTTP and parses it; panics unless it is 200 in the text format.
async fn scrape(base: &str) -> Scrape {
    let res = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = res.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The value of the sample `metric` whose labels include `labels`; 0 when absent would hide
/// a missing metric, so absent panics.
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = s
        .samples
        .iter()
        .filter(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
        .collect();
    assert_eq!(found.len(), 1, "{metric} {labels:?}: {found:?}");
    match &found[0].value {
        PromValue::Counter(v) | PromValue::Gauge(v) | PromValue::Untyped(v) => *v,
        other => panic!("{metric}: not a single value: {other:?}"),
    }
}

/// The value, or None when no sample matches.
fn maybe(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match &x.value {
            PromValue::Counter(v) | PromValue::Gauge(v) | PromValue::Untyped(v) => *v,
            _ => f64::NAN,
        })
}

/// Scrapes until `ok` holds (counters are read when the call log has written), at most 10 s.
async fn scrape_until(base: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(base).await;
        if ok(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_match_the_calls_made() {
    // Issue 16 item 5: calls by end cause, SIP messages by method and status, phones, the
    // call-log queue, HTTP latency by route, WebSocket clients.
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let base = rig.app.base.clone();
    let before = scrape(&base).await;
    for cause in [
        "completed",
        "abandoned",
        "closed",
        "busy",
        "rejected",
        "no_answer",
    ] {
        assert_eq!(
            value(&before, "madoguchi_calls_ended_total", &[("cause", cause)]),
            0.0,
            "{cause}: every cause is there from the start"
        );
    }

    // 1. Answered, then the caller hangs up (ph1); 2. a second call meanwhile is busy.
    let mut phone = rig.sipp_phone("ph1", "phone-answer", &[]).await;
    let mut first = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "3000"],
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut second = rig.trunk(&expect_final(rig.dir.path(), 486, false), "127.0.0.1", &[]);
    assert_eq!(wait(&mut second, 10).await, 0, "busy: {}", second.errors());
    // The first call is still in progress.
    let during = scrape(&base).await;
    assert!(value(&during, "madoguchi_sip_dialogs", &[]) >= 1.0);
    assert!(value(&during, "madoguchi_sip_transactions", &[("side", "server")]) >= 1.0);
    assert_eq!(wait(&mut first, 20).await, 0, "trunk: {}", first.errors());
    assert_eq!(wait(&mut phone, 10).await, 0, "phone: {}", phone.errors());
    rig.ended_calls(2).await;

    // 3. The caller gives up while it rings (ph2).
    let mut phone = rig
        .sipp_phone(
            "ph2",
            "phone-answer",
            &[("timeout=\"500\"", "timeout=\"20000\"")],
        )
        .await;
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-cancel", &[]),
        "127.0.0.1",
        &[],
    );
    assert_eq!(wait(&mut trunk, 20).await, 0, "trunk: {}", trunk.errors());
    assert_eq!(wait(&mut phone, 10).await, 0, "phone: {}", phone.errors());
    rig.ended_calls(3).await;

    // 4. An INVITE from outside the trunk: 403, logged rejected.
    let mut scanner = rig.trunk(&expect_final(rig.dir.path(), 403, false), "127.0.0.2", &[]);
    assert_eq!(wait(&mut scanner, 10).await, 0, "{}", scanner.errors());
    let calls = rig.ended_calls(4).await;

    let s = scrape_until(&base, |s| {
        maybe(s, "madoguchi_calls_ended_total", &[("cause", "rejected")]) == Some(1.0)
    })
    .await;
    let ended = |cause: &str| value(&s, "madoguchi_calls_ended_total", &[("cause", cause)]);
    // The counters agree with the call log itself.
    for cause in ["completed", "abandoned", "busy", "rejected", "closed"] {
        let logged = calls.iter().filter(|c| c["end_cause"] == cause).count();
        assert_eq!(ended(cause), logged as f64, "{cause}");
    }
    assert_eq!(
        (
            ended("completed"),
            ended("busy"),
            ended("abandoned"),
            ended("rejected")
        ),
        (1.0, 1.0, 1.0, 1.0)
    );

    let req = |dir: &str, method: &str| {
        value(
            &s,
            "madoguchi_sip_requests_total",
            &[("direction", dir), ("method", method)],
        )
    };
    let resp = |dir: &str, status: &str| {
        maybe(
            &s,
            "madoguchi_sip_responses_total",
            &[("direction", dir), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    // Four INVITEs came in (three from the trunk, one from a stranger); two went on to a
    // phone (the busy and the rejected call rang nowhere).
    assert_eq!(req("in", "INVITE"), 4.0);
    assert!(req("out", "INVITE") >= 2.0, "{}", req("out", "INVITE"));
    assert_eq!(req("in", "CANCEL"), 1.0);
    assert_eq!(req("out", "CANCEL"), 1.0);
    assert_eq!(req("in", "BYE"), 1.0, "the trunk's hang-up");
    assert_eq!(req("out", "BYE"), 1.0, "relayed to the phone");
    // Each phone registered: REGISTER without credentials (401), then with them (200).
    assert_eq!(req("in", "REGISTER"), 4.0);
    assert_eq!(resp("out", "401"), 2.0);
    // 200s out: 2 REGISTERs, the answer and the BYE's 200 relayed to the trunk, the CANCEL's
    // (more only if a peer retransmitted).
    assert!(resp("out", "200") >= 5.0, "{}", resp("out", "200"));
    assert_eq!(resp("out", "487"), 1.0, "the abandoned call's INVITE");
    assert_eq!(resp("out", "486"), 1.0, "the busy call");
    assert_eq!(resp("out", "403"), 1.0, "the stranger");
    assert_eq!(
        value(
            &s,
            "madoguchi_sip_responses_total",
            &[("direction", "out"), ("status", "487")]
        ),
        1.0
    );
    assert!(s.samples.iter().any(
        |x| x.metric == "madoguchi_sip_responses_total" && x.labels.get("class") == Some("4xx")
    ));

    // The tables as the status API shows them (a cancelled branch may still wait for its
    // last answer); both phones still registered.
    let status: Value = rig
        .app
        .admin()
        .await
        .get("/api/sip/status")
        .await
        .json()
        .await
        .unwrap();
    let s = scrape(&base).await;
    assert_eq!(
        value(&s, "madoguchi_sip_dialogs", &[]),
        status["tables"]["calls"].as_f64().unwrap(),
        "{status}"
    );
    assert_eq!(value(&s, "madoguchi_sip_registered_phones", &[]), 2.0);
    assert_eq!(value(&s, "madoguchi_call_log_queue_depth", &[]), 0.0);
    assert!(value(&s, "madoguchi_call_log_written_events_total", &[]) >= 3.0);
    let writes = s
        .samples
        .iter()
        .find(|x| x.metric == "madoguchi_call_log_write_seconds")
        .expect("write latency histogram");
    let PromValue::Histogram(buckets) = &writes.value else {
        panic!("{writes:?}")
    };
    assert!(buckets.last().unwrap().count >= 1.0, "{buckets:?}");

    // HTTP latency by route pattern: the call list read by ended_calls, and one call by id
    // (its id must not become a label).
    let manager = rig.app.user_with_role("mgrmetrics", "manager").await;
    let id = calls[0]["id"].as_i64().unwrap();
    assert_eq!(manager.get(&format!("/api/calls/{id}")).await.status(), 200);
    let s = scrape(&base).await;
    let http = |route: &str| {
        s.samples.iter().find(|x| {
            x.metric == "madoguchi_http_request_duration_seconds"
                && x.labels.get("route") == Some(route)
                && x.labels.get("method") == Some("GET")
                && x.labels.get("status") == Some("200")
        })
    };
    for route in ["/api/calls", "/api/calls/:id"] {
        let h = http(route).unwrap_or_else(|| panic!("no histogram for {route}"));
        let PromValue::Histogram(b) = &h.value else {
            panic!("{h:?}")
        };
        assert!(b.last().unwrap().count >= 1.0);
    }
    assert!(
        !s.samples
            .iter()
            .any(|x| x.labels.get("route") == Some(&format!("/api/calls/{id}"))),
        "a concrete path is never a label"
    );

    // The WebSocket gauge follows a connected client.
    assert_eq!(value(&s, "madoguchi_ws_clients", &[]), 0.0);
    let login = reqwest::Client::new()
        .post(rig.app.url("/api/login"))
        .json(&json!({ "username": "mgrmetrics", "password": "password-of-mgrmetrics" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let mut req = (base.replace("http://", "ws://") + "/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("Cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    let s = scrape_until(&base, |s| {
        maybe(s, "madoguchi_ws_clients", &[]) == Some(1.0)
    })
    .await;
    assert_eq!(value(&s, "madoguchi_ws_clients", &[]), 1.0);
    ws.close(None).await.unwrap();
    drop(ws);
    let s = scrape_until(&base, |s| {
        maybe(s, "madoguchi_ws_clients", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(value(&s, "madoguchi_ws_clients", &[]), 0.0);

    // Nothing personal in any label: no caller number, no user name.
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for personal in [
        "0134220001",
        "+81134220001",
        "operator1",
        "mgrmetrics",
        "ph1",
    ] {
        assert!(!text.contains(personal), "{personal} in /metrics");
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmissions_are_the_timer_resends_only() {
    // A phone that lets our INVITE go unanswered once: Timer A re-sends it (UDP).
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let base = rig.app.base.clone();
    let mut phone = Phone::udp(rig.app.server.sip_addr, "ph1", "password-ph1").await;
    assert_eq!(phone.register(600).await, 200);
    let before = scrape(&base).await;
    assert_eq!(
        value(&before, "madoguchi_sip_retransmissions_total", &[]),
        0.0,
        "a REGISTER answered at once is no retransmission"
    );
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-cancel", &[]),
        "127.0.0.1",
        &[],
    );
    let invite = phone.expect("INVITE", Duration::from_secs(10)).await;
    let again = phone.expect("INVITE", Duration::from_secs(5)).await;
    assert_eq!(invite.call_id(), again.call_id(), "the same INVITE again");
    phone.reply(&invite, 180, "Ringing").await;
    let mut invites = 2;
    let cancel = loop {
        let m = phone.recv(Duration::from_secs(10)).await.expect("CANCEL");
        match m.method() {
            Some("INVITE") => invites += 1,
            Some("CANCEL") => break m,
            _ => {}
        }
    };
    phone.reply(&cancel, 200, "OK").await;
    phone.reply(&invite, 487, "Request Terminated").await;
    assert_eq!(wait(&mut trunk, 20).await, 0, "trunk: {}", trunk.errors());
    rig.ended_calls(1).await;
    let s = scrape(&base).await;
    let invites_out = value(
        &s,
        "madoguchi_sip_requests_total",
        &[("direction", "out"), ("method", "INVITE")],
    );
    assert_eq!(invites_out, f64::from(invites), "every INVITE on the wire");
    let resent = value(&s, "madoguchi_sip_retransmissions_total", &[]);
    assert!(
        resent >= invites_out - 1.0 && resent >= 1.0,
        "resent {resent}, INVITEs out {invites_out}"
    );
    // The first send of the INVITE, the CANCEL and each answer are not counted: only a few
    // timer resends at most beyond the INVITE's.
    let all_out: f64 = s
        .samples
        .iter()
        .filter(|x| {
            (x.metric == "madoguchi_sip_requests_total"
                || x.metric == "madoguchi_sip_responses_total")
                && x.labels.get("direction") == Some("out")
        })
        .map(|x| match x.value {
            PromValue::Counter(v) => v,
            _ => 0.0,
        })
        .sum();
    assert!(resent < all_out / 2.0, "resent {resent} of {all_out}");
    rig.stop().await;
}

#[tokio::test]
async fn metrics_answer_the_allowed_networks_and_the_token_holder() {
    let kind = Kind::Sqlite;
    // Default: loopback only.
    let app = TestApp::spawn(kind).await;
    assert_eq!(
        reqwest::get(app.url("/metrics")).await.unwrap().status(),
        200
    );
    app.stop().await;

    // An allow-list without loopback and no token: 403.
    let app = TestApp::spawn_with(kind, |c| {
        c.metrics.allow = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let res = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "metrics_forbidden");
    app.stop().await;

    // A token: 401 without it or with a wrong one, 200 with it.
    let token = "s3cret-metrics-token-0123";
    let app = TestApp::spawn_with(kind, |c| {
        c.metrics.allow = vec![];
        c.metrics.token = Some(token.into());
    })
    .await;
    let client = reqwest::Client::new();
    let res = client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    for wrong in ["s3cret-metrics-token-0124", "s3cret", ""] {
        let res = client
            .get(app.url("/metrics"))
            .bearer_auth(wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{wrong}");
    }
    let res = client
        .get(app.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("madoguchi_calls_ended_total"));
    // The scheme is case-insensitive.
    let res = client
        .get(app.url("/metrics"))
        .header("Authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The health checks stay open to anyone.
    assert_eq!(
        reqwest::get(app.url("/healthz")).await.unwrap().status(),
        200
    );
    assert_eq!(
        reqwest::get(app.url("/readyz")).await.unwrap().status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn a_short_metrics_token_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("madoguchi.toml");
    std::fs::write(&cfg, "[metrics]\ntoken = \"short\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_madoguchi"))
        .current_dir(dir.path())
        .arg("--config")
        .arg(&cfg)
        .arg("migrate")
        .env("MADOGUCHI_PROFILE", profile_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metrics.token"), "{err}");
}

#[tokio::test]
async fn readyz_names_the_database_when_it_is_gone() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let res = reqwest::get(app.url("/readyz")).await.unwrap();
        assert_eq!(res.status(), 200, "{kind:?}");
        assert_eq!(res.json::<Value>().await.unwrap()["status"], "ready");

        // The database goes away under the running server.
        app.server.state.db.close().await;
        let res = reqwest::get(app.url("/readyz")).await.unwrap();
        assert_eq!(res.status(), 503, "{kind:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "not_ready");
        let failed: Vec<&str> = body["failed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["check"].as_str().unwrap())
            .collect();
        assert_eq!(failed, ["database"], "{body}");
        // A check that asks like a browser gets the same list, not the error page the
        // staff's screens get (the Japanese-error layer leaves these endpoints alone).
        let res = reqwest::Client::new()
            .get(app.url("/readyz"))
            .header("Accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 503);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "not_ready", "{body}");
        assert!(body.get("error").is_none(), "{body}");
        // Alive all the same.
        let res = reqwest::get(app.url("/healthz")).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
        app.stop().await;
    }
}

#[tokio::test]
async fn booking_conflicts_are_counted() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let db = app.db.open().await;
        sqlx::query("INSERT INTO visit_days (visit_date, kind, pm_extra_open, updated_at) VALUES ('2026-12-10', 'home', 0, '2026-11-01T00:00:00.000000Z')")
            .execute(db.pool())
            .await
            .unwrap();
        db.close().await;
        let op = app.user_with_role("op1", "operator").await;
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
        assert_eq!(op.post("/api/bookings", &body).await.status(), 201);
        assert_eq!(op.post("/api/bookings", &body).await.status(), 409);
        let s = scrape(&app.base).await;
        let n = |op: &str, kind: &str| {
            value(
                &s,
                "madoguchi_booking_conflicts_total",
                &[("operation", op), ("kind", kind)],
            )
        };
        assert_eq!(n("create", "slot_taken"), 1.0, "{kind:?}");
        assert_eq!(n("create", "conflict"), 0.0);
        assert_eq!(n("cancel", "conflict"), 0.0);
        app.stop().await;
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    for (how, flag) in [("flag", true), ("env", false)] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_madoguchi"));
        cmd.current_dir(dir.path())
            .arg("serve")
            .env("MADOGUCHI_HTTP_ADDR", "127.0.0.1:0")
            .env("MADOGUCHI_SIP_ADDR", "127.0.0.1:0")
            .env("MADOGUCHI_PROFILE", profile_dir())
            .env(
                "MADOGUCHI_SIP_CONFIG",
                common::manifest_dir().join("sip-config"),
            )
            .env("RUST_LOG", "info")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if flag {
            cmd.args(["--log-format", "json"]);
        } else {
            cmd.env("MADOGUCHI_LOG_FORMAT", "json");
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = stdout.next().expect("a first line").unwrap();
        let first: Value = serde_json::from_str(&first)
            .unwrap_or_else(|e| panic!("{how}: stdout line is not JSON ({e}): {first}"));
        assert_eq!(first["message"], "madoguchi is running", "{how}");
        let url = first["http"]
            .as_str()
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        // Some requests to log (a 404 too).
        assert_eq!(
            reqwest::get(format!("{url}/healthz"))
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            reqwest::get(format!("{url}/api/nope"))
                .await
                .unwrap()
                .status(),
            404
        );
        // An orderly stop writes its lines too.
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let rest: Vec<String> = stdout.map_while(Result::ok).collect();
        let stderr: Vec<String> = BufReader::new(child.stderr.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .collect();
        assert!(child.wait().unwrap().success(), "{how}: {stderr:?}");
        assert!(stderr.len() >= 3, "{how}: {stderr:?}");
        for line in rest.iter().chain(&stderr) {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{how}: not JSON ({e}): {line}"));
            assert!(v["level"].is_string(), "{line}");
        }
        assert!(
            stderr.iter().any(|l| l.contains("stopped cleanly")),
            "{how}: {stderr:?}"
        );
    }
}

/// The names of the failed checks of a `/readyz` answer (503), or None when ready (200).
async fn failed_checks(base: &str) -> Option<Vec<String>> {
    let res = reqwest::get(format!("{base}/readyz")).await.unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    if status == 200 {
        assert_eq!(body["status"], "ready");
        return None;
    }
    assert_eq!(status, 503, "{body}");
    Some(
        body["failed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["check"].as_str().unwrap().to_string())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_a_call_log_writer_that_falls_behind() {
    // The call log cannot write (its database is gone) while calls keep arriving: once the
    // queue reaches `log_backlog_max`, the writer is not keeping up.
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |c| c.log_backlog_max = 4).await else {
        return;
    };
    let base = rig.app.base.clone();
    assert_eq!(failed_checks(&base).await, None);
    rig.app.server.state.db.close().await;
    // Strangers' INVITEs: each is refused at once and logged as a rejected call (an event
    // each) without any phone.
    let mut scanner = rig.trunk(
        &expect_final(rig.dir.path(), 403, false),
        "127.0.0.2",
        &["-m", "6", "-r", "20"],
    );
    wait(&mut scanner, 20).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let failed = failed_checks(&base).await.unwrap_or_default();
        if failed.iter().any(|c| c == "call_log_writer") || Instant::now() > deadline {
            break failed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        failed.contains(&"call_log_writer".to_string()),
        "{failed:?}"
    );
    assert!(failed.contains(&"database".to_string()), "{failed:?}");
    let s = scrape(&base).await;
    assert!(value(&s, "madoguchi_call_log_queue_depth", &[]) >= 4.0);
    assert_eq!(value(&s, "madoguchi_call_log_backlog_max", &[]), 4.0);

    // Alive all the same. The server is left to the end of the test: its writer could not
    // finish an orderly stop without a database.
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
}
