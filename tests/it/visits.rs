//! Visits done and the city's week (issue 15 item 4) on both backends: the city marks a visit
//! ended (a second mark is a 409, a correction is recorded as one), reads the week with the
//! names, addresses and phones it needs (each read audited), and gets 403 everywhere else;
//! the reception list's 訪問完了日 fills from it; the handling record and the monthly
//! handling report (item 6) show it.

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use crate::common::{backends, cli, Session, TestApp};

/// Visit days straight into the calendar.
pub async fn home_days(app: &TestApp, days: &[&str]) {
    let db = app.db.open().await;
    for d in days {
        sqlx::query("INSERT INTO visit_days (visit_date, kind, pm_extra_open, updated_at) VALUES ($1, 'home', 0, '2026-11-01T00:00:00.000Z')")
            .bind(*d)
            .execute(db.pool())
            .await
            .unwrap();
    }
    db.close().await;
}

/// A made-up household: one applicant `name`, at `address`, reachable on `phone`.
pub struct Household<'a> {
    pub name: &'a str,
    pub kana: &'a str,
    pub caller: &'a str,
    pub address: &'a str,
    pub phone: &'a str,
    pub birth: &'a str,
    pub note: &'a str,
}

pub fn slip(slot: (&str, &str, u8), h: &Household, call_id: Option<i64>) -> Value {
    let mut v = json!({
        "slot": { "date": slot.0, "half_day": slot.1, "position": slot.2 },
        "address": h.address,
        "manual_travel_minutes": 10,
        "contact_phone": h.phone,
        "caller_relation": "relative",
        "caller_name": h.caller,
        "going_out_difficulty": h.note,
        "care_notes": h.note,
        "parking": true,
        "applicants": [{
            "name": h.name,
            "name_kana": h.kana,
            "birth_date": h.birth,
            "application_kind": "new",
            "id_documents": ["insurance_certificate", "care_insurance"],
            "condition_note": h.note,
            "insurance_use": true
        }],
        "guidance_given": ["prepare"]
    });
    if let Some(c) = call_id {
        v["call_id"] = json!(c);
    }
    v
}

/// Books over HTTP; returns (booking id, reception number).
pub async fn book(op: &Session, body: &Value) -> (i64, i64) {
    let res = op.post("/api/bookings", body).await;
    let status = res.status();
    let made: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{made}");
    (
        made["id"].as_i64().unwrap(),
        made["reception_number"].as_i64().unwrap(),
    )
}

/// The server's clock on `y-m-d` 17:00 JST.
pub fn evening_of(app: &TestApp, y: i32, m: u32, d: u32) {
    app.clock
        .set(Utc.with_ymd_and_hms(y, m, d, 8, 0, 0).unwrap());
}

pub const TARO: Household = Household {
    name: "架空 試験太郎",
    kana: "かくう しけんたろう",
    caller: "架空 試験花子",
    address: "小樽市稲穂2丁目99-1 架空荘101",
    phone: "0134-99-0001",
    birth: "1931-02-03",
    note: "架空の歩行困難メモ",
};

pub const JIRO: Household = Household {
    name: "架空 残留次郎",
    kana: "かくう ざんりゅうじろう",
    caller: "架空 残留花江",
    address: "小樽市稲穂3丁目98-2 残留荘202",
    phone: "0134-99-0002",
    birth: "1932-03-04",
    note: "残留の体調メモ",
};

