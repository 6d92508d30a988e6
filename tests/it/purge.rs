//! Provable deletion (issue 15 item 5, R-PII-5) on both backends: bookings made over HTTP with
//! made-up names, addresses and phones, linked to calls, shared (SQL) and done (API), then
//! purged; the raw database files (SQLite: .db, -wal, -shm; PostgreSQL: every table, index
//! and TOAST file after the purge's VACUUM FULL and a CHECKPOINT) no longer hold any of it,
//! while a booking not shared or not done keeps its data and the reception list and the
//! weekly counts stay the same. Then `madoguchi purge --contract-end --yes` deletes the rest.

use serde_json::{json, Value};
use sqlx::Row;

use crate::common::{backends, cli, Kind, TestApp};
use crate::visits::{book, evening_of, home_days, slip, Household, JIRO, TARO};

const SABURO: Household = Household {
    name: "架空 共有三郎",
    kana: "かくう きょうゆうさぶろう",
    caller: "架空 共有和子",
    address: "小樽市稲穂1丁目97-3 共有荘303",
    phone: "0134-99-0003",
    birth: "1933-04-05",
    note: "共有の体調メモ",
};

/// Every text of a household that must go, numbers in all their forms.
fn needles(h: &Household, e164: &str) -> Vec<String> {
    let national: String = h.phone.chars().filter(|c| *c != '-').collect();
    let address_tail = h.address.rsplit(' ').next().unwrap().to_string();
    vec![
        h.name.into(),
        h.kana.into(),
        h.caller.into(),
        h.address.into(),
        address_tail,
        h.phone.into(),
        national,
        e164.into(),
        h.birth.into(),
        h.note.into(),
    ]
}

/// The raw bytes the database keeps on disk.
async fn raw_files(kind: Kind, app: &TestApp) -> Vec<(String, Vec<u8>)> {
    match kind {
        Kind::Sqlite => {
            let path = app.db.url.trim_start_matches("sqlite://").to_string();
            let mut out = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                let p = format!("{path}{suffix}");
                if let Ok(bytes) = std::fs::read(&p) {
                    out.push((p, bytes));
                }
            }
            assert!(!out.is_empty() && !out[0].1.is_empty(), "no database file");
            out
        }
        Kind::Postgres => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&app.db.url)
                .await
                .unwrap();
            sqlx::query("CHECKPOINT").execute(&pool).await.unwrap();
            // Our tables, their indexes, their TOAST tables and the TOAST tables' indexes.
            let rows = sqlx::query(
                "WITH t AS (SELECT c.oid, c.reltoastrelid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                            WHERE n.nspname = 'public' AND c.relkind = 'r'), \
                      rels AS (SELECT oid FROM t \
                               UNION SELECT reltoastrelid FROM t WHERE reltoastrelid <> 0 \
                               UNION SELECT i.indexrelid FROM pg_index i JOIN t ON i.indrelid = t.oid \
                               UNION SELECT i.indexrelid FROM pg_index i JOIN t ON i.indrelid = t.reltoastrelid) \
                 SELECT oid::regclass::text || ' ' || pg_relation_filepath(oid) AS path, pg_read_binary_file(pg_relation_filepath(oid)) AS bytes \
                 FROM rels WHERE pg_relation_filepath(oid) IS NOT NULL",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            pool.close().await;
            let out: Vec<(String, Vec<u8>)> = rows
                .iter()
                .map(|r| (r.get::<String, _>("path"), r.get::<Vec<u8>, _>("bytes")))
                .collect();
            assert!(out.len() > 20, "tables, indexes, TOAST: {}", out.len());
            out
        }
    }
}

fn found(files: &[(String, Vec<u8>)], needle: &str) -> Vec<String> {
    let n = needle.as_bytes();
    files
        .iter()
        .filter(|(_, bytes)| bytes.windows(n.len()).any(|w| w == n))
        .map(|(p, _)| p.clone())
        .collect()
}

