//! Login, lock-out, sessions, CSRF, accounts and the audit log over real HTTP, on each
//! database backend (R-PII-1, R-PII-4).

use crate::common;

use chrono::Duration;
use common::{backends, TestApp, ADMIN_PASSWORD};
use serde_json::{json, Value};

async fn audit_rows(app: &TestApp, query: &str) -> Vec<Value> {
    let admin = app.admin().await;
    let res = admin.get(&format!("/api/audit?{query}")).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["rows"].as_array().unwrap().clone()
}

#[tokio::test]
async fn health_login_me_logout() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let health = reqwest::get(app.url("/healthz")).await.unwrap();
        assert_eq!(health.status(), 200);

        let s = app.admin().await;
        let me: Value = s.get("/api/me").await.json().await.unwrap();
        assert_eq!(me["user"]["username"], "admin");
        assert_eq!(me["user"]["role"], "admin");
        assert_eq!(me["csrf_token"], s.csrf.as_str());

        let out = s.post("/api/logout", &json!({})).await;
        assert_eq!(out.status(), 200);
        assert_eq!(
            s.get("/api/me").await.status(),
            401,
            "{kind:?}: session ended by logout"
        );
        let logouts = audit_rows(&app, "action=logout").await;
        assert_eq!(logouts.len(), 1);
        app.stop().await;
    }
}

