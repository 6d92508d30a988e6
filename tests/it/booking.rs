//! Home bookings over HTTP on both backends (issue 14 items 4, 5, 8, 11; R-SLOT, R-BOOK-3..6):
//! a booking end to end, no double booking under 50 simultaneous attempts, the travel rule
//! under 50 attempts at neighbouring slots, gapless reception numbers, the lists.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::common::{backends, cli_ok, Session, TestApp};

/// What `madoguchi bookings export --format FORMAT` prints for a test database.
fn bookings_export(database_url: &str, format: &str) -> String {
    cli_ok(database_url, &["bookings", "export", "--format", format])
}

/// Visit days straight into the calendar (the calendar's own tests cover proposing them).
async fn home_days(app: &TestApp, days: &[&str]) {
    let db = app.db.open().await;
    for d in days {
        sqlx::query("INSERT INTO visit_days (visit_date, kind, pm_extra_open, updated_at) VALUES ($1, 'home', 0, '2026-11-01T00:00:00.000000Z')")
            .bind(*d)
            .execute(db.pool())
            .await
            .unwrap();
    }
    db.close().await;
}

fn booking(slot: (&str, &str, u8), minutes: u32, applicants: usize) -> Value {
    let people: Vec<Value> = (0..applicants)
        .map(|i| {
            json!({
                "name": format!("試験 太郎{i}"),
                "name_kana": "しけん たろう",
                "birth_date": "1945-05-05",
                "application_kind": "new",
                "id_documents": ["insurance_certificate", "care_insurance"],
                "insurance_use": true
            })
        })
        .collect();
    json!({
        "slot": { "date": slot.0, "half_day": slot.1, "position": slot.2 },
        "address": "小樽市架空町1-2-3",
        "manual_travel_minutes": minutes,
        "contact_phone": "0134-22-0001",
        "caller_relation": "household",
        "caller_name": "試験 花子",
        "going_out_difficulty": "歩行が困難",
        "parking": true,
        "applicants": people,
        "guidance_given": ["prepare"]
    })
}

async fn operator(app: &TestApp) -> Session {
    app.user_with_role("op1", "operator").await
}