/// Calls per end cause and outcome, as the weekly counts are made of them.
async fn call_counts(app: &TestApp) -> Vec<(Option<String>, Option<String>, i64)> {
    let db = app.db.open().await;
    let rows = sqlx::query(
        "SELECT end_cause, outcome, COUNT(*) AS n FROM calls GROUP BY end_cause, outcome",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let mut out: Vec<(Option<String>, Option<String>, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("end_cause").unwrap(),
                r.try_get("outcome").unwrap(),
                r.try_get("n").unwrap(),
            )
        })
        .collect();
    out.sort();
    db.close().await;
    out
}

fn without_purge_date(list: &Value) -> Value {
    let mut list = list.clone();
    for r in list["rows"].as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("purged_on");
    }
    list
}

#[tokio::test]
async fn purged_personal_data_is_gone_from_the_files() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        home_days(&app, &["2026-12-09", "2026-12-10"]).await;
        let op = app.user_with_role("op1", "operator").await;

        // Calls: the two callers answered by op1, and others the counts are made of.
        let db = app.db.open().await;
        for (key, e164, answered, cause) in [
            ("k-taro", Some("+81134990001"), true, "completed"),
            ("k-jiro", Some("+81134990002"), true, "completed"),
            ("k-gone", Some("+81134990001"), false, "abandoned"),
            ("k-other", Some("+81134555555"), false, "busy"),
            ("k-anon", None, true, "completed"),
        ] {
            sqlx::query(
                "INSERT INTO calls (call_key, sip_call_id, caller_kind, caller_e164, caller_raw, arrived_at, answered_at, answered_by_username, ended_at, end_cause) \
                 VALUES ($1, $2, $3, $4, $5, '2026-11-25T00:59:00.000Z', $6, $7, '2026-11-25T01:00:00.000Z', $8)",
            )
            .bind(key)
            .bind(format!("{}@carrier.invalid", e164.unwrap_or("anonymous")))
            .bind(if e164.is_some() { "number" } else { "withheld" })
            .bind(e164)
            .bind(e164.map(|n| n.replace("+81", "0")))
            .bind(answered.then_some("2026-11-25T00:59:10.000Z"))
            .bind(answered.then_some("op1"))
            .bind(cause)
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
        let (k_taro, k_jiro) = (call_id("k-taro").await, call_id("k-jiro").await);
        // The missed call's callback (called back since) and a dead letter of Taro's call.
        sqlx::query(
            "INSERT INTO callbacks (caller_e164, first_missed_at, last_missed_at, missed_count, last_cause, last_call_key, status, note) \
             VALUES ('+81134990001', '2026-11-24T00:00:00.000Z', '2026-11-24T00:00:00.000Z', 1, 'abandoned', 'k-gone', 'called_back', '架空の折り返しメモ')",
        )
        .execute(db.pool())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO call_log_dead_letters (at, call_key, event, error) \
             VALUES ('2026-11-25T01:00:00.000Z', 'k-taro', '{\"caller\":\"+81134990001\",\"raw\":\"0134990001\"}', 'made up')",
        )
        .execute(db.pool())
        .await
        .unwrap();

        // The manager's follow-up on Taro's call (an opinion's reply may quote the caller).
        sqlx::query(
            "INSERT INTO call_follow_ups (call_id, text, updated_at, updated_by_username) \
             VALUES ($1, '架空の対応記録メモ', '2026-11-25T02:00:00.000Z', 'kanri')",
        )
        .bind(k_taro)
        .execute(db.pool())
        .await
        .unwrap();

        let (taro, taro_no) = book(&op, &slip(("2026-12-09", "am", 1), &TARO, Some(k_taro))).await;
        let (jiro, _) = book(&op, &slip(("2026-12-10", "pm", 1), &JIRO, Some(k_jiro))).await;
        let (saburo, _) = book(&op, &slip(("2026-12-10", "am", 1), &SABURO, None)).await;

        // The visits end; the city marks Taro's and Jiro's done. Taro's and Saburo's slips
        // were shared (the share sets shared_at; here SQL does).
        evening_of(&app, 2026, 12, 10);
        let city = app.user_with_role("city1", "city").await;
        for (id, date, note) in [
            (taro, "2026-12-09", "架空の訪問メモ"),
            (jiro, "2026-12-10", "残留の訪問メモ"),
        ] {
            let res = city
                .post(
                    &format!("/api/visits/{id}/done"),
                    &json!({ "date": date, "applications_taken": 1, "note": note }),
                )
                .await;
            assert_eq!(res.status(), 200, "{kind:?}");
        }
        sqlx::query(
            "UPDATE bookings SET shared_at = '2026-12-01T01:00:00.000Z' WHERE id = $1 OR id = $2",
        )
        .bind(taro)
        .bind(saburo)
        .execute(db.pool())
        .await
        .unwrap();

        let manager = app.user_with_role("mgr1", "manager").await;
        let counts_before = call_counts(&app).await;
        let list_before: Value = manager
            .get("/api/reception-list")
            .await
            .json()
            .await
            .unwrap();
        // The handling record by number, while the number is still there.
        let by_number: Value = manager
            .get("/api/audit?subject=%2B81134990002")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            by_number["subject"]["booking_ids"],
            json!([jiro]),
            "{by_number}"
        );
        assert_eq!(by_number["subject"]["call_ids"], json!([k_jiro]));
        let actions: Vec<&str> = by_number["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["action"].as_str().unwrap())
            .collect();
        assert!(
            actions.contains(&"booking.create") && actions.contains(&"call.outcome"),
            "{actions:?}"
        );

        // Before: every text is in the files (the scan does find what is there).
        let files = raw_files(kind, &app).await;
        for n in needles(&TARO, "+81134990001") {
            assert!(
                !found(&files, &n).is_empty(),
                "{kind:?}: {n} should be on disk before"
            );
        }

        // The preview and a dry run list Taro's booking only and change nothing.
        let preview: Value = manager
            .get("/api/purge/preview")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(preview["dry_run"], true);
        assert_eq!(
            preview["bookings"].as_array().unwrap().len(),
            1,
            "{preview}"
        );
        assert_eq!(preview["bookings"][0]["booking_id"], taro);
        assert_eq!(preview["bookings"][0]["reception_number"], taro_no);
        assert_eq!(
            preview["calls"], 2,
            "Taro's call and his earlier missed one"
        );
        assert_eq!(preview["callbacks"], 1);
        assert_eq!(preview["dead_letters"], 1);
        assert!(!preview.to_string().contains(TARO.name));
        let dry: Value = manager
            .post("/api/purge", &json!({ "dry_run": true }))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(dry["bookings"], preview["bookings"]);
        let still: Option<String> =
            sqlx::query_scalar("SELECT address FROM bookings WHERE id = $1")
                .bind(taro)
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(still.as_deref(), Some(TARO.address));

        // The purge.
        let started = std::time::Instant::now();
        let res = manager.post("/api/purge", &json!({})).await;
        eprintln!(
            "purge of 1 booking with its calls, scrub included ({kind:?}): {} ms",
            started.elapsed().as_millis()
        );
        assert_eq!(res.status(), 200, "{kind:?}");
        let done: Value = res.json().await.unwrap();
        assert_eq!(done["dry_run"], false);
        assert_eq!(done["scrub_complete"], true);
        assert_eq!(done["bookings"].as_array().unwrap().len(), 1);

        // Gone from every file, in every form.
        let files = raw_files(kind, &app).await;
        for n in needles(&TARO, "+81134990001").into_iter().chain([
            "架空の訪問メモ".to_string(),
            "架空の折り返しメモ".to_string(),
            "架空の対応記録メモ".to_string(),
        ]) {
            let hits = found(&files, &n);
            assert!(hits.is_empty(), "{kind:?}: '{n}' still in {hits:?}");
        }
        // Kept: the booking not shared (Jiro) and the one not done (Saburo).
        for h in [&JIRO, &SABURO] {
            for n in [h.name, h.address, h.phone] {
                assert!(!found(&files, n).is_empty(), "{kind:?}: {n} must stay");
            }
        }
        assert!(
            !found(&files, "+81134990002").is_empty(),
            "Jiro's call keeps its number"
        );
        // The other caller's calls keep their number (not linked to a purged booking).
        assert!(!found(&files, "+81134555555").is_empty());

        // The reception list shows the deletion date and nothing else changed; the counts
        // the weekly report is made of are the same.
        let list_after: Value = manager
            .get("/api/reception-list")
            .await
            .json()
            .await
            .unwrap();
        let rows = list_after["rows"].as_array().unwrap();
        let row = |id_no: i64| {
            rows.iter()
                .find(|r| r["reception_number"] == id_no)
                .unwrap()
        };
        assert_eq!(row(taro_no)["purged_on"], "2026-12-10", "{list_after}");
        assert_eq!(rows.iter().filter(|r| !r["purged_on"].is_null()).count(), 1);
        assert_eq!(
            without_purge_date(&list_after),
            without_purge_date(&list_before)
        );
        assert_eq!(call_counts(&app).await, counts_before, "{kind:?}");
        // The facts stay: town, applicants, kind, dates, the call's outcome and cause.
        let kept = sqlx::query(
            "SELECT town, applicant_count, kind, visit_date, applications_taken, caller_relation FROM bookings WHERE id = $1",
        )
        .bind(taro)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(kept.get::<String, _>("town"), "稲穂二丁目");
        assert_eq!(kept.get::<i64, _>("applications_taken"), 1);
        let call = sqlx::query("SELECT caller_e164, caller_raw, outcome, end_cause, caller_kind FROM calls WHERE id = $1")
            .bind(k_taro)
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(call.get::<Option<String>, _>("caller_e164"), None);
        assert_eq!(call.get::<Option<String>, _>("caller_raw"), None);
        assert_eq!(call.get::<String, _>("outcome"), "booking");
        assert_eq!(call.get::<String, _>("end_cause"), "completed");
        // The city's week shows the visit without the personal data.
        let week: Value = city
            .get("/api/visits?week=2026-W50")
            .await
            .json()
            .await
            .unwrap();
        let v = week["visits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["booking_id"] == taro)
            .unwrap()
            .clone();
        assert_eq!(v["names"], json!([]));
        assert_eq!(v["address"], Value::Null);
        assert_eq!(v["purged_on"], "2026-12-10");
        // Marking it again is refused.
        let res = city
            .post(
                &format!("/api/visits/{taro}/done"),
                &json!({ "date": "2026-12-09", "applications_taken": 2, "correction": true }),
            )
            .await;
        assert_eq!(res.status(), 409);

        // The handling record of the booking lists the deletion; the audit log holds none of
        // the purged text (checked above in the raw files too).
        let record: Value = manager
            .get(&format!("/api/audit?subject={taro_no}"))
            .await
            .json()
            .await
            .unwrap();
        let rows = record["rows"].as_array().unwrap();
        let purge_row = rows
            .iter()
            .find(|r| r["action"] == "booking.purge")
            .unwrap_or_else(|| panic!("{record}"));
        assert_eq!(purge_row["actor_username"], "mgr1");
        assert_eq!(purge_row["detail"]["call_ids"], json!([k_taro]));
        for a in ["booking.create", "call.outcome", "visit.done", "visit.read"] {
            assert!(
                rows.iter().any(|r| r["action"] == a),
                "{a} missing: {record}"
            );
        }
        // The month's handling report counts the deletion.
        let report: Value = manager
            .get("/api/reports/handling?month=2026-12")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(report["deletions"]["bookings"], 1, "{report}");
        assert_eq!(
            report["deletions"]["by_day"][0]["date_ja"],
            "令和8年12月10日（木）"
        );

        // A second purge finds nothing to do.
        let again: Value = manager
            .post("/api/purge", &json!({}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(again["bookings"], json!([]));
        db.close().await;

        // The contract's end: a dry run lists the rest, then everything goes.
        let run = |args: &[&str]| cli(&app.db.url, args);
        let out = run(&["purge", "--contract-end", "--dry-run"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            text.contains("削除予定") && text.contains("予約 2 件"),
            "{text}"
        );
        // Without --yes and no answer: refused, nothing deleted.
        let out = run(&["purge", "--contract-end"]);
        assert!(!out.status.success());
        let files = raw_files(kind, &app).await;
        assert!(!found(&files, JIRO.name).is_empty());
        let out = run(&["purge", "--contract-end", "--yes"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let files = raw_files(kind, &app).await;
        for (h, e164) in [(&JIRO, "+81134990002"), (&SABURO, "+81134990003")] {
            for n in needles(h, e164) {
                let hits = found(&files, &n);
                assert!(
                    hits.is_empty(),
                    "{kind:?}: '{n}' still in {hits:?} after contract end"
                );
            }
        }
        assert!(found(&files, "+81134555555").is_empty());
        let list_end: Value = manager
            .get("/api/reception-list")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            without_purge_date(&list_end),
            without_purge_date(&list_before)
        );
        assert_eq!(call_counts(&app).await, counts_before);

        app.stop().await;
    }
}

/// A facility visit: once shared and done, the facility's contact, address, phone and
/// applicant list go (its name and type stay for the reports).
#[tokio::test]
async fn a_facility_visit_loses_its_lists_once_shared_and_done() {
    use chrono::TimeZone;
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        // 2026-10-01 (Thu) 10:00 JST: a facility of 8 needs 30 days' lead.
        app.clock
            .set(chrono::Utc.with_ymd_and_hms(2026, 10, 1, 1, 0, 0).unwrap());
        let db = app.db.open().await;
        sqlx::query("INSERT INTO visit_days (visit_date, kind, pm_extra_open, updated_at) VALUES ('2026-11-04', 'facility', 0, '2026-09-01T00:00:00.000Z')")
            .execute(db.pool())
            .await
            .unwrap();
        let op = app.user_with_role("op1", "operator").await;
        let manager = app.user_with_role("mgr1", "manager").await;
        let res = op
            .post(
                "/api/facility-requests",
                &json!({ "facility_name": "架空ホーム稲穂", "facility_type": "特別養護老人ホーム",
                         "address": "小樽市稲穂4丁目96-4 施設架空棟", "phone": "0134-99-0004",
                         "contact_person": "架空 施設担当", "wished": "11月上旬", "applicants_estimate": 8 }),
            )
            .await;
        assert_eq!(res.status(), 201, "{kind:?}");
        let req: Value = res.json().await.unwrap();
        let res = manager
            .post(
                &format!("/api/facility-requests/{}/visits", req["id"]),
                &json!({ "slot": { "date": "2026-11-04", "half_day": "am", "position": 1 } }),
            )
            .await;
        assert_eq!(res.status(), 201);
        let visit: Value = res.json().await.unwrap();
        let res = manager
            .client
            .patch(app.url(&format!("/api/facility-requests/{}", req["id"])))
            .header("X-CSRF-Token", &manager.csrf)
            .json(&json!({ "applicant_list": [{ "name": "架空 施設一郎", "birth_date": "1929-06-07" }] }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);

        evening_of(&app, 2026, 11, 4);
        let city = app.user_with_role("city1", "city").await;
        let week: Value = city
            .get("/api/visits?week=2026-W45")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            week["visits"][0]["facility_name"], "架空ホーム稲穂",
            "{week}"
        );
        assert_eq!(week["visits"][0]["phone"], "0134-99-0004");
        let res = city
            .post(
                &format!("/api/visits/{}/done", visit["id"]),
                &json!({ "date": "2026-11-04", "applications_taken": 7 }),
            )
            .await;
        assert_eq!(res.status(), 200);
        sqlx::query("UPDATE bookings SET shared_at = '2026-10-27T01:00:00.000Z'")
            .execute(db.pool())
            .await
            .unwrap();
        let manager = app.login("mgr1", "password-of-mgr1").await;
        let done: Value = manager
            .post("/api/purge", &json!({}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(done["facility_requests"], 1, "{done}");

        let files = raw_files(kind, &app).await;
        for n in [
            "施設架空棟",
            "0134-99-0004",
            "架空 施設担当",
            "架空 施設一郎",
            "1929-06-07",
        ] {
            let hits = found(&files, n);
            assert!(hits.is_empty(), "{kind:?}: '{n}' still in {hits:?}");
        }
        assert!(
            !found(&files, "架空ホーム稲穂").is_empty(),
            "the facility's name stays"
        );
        let week: Value = city
            .get("/api/visits?week=2026-W45")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(week["visits"][0]["phone"], Value::Null);
        assert_eq!(week["visits"][0]["applications_taken"], 7);
        db.close().await;
        app.stop().await;
    }
}
