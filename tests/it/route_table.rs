//! Every API route refuses an anonymous request and every role its rule does not admit,
//! proven against the running server from the route table itself (R-PII-1, R-PII-3).

use crate::common;

use std::collections::BTreeSet;

use common::{backends, TestApp};
use madoguchi::privacy::Role;
use madoguchi::web::{route_table, Access};
use reqwest::Method;

/// The only routes allowed to be public. A new public route must be added here on purpose.
// `/metrics` has its own guard (the `[metrics]` allow-list and token, tests/it/metrics.rs).
const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/api/login"),
];

fn concrete(path: &str) -> String {
    // Path parameters get an id that does not exist, so an admitted request changes nothing.
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "999999" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn public_routes_are_exactly_the_expected_ones() {
    let public: BTreeSet<_> = route_table()
        .into_iter()
        .filter(|(_, _, a)| *a == Access::Public)
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let expected: BTreeSet<_> = PUBLIC
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(public, expected);
}

#[tokio::test]
async fn every_route_enforces_its_rule() {
    let app = TestApp::spawn(backends()[0]).await;
    let mut sessions = Vec::new();
    for &role in Role::ALL {
        let s = if role == Role::Admin {
            app.admin().await
        } else {
            app.user_with_role(&format!("{}1", role.as_str()), role.as_str())
                .await
        };
        sessions.push((role, s));
    }
    let table = route_table();
    assert!(table.len() >= 8);
    for (method, path, access) in &table {
        let Access::Roles(_) = access else { continue };
        let url = app.url(&concrete(path));
        let m = Method::from_bytes(method.as_str().as_bytes()).unwrap();

        let anon = app
            .client()
            .request(m.clone(), &url)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            anon.status(),
            401,
            "{method} {path}: anonymous must get 401"
        );

        for (role, s) in &sessions {
            if path.ends_with("/logout") && access.admits(*role) {
                continue; // checked below with a throw-away session
            }
            let res = s
                .client
                .request(m.clone(), &url)
                .header("X-CSRF-Token", &s.csrf)
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            if access.admits(*role) {
                assert!(
                    res.status() != 401 && res.status() != 403,
                    "{method} {path}: {role} is admitted but got {}",
                    res.status()
                );
            } else {
                assert_eq!(res.status(), 403, "{method} {path}: {role} must get 403");
            }
        }
    }
    // Logout for each role, on its own session.
    for &role in Role::ALL {
        let s = if role == Role::Admin {
            app.admin().await
        } else {
            app.login(
                &format!("{}1", role.as_str()),
                &format!("password-of-{}1", role.as_str()),
            )
            .await
        };
        assert_eq!(
            s.post("/api/logout", &serde_json::json!({})).await.status(),
            200
        );
    }
    app.stop().await;
}