#[tokio::test]
async fn a_home_booking_end_to_end() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        // Today is 2026-11-25: with 14 days' lead, 12-09 is the first bookable day.
        home_days(&app, &["2026-12-08", "2026-12-09", "2026-12-10"]).await;
        let op = operator(&app).await;

        let res = op
            .post(
                "/api/slots/search",
                &json!({ "address": "小樽市架空町1", "applicants": 2, "manual_travel_minutes": 10,
                         "from": "2026-12-10", "to": "2026-12-10" }),
            )
            .await;
        assert_eq!(res.status(), 200, "{kind:?}");
        let s: Value = res.json().await.unwrap();
        let offers = s["offers"].as_array().unwrap();
        // 12-08 is inside the lead time; 12-09 and 12-10 have a morning and an afternoon each.
        assert_eq!(offers.len(), 4, "{s}");
        assert_eq!(
            offers[0]["slot"]["date"], "2026-12-10",
            "the wished day first"
        );
        assert_eq!(offers[0]["window"], "10:00頃");

        // Guidance not given → refused with the missing item named; nothing stored.
        let mut b = booking(("2026-12-10", "am", 1), 10, 2);
        b["applicants"][0]["application_kind"] = json!("renewal");
        let res = op.post("/api/bookings", &b).await;
        assert_eq!(res.status(), 422);
        let e: Value = res.json().await.unwrap();
        assert!(e["message"].as_str().unwrap().contains("旧カード"), "{e}");
        // A bad phone, a birth date in the future.
        let mut b = booking(("2026-12-10", "am", 1), 10, 1);
        b["contact_phone"] = json!("12345");
        b["applicants"][0]["birth_date"] = json!("2030-01-01");
        let res = op.post("/api/bookings", &b).await;
        assert_eq!(res.status(), 422);
        let e: Value = res.json().await.unwrap();
        let m = e["message"].as_str().unwrap();
        assert!(m.contains("電話番号") && m.contains("生年月日"), "{m}");
        // Inside the lead time.
        let res = op
            .post("/api/bookings", &booking(("2026-12-08", "am", 1), 10, 1))
            .await;
        assert_eq!(res.status(), 409);

        let res = op
            .post("/api/bookings", &booking(("2026-12-10", "am", 1), 10, 2))
            .await;
        assert_eq!(res.status(), 201, "{kind:?}");
        let made: Value = res.json().await.unwrap();
        assert_eq!(made["reception_number"], 1);
        assert_eq!(made["applicants"], 2);
        assert_eq!(made["booked_on"], "2026-11-25");
        assert!(made["forms"]
            .as_array()
            .unwrap()
            .contains(&json!({ "form": "insurance_consent", "count": 2 })));

        // Reschedule, then cancel: the number stays, history is kept, the slot frees.
        let id = made["id"].as_i64().unwrap();
        let res = op
            .post(
                &format!("/api/bookings/{id}/reschedule"),
                &json!({ "slot": { "date": "2026-12-09", "half_day": "pm", "position": 2 }, "reason": "本人の希望" }),
            )
            .await;
        assert_eq!(res.status(), 200);
        let res = op
            .post("/api/bookings", &booking(("2026-12-10", "am", 1), 10, 1))
            .await;
        assert_eq!(res.status(), 201);
        let second: Value = res.json().await.unwrap();
        assert_eq!(second["reception_number"], 2);
        let res = op
            .post(
                &format!("/api/bookings/{id}/cancel"),
                &json!({ "reason": "入院" }),
            )
            .await;
        assert_eq!(res.status(), 200);
        let res = op
            .post(&format!("/api/bookings/{id}/cancel"), &json!({}))
            .await;
        assert_eq!(res.status(), 409, "cancelled twice");

        let list: Value = op
            .get("/api/bookings?format=json")
            .await
            .json()
            .await
            .unwrap();
        let list = list["bookings"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["status"], "cancelled");
        assert_eq!(list[0]["slot"]["date"], "2026-12-09");
        assert_eq!(list[0]["window"], "14:30〜15:30");

        let csv = op
            .get("/api/reception-list?format=csv")
            .await
            .text()
            .await
            .unwrap();
        assert!(csv.starts_with('\u{feff}'));
        let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
        assert!(lines[0].starts_with("受付番号,受付日,訪問日,申請件数"));
        assert_eq!(lines[1], "1,2026-11-25,2026-12-09,2,自宅訪問,取消,,,");
        assert_eq!(lines[2], "2,2026-11-25,2026-12-10,1,自宅訪問,予約済,,,");
        let xlsx = op
            .get("/api/reception-list?format=xlsx")
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(&xlsx[..2], b"PK");

        // Booked on a call: the call's outcome becomes `booking`; a call the operator did not
        // answer (or nobody answered) cannot carry it, and nothing is booked then.
        let db = app.db.open().await;
        for (key, by) in [
            ("k-answered", Some("op1")),
            ("k-other", Some("someone")),
            ("k-missed", None),
        ] {
            sqlx::query(
                "INSERT INTO calls (call_key, sip_call_id, caller_kind, caller_e164, arrived_at, answered_at, answered_by_username, ended_at) \
                 VALUES ($1, $1, 'number', '+81134220009', '2026-11-25T00:59:00.000000Z', $2, $3, '2026-11-25T01:00:00.000000Z')",
            )
            .bind(key)
            .bind(by.map(|_| "2026-11-25T00:59:10.000000Z"))
            .bind(by)
            .execute(db.pool())
            .await
            .unwrap();
        }
        let call_id = |key: &'static str| {
            let pool = db.pool().clone();
            async move {
                sqlx::query_scalar::<_, i64>("SELECT id FROM calls WHERE call_key = $1")
                    .bind(key)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        for key in ["k-other", "k-missed"] {
            let mut b = booking(("2026-12-09", "am", 1), 10, 1);
            b["call_id"] = json!(call_id(key).await);
            assert_eq!(op.post("/api/bookings", &b).await.status(), 422, "{key}");
        }
        let mut b = booking(("2026-12-09", "am", 1), 10, 1);
        let answered = call_id("k-answered").await;
        b["call_id"] = json!(answered);
        let res = op.post("/api/bookings", &b).await;
        assert_eq!(res.status(), 201);
        let on_call: Value = res.json().await.unwrap();
        assert_eq!(
            on_call["reception_number"], 3,
            "the refused ones took no number"
        );
        let call: Value = op
            .get(&format!("/api/calls/{answered}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(call["outcome"], "booking", "{call}");
        // The caller's bookings, as the screen pop lists them, are found by the call's number.
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM bookings WHERE caller_e164 = '+81134220009'")
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(n, 1);
        let cancel = op
            .post(
                &format!("/api/bookings/{}/cancel", on_call["id"]),
                &json!({}),
            )
            .await;
        assert_eq!(cancel.status(), 200);
        db.close().await;

        // Capacity: one live home visit; 3 days × 4 slots − 1 (12-08 counts: it is ahead).
        let cap: Value = op.get("/api/capacity").await.json().await.unwrap();
        assert_eq!(cap["forecast"]["home_booked"], 1);
        assert_eq!(cap["forecast"]["home_free_ahead"], 11);
        assert_eq!(cap["forecast"]["home_shortfall"], 144 - 1 - 11);
        assert_eq!(cap["weeks"].as_array().unwrap().len(), 1);

        // Every change is in the audit log.
        let admin = app.admin().await;
        let audit: Value = admin
            .get("/api/audit?limit=200")
            .await
            .json()
            .await
            .unwrap();
        let actions: Vec<&str> = audit["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["action"].as_str())
            .collect();
        for a in ["booking.create", "booking.reschedule", "booking.cancel"] {
            assert!(actions.contains(&a), "{a} missing from {actions:?}");
        }

        // The export for checking (item 11): the API and `madoguchi bookings export` agree,
        // and neither carries a name, an address or a phone number.
        let api: Value = op
            .get("/api/bookings?format=json")
            .await
            .json()
            .await
            .unwrap();
        let rows = api["bookings"].as_array().unwrap();
        assert_eq!(rows.len(), 3, "{api}");
        assert_eq!(rows[0]["reception_number"], 1);
        assert_eq!(rows[0]["status"], "cancelled");
        assert_eq!(rows[0]["slot"]["half_day"], "pm");
        assert_eq!(rows[0]["slot"]["position"], 2);
        assert_eq!(rows[0]["window"], "14:30〜15:30");
        let cli: Value = serde_json::from_str(&bookings_export(&app.db.url, "json")).unwrap();
        assert_eq!(cli, api, "{kind:?}");
        let csv = bookings_export(&app.db.url, "csv");
        assert!(csv.starts_with('\u{feff}'), "CSV opens in Excel");
        assert_eq!(csv.lines().count(), 4, "{csv}");
        for secret in ["試験", "架空町1-2-3", "0134", "+81"] {
            assert!(
                !csv.contains(secret) && !api.to_string().contains(secret),
                "{secret}"
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn fifty_at_one_slot_make_one_booking_and_numbers_have_no_gaps() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        home_days(&app, &["2026-12-10", "2026-12-11"]).await;
        let op = operator(&app).await;
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (client, csrf, base) = (op.client.clone(), op.csrf.clone(), op.base.clone());
            let body = booking(("2026-12-10", "am", 1), 10, 1);
            tasks.push(tokio::spawn(async move {
                let res = client
                    .post(format!("{base}/api/bookings"))
                    .header("X-CSRF-Token", csrf)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (res.status().as_u16(), res.json::<Value>().await.unwrap())
            }));
        }
        let mut by_status: HashMap<u16, Vec<Value>> = HashMap::new();
        for t in tasks {
            let (s, v) = t.await.unwrap();
            by_status.entry(s).or_default().push(v);
        }
        assert_eq!(
            by_status.get(&201).map(Vec::len),
            Some(1),
            "{kind:?}: {by_status:?}"
        );
        let losers = &by_status[&409];
        assert_eq!(losers.len(), 49, "{kind:?}");
        for l in losers {
            assert_eq!(l["error"], "slot_taken");
            assert!(l["message"].as_str().unwrap().contains("ふさがりました"));
            assert!(
                !l["alternatives"].as_array().unwrap().is_empty(),
                "fresh alternatives"
            );
        }

        // 50 at neighbouring slots of one half-day (positions 1 and 2), half of them 40
        // minutes from anything: no two live bookings of the half-day may break the 30 min.
        let mut tasks = Vec::new();
        for i in 0..50u32 {
            let (client, csrf, base) = (op.client.clone(), op.csrf.clone(), op.base.clone());
            let minutes = if i % 2 == 0 { 40 } else { 10 };
            let body = booking(("2026-12-11", "pm", (i % 2 + 1) as u8), minutes, 1);
            tasks.push(tokio::spawn(async move {
                client
                    .post(format!("{base}/api/bookings"))
                    .header("X-CSRF-Token", csrf)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        let mut created = 0;
        for t in tasks {
            let s = t.await.unwrap();
            assert!(s == 201 || s == 409, "{s}");
            created += usize::from(s == 201);
        }
        let db = app.db.open().await;
        let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT position, manual_travel_minutes FROM bookings WHERE visit_date = '2026-12-11' AND status = 'booked' ORDER BY position",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert_eq!(rows.len(), created);
        if rows.len() == 2 {
            assert!(
                rows.iter().all(|r| r.1.unwrap() <= 30),
                "{kind:?}: a pair breaks the travel rule: {rows:?}"
            );
        }
        assert!(created >= 1);
        // Reception numbers: 1..=n, no gap, no repeat, whatever lost.
        let numbers: Vec<i64> =
            sqlx::query_scalar("SELECT reception_number FROM bookings ORDER BY reception_number")
                .fetch_all(db.pool())
                .await
                .unwrap();
        assert_eq!(numbers, (1..=numbers.len() as i64).collect::<Vec<_>>());
        db.close().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn facility_requests_become_visits_with_a_pre_meeting() {
    use chrono::TimeZone;
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        // 2026-10-01 (Thu) 10:00 JST.
        app.clock
            .set(chrono::Utc.with_ymd_and_hms(2026, 10, 1, 1, 0, 0).unwrap());
        let db = app.db.open().await;
        for (d, k) in [
            ("2026-10-21", "facility"),
            ("2026-11-04", "facility"),
            ("2026-11-05", "home"),
        ] {
            sqlx::query("INSERT INTO visit_days (visit_date, kind, pm_extra_open, updated_at) VALUES ($1, $2, 0, '2026-09-01T00:00:00.000000Z')")
                .bind(d)
                .bind(k)
                .execute(db.pool())
                .await
                .unwrap();
        }
        db.close().await;
        let op = operator(&app).await;
        let manager = app.user_with_role("mgr", "manager").await;
        let request = |n: u32| {
            json!({ "facility_name": "試験ホーム", "facility_type": "特別養護老人ホーム",
                    "address": "小樽市架空町5", "phone": "0134-22-0002", "contact_person": "試験 担当",
                    "wished": "11月上旬", "applicants_estimate": n })
        };
        let res = op.post("/api/facility-requests", &request(12)).await;
        assert_eq!(res.status(), 201, "{kind:?}");
        let big: Value = res.json().await.unwrap();
        assert_eq!(big["status"], "requested");
        assert_eq!(big["needs_pre_meeting"], true);
        let small: Value = op
            .post("/api/facility-requests", &request(4))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(small["steer_to_home"], true);
        // Operators cannot read the manager's list.
        assert_eq!(op.get("/api/facility-requests").await.status(), 403);
        let list: Value = manager
            .get("/api/facility-requests")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(list["requests"].as_array().unwrap().len(), 2);

        let visit = |id: &Value, date: &str, h: &str| {
            (
                format!("/api/facility-requests/{id}/visits"),
                json!({ "slot": { "date": date, "half_day": h, "position": 1 } }),
            )
        };
        // Inside the month's lead time (R-SLOT-5).
        let (p, b) = visit(&big["id"], "2026-10-21", "am");
        assert_eq!(manager.post(&p, &b).await.status(), 409);
        // 5 or fewer: home slots (R-SLOT-2).
        let (p, b) = visit(&small["id"], "2026-11-04", "am");
        assert_eq!(manager.post(&p, &b).await.status(), 422);
        // The pre-meeting on the facility day's afternoon holds it (R-CAL-3).
        let res = manager
            .post(
                &format!("/api/facility-requests/{}/pre-meeting", big["id"]),
                &json!({ "date": "2026-11-04", "half_day": "pm" }),
            )
            .await;
        assert_eq!(res.status(), 200);
        let (p, b) = visit(&big["id"], "2026-11-04", "pm");
        assert_eq!(
            manager.post(&p, &b).await.status(),
            409,
            "held by the pre-meeting"
        );
        let (p, b) = visit(&big["id"], "2026-11-04", "am");
        let res = manager.post(&p, &b).await;
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["kind"], "facility");
        assert_eq!(v["window"], "10:00");
        assert_eq!(v["reception_number"], 1);
        assert_eq!(v["pre_meeting_date"], "2026-11-04");
        // A pre-meeting on a home visit day is refused.
        let res = manager
            .post(
                &format!("/api/facility-requests/{}/pre-meeting", small["id"]),
                &json!({ "date": "2026-11-05", "half_day": "am" }),
            )
            .await;
        assert_eq!(res.status(), 409);
        // Checklist and applicant list.
        let res = manager
            .client
            .patch(app.url(&format!("/api/facility-requests/{}", big["id"])))
            .header("X-CSRF-Token", &manager.csrf)
            .json(&json!({ "checklist": { "procedure": "one_by_one", "desk_and_power": true },
                           "applicant_list": [{ "name": "試験 一郎", "birth_date": "1930-01-01" }] }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let r: Value = res.json().await.unwrap();
        assert_eq!(r["checklist"]["procedure"], "one_by_one");
        assert_eq!(r["status"], "scheduled");
        app.stop().await;
    }
}

/// The console's guidance checklist asks the server which items apply (R-BOOK-4): the same
/// rule the booking write enforces.
#[tokio::test]
async fn the_guidance_that_applies_comes_from_the_server() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let op = operator(&app).await;
        let ask = |kinds: Value| {
            let op = &op;
            async move {
                let res = op
                    .post(
                        "/api/bookings/guidance",
                        &json!({ "application_kinds": kinds }),
                    )
                    .await;
                assert_eq!(res.status(), 200);
                res.json::<Value>().await.unwrap()["guidance"].clone()
            }
        };
        assert_eq!(ask(json!(["new"])).await, json!(["prepare"]), "{kind:?}");
        assert_eq!(
            ask(json!(["new", "renewal"])).await,
            json!([
                "renewal_old_card",
                "renewal_insurance_certificate",
                "prepare"
            ])
        );
        assert_eq!(
            ask(json!(["damage"])).await,
            json!(["loss_suspend", "loss_fee", "loss_express", "prepare"])
        );
        let loss = ask(json!(["loss"])).await;
        assert!(loss.as_array().unwrap().contains(&json!("loss_police")));
        app.stop().await;
    }
}
