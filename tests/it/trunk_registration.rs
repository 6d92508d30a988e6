//! Carrier registration and OPTIONS keep-alive (issue 16 item 2), against sipp playing the
//! carrier: the real server registers to a sipp registrar with digest, refreshes before the
//! grant runs out, backs off after a 403, and tracks whether the trunk answers OPTIONS. The
//! state is read where the manager sees it: `GET /api/sip/status`.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::rig::wait;
use common::sipp::{self, Sipp};
use common::{backends, manifest_dir, TestApp};
use madoguchi::sip::carrier::CarrierSettings;
use serde_json::Value;

const DID: &str = "0120000000";
const PASSWORD: &str = "carrier-secret-1";

/// The carrier settings of a `trunk.toml` with `extra` appended, loaded the way the server
/// loads them (so the file format is what is tested).
fn carrier(dir: &Path, extra: &str) -> CarrierSettings {
    let sip = dir.join("sip-config");
    std::fs::create_dir_all(&sip).unwrap();
    let shipped = manifest_dir().join("sip-config");
    let trunk = std::fs::read_to_string(shipped.join("trunk.toml")).unwrap();
    std::fs::write(sip.join("trunk.toml"), format!("{trunk}\n{extra}")).unwrap();
    std::fs::copy(shipped.join("phones.toml"), sip.join("phones.toml")).unwrap();
    madoguchi::config::load_sip(&sip, &Default::default(), "test")
        .expect("trunk.toml with carrier sections")
        .carrier
}

/// sipp as the carrier's UAS on `port` (it never sends first, so the target is unused).
fn carrier_uas(dir: &Path, scenario: &Path, port: u16, args: &[&str]) -> Sipp {
    Sipp::start(dir, "127.0.0.1:9", scenario, "127.0.0.1", port, args)
}

async fn sip_status(app: &TestApp) -> Value {
    let admin = app.admin().await;
    let r = admin.get("/api/sip/status").await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Polls the SIP status until `done` holds (or 30 s pass), returning the last one seen.
async fn status_until(app: &TestApp, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = sip_status(app).await;
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}; last status: {s:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("a time, got {v}"))
        .parse()
        .unwrap()
}

/// REGISTER answered 401 → digest answer (checked by sipp's verifyauth) → 200 with a
/// 5 s grant; the refresh arrives before those 5 s run out (sipp waits at most that long) and
/// carries a valid digest again; the Contact names our advertised SIP address.
#[tokio::test]
async fn registers_with_digest_and_refreshes_before_the_grant_runs_out() {
    if !sipp::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = sipp::port();
    let scenario = sipp::scenario(
        dir.path(),
        "carrier-registrar",
        &[
            ("\"USER\"", &format!("\"{DID}\"")),
            ("\"PASSWORD\"", &format!("\"{PASSWORD}\"")),
            ("expires=EXPIRES", "expires=5"),
            ("EXPIRY_MS", "5000"),
        ],
    );
    let mut registrar = carrier_uas(dir.path(), &scenario, port, &["-m", "1"]);
    let settings = carrier(
        dir.path(),
        &format!(
            "[trunk.registration]\nregistrar = \"sip:127.0.0.1:{port}\"\nusername = \"{DID}\"\npassword = \"{PASSWORD}\"\nexpires = 60\n"
        ),
    );
    let app = TestApp::spawn_with(backends()[0], |c| c.sip.carrier = settings).await;
    let code = wait(&mut registrar, 40).await;
    assert_eq!(
        code,
        0,
        "the registrar saw a valid digest and the refresh in time: {}",
        registrar.errors()
    );
    let messages = registrar.messages();
    let contact = format!("Contact: <sip:{DID}@{}>", app.server.sip_addr);
    assert!(
        messages.contains(&contact),
        "REGISTER carries {contact}: {messages}"
    );
    assert!(
        messages.contains("qop=auth") && messages.contains("nc=00000002"),
        "the refresh answers the same challenge with the next nonce count: {messages}"
    );

    let s = status_until(&app, "registration shows registered", |s| {
        s["trunk"]["registration"]["state"] == "registered"
    })
    .await;
    let reg = &s["trunk"]["registration"];
    assert_eq!(reg["last_status"], 200, "{reg}");
    assert_eq!(reg["user"], DID);
    // The grant the registrar gave (5 s in its Contact), not the 60 s asked for.
    let expires = time(&reg["expires_at"]);
    let next = time(&reg["next_attempt_at"]);
    assert!(
        next < expires,
        "refresh planned before the grant runs out: {reg}"
    );
    assert!(
        expires - next <= chrono::Duration::seconds(5),
        "the 5 s grant is used: {reg}"
    );
    assert!(
        !s.to_string().contains(PASSWORD),
        "the status never shows the password"
    );
    app.stop().await;
}