/// Every cell of `sheet` as text (numbers without a trailing .0).
pub fn xlsx_cells(bytes: &[u8], sheet: &str) -> Vec<Vec<String>> {
    use calamine::{Data, Reader, Xlsx};
    let mut wb: Xlsx<_> = Xlsx::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let range = wb.worksheet_range(sheet).unwrap();
    range
        .rows()
        .map(|r| {
            r.iter()
                .map(|c| match c {
                    Data::Float(f) if f.fract() == 0.0 => format!("{}", *f as i64),
                    Data::Int(i) => i.to_string(),
                    Data::Empty => String::new(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn the_city_marks_visits_done_and_reads_only_its_week() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        home_days(&app, &["2026-12-09", "2026-12-10"]).await;
        let op = app.user_with_role("op1", "operator").await;
        let (taro, taro_no) = book(&op, &slip(("2026-12-09", "am", 1), &TARO, None)).await;
        let (jiro, _) = book(&op, &slip(("2026-12-10", "pm", 1), &JIRO, None)).await;
        let city = app.user_with_role("city1", "city").await;
        let manager = app.user_with_role("mgr1", "manager").await;

        // The week (2026-12-07 … 12-13 is ISO week 50): both visits with what the city
        // needs at the door, in visit order, nothing marked yet.
        let res = city.get("/api/visits?week=2026-W50").await;
        assert_eq!(res.status(), 200, "{kind:?}");
        let week: Value = res.json().await.unwrap();
        let visits = week["visits"].as_array().unwrap();
        assert_eq!(visits.len(), 2, "{week}");
        assert_eq!(visits[0]["booking_id"], taro);
        assert_eq!(visits[0]["reception_number"], taro_no);
        assert_eq!(visits[0]["date_ja"], "令和8年12月9日（水）");
        assert_eq!(visits[0]["window"], "10:00頃");
        assert_eq!(visits[0]["town"], "稲穂二丁目");
        assert_eq!(visits[0]["names"], json!([TARO.name]));
        assert_eq!(visits[0]["address"], TARO.address);
        assert_eq!(visits[0]["phone"], TARO.phone);
        assert_eq!(visits[0]["done_on"], Value::Null);
        assert_eq!(visits[1]["booking_id"], jiro);
        assert_eq!(
            week["heading"],
            "令和8年12月7日（月） 〜 令和8年12月13日（日）"
        );
        assert_eq!(
            city.get("/api/visits?week=2026-50").await.status(),
            422,
            "a malformed week"
        );

        // Not before the visit: the date is in the future.
        let res = city
            .post(
                &format!("/api/visits/{taro}/done"),
                &json!({ "date": "2026-12-09", "applications_taken": 1 }),
            )
            .await;
        assert_eq!(res.status(), 422);

        // On the visit day's evening (sessions are renewed: two weeks have passed).
        evening_of(&app, 2026, 12, 10);
        let city = app.login("city1", "password-of-city1").await;
        let manager_late = app.login("mgr1", "password-of-mgr1").await;
        drop(manager);
        let res = city
            .post(
                &format!("/api/visits/{taro}/done"),
                &json!({ "date": "2026-12-08", "applications_taken": 1 }),
            )
            .await;
        assert_eq!(res.status(), 422, "before the visit date");
        let res = city
            .post(
                &format!("/api/visits/{taro}/done"),
                &json!({ "date": "2026-12-09", "applications_taken": 1, "note": "架空の訪問メモ" }),
            )
            .await;
        assert_eq!(res.status(), 200, "{kind:?}");
        let done: Value = res.json().await.unwrap();
        assert_eq!(done["booking"]["visit_done_on"], "2026-12-09");
        assert_eq!(done["corrected"], false);
        // A second mark is refused and changes nothing …
        let res = city
            .post(
                &format!("/api/visits/{taro}/done"),
                &json!({ "date": "2026-12-10", "applications_taken": 3 }),
            )
            .await;
        assert_eq!(res.status(), 409);
        let e: Value = res.json().await.unwrap();
        assert!(e["message"].as_str().unwrap().contains("完了済み"), "{e}");
        // … unless it says it is a correction.
        let res = city
            .post(
                &format!("/api/visits/{taro}/done"),
                &json!({ "date": "2026-12-09", "applications_taken": 2, "note": "架空の訪問メモ", "correction": true }),
            )
            .await;
        assert_eq!(res.status(), 200);
        let done: Value = res.json().await.unwrap();
        assert_eq!(done["corrected"], true);
        assert_eq!(done["applications_taken"], 2);
        // A manager may mark one too.
        let res = manager_late
            .post(
                &format!("/api/visits/{jiro}/done"),
                &json!({ "date": "2026-12-10", "applications_taken": 1 }),
            )
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            city.post(
                "/api/visits/999999/done",
                &json!({ "date": "2026-12-10", "applications_taken": 1 })
            )
            .await
            .status(),
            404
        );

        // The reception list's 訪問完了日 fills from it.
        let list: Value = city.get("/api/reception-list").await.json().await.unwrap();
        let rows = list["rows"].as_array().unwrap();
        assert_eq!(rows[0]["visit_done_on"], "2026-12-09", "{list}");
        assert_eq!(rows[1]["visit_done_on"], "2026-12-10");
        let week: Value = city
            .get("/api/visits?week=2026-W50")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(week["visits"][0]["done_on"], "2026-12-09");
        assert_eq!(week["visits"][0]["applications_taken"], 2);
        assert_eq!(week["visits"][0]["visit_note"], "架空の訪問メモ");

        // The city role reaches nothing else: calls, bookings, callbacks, facility lists,
        // audit, accounts, purge, reports, the operator's tools.
        for path in [
            "/api/calls",
            "/api/calls/1",
            "/api/bookings",
            "/api/callbacks",
            "/api/facility-requests",
            "/api/audit",
            "/api/audit?subject=1",
            "/api/users",
            "/api/purge/preview",
            "/api/reports/handling?month=2026-12",
            "/api/capacity",
            "/api/calendar",
            "/api/stats/live",
            "/api/presence",
            "/api/talk-script",
        ] {
            assert_eq!(city.get(path).await.status(), 403, "city GET {path}");
        }
        for path in ["/api/purge", "/api/bookings", "/api/slots/search"] {
            assert_eq!(
                city.post(path, &json!({})).await.status(),
                403,
                "city POST {path}"
            );
        }
        // A refused request records the route, not what was typed into the path.
        assert_eq!(city.get("/api/calls/+81134990001").await.status(), 403);
        let denied: Value = manager_late
            .get("/api/audit?action=access&actor=city1&limit=1")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            denied["rows"][0]["detail"]["path"], "/api/calls/{id}",
            "{denied}"
        );
        // And the week is not the operators'.
        let op = app.login("op1", "password-of-op1").await;
        assert_eq!(op.get("/api/visits?week=2026-W50").await.status(), 403);
        assert_eq!(
            op.post(
                &format!("/api/visits/{taro}/done"),
                &json!({ "date": "2026-12-09", "applications_taken": 1 })
            )
            .await
            .status(),
            403
        );

        // The handling record of the booking: booked, read by the city, done, corrected.
        let record: Value = manager_late
            .get(&format!("/api/audit?subject={taro_no}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(record["subject"]["booking_ids"], json!([taro]), "{record}");
        let rows = record["rows"].as_array().unwrap();
        let seen: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r["action"].as_str().unwrap(),
                    r["actor_username"].as_str().unwrap(),
                )
            })
            .collect();
        for want in [
            ("booking.create", "op1"),
            ("visit.read", "city1"),
            ("visit.done", "city1"),
            ("visit.correct", "city1"),
        ] {
            assert!(seen.contains(&want), "{want:?} missing from {seen:?}");
        }
        // Oldest first; the other booking's mark is not in it; no row holds the name.
        assert!(rows
            .windows(2)
            .all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()));
        assert!(!rows
            .iter()
            .any(|r| r["target_id"] == json!(jiro.to_string())));
        assert!(!record.to_string().contains(TARO.name));
        let by_id: Value = manager_late
            .get(&format!("/api/audit?subject=booking:{taro}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(by_id["rows"], record["rows"]);
        // By the contact number, national form without hyphens.
        let by_number: Value = manager_late
            .get("/api/audit?subject=0134990001")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(by_number["subject"]["booking_ids"], json!([taro]));
        assert_eq!(
            manager_late.get("/api/audit?subject=hello").await.status(),
            422
        );
        assert_eq!(
            manager_late.get("/api/audit?subject=4242").await.status(),
            404
        );

        // The monthly handling report for December (JSON, XLSX, and the CLI's JSON).
        let report: Value = manager_late
            .get("/api/reports/handling?month=2026-12")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(report["title"], "取扱状況報告（令和8年12月）");
        assert_eq!(
            report["period"],
            "令和8年12月1日（火） 〜 令和8年12月31日（木）"
        );
        let count = |action: &str| {
            report["per_action"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["action"] == action)
                .map_or(0, |a| a["count"].as_i64().unwrap())
        };
        assert_eq!(count("visit.done"), 2, "{report}");
        assert_eq!(count("visit.correct"), 1);
        assert_eq!(count("booking.create"), 0, "booked in November");
        let city_row = report["per_staff"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["username"] == "city1")
            .unwrap()
            .clone();
        assert_eq!(city_row["change"], 2, "{city_row}");
        assert_eq!(city_row["read"], 1, "the week read in December");
        assert!(city_row["access"].as_i64().unwrap() >= 15, "the 403s");
        let xlsx = manager_late
            .get("/api/reports/handling?month=2026-12&format=xlsx")
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(&xlsx[..2], b"PK");
        // Read back with a spreadsheet reader: the title, the period in 和暦, the figures.
        let cells = xlsx_cells(&xlsx, "取扱状況報告");
        assert_eq!(cells[0][0], "取扱状況報告（令和8年12月）");
        assert!(
            cells[1][0].contains("令和8年12月1日（火）"),
            "{:?}",
            cells[1]
        );
        let done_row = cells
            .iter()
            .find(|r| r[0] == "訪問完了の登録")
            .unwrap_or_else(|| panic!("{cells:?}"));
        assert_eq!(done_row[1], "visit.done");
        assert_eq!(done_row[2], "2");
        let staff_row = cells.iter().find(|r| r[0] == "city1").unwrap();
        assert_eq!(staff_row[2], "市職員");
        assert_eq!(staff_row[4], "2", "登録・変更: {staff_row:?}");
        let out = cli(&app.db.url, &["report", "handling", "--month", "2026-12"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let from_cli: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(from_cli["per_action"][0], report["per_action"][0]);
        assert_eq!(from_cli["title"], report["title"]);

        app.stop().await;
    }
}

/// The city's screen in a real browser: the city account lands on 訪問予定, sees the week's
/// visit with the name, address and phone, presses 完了, saves, and the row shows it done;
/// its navigation offers nothing else. Screenshot: visits-city.png.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_city_marks_a_visit_done_on_screen() {
    use crate::browser::{artifact, browser, login, text, tools, until};
    let Some((chrome, chromedriver)) = tools() else {
        return;
    };
    let app = TestApp::spawn(crate::common::Kind::Sqlite).await;
    home_days(&app, &["2026-12-09"]).await;
    let op = app.user_with_role("op1", "operator").await;
    let (taro, _) = book(&op, &slip(("2026-12-09", "am", 1), &TARO, None)).await;
    evening_of(&app, 2026, 12, 10);
    let _city = app.user_with_role("city1", "city").await;
    let (_d, c) = browser(&chrome, &chromedriver).await;
    login(&c, &app.base, "city1", "password-of-city1").await;
    until(
        &c,
        "the visit schedule as the landing page",
        &format!("document.querySelector('#visits-table tr[data-booking-id=\"{taro}\"]')"),
    )
    .await;
    // Really on screen (a view nested in a hidden one would have no size).
    let shown = text(
        &c,
        "document.getElementById('visits-table').getBoundingClientRect().height > 0",
    )
    .await;
    assert_eq!(shown, "true");
    let nav = text(
        &c,
        "[...document.querySelectorAll('#nav a')].map(a => a.textContent).join(',')",
    )
    .await;
    assert_eq!(nav, "訪問予定,パスワード変更");
    let row = text(
        &c,
        &format!(
            "document.querySelector('#visits-table tr[data-booking-id=\"{taro}\"]').innerText"
        ),
    )
    .await;
    for want in [
        TARO.name,
        TARO.address,
        TARO.phone,
        "令和8年12月9日（水）",
        "10:00頃",
    ] {
        assert!(row.contains(want), "{want} not in {row}");
    }
    c.execute(
        &format!("document.querySelector('#visits-table tr[data-booking-id=\"{taro}\"] button').click();"),
        vec![],
    )
    .await
    .unwrap();
    until(
        &c,
        "the done form",
        "document.querySelector('form.visit-done')",
    )
    .await;
    c.execute(
        "const f = document.querySelector('form.visit-done'); f.elements.note.value = '架空の訪問メモ'; f.requestSubmit();",
        vec![],
    )
    .await
    .unwrap();
    until(
        &c,
        "the row marked done",
        &format!("/完了 2026-12-09/.test(document.querySelector('#visits-table tr[data-booking-id=\"{taro}\"]').innerText)"),
    )
    .await;
    if let Ok(png) = c.screenshot().await {
        artifact("visits-city.png", &png);
    }
    let manager = app.user_with_role("mgr1", "manager").await;
    let list: Value = manager
        .get("/api/reception-list")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["rows"][0]["visit_done_on"], "2026-12-09");

    // The manager: the handling record of reception number 1, then the purge once shared.
    c.execute("document.getElementById('logout').click();", vec![])
        .await
        .unwrap();
    until(&c, "the login page", "document.getElementById('username')").await;
    login(&c, &app.base, "mgr1", "password-of-mgr1").await;
    c.execute(
        "window.confirm = () => true; document.querySelector('#nav a[data-view=\"handling\"]').click(); \
         const f = document.getElementById('handling-form'); f.elements.subject.value = '1'; f.requestSubmit();",
        vec![],
    )
    .await
    .unwrap();
    until(
        &c,
        "the handling record",
        "/訪問完了の登録/.test(document.getElementById('handling-result').innerText) && /訪問予定の閲覧/.test(document.getElementById('handling-result').innerText)",
    )
    .await;
    if let Ok(png) = c.screenshot().await {
        artifact("handling-record.png", &png);
    }
    let db = app.db.open().await;
    sqlx::query("UPDATE bookings SET shared_at = '2026-12-01T01:00:00.000Z'")
        .execute(db.pool())
        .await
        .unwrap();
    db.close().await;
    c.execute(
        "document.querySelector('#nav a[data-view=\"purge\"]').click();",
        vec![],
    )
    .await
    .unwrap();
    until(
        &c,
        "the purge preview",
        "/削除予定：予約 1件/.test(document.getElementById('purge-preview').innerText)",
    )
    .await;
    c.execute("document.getElementById('purge-run').click();", vec![])
        .await
        .unwrap();
    until(
        &c,
        "the purge done",
        "/削除しました：予約 1件/.test(document.getElementById('purge-message').textContent)",
    )
    .await;
    if let Ok(png) = c.screenshot().await {
        artifact("purge.png", &png);
    }
    let list: Value = manager
        .get("/api/reception-list")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["rows"][0]["purged_on"], "2026-12-10");
    c.close().await.ok();
    app.stop().await;
}