#[tokio::test]
async fn session_cookie_is_httponly_and_strict() {
    let app = TestApp::spawn(backends()[0]).await;
    let res = app
        .client()
        .post(app.url("/api/login"))
        .json(&json!({ "username": "admin", "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    let cookie = res
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("madoguchi_session="));
    assert!(cookie.contains("HttpOnly"));
    assert!(cookie.contains("SameSite=Strict"));
    app.stop().await;
}

#[tokio::test]
async fn wrong_password_is_refused_and_audited() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let res = app
            .client()
            .post(app.url("/api/login"))
            .json(&json!({ "username": "admin", "password": "not-the-password" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_credentials");
        assert!(body["message"].as_str().unwrap().contains("パスワード"));
        let unknown = app
            .client()
            .post(app.url("/api/login"))
            .json(&json!({ "username": "nobody", "password": "whatever-it-is" }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            unknown.status(),
            401,
            "unknown user looks the same as a wrong password"
        );

        let failed = audit_rows(&app, "action=login").await;
        let failed: Vec<_> = failed.iter().filter(|r| r["outcome"] == "failed").collect();
        assert_eq!(failed.len(), 2, "{kind:?}: {failed:?}");
        assert!(failed.iter().any(|r| r["actor_username"] == "(unknown)"
            && r["actor_user_id"].is_null()
            && r["detail"]["reason"] == "unknown_user"));
        assert!(failed
            .iter()
            .any(|r| r["actor_username"] == "admin" && r["ip"] == "127.0.0.1"));
        app.stop().await;
    }
}

#[tokio::test]
async fn a_name_typed_at_a_failed_login_is_kept_only_when_it_names_an_account() {
    // A password typed into the username field must not become an undeletable audit row.
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let typed = "Hunter2-my-secret!";
        let res = app
            .client()
            .post(app.url("/api/login"))
            .json(&json!({ "username": typed, "password": "admin" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let rows = audit_rows(&app, "action=login&limit=1000").await;
        let all = serde_json::to_string(&rows).unwrap();
        assert!(
            !all.to_lowercase().contains("hunter2"),
            "{kind:?}: the typed name is stored: {all}"
        );
        let failed: Vec<_> = rows.iter().filter(|r| r["outcome"] == "failed").collect();
        assert_eq!(failed.len(), 1, "{kind:?}: {failed:?}");
        assert_eq!(failed[0]["actor_username"], "(unknown)");
        assert_eq!(failed[0]["detail"]["reason"], "unknown_user");
        let filtered = audit_rows(&app, &format!("actor={typed}")).await;
        assert!(filtered.is_empty(), "{kind:?}: {filtered:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn locked_account_stays_locked_for_the_configured_time() {
    for kind in backends() {
        let app = TestApp::spawn_with(kind, |c| {
            c.auth.max_failed_logins = 3;
            c.auth.lockout_minutes = 20;
        })
        .await;
        let op = app.user_with_role("sato", "operator").await;
        drop(op);
        let try_login = |pw: &'static str| {
            let client = app.client();
            let url = app.url("/api/login");
            async move {
                client
                    .post(url)
                    .json(&json!({ "username": "sato", "password": pw }))
                    .send()
                    .await
                    .unwrap()
            }
        };
        assert_eq!(try_login("wrong-1").await.status(), 401);
        assert_eq!(try_login("wrong-2").await.status(), 401);
        let locked = try_login("wrong-3").await;
        assert_eq!(locked.status(), 423, "{kind:?}");
        let body: Value = locked.json().await.unwrap();
        assert_eq!(body["error"], "account_locked");

        app.clock.advance(Duration::minutes(19));
        assert_eq!(
            try_login("password-of-sato").await.status(),
            423,
            "still locked at 19 minutes"
        );
        app.clock.advance(Duration::minutes(1));
        assert_eq!(
            try_login("password-of-sato").await.status(),
            200,
            "{kind:?}: unlocked at 20 minutes"
        );

        let rows = audit_rows(&app, "actor=sato&action=login").await;
        let outcomes: Vec<_> = rows
            .iter()
            .rev()
            .map(|r| r["outcome"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            outcomes,
            ["ok", "failed", "failed", "denied", "denied", "ok"]
        );
        app.stop().await;
    }
}

/// A login attempt from `from` (any 127.x address: the loopback takes them all).
async fn login_from(
    app: &TestApp,
    from: [u8; 4],
    username: &str,
    password: &str,
) -> reqwest::Response {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(from))
        .build()
        .unwrap()
        .post(app.url("/api/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .unwrap()
}

/// The password checks the audit log shows for `username` (each wrong guess is one row),
/// read by the admin from an address of its own (the test's may be throttled).
async fn guesses(app: &TestApp, username: &str) -> usize {
    let admin = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 2, 1]))
        .cookie_store(true)
        .build()
        .unwrap();
    let res = admin
        .post(app.url("/api/login"))
        .json(&json!({ "username": "admin", "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let url = app.url(&format!(
        "/api/audit?actor={username}&action=login&limit=1000"
    ));
    let body: Value = admin.get(url).send().await.unwrap().json().await.unwrap();
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            let reason = &r["detail"]["reason"];
            reason == "wrong_password" || reason == "locked_now"
        })
        .count()
}

#[tokio::test]
async fn parallel_wrong_passwords_from_one_address_are_throttled() {
    for kind in backends() {
        // The account's own lock-out is set out of the way: the address limit is under test.
        let app = TestApp::spawn_with(kind, |c| c.auth.max_failed_logins = 100).await;
        drop(app.user_with_role("sato", "operator").await);
        let attempts = (0..30).map(|i| {
            let app = &app;
            async move { login_from(app, [127, 0, 0, 1], "sato", &format!("guess-{i}")).await }
        });
        let answers = futures_util::future::join_all(attempts).await;
        let refused: Vec<_> = answers.iter().filter(|r| r.status() == 401).collect();
        let throttled: Vec<_> = answers.iter().filter(|r| r.status() == 429).collect();
        assert_eq!(refused.len() + throttled.len(), 30, "{kind:?}");
        assert!(
            refused.len() <= 10,
            "{kind:?}: at most the address's allowance is checked: {}",
            refused.len()
        );
        for r in &throttled {
            let secs: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=15 * 60).contains(&secs), "{secs}");
        }
        let body: Value = answers
            .into_iter()
            .find(|r| r.status() == 429)
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["error"], "too_many_attempts");
        assert!(
            body["message"].as_str().unwrap().contains("お待ちください"),
            "{body}"
        );
        assert!(
            guesses(&app, "sato").await <= 10,
            "{kind:?}: the guesses are not multiplied by parallel requests"
        );
        // Even the right password is refused from that address for now ...
        let right = login_from(&app, [127, 0, 0, 1], "sato", "password-of-sato").await;
        assert_eq!(right.status(), 429, "{kind:?}");
        // ... while the account works from anywhere else.
        let elsewhere = login_from(&app, [127, 0, 0, 2], "sato", "password-of-sato").await;
        assert_eq!(elsewhere.status(), 200, "{kind:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn parallel_guesses_from_many_addresses_stop_at_the_lock_out() {
    for kind in backends() {
        let app = TestApp::spawn_with(kind, |c| {
            c.auth.max_failed_logins = 3;
            c.auth.lockout_minutes = 20;
        })
        .await;
        drop(app.user_with_role("sato", "operator").await);
        let attempts = (0..12u8).map(|i| {
            let app = &app;
            async move { login_from(app, [127, 0, 1, 10 + i], "sato", "wrong-password").await }
        });
        let answers = futures_util::future::join_all(attempts).await;
        let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
        assert!(
            statuses.iter().all(|s| *s == 401 || *s == 423),
            "{kind:?}: {statuses:?}"
        );
        assert_eq!(
            guesses(&app, "sato").await,
            3,
            "{kind:?}: exactly the allowance of guesses, however many arrive at once: {statuses:?}"
        );
        app.clock.advance(Duration::minutes(20));
        let right = login_from(&app, [127, 0, 1, 99], "sato", "password-of-sato").await;
        assert_eq!(right.status(), 200, "{kind:?}: unlocked after the lock-out");
        app.stop().await;
    }
}

#[tokio::test]
async fn idle_session_expires() {
    let app = TestApp::spawn_with(backends()[0], |c| c.auth.session_idle_minutes = 15).await;
    let s = app.admin().await;
    app.clock.advance(Duration::minutes(14));
    assert_eq!(s.get("/api/me").await.status(), 200);
    app.clock.advance(Duration::minutes(15));
    assert_eq!(s.get("/api/me").await.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn state_changes_need_the_csrf_token() {
    let app = TestApp::spawn(backends()[0]).await;
    let s = app.admin().await;
    let no_token = s
        .client
        .post(app.url("/api/users"))
        .json(&json!({ "username": "sato", "role": "operator", "password": "long-enough-pw" }))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 403);
    let body: Value = no_token.json().await.unwrap();
    assert_eq!(body["error"], "csrf");
    let cross_site = s
        .client
        .post(app.url("/api/logout"))
        .header("X-CSRF-Token", &s.csrf)
        .header("Origin", "https://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403, "a foreign Origin is refused");
    let form_login = app
        .client()
        .post(app.url("/api/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("username=admin&password=x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        form_login.status(),
        415,
        "a cross-site HTML form cannot log in"
    );
    let users: Value = s.get("/api/users").await.json().await.unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1, "nothing was created");
    app.stop().await;
}

#[tokio::test]
async fn admin_manages_accounts_and_every_change_is_audited() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let admin = app.admin().await;
        let created = admin
            .post("/api/users", &json!({ "username": "sato", "display_name": "佐藤", "role": "operator", "password": "initial-password" }))
            .await;
        assert_eq!(created.status(), 201);
        let sato: Value = created.json().await.unwrap();
        let id = sato["id"].as_i64().unwrap();

        let dup = admin
            .post(
                "/api/users",
                &json!({ "username": "sato", "role": "admin", "password": "initial-password" }),
            )
            .await;
        assert_eq!(dup.status(), 409);
        let bad = admin
            .post(
                "/api/users",
                &json!({ "username": "x", "role": "king", "password": "p" }),
            )
            .await;
        assert_eq!(bad.status(), 422);
        let body: Value = bad.json().await.unwrap();
        assert!(body["error"].is_string() && body["message"].is_string());

        let op = app.login("sato", "initial-password").await;
        let changed = op
            .post("/api/me/password", &json!({ "current_password": "initial-password", "new_password": "my-own-password" }))
            .await;
        assert_eq!(changed.status(), 200);
        assert_eq!(
            op.get("/api/me").await.status(),
            401,
            "password change ends the session"
        );
        let op = app.login("sato", "my-own-password").await;

        let reset = admin
            .post(
                &format!("/api/users/{id}/password"),
                &json!({ "password": "reset-by-admin" }),
            )
            .await;
        assert_eq!(reset.status(), 200);
        assert_eq!(op.get("/api/me").await.status(), 401);
        let op = app.login("sato", "reset-by-admin").await;

        let disabled = admin
            .post(&format!("/api/users/{id}/disable"), &json!({}))
            .await;
        assert_eq!(disabled.status(), 200);
        assert_eq!(
            op.get("/api/me").await.status(),
            401,
            "{kind:?}: disabling ends sessions"
        );
        let again = app
            .client()
            .post(app.url("/api/login"))
            .json(&json!({ "username": "sato", "password": "reset-by-admin" }))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 401);
        let missing = admin.post("/api/users/999999/disable", &json!({})).await;
        assert_eq!(missing.status(), 404);
        let garbage = admin.post("/api/users/abc/disable", &json!({})).await;
        assert_eq!(garbage.status(), 400);

        let rows = audit_rows(&app, &format!("target_kind=user&target_id={id}")).await;
        let actions: Vec<_> = rows
            .iter()
            .rev()
            .map(|r| r["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            [
                "user.create",
                "user.password",
                "user.password",
                "user.disable"
            ],
            "{kind:?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn audit_read_is_itself_audited_and_bad_filters_are_refused() {
    let app = TestApp::spawn(backends()[0]).await;
    let admin = app.admin().await;
    assert_eq!(admin.get("/api/audit").await.status(), 200);
    let bad = admin.get("/api/audit?from=yesterday").await;
    assert_eq!(bad.status(), 400);
    let unknown = admin.get("/api/audit?colour=red").await;
    assert_eq!(unknown.status(), 400);
    let reads: Value = admin
        .get("/api/audit?action=audit.read")
        .await
        .json()
        .await
        .unwrap();
    assert!(!reads["rows"].as_array().unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn ui_pages_are_served_in_japanese() {
    let app = TestApp::spawn(backends()[0]).await;
    let login = reqwest::get(app.url("/login")).await.unwrap();
    assert_eq!(login.status(), 200);
    let csp = login
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'self'"));
    let html = login.text().await.unwrap();
    assert!(html.contains("ログイン") && html.contains("lang=\"ja\""));
    let js = reqwest::get(app.url("/assets/app.js")).await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(
        reqwest::get(app.url("/assets/nope.js"))
            .await
            .unwrap()
            .status(),
        404
    );
    let api404 = reqwest::get(app.url("/api/nothing-here")).await.unwrap();
    assert_eq!(api404.status(), 404);
    let body: Value = api404.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    app.stop().await;
}
