//! Addresses and travel over HTTP on both backends (issue 14 item 3): what the system decided
//! about an address and why (R-BOOK-3 a), the travel estimate between two (R-SLOT-4), and the
//! manager's corrections with their 取扱記録 rows.

use crate::common;

use common::{backends, Session, TestApp};
use madoguchi::booking::{Places, TravelRules};
use serde_json::{json, Value};

async fn get(s: &Session, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let res = s
        .client
        .get(format!("{}{path}", s.base))
        .query(query)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn lookup(s: &Session, q: &str) -> Value {
    let (status, body) = get(s, "/api/addresses/lookup", &[("q", q)]).await;
    assert_eq!(status, 200, "{q}: {body}");
    body
}

async fn travel(s: &Session, from: &str, to: &str) -> Value {
    let (status, body) = get(s, "/api/travel", &[("from", from), ("to", to)]).await;
    assert_eq!(status, 200, "{from} → {to}: {body}");
    body
}

async fn put_override(s: &Session, body: &Value) -> (u16, Value) {
    let res = s
        .client
        .put(format!("{}/api/travel/overrides", s.base))
        .header("X-CSRF-Token", &s.csrf)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn delete_override(s: &Session, from: &str, to: &str) -> (u16, Value) {
    let res = s
        .client
        .delete(format!("{}/api/travel/overrides", s.base))
        .query(&[("from_town", from), ("to_town", to)])
        .header("X-CSRF-Token", &s.csrf)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// R-BOOK-3 a and the acceptance: `小樽市稲穂２丁目`, `稲穂2-1-1` and `いなほ2丁目`
/// resolve alike; Sapporo is refused with the reason; an unknown town is accepted with the
/// manual-travel warning; empty input is a 422 in Japanese.
#[tokio::test]
async fn lookup_resolves_alike_refuses_other_cities_and_says_why() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let op = app.user_with_role("op1", "operator").await;
        for q in ["小樽市稲穂２丁目", "稲穂2-1-1", "いなほ2丁目"] {
            let l = lookup(&op, q).await;
            assert_eq!(l["matched"], "town", "{q}: {l}");
            assert_eq!(l["town"]["town"], "稲穂二丁目", "{q}");
            assert_eq!(l["town"]["postcode"], "0470032");
            assert!(l["town"]["lat"].as_f64().unwrap() > 43.0);
            assert!(l["reason"].as_str().unwrap().contains("稲穂二丁目"), "{l}");
        }
        assert_eq!(lookup(&op, "稲穂2-1-1").await["rest"], "1-1");

        let l = lookup(&op, "札幌市中央区北1条西2丁目").await;
        assert_eq!(l["matched"], "outside_city");
        assert_eq!(l["reason"], "札幌市は小樽市外のため受付できません。");
        assert!(l["town"].is_null());
        let l = lookup(&op, "東京都千代田区丸の内1-1").await;
        assert_eq!(l["matched"], "outside_city");

        let l = lookup(&op, "小樽市架空町1-2").await;
        assert_eq!(l["matched"], "unknown_town");
        assert!(
            l["warnings"].to_string().contains("手入力"),
            "the operator gives the travel time by hand: {l}"
        );
        let l = lookup(&op, "稲穂").await;
        assert_eq!(l["matched"], "unknown_town");
        assert_eq!(l["candidates"].as_array().unwrap().len(), 5);

        let (status, body) = get(&op, "/api/addresses/lookup", &[("q", " ")]).await;
        assert_eq!(status, 422);
        assert_eq!(body["message"], "住所を入力してください。");
        let (status, _) = get(&op, "/api/addresses/lookup", &[]).await;
        assert_eq!(status, 422);

        let manager = app.user_with_role("mgr1", "manager").await;
        assert_eq!(
            lookup(&manager, "緑3丁目").await["town"]["town"],
            "緑三丁目"
        );
        let city = app.user_with_role("city1", "city").await;
        let (status, _) = get(&city, "/api/addresses/lookup", &[("q", "稲穂2丁目")]).await;
        assert_eq!(status, 403);
        app.stop().await;
    }
}

/// R-SLOT-4: the estimate between two addresses with its explanation; none when an address
/// has no 町丁目 or is outside the city, with why.
#[tokio::test]
async fn travel_shows_the_minutes_and_how() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let op = app.user_with_role("op1", "operator").await;
        let t = travel(&op, "稲穂2-1-1", "いなほ2丁目").await;
        assert_eq!(t["minutes"], 5, "same 町丁目 costs the allowance: {t}");
        assert_eq!(t["overridden"], false);
        let t = travel(&op, "稲穂2丁目", "銭函5丁目").await;
        assert!(t["minutes"].as_u64().unwrap() > 30, "{t}");
        assert!(t["straight_km"].as_f64().unwrap() > 10.0, "{t}");
        assert!(t["how"].as_str().unwrap().contains("迂回係数"), "{t}");
        assert_eq!(t["from"]["town"]["town"], "稲穂二丁目");
        assert_eq!(t["to"]["town"]["town"], "銭函五丁目");
        let t = travel(&op, "稲穂2丁目", "札幌市中央区北1条西2丁目").await;
        assert!(t["minutes"].is_null());
        assert_eq!(t["to"]["matched"], "outside_city");
        assert!(t["how"].as_str().unwrap().contains("市外"), "{t}");
        let (status, body) = get(&op, "/api/travel", &[("from", "稲穂2丁目")]).await;
        assert_eq!(status, 422);
        assert!(body["message"].as_str().unwrap().contains("住所"), "{body}");
        app.stop().await;
    }
}

