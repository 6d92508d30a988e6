//! Digest authentication of operator phones (RFC 7616 / RFC 8760), with the in-repo Rust
//! phone because sipp has no SHA-256. MD5 with sipp is covered by every interop test.

use crate::common;

use std::time::Duration;

use chrono::Duration as Age;
use common::ua::Phone;
use common::{backends, TestApp};
use madoguchi::sip::settings::PhoneSettings;
use serde_json::Value;

async fn app() -> TestApp {
    TestApp::spawn_with(backends()[0], |c| {
        c.sip.phones.push(PhoneSettings {
            username: "sha".into(),
            password: "password-sha".into(),
            algorithms: vec!["SHA-256".into(), "MD5".into()],
            operator: Some("operator1".into()),
        });
        c.sip.phones.push(PhoneSettings {
            username: "md5first".into(),
            password: "password-md5first".into(),
            algorithms: vec!["MD5".into(), "SHA-256".into()],
            operator: None,
        });
        c.sip.phones.push(PhoneSettings {
            username: "shaonly".into(),
            password: "password-shaonly".into(),
            algorithms: vec!["SHA-256".into()],
            operator: None,
        });
    })
    .await
}

async fn challenge(p: &mut Phone) -> madoguchi::sip::wire::SipMessage {
    let text = p.register_text(600, None);
    p.send_text(&text).await;
    let r = p.expect("final", Duration::from_secs(3)).await;
    assert_eq!(r.status(), Some(401));
    r
}

