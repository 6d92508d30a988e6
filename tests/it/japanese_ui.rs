//! Issue 18 item 1: every message a user can see is Japanese — the one table of API error
//! codes, real endpoints hit with bad input (extractor rejections, validation, unknown
//! routes), and an unknown page for a browser is a Japanese page with a way back.

use crate::common;

use madoguchi::web::{has_japanese, ErrorCode};
use serde_json::{json, Value};

use common::{backends, TestApp};

/// Every code of the table has a Japanese message, and the label table the UI is served
/// carries the same messages (so a screen can show one for any code it gets).
#[tokio::test]
async fn every_error_code_has_a_japanese_message() {
    assert!(
        ErrorCode::ALL.len() >= 20,
        "the table lists the API's codes"
    );
    for c in ErrorCode::ALL {
        assert!(
            has_japanese(c.label_ja()),
            "error code {} has no Japanese message",
            c.as_str()
        );
    }
    let app = TestApp::spawn(backends()[0]).await;
    let admin = app.admin().await;
    let labels: Value = admin.get("/api/labels").await.json().await.unwrap();
    for c in ErrorCode::ALL {
        assert_eq!(labels["error_code"][c.as_str()], c.label_ja());
    }
    app.stop().await;
}

/// Asserts an API error: the status, the code, and a message a Japanese user can read.
async fn assert_japanese(res: reqwest::Response, status: u16, code: &str, what: &str) -> String {
    assert_eq!(res.status(), status, "{what}");
    assert!(
        res.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{what}: a JSON error"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], code, "{what}: {body}");
    let message = body["message"].as_str().unwrap().to_string();
    assert!(
        has_japanese(&message),
        "{what}: message not Japanese: {message}"
    );
    message
}

#[tokio::test]
async fn real_endpoints_answer_bad_input_in_japanese() {
    let app = TestApp::spawn(backends()[0]).await;
    let admin = app.admin().await;
    let raw = app.client();

    // Unknown API route: JSON, Japanese.
    assert_japanese(
        admin.get("/api/no-such-thing").await,
        404,
        "not_found",
        "unknown API route",
    )
    .await;
    // Not logged in.
    assert_japanese(
        raw.get(app.url("/api/users")).send().await.unwrap(),
        401,
        "unauthenticated",
        "no session",
    )
    .await;
    // A missing field (serde's "missing field `role`"), naming the field.
    let m = assert_japanese(
        admin
            .post(
                "/api/users",
                &json!({ "username": "sato", "password": "long-enough-pw" }),
            )
            .await,
        422,
        "invalid",
        "missing field",
    )
    .await;
    assert!(m.contains("role"), "the field is named: {m}");
    // An unknown choice.
    assert_japanese(
        admin
            .post(
                "/api/users",
                &json!({ "username": "sato", "role": "king", "password": "long-enough-pw" }),
            )
            .await,
        422,
        "invalid",
        "unknown role",
    )
    .await;
    // Broken JSON.
    let res = admin
        .client
        .post(app.url("/api/users"))
        .header("X-CSRF-Token", &admin.csrf)
        .header("Content-Type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    assert_japanese(res, 400, "bad_request", "broken JSON").await;
    // Not JSON at all.
    let res = admin
        .client
        .post(app.url("/api/users"))
        .header("X-CSRF-Token", &admin.csrf)
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_japanese(res, 415, "unsupported_media_type", "wrong content type").await;
    // Too large a body.
    let res = admin
        .client
        .post(app.url("/api/users"))
        .header("X-CSRF-Token", &admin.csrf)
        .header("Content-Type", "application/json")
        .body(format!("{{\"username\": \"{}\"}}", "a".repeat(400 * 1024)))
        .send()
        .await
        .unwrap();
    assert_japanese(res, 413, "payload_too_large", "body too large").await;
    // A bad query parameter.
    assert_japanese(
        admin.get("/api/audit?before_id=abc").await,
        400,
        "bad_request",
        "bad query",
    )
    .await;
    // A bad id in the path.
    assert_japanese(
        admin.post("/api/users/abc/disable", &json!({})).await,
        400,
        "bad_request",
        "bad id",
    )
    .await;
    // A method the route does not have.
    let res = admin
        .client
        .delete(app.url("/api/me"))
        .header("X-CSRF-Token", &admin.csrf)
        .send()
        .await
        .unwrap();
    assert_japanese(res, 405, "method_not_allowed", "wrong method").await;
    // Validation: the user-name rule and a taken name, in Japanese.
    let m = assert_japanese(
        admin
            .post(
                "/api/users",
                &json!({ "username": "Sa To", "role": "operator", "password": "long-enough-pw" }),
            )
            .await,
        422,
        "invalid",
        "bad user name",
    )
    .await;
    assert!(m.contains("ユーザー名"), "{m}");
    let m = assert_japanese(
        admin
            .post(
                "/api/users",
                &json!({ "username": "admin", "role": "operator", "password": "long-enough-pw" }),
            )
            .await,
        409,
        "duplicate",
        "taken user name",
    )
    .await;
    assert!(m.contains("admin"), "{m}");
    // A note longer than the server takes (R-CALL outcome note), with the field in Japanese.
    let op = app.user_with_role("suzuki", "operator").await;
    let res = op
        .client
        .patch(app.url("/api/calls/no-such-call"))
        .header("X-CSRF-Token", &op.csrf)
        .json(&json!({ "outcome": "inquiry", "note": "あ".repeat(1001) }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let m = assert_japanese(
        res,
        status,
        if status == 404 {
            "not_found"
        } else {
            "invalid"
        },
        "long note",
    )
    .await;
    assert!(m.contains("メモ") || m.contains("通話"), "{m}");
    // The limits the UI is served are the server's.
    let limits: Value = op.get("/api/limits").await.json().await.unwrap();
    assert_eq!(limits["call_note_max"], madoguchi::calls::NOTE_MAX_CHARS);
    assert!(has_japanese(limits["username_rule"].as_str().unwrap()));
    app.stop().await;
}

/// An unknown page in a browser is a Japanese HTML page with links back, not raw JSON.
#[tokio::test]
async fn an_unknown_page_is_a_japanese_page_with_a_way_back() {
    let app = TestApp::spawn(backends()[0]).await;
    let res = app
        .client()
        .get(app.url("/no/such/page"))
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = res.text().await.unwrap();
    assert!(page.contains("ページが見つかりません"), "{page}");
    assert!(page.contains("href=\"/\""), "a way back: {page}");
    assert!(!page.trim_start().starts_with('{'), "not raw JSON");
    // The API keeps answering JSON, even to a browser's Accept.
    let res = app
        .client()
        .get(app.url("/api/no-such-thing"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert!(has_japanese(body["message"].as_str().unwrap()));
    app.stop().await;
}

/// Every error code written in the source as an API error's code is in the table (so none
/// reaches a user with the generic message only): the codes handed to `ApiError::new`,
/// `conflict`, and the sharing refusals (`code: "…"`, `("…", message)` pairs).
#[test]
fn every_code_in_the_source_is_in_the_table() {
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    fn literal_after(text: &str, at: usize) -> Option<&str> {
        let rest = text[at..].trim_start();
        let rest = rest.strip_prefix('"')?;
        let end = rest.find('"')?;
        let code = &rest[..end];
        (!code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .then_some(code)
    }
    let mut paths = vec![];
    files(&common::manifest_dir().join("src"), &mut paths);
    let mut found = std::collections::BTreeSet::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap();
        for marker in ["conflict(", "code: "] {
            for (i, _) in text.match_indices(marker) {
                if let Some(c) = literal_after(&text, i + marker.len()) {
                    found.insert((c.to_string(), p.display().to_string()));
                }
            }
        }
        for marker in ["ApiError::new(", "Self::new("] {
            for (i, _) in text.match_indices(marker) {
                // Past the status argument.
                let after = &text[i + marker.len()..];
                if let Some(comma) = after
                    .find(',')
                    .filter(|&c| after[..c].contains("StatusCode"))
                {
                    if let Some(c) = literal_after(after, comma + 1) {
                        found.insert((c.to_string(), p.display().to_string()));
                    }
                }
            }
        }
        if p.ends_with("sharing/shares.rs") {
            // Refusals written as `("code", message, …)` tuples.
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            for w in lines.windows(3) {
                if (w[0].ends_with('(') || w[0].ends_with("(("))
                    && w[1].starts_with('"')
                    && w[1].ends_with("\",")
                    && (w[2].starts_with("format!") || w[2].starts_with('"'))
                {
                    if let Some(c) = literal_after(w[1], 0) {
                        found.insert((c.to_string(), p.display().to_string()));
                    }
                }
            }
        }
    }
    // The scan sees each way a code is written (else it would pass by finding nothing).
    for known in [
        "csrf",
        "slot_taken",
        "changed",
        "self_approval",
        "recipient_not_allowed",
        "password_change_required",
    ] {
        assert!(
            found.iter().any(|(c, _)| c == known),
            "the scan misses {known}: {found:?}"
        );
    }
    let missing: Vec<_> = found
        .iter()
        .filter(|(c, _)| madoguchi::codes::parse::<ErrorCode>(c).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "codes missing from web/messages.rs ErrorCode: {missing:?}"
    );
}
