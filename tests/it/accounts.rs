//! Issue 18 item 7: accounts as a call center runs them — a temporary password must be
//! changed at the first login (and nothing else works until then), the old password is
//! refused as the new one, the login warns one attempt before the lock-out, an admin sees a
//! locked account as locked and unlocks it, and a phone linked to a missing account is
//! warned about at start.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{backends, manifest_dir, profile_dir, Session, TestApp};

async fn login_raw(app: &TestApp, user: &str, password: &str) -> reqwest::Response {
    app.client()
        .post(app.url("/api/login"))
        .json(&json!({ "username": user, "password": password }))
        .send()
        .await
        .unwrap()
}

async fn user_row(admin: &Session, username: &str) -> Value {
    let users: Value = admin.get("/api/users").await.json().await.unwrap();
    users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == username)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_temporary_password_must_be_changed_first_and_not_to_itself() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let admin = app.admin().await;
        // A new account (the default: must change at the first login).
        let created = admin
            .post(
                "/api/users",
                &json!({ "username": "sato", "display_name": "佐藤", "role": "operator", "password": "first-password-1" }),
            )
            .await;
        assert_eq!(created.status(), 201);
        let sato = app.login("sato", "first-password-1").await;
        let me: Value = sato.get("/api/me").await.json().await.unwrap();
        assert_eq!(me["user"]["must_change_password"], true, "{kind:?}");
        // Everything but the change answers 403 password_change_required.
        let blocked = sato.get("/api/callbacks").await;
        assert_eq!(blocked.status(), 403);
        let body: Value = blocked.json().await.unwrap();
        assert_eq!(body["error"], "password_change_required");
        // The old password is refused as the new one; nothing changes.
        let same = sato
            .post(
                "/api/me/password",
                &json!({ "current_password": "first-password-1", "new_password": "first-password-1" }),
            )
            .await;
        assert_eq!(same.status(), 422);
        let body: Value = same.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains("同じ"), "{body}");
        assert_eq!(sato.get("/api/callbacks").await.status(), 403);
        // A new one is taken; the next session works normally.
        let changed = sato
            .post(
                "/api/me/password",
                &json!({ "current_password": "first-password-1", "new_password": "my-own-password-2" }),
            )
            .await;
        assert_eq!(changed.status(), 200);
        let sato = app.login("sato", "my-own-password-2").await;
        assert_eq!(sato.get("/api/callbacks").await.status(), 200);
        // An admin reset hands out a temporary password (generated) and forces the change again.
        let id = user_row(&admin, "sato").await["id"].as_i64().unwrap();
        let reset = admin
            .post(&format!("/api/users/{id}/password"), &json!({}))
            .await;
        assert_eq!(reset.status(), 200);
        let reset: Value = reset.json().await.unwrap();
        let temporary = reset["temporary_password"].as_str().unwrap().to_string();
        assert!(temporary.len() >= 10);
        let sato = app.login("sato", &temporary).await;
        assert_eq!(sato.get("/api/callbacks").await.status(), 403);
        assert_eq!(user_row(&admin, "sato").await["must_change_password"], true);
        app.stop().await;
    }
}

#[tokio::test]
async fn the_login_warns_one_attempt_before_the_lock_and_an_admin_unlocks() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let admin = app.admin().await;
        app.user_with_role("ito", "operator").await;
        let max = admin
            .get("/api/limits")
            .await
            .json::<Value>()
            .await
            .unwrap()["max_failed_logins"]
            .as_u64()
            .unwrap();
        let mut messages = vec![];
        for _ in 0..max - 1 {
            let res = login_raw(&app, "ito", "wrong-password").await;
            assert_eq!(res.status(), 401);
            let body: Value = res.json().await.unwrap();
            messages.push(body["message"].as_str().unwrap().to_string());
        }
        let (last, earlier) = messages.split_last().unwrap();
        assert!(last.contains("残り1回"), "{kind:?}: {last}");
        assert!(earlier.iter().all(|m| !m.contains("残り")), "{earlier:?}");
        let locked = login_raw(&app, "ito", "wrong-password").await;
        assert_eq!(locked.status(), 423);
        // The admin screen shows the account as locked ...
        let row = user_row(&admin, "ito").await;
        assert_eq!(row["locked"], true, "{row}");
        assert_eq!(row["disabled"], false);
        // ... and unlocks it: the right password works again at once.
        let id = row["id"].as_i64().unwrap();
        let res = admin
            .post(&format!("/api/users/{id}/unlock"), &json!({}))
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(user_row(&admin, "ito").await["locked"], false);
        app.login("ito", "password-of-ito").await;
        // Only an admin may unlock.
        let mgr = app.user_with_role("kanri", "manager").await;
        assert_eq!(
            mgr.post(&format!("/api/users/{id}/unlock"), &json!({}))
                .await
                .status(),
            403
        );
        // The unlock is in the 取扱記録.
        let rows: Value = admin
            .get(&format!("/api/audit?target_kind=user&target_id={id}"))
            .await
            .json()
            .await
            .unwrap();
        assert!(
            rows["rows"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["action"] == "user.unlock"),
            "{rows}"
        );
        app.stop().await;
    }
}

/// The shipped phones.toml links op1/op2 to operator1/operator2; on a fresh database those
/// accounts do not exist, and the log says so at start (naming the phone and the account).
#[test]
fn start_warns_about_phones_linked_to_missing_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_madoguchi"))
        .current_dir(dir.path())
        .args(["serve"])
        .env("RUST_LOG", "warn")
        .env("MADOGUCHI_HTTP_ADDR", "127.0.0.1:0")
        .env("MADOGUCHI_SIP_ADDR", "127.0.0.1:0")
        .env("MADOGUCHI_PROFILE", profile_dir())
        .env("MADOGUCHI_SIP_CONFIG", manifest_dir().join("sip-config"))
        .env("MADOGUCHI_BOOTSTRAP_PASSWORD", "admin-password-phones")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = server.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut warned = vec![];
    while warned.len() < 2 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if line.contains("phones.toml") && line.contains("does not exist") {
                warned.push(line);
            }
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(warned
        .iter()
        .any(|l| l.contains("op1") && l.contains("operator1")));
    assert!(warned
        .iter()
        .any(|l| l.contains("op2") && l.contains("operator2")));
}
