//! Issue 18 items 3 and 6 over real HTTP: the dashboard's breakdown of a past day by outcome
//! and by hour (the server's clock decides "today"), and the 取扱記録 exported as CSV (UTF-8
//! with BOM) and XLSX in Japanese, the export itself recorded.

use crate::common;
use crate::console::{answered_call, call, logged, number, ringing};

use std::io::Cursor;

use calamine::{Reader, Xlsx};
use chrono::Duration;
use madoguchi::calls::{CallEvent, EndCause};
use madoguchi::clock::Clock;
use madoguchi::web::has_japanese;
use serde_json::{json, Value};

use common::{backends, TestApp};

#[tokio::test]
async fn the_dashboard_shows_a_past_day_by_outcome_and_by_hour() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let mgr = app.user_with_role("kanri", "manager").await;
        // 2026-11-24 (yesterday on the server's clock): 09:15 answered, 09:40 abandoned,
        // 14:05 answered; today 10:00 answered.
        let now = app.clock.now();
        let at = |h: i64, m: i64| {
            now - Duration::days(1) + Duration::hours(h - 10) + Duration::minutes(m)
        };
        let a = call("k-past-1", number("0134220001"), at(9, 15));
        answered_call(&app, &a, "operator1").await;
        let b = call("k-past-2", number("0134220002"), at(9, 40));
        ringing(&app, &b);
        app.server.state.events.publish(CallEvent::Ended {
            call: b.clone(),
            at: b.arrived_at,
            cause: EndCause::Abandoned,
            hangup_by: None,
            rang_at: Some(b.arrived_at),
            answered_at: None,
        });
        logged(&app, "k-past-2").await;
        let c = call("k-past-3", number("0134220003"), at(14, 5));
        answered_call(&app, &c, "operator1").await;
        let d = call("k-today", number("0134220004"), now);
        answered_call(&app, &d, "operator1").await;
        let res = mgr
            .client
            .patch(app.url("/api/calls/k-past-1"))
            .header("X-CSRF-Token", &mgr.csrf)
            .json(&json!({ "outcome": "inquiry", "note": "" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);

        let day: Value = mgr
            .get("/api/stats/day?date=2026-11-24")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(day["today"], "2026-11-25", "{kind:?}: the server's today");
        assert_eq!(day["calls"], 3, "{day}");
        assert_eq!(day["answered"], 2);
        assert_eq!(day["by_outcome"]["inquiry"], 1);
        assert_eq!(day["by_outcome"]["none"], 1);
        assert_eq!(day["by_end_cause"]["abandoned"], 1);
        let nine = &day["by_hour"][9];
        assert_eq!(
            (
                nine["calls"].as_u64(),
                nine["answered"].as_u64(),
                nine["abandoned"].as_u64()
            ),
            (Some(2), Some(1), Some(1))
        );
        assert_eq!(day["by_hour"][14]["calls"], 1);
        assert_eq!(
            day["by_hour"][10]["calls"], 0,
            "today's call is not yesterday's"
        );
        let today: Value = mgr
            .get("/api/stats/day?date=2026-11-25")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(today["calls"], 1);
        // A day still to come: a Japanese refusal.
        let future = mgr.get("/api/stats/day?date=2026-11-26").await;
        assert_eq!(future.status(), 422);
        let body: Value = future.json().await.unwrap();
        assert!(has_japanese(body["message"].as_str().unwrap()));
        // Operators have the live figures only.
        let op = app.user_with_role("sato", "operator").await;
        assert_eq!(op.get("/api/stats/day?date=2026-11-24").await.status(), 403);
        app.stop().await;
    }
}

#[tokio::test]
async fn the_audit_log_exports_as_csv_and_xlsx_in_japanese_and_the_export_is_recorded() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let admin = app.admin().await;
        let created = admin
            .post("/api/users", &json!({ "username": "sato", "display_name": "佐藤 花子", "role": "operator", "password": "first-password-1" }))
            .await;
        assert_eq!(created.status(), 201);

        let res = admin
            .get("/api/audit/export?format=csv&actor=admin&action=user.create")
            .await;
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        assert!(res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".csv"));
        let bytes = res.bytes().await.unwrap();
        assert!(
            bytes.starts_with(&[0xEF, 0xBB, 0xBF]),
            "UTF-8 BOM for Excel"
        );
        let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!(
            lines[0].starts_with("日時,操作者,操作者名,操作"),
            "{}",
            lines[0]
        );
        assert_eq!(lines.len(), 2, "{kind:?}: one creation by admin: {text}");
        assert!(lines[1].contains("利用者の登録"), "{}", lines[1]);
        assert!(
            lines[1].contains("システム管理者"),
            "the actor's name: {}",
            lines[1]
        );
        assert!(
            lines[1].contains("佐藤 花子（sato）"),
            "the target's name: {}",
            lines[1]
        );

        let res = admin.get("/api/audit/export?format=xlsx").await;
        assert_eq!(res.status(), 200);
        let bytes = res.bytes().await.unwrap().to_vec();
        let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes)).unwrap();
        let sheet = book.worksheet_range("取扱記録").unwrap();
        let rows: Vec<Vec<String>> = sheet
            .rows()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect();
        assert_eq!(rows[0][0], "日時");
        assert!(rows.iter().any(|r| r[3] == "利用者の登録"), "{rows:?}");
        assert!(
            rows.iter().any(|r| r[3] == "取扱記録の出力"),
            "the CSV export is in the log: {rows:?}"
        );

        // Each export is recorded, with its format.
        let log: Value = admin
            .get("/api/audit?action=audit.export")
            .await
            .json()
            .await
            .unwrap();
        let formats: Vec<&str> = log["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["detail"]["format"].as_str().unwrap())
            .collect();
        assert_eq!(formats, ["xlsx", "csv"]);
        // Bad format: a Japanese refusal, nothing exported or recorded.
        let bad = admin.get("/api/audit/export?format=pdf").await;
        assert_eq!(bad.status(), 422);
        let body: Value = bad.json().await.unwrap();
        assert!(has_japanese(body["message"].as_str().unwrap()));
        let log: Value = admin
            .get("/api/audit?action=audit.export")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(log["rows"].as_array().unwrap().len(), 2);
        // Operators may not export.
        let op = app.user_with_role("ito", "operator").await;
        assert_eq!(op.get("/api/audit/export?format=csv").await.status(), 403);
        app.stop().await;
    }
}
