//! The visit calendar over HTTP and the CLI on both backends (issue 14 item 2, R-CAL-1..3,
//! R-PERIOD-2): the proposal on the shipped profile meets the rules, a bad import changes
//! nothing, a fixed calendar changes only by audited edits that keep days with bookings.

use crate::common;

use std::collections::BTreeMap;
use std::process::Command;

use chrono::{Datelike, NaiveDate};
use common::{backends, manifest_dir, profile_dir, Session, TestApp};
use madoguchi::store::Db;
use serde_json::{json, Value};

async fn send(
    s: &Session,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut req = s
        .client
        .request(method, format!("{}{}", s.base, path))
        .header("X-CSRF-Token", &s.csrf);
    if let Some(b) = body {
        req = req.json(b);
    }
    req.send().await.unwrap()
}

async fn calendar(s: &Session) -> Value {
    let res = s.get("/api/calendar").await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn dates(cal: &Value) -> Vec<String> {
    cal["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["date"].as_str().unwrap().to_string())
        .collect()
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// A minimal live booking row on `day` (the booking core writes these; the calendar only
/// has to see them).
async fn book(db: &Db, day: &str, half: &str, position: i64) {
    sqlx::query(
        "INSERT INTO bookings (kind, status, visit_date, half_day, position, booked_at, updated_at, applicant_count) \
         VALUES ('home', 'booked', $1, $2, $3, '2026-06-01T00:00:00.000000Z', '2026-06-01T00:00:00.000000Z', 1)",
    )
    .bind(day)
    .bind(half)
    .bind(position)
    .execute(db.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn manager_proposes_imports_fixes_and_edits_the_calendar() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let manager = app.user_with_role("kanri", "manager").await;
        let operator = app.user_with_role("oper", "operator").await;

        // Operators read; only managers (and admins) propose.
        assert_eq!(
            operator
                .post("/api/calendar/propose", &json!({}))
                .await
                .status(),
            403
        );
        let res = manager.post("/api/calendar/propose", &json!({})).await;
        assert_eq!(res.status(), 200, "{kind:?}");
        let cal = calendar(&operator).await;
        assert_eq!(cal["fixed"], false);
        assert!(cal["problems"].as_array().unwrap().is_empty(), "{cal}");

        // R-PERIOD-2 / R-CAL-1 / R-CAL-2 on the shipped profile.
        let days = cal["days"].as_array().unwrap();
        assert_eq!(days.len(), 42);
        assert_eq!(days.iter().filter(|d| d["kind"] == "home").count(), 36);
        assert_eq!(days.iter().filter(|d| d["kind"] == "facility").count(), 6);
        let mut months: BTreeMap<(i32, u32), [u32; 5]> = BTreeMap::new();
        for d in dates(&cal).iter().map(|d| date(d)) {
            assert!(d >= date("2026-06-17") && d <= date("2026-12-24"));
            let w = d.weekday().num_days_from_monday() as usize;
            assert!(w < 5, "{d} is a weekend");
            months.entry((d.year(), d.month())).or_default()[w] += 1;
        }
        for holiday in [
            "2026-07-20",
            "2026-09-21",
            "2026-09-22",
            "2026-09-23",
            "2026-10-12",
            "2026-11-03",
            "2026-11-23",
        ] {
            assert!(!dates(&cal).contains(&holiday.to_string()), "{holiday}");
        }
        for (m, c) in &months {
            assert!(
                c.iter().max().unwrap() - c.iter().min().unwrap() <= 1,
                "{m:?} {c:?}"
            );
        }
        let weeks = cal["counts"]["weeks"].as_array().unwrap();
        assert_eq!(weeks.len(), 28);
        assert!(weeks
            .iter()
            .all(|w| (1..=2).contains(&w["days"].as_u64().unwrap())));

        // An import with a Saturday, a holiday and an unknown kind is refused whole.
        let before = dates(&cal);
        let bad = "date,kind\n2026-07-01,home\n2026-07-04,home\n2026-07-20,home\n";
        let res = manager
            .client
            .post(format!("{}/api/calendar/import", manager.base))
            .header("X-CSRF-Token", &manager.csrf)
            .header("Content-Type", "text/csv")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422);
        let msg = res.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains("土日") && msg.contains("祝日"), "{msg}");
        let res = send(
            &manager,
            reqwest::Method::POST,
            "/api/calendar/import",
            Some(&json!([{ "date": "2026-07-01", "kind": "office" }])),
        )
        .await;
        assert_eq!(res.status(), 422);
        assert_eq!(dates(&calendar(&manager).await), before);

        // Export (JSON: exactly date + kind) and re-import round-trips.
        let json_export: Value = manager
            .get("/api/calendar/export?format=json")
            .await
            .json()
            .await
            .unwrap();
        let rows = json_export.as_array().unwrap();
        assert_eq!(rows.len(), 42);
        assert!(rows.iter().all(|r| r.as_object().unwrap().len() == 2
            && r["date"].is_string()
            && (r["kind"] == "home" || r["kind"] == "facility")));
        let csv = manager.get("/api/calendar/export?format=csv").await;
        assert!(csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let csv = csv.text().await.unwrap();
        assert!(csv.starts_with("\u{feff}date,kind\r\n"), "{csv:?}");
        let res = send(
            &manager,
            reqwest::Method::POST,
            "/api/calendar/import",
            Some(&json_export),
        )
        .await;
        assert_eq!(res.status(), 200);
        assert_eq!(dates(&calendar(&manager).await), before);

        // A booking on a home day; fixing; then only audited day edits.
        let db = app.db.open().await;
        let booked = days.iter().find(|d| d["kind"] == "home").unwrap()["date"]
            .as_str()
            .unwrap()
            .to_string();
        book(&db, &booked, "am", 1).await;
        assert_eq!(
            manager.post("/api/calendar/fix", &json!({})).await.status(),
            200
        );
        let cal = calendar(&manager).await;
        assert_eq!(cal["fixed"], true);
        assert_eq!(cal["fixed_by"], "kanri");
        assert_eq!(
            manager
                .post("/api/calendar/propose", &json!({}))
                .await
                .status(),
            409
        );
        assert_eq!(
            manager.post("/api/calendar/fix", &json!({})).await.status(),
            409
        );

        let path = format!("/api/calendar/days/{booked}");
        let res = send(&manager, reqwest::Method::DELETE, &path, None).await;
        assert_eq!(res.status(), 409);
        let msg = res.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains("予約が 1 件"), "{msg}");
        let res = send(
            &manager,
            reqwest::Method::PUT,
            &path,
            Some(&json!({ "kind": "facility" })),
        )
        .await;
        assert_eq!(res.status(), 409);
        assert!(dates(&calendar(&manager).await).contains(&booked));

        // The PM-3rd switch: on, booked, then it cannot go off.
        let res = send(
            &manager,
            reqwest::Method::PUT,
            &path,
            Some(&json!({ "kind": "home", "pm_extra_open": true })),
        )
        .await;
        assert_eq!(res.status(), 200);
        book(&db, &booked, "pm", 3).await;
        let res = send(
            &manager,
            reqwest::Method::PUT,
            &path,
            Some(&json!({ "kind": "home", "pm_extra_open": false })),
        )
        .await;
        assert_eq!(res.status(), 409);

        // Adding a day on a holiday is refused; on a free weekday it works, with warnings.
        let res = send(
            &manager,
            reqwest::Method::PUT,
            "/api/calendar/days/2026-11-03",
            Some(&json!({ "kind": "home" })),
        )
        .await;
        assert_eq!(res.status(), 422);
        let free = (0..)
            .map(|i| date("2026-08-03") + chrono::Duration::days(i))
            .find(|d| d.weekday().num_days_from_monday() < 5 && !before.contains(&d.to_string()))
            .unwrap();
        let res = send(
            &manager,
            reqwest::Method::PUT,
            &format!("/api/calendar/days/{free}"),
            Some(&json!({ "kind": "home" })),
        )
        .await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert!(body["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "total"));
        let res = send(
            &manager,
            reqwest::Method::DELETE,
            &format!("/api/calendar/days/{free}"),
            None,
        )
        .await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            send(
                &operator,
                reqwest::Method::DELETE,
                &format!("/api/calendar/days/{free}"),
                None
            )
            .await
            .status(),
            403
        );

        // Every change has its 取扱記録 row, by the manager.
        let admin = app.admin().await;
        let audit = |action: &'static str| {
            let admin = &admin;
            async move {
                let v: Value = admin
                    .get(&format!("/api/audit?action={action}"))
                    .await
                    .json()
                    .await
                    .unwrap();
                v["rows"].as_array().unwrap().clone()
            }
        };
        assert_eq!(audit("calendar.replace").await.len(), 2);
        assert_eq!(audit("calendar.fix").await.len(), 1);
        let edits = audit("calendar.edit").await;
        assert_eq!(edits.len(), 3, "{edits:?}");
        assert!(edits.iter().all(|r| r["actor_username"] == "kanri"
            && r["target_kind"] == "visit_day"
            && r["detail"]["fixed"] == true));
        assert!(edits
            .iter()
            .any(|r| r["target_id"] == free.to_string() && r["detail"]["op"] == "remove"));
        db.close().await;
        app.stop().await;
    }
}

#[test]
fn cli_proposes_exports_and_refuses_a_bad_import() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/cal.db", dir.path().display());
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_madoguchi"))
            .env_remove("MADOGUCHI_HTTP_ADDR")
            .env("DATABASE_URL", &db)
            .env("MADOGUCHI_PROFILE", profile_dir())
            .env("MADOGUCHI_SIP_CONFIG", manifest_dir().join("sip-config"))
            .env("RUST_LOG", "warn")
            .current_dir(manifest_dir())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = run(&["calendar", "propose"]);
    assert!(
        ok && out.contains("合計 42 日（自宅 36 日・施設 6 日）"),
        "{out}{err}"
    );
    let (ok, out, _) = run(&["calendar", "export", "--format", "csv"]);
    assert!(
        ok && out == "\u{feff}date,kind\r\n",
        "without --write nothing is stored: {out:?}"
    );
    let (ok, _, err) = run(&["calendar", "propose", "--write"]);
    assert!(ok, "{err}");
    let csv = dir.path().join("cal.csv");
    let (ok, _, err) = run(&[
        "calendar",
        "export",
        "--format",
        "csv",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let bytes = std::fs::read(&csv).unwrap();
    assert!(bytes.starts_with(b"\xef\xbb\xbfdate,kind\r\n"));
    assert_eq!(String::from_utf8(bytes).unwrap().lines().count(), 43);
    let (ok, out, _) = run(&["calendar", "export", "--format", "json"]);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert!(ok && json.as_array().unwrap().len() == 42);
    assert!(json[0]["date"].is_string() && json[0]["kind"].is_string());

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "date,kind\n2026-07-04,home\n").unwrap();
    let (ok, out, err) = run(&["calendar", "import", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("土日"), "{out}{err}");
    let (ok, out, _) = run(&["calendar", "show"]);
    assert!(
        ok && out.contains("下書き") && out.contains("（水）"),
        "{out}"
    );
    // The good file round-trips, then fixing closes whole replacements.
    let (ok, _, err) = run(&["calendar", "import", csv.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["calendar", "fix"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["calendar", "import", csv.to_str().unwrap()]);
    assert!(!ok && err.contains("確定済み"), "{err}");
    let (ok, out, _) = run(&["calendar", "show"]);
    assert!(ok && out.contains("確定済み"), "{out}");
}