/// The manager's correction for a pair of towns replaces the estimate in either order, is
/// audited (`travel.override`), survives a restart (read from the database) and can be
/// removed; operators may read but not change it.
#[tokio::test]
async fn overrides_are_set_applied_audited_and_removed() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let manager = app.user_with_role("mgr1", "manager").await;
        let op = app.user_with_role("op1", "operator").await;
        let before = travel(&op, "稲穂2丁目", "銭函5丁目").await;
        let model = before["minutes"].as_u64().unwrap();

        let (status, body) = put_override(
            &manager,
            &json!({ "from_town": "銭函五丁目", "to_town": "稲穂2丁目", "minutes": 25 }),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["minutes"], 25);
        assert_eq!(body["model_minutes"], model);
        for (a, b) in [("稲穂2丁目", "銭函5丁目"), ("銭函五丁目", "稲穂二丁目")] {
            let t = travel(&op, a, b).await;
            assert_eq!(t["minutes"], 25, "{a} → {b}: {t}");
            assert_eq!(t["overridden"], true);
            assert_eq!(t["model_minutes"], model);
            assert!(
                t["how"].as_str().unwrap().starts_with("管理者の補正"),
                "{t}"
            );
        }
        let (status, list) = get(&op, "/api/travel/overrides", &[]).await;
        assert_eq!(status, 200);
        let rows = list["overrides"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{list}");
        assert_eq!(
            (rows[0]["town_a"].as_str(), rows[0]["town_b"].as_str()),
            (Some("稲穂二丁目"), Some("銭函五丁目"))
        );
        // Setting it again updates the one row.
        let (status, _) = put_override(
            &manager,
            &json!({ "from_town": "稲穂二丁目", "to_town": "銭函五丁目", "minutes": 28 }),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(travel(&op, "稲穂2丁目", "銭函5丁目").await["minutes"], 28);

        // Read back from the database, as at the next start.
        let db = app.db.open().await;
        let fresh = Places::new(
            app.server.state.config.profile.gazetteer.clone(),
            TravelRules::default(),
        );
        fresh.load(&db).await.unwrap();
        assert_eq!(fresh.overrides().len(), 1);
        assert_eq!(fresh.overrides()[0].correction.minutes, 28);
        db.close().await;

        // Refusals: operators, bad minutes, no 町丁目.
        let (status, _) = put_override(
            &op,
            &json!({ "from_town": "稲穂二丁目", "to_town": "緑一丁目", "minutes": 10 }),
        )
        .await;
        assert_eq!(status, 403);
        let (status, body) = put_override(
            &manager,
            &json!({ "from_town": "稲穂二丁目", "to_town": "緑一丁目", "minutes": 0 }),
        )
        .await;
        assert_eq!(status, 422);
        assert!(body["message"].as_str().unwrap().contains("分"), "{body}");
        let (status, body) = put_override(
            &manager,
            &json!({ "from_town": "稲穂", "to_town": "札幌市中央区", "minutes": 10 }),
        )
        .await;
        assert_eq!(status, 422);
        assert!(
            body["message"].as_str().unwrap().contains("特定できません"),
            "{body}"
        );

        // The 取扱記録: one row per change, with the pair and the minutes, by the manager.
        let admin = app.admin().await;
        let (status, audit) = get(&admin, "/api/audit", &[("action", "travel.override")]).await;
        assert_eq!(status, 200);
        let rows = audit["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{audit}");
        assert!(rows.iter().all(|r| r["actor_username"] == "mgr1"));
        let minutes: Vec<&Value> = rows.iter().map(|r| &r["detail"]["minutes"]).collect();
        assert!(
            minutes.contains(&&json!(25)) && minutes.contains(&&json!(28)),
            "{audit}"
        );
        assert!(rows.iter().any(|r| r["detail"]["previous_minutes"] == 25));

        // Removal: the model applies again; a second removal finds nothing.
        let (status, _) = delete_override(&op, "稲穂二丁目", "銭函五丁目").await;
        assert_eq!(status, 403);
        let (status, body) = delete_override(&manager, "銭函5丁目", "稲穂二丁目").await;
        assert_eq!(status, 200, "{body}");
        let t = travel(&op, "稲穂2丁目", "銭函5丁目").await;
        assert_eq!(
            (t["minutes"].as_u64(), &t["overridden"]),
            (Some(model), &json!(false))
        );
        let (status, _) = delete_override(&manager, "銭函5丁目", "稲穂二丁目").await;
        assert_eq!(status, 404);
        let (_, audit) = get(&admin, "/api/audit", &[("action", "travel.override")]).await;
        let rows = audit["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert!(rows
            .iter()
            .any(|r| r["detail"]["minutes"].is_null() && r["detail"]["previous_minutes"] == 28));
        app.stop().await;
    }
}