#[tokio::test]
async fn sha256_phone_registers_and_challenges_come_in_its_order() {
    let app = app().await;
    let sip = app.server.sip_addr;
    let mut p = Phone::udp(sip, "sha", "password-sha").await;
    let c = challenge(&mut p).await;
    let headers = c.headers_all("WWW-Authenticate");
    assert_eq!(headers.len(), 2, "one challenge per algorithm: {headers:?}");
    assert!(
        headers[0].contains("algorithm=SHA-256") && headers[1].contains("algorithm=MD5"),
        "{headers:?}"
    );
    let auth = p.authorization(&c, 1);
    assert!(
        auth.contains("algorithm=SHA-256"),
        "a phone reading the top challenge answers SHA-256: {auth}"
    );
    let text = p.register_text(600, Some(&auth));
    p.send_text(&text).await;
    let ok = p.expect("final", Duration::from_secs(3)).await;
    assert_eq!(ok.status(), Some(200));
    assert!(ok.header("Contact").unwrap().contains("expires=600"));

    // A phone configured MD5-first sees MD5 on top.
    let mut m = Phone::udp(sip, "md5first", "password-md5first").await;
    let c = challenge(&mut m).await;
    assert!(c.headers_all("WWW-Authenticate")[0].contains("algorithm=MD5"));
    assert_eq!(m.register(600).await, 200);

    let status: Value = app
        .admin()
        .await
        .get("/api/sip/status")
        .await
        .json()
        .await
        .unwrap();
    let phones: Vec<&str> = status["phones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["username"].as_str().unwrap())
        .collect();
    assert_eq!(phones, ["md5first", "sha"]);
    app.stop().await;
}

#[tokio::test]
async fn md5_answer_to_a_sha256_only_phone_is_refused() {
    let app = app().await;
    let mut p = Phone::udp(app.server.sip_addr, "shaonly", "password-shaonly").await;
    let c = challenge(&mut p).await;
    assert_eq!(c.headers_all("WWW-Authenticate").len(), 1);
    // Forge an MD5 answer by asking the client to answer an MD5 challenge with the same nonce.
    let sha = c.headers_all("WWW-Authenticate")[0].clone();
    let md5 = sha.replace("algorithm=SHA-256", "algorithm=MD5");
    let auth = common::digest_client::authorization(
        &[md5],
        "shaonly",
        "password-shaonly",
        "REGISTER",
        &format!("sip:{}", app.server.sip_addr),
        1,
        "abc",
    )
    .unwrap();
    let text = p.register_text(600, Some(&auth));
    p.send_text(&text).await;
    let r = p.expect("final", Duration::from_secs(3)).await;
    assert_eq!(r.status(), Some(401), "a downgrade to MD5 is not accepted");
    app.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = app().await;
    let mut wrong = Phone::udp(app.server.sip_addr, "sha", "not-the-password").await;
    assert_eq!(wrong.register(600).await, 401);
    let mut nobody = Phone::udp(app.server.sip_addr, "ghost", "whatever-1").await;
    let c = challenge(&mut nobody).await;
    assert_eq!(
        c.headers_all("WWW-Authenticate").len(),
        2,
        "unknown users are challenged like known ones"
    );
    assert_eq!(nobody.register(600).await, 401);
    let status: Value = app
        .admin()
        .await
        .get("/api/sip/status")
        .await
        .json()
        .await
        .unwrap();
    assert!(status["phones"].as_array().unwrap().is_empty());
    assert!(
        status["counters"]["registrations_refused"]
            .as_u64()
            .unwrap()
            >= 2
    );
    app.stop().await;
}

#[tokio::test]
async fn stale_nonce_is_rechallenged_with_stale_true() {
    let app = app().await;
    let mut p = Phone::udp(app.server.sip_addr, "sha", "password-sha").await;
    let c = challenge(&mut p).await;
    let auth = p.authorization(&c, 1);
    let text = p.register_text(600, Some(&auth));
    p.send_text(&text).await;
    assert_eq!(
        p.expect("final", Duration::from_secs(3)).await.status(),
        Some(200)
    );

    // The nonce lives 300 s (sip-config/phones.toml); past that, a correct answer is stale.
    app.clock.advance(Age::seconds(301));
    let auth2 = p.authorization(&c, 2);
    let text = p.register_text(600, Some(&auth2));
    p.send_text(&text).await;
    let r = p.expect("final", Duration::from_secs(3)).await;
    assert_eq!(r.status(), Some(401));
    let h = r.headers_all("WWW-Authenticate");
    assert!(h.iter().all(|v| v.contains("stale=true")), "{h:?}");
    // Answering the fresh challenge works.
    let auth3 = p.authorization(&r, 1);
    let text = p.register_text(600, Some(&auth3));
    p.send_text(&text).await;
    assert_eq!(
        p.expect("final", Duration::from_secs(3)).await.status(),
        Some(200)
    );
    app.stop().await;
}

#[tokio::test]
async fn replayed_nonce_count_is_refused() {
    let app = app().await;
    let mut p = Phone::udp(app.server.sip_addr, "sha", "password-sha").await;
    let c = challenge(&mut p).await;
    let auth = p.authorization(&c, 1);
    let text = p.register_text(600, Some(&auth));
    p.send_text(&text).await;
    assert_eq!(
        p.expect("final", Duration::from_secs(3)).await.status(),
        Some(200)
    );
    // The same Authorization (same nc) in a new request: a replay.
    let again = p.register_text(600, Some(&auth));
    p.send_text(&again).await;
    let r = p.expect("final", Duration::from_secs(3)).await;
    assert_eq!(r.status(), Some(401), "nc=1 replayed");
    assert!(r
        .headers_all("WWW-Authenticate")
        .iter()
        .all(|v| !v.contains("stale=true")));
    // A higher nc with the same nonce is fine.
    let next = p.authorization(&c, 2);
    let text = p.register_text(600, Some(&next));
    p.send_text(&text).await;
    assert_eq!(
        p.expect("final", Duration::from_secs(3)).await.status(),
        Some(200)
    );
    app.stop().await;
}

#[tokio::test]
async fn registrar_rules_min_expires_wildcard_and_unregister() {
    let app = app().await;
    let mut p = Phone::udp(app.server.sip_addr, "sha", "password-sha").await;
    assert_eq!(p.register(30).await, 423, "below Min-Expires");
    assert_eq!(p.register(600).await, 200);
    let admin = app.admin().await;
    let phones = |v: Value| v["phones"].as_array().unwrap().len();
    assert_eq!(
        phones(admin.get("/api/sip/status").await.json().await.unwrap()),
        1
    );
    assert_eq!(p.register(0).await, 200, "Expires: 0 unregisters");
    assert_eq!(
        phones(admin.get("/api/sip/status").await.json().await.unwrap()),
        0
    );
    assert_eq!(p.register(600).await, 200);
    // `Contact: *` with Expires: 0 removes every binding.
    let c = challenge(&mut p).await;
    let auth = p.authorization(&c, 1);
    let text = p
        .register_text(0, Some(&auth))
        .replace(&format!("Contact: <sip:sha@{}>", p.local), "Contact: *");
    p.send_text(&text).await;
    assert_eq!(
        p.expect("final", Duration::from_secs(3)).await.status(),
        Some(200)
    );
    assert_eq!(
        phones(admin.get("/api/sip/status").await.json().await.unwrap()),
        0
    );
    app.stop().await;
}
