//! `scripts/demo-call` against the running server: it rings the line with sipp and must end
//! by itself with what the adapter answered — a completed call when the line is open, the
//! 480 with the next opening when it is closed (the phone then never rings, and waiting for
//! it must not hang the script).

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::rig::jst;
use common::{manifest_dir, sipp, Kind, TestApp};

/// A port with the next two free as well (the script uses three in a row).
fn three_free_ports() -> u16 {
    // Probing does not hold a port: each call starts past the ones handed out before.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let base = 45000 + (std::process::id() % 100) as u16 * 50;
    let from = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (from..50)
        .map(|i| base + (i % 16) * 3)
        .find(|p| {
            (0..3).all(|k| {
                std::net::UdpSocket::bind(("127.0.0.1", p + k)).is_ok()
                    && std::net::TcpListener::bind(("127.0.0.1", p + k)).is_ok()
            })
        })
        .expect("three free ports")
}

/// Runs the script against `app`; its output, or a failure if it runs past `limit`.
async fn demo_call(app: &TestApp, limit: Duration) -> String {
    let dir = tempfile::tempdir().unwrap();
    demo_call_in(app, limit, dir.path()).await
}

/// Runs the script with its state file in `dir` (kept between runs by the caller).
async fn demo_call_in(app: &TestApp, limit: Duration, dir: &std::path::Path) -> String {
    use std::os::unix::process::CommandExt;
    let log = dir.join("out.txt");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(manifest_dir().join("scripts/demo-call"))
        .env("MADOGUCHI_SIP_ADDR", app.server.sip_addr.to_string())
        .env("MADOGUCHI_HTTP_ADDR", app.server.http_addr.to_string())
        // The CLI the script creates its account with reaches the same database.
        .env("DATABASE_URL", &app.db.url)
        .env("MADOGUCHI_PROFILE", common::profile_dir())
        .env("MADOGUCHI_BIN", env!("CARGO_BIN_EXE_madoguchi"))
        .env("DEMO_STATE", dir.join("demo.state"))
        .env("RUST_LOG", "warn")
        .env("DEMO_PHONE_PORT", three_free_ports().to_string())
        .env("DEMO_HOLD_MS", "500")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        // Its own process group, so that a hang can be ended with the sipp it started.
        .process_group(0)
        .spawn()
        .expect("run scripts/demo-call");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "scripts/demo-call still running after {limit:?}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "scripts/demo-call failed: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_call_outside_the_hours_prints_the_closed_answer_and_ends() {
    if !sipp::available() {
        return;
    }
    // Saturday 2026-11-28 10:00 JST: closed until Monday 9:00.
    let app = TestApp::spawn_at(Kind::Sqlite, jst(2026, 11, 28, 10, 0), |_| {}).await;
    let out = demo_call(&app, Duration::from_secs(60)).await;
    assert!(out.contains("SIP/2.0 480"), "{out}");
    assert!(out.contains("closed"), "{out}");
    assert!(out.contains("2026-11-30 09:00"), "the next opening: {out}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_call_in_the_hours_is_answered_and_ends() {
    if !sipp::available() {
        return;
    }
    let app = TestApp::spawn_at(Kind::Sqlite, jst(2026, 11, 25, 10, 0), |_| {}).await;
    let state = tempfile::tempdir().unwrap();
    let out = demo_call_in(&app, Duration::from_secs(60), state.path()).await;
    assert!(out.contains("answered and completed"), "{out}");
    assert!(out.contains("\"end_cause\": \"completed\""), "{out}");
    // Issue 18 item 10: its own operator account, not admin; Japanese printed as Japanese;
    // a clear end.
    assert!(out.contains("as demo-operator"), "{out}");
    assert!(!out.contains("\\u"), "no \\uXXXX escapes: {out}");
    assert!(out.contains("done: the demo call is over"), "{out}");
    // The second run reuses the account (its password from the state file).
    let again = demo_call_in(&app, Duration::from_secs(60), state.path()).await;
    assert!(!again.contains("creating the demo account"), "{again}");
    assert!(again.contains("as demo-operator"), "{again}");
    // admin was never used: no login rows for it beyond the test's own.
    let admin = app.admin().await;
    let log: serde_json::Value = admin
        .get("/api/audit?action=login&actor=demo-operator")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !log["rows"].as_array().unwrap().is_empty(),
        "demo-operator logged in"
    );
    let failed: serde_json::Value = admin
        .get("/api/audit?action=login&actor=admin")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        failed["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "ok"),
        "no failed admin logins: {failed}"
    );
    app.stop().await;
}