/// a 403 to our digest answer → `refused`, retried only after the long back-off
/// (`retry_max_secs`, ±20 % jitter), shown with the time of the next attempt.
#[tokio::test]
async fn a_refused_registration_backs_off_and_says_when_it_retries() {
    if !sipp::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = sipp::port();
    let scenario = sipp::scenario(dir.path(), "carrier-registrar-refuse", &[]);
    let mut registrar = carrier_uas(dir.path(), &scenario, port, &["-m", "1"]);
    let settings = carrier(
        dir.path(),
        &format!(
            "[trunk.registration]\nregistrar = \"127.0.0.1:{port}\"\nusername = \"{DID}\"\npassword = \"{PASSWORD}\"\nretry_secs = 30\nretry_max_secs = 900\n"
        ),
    );
    let app = TestApp::spawn_with(backends()[0], |c| c.sip.carrier = settings).await;
    assert_eq!(
        wait(&mut registrar, 30).await,
        0,
        "the registrar got REGISTER with a digest answer: {}",
        registrar.errors()
    );
    let s = status_until(&app, "registration shows refused", |s| {
        s["trunk"]["registration"]["state"] == "refused"
    })
    .await;
    let reg = &s["trunk"]["registration"];
    assert_eq!(reg["last_status"], 403, "{reg}");
    assert!(
        reg["detail"].as_str().unwrap_or_default().contains("403"),
        "{reg}"
    );
    let wait_planned = time(&reg["next_attempt_at"]) - time(&reg["since"]);
    assert!(
        wait_planned >= chrono::Duration::seconds(720),
        "a refusal waits the long back-off (900 s − 20 %): {reg}"
    );
    assert!(reg["expires_at"].is_null(), "{reg}");
    app.stop().await;
}

/// OPTIONS answered by the trunk → keep-alive `up`; the trunk gone → after `failures`
/// unanswered OPTIONS, `down`.
#[tokio::test]
async fn keepalive_is_up_while_the_trunk_answers_and_down_when_it_is_gone() {
    if !sipp::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = sipp::port();
    let scenario = sipp::scenario(dir.path(), "carrier-options", &[]);
    let trunk = carrier_uas(dir.path(), &scenario, port, &[]);
    let settings = carrier(
        dir.path(),
        &format!(
            "[trunk.keepalive]\ntargets = [\"127.0.0.1:{port}\"]\ninterval_secs = 1\ntimeout_secs = 1\nfailures = 2\n"
        ),
    );
    let app = TestApp::spawn_with(backends()[0], |c| c.sip.carrier = settings).await;
    let s = status_until(&app, "keep-alive shows up", |s| {
        s["trunk"]["keepalive"][0]["state"] == "up"
    })
    .await;
    let ka = &s["trunk"]["keepalive"][0];
    assert_eq!(ka["target"], format!("127.0.0.1:{port}"));
    assert!(ka["last_answer_at"].is_string(), "{ka}");
    assert!(
        s["trunk"]["registration"].is_null(),
        "no registration configured"
    );

    drop(trunk);
    let s = status_until(&app, "keep-alive shows down", |s| {
        s["trunk"]["keepalive"][0]["state"] == "down"
    })
    .await;
    let ka = &s["trunk"]["keepalive"][0];
    assert!(ka["missed"].as_u64().unwrap() >= 2, "{ka}");
    app.stop().await;
}

/// bad carrier settings stop the start with a clear error naming the key.
#[test]
fn carrier_settings_without_password_are_refused_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let sip = dir.path().join("sip-config");
    std::fs::create_dir_all(&sip).unwrap();
    let shipped = manifest_dir().join("sip-config");
    let trunk = std::fs::read_to_string(shipped.join("trunk.toml")).unwrap();
    std::fs::write(
        sip.join("trunk.toml"),
        format!(
            "{trunk}\n[trunk.registration]\nregistrar = \"127.0.0.1:5070\"\nusername = \"{DID}\"\n"
        ),
    )
    .unwrap();
    std::fs::copy(shipped.join("phones.toml"), sip.join("phones.toml")).unwrap();
    let err = madoguchi::config::load_sip(&sip, &Default::default(), "test")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("trunk.registration.password") && err.contains("trunk.toml"),
        "{err}"
    );
}

/// R-16.2 (review: shutdown and the carrier unregister): stopping the server sends REGISTER
/// with Expires: 0; the registrar challenges it, and the server answers with a valid digest
/// (still Expires: 0) before it is gone, so the carrier stops routing calls to a dead contact.
#[tokio::test]
async fn stopping_answers_the_challenge_to_the_unregister() {
    if !sipp::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = sipp::port();
    let scenario = sipp::scenario(
        dir.path(),
        "carrier-registrar-unregister",
        &[
            ("\"USER\"", &format!("\"{DID}\"")),
            ("\"PASSWORD\"", &format!("\"{PASSWORD}\"")),
            ("expires=EXPIRES", "expires=300"),
        ],
    );
    let mut registrar = carrier_uas(dir.path(), &scenario, port, &["-m", "1"]);
    let settings = carrier(
        dir.path(),
        &format!(
            "[trunk.registration]\nregistrar = \"127.0.0.1:{port}\"\nusername = \"{DID}\"\npassword = \"{PASSWORD}\"\nexpires = 300\n"
        ),
    );
    let app = TestApp::spawn_with(backends()[0], |c| c.sip.carrier = settings).await;
    status_until(&app, "registration shows registered", |s| {
        s["trunk"]["registration"]["state"] == "registered"
    })
    .await;
    // No call in progress: without waiting for the removal the stop would be immediate.
    app.stop().await;
    // The server is gone: whatever sipp got, it got from the running server.
    let code = wait(&mut registrar, 15).await;
    assert_eq!(
        code,
        0,
        "the registrar got the authorized REGISTER with Expires: 0 before the server stopped: {}",
        registrar.errors()
    );
    let messages = registrar.messages();
    assert_eq!(
        messages.matches("Expires: 0").count(),
        2,
        "the removal, then its answer to the challenge: {messages}"
    );
}
