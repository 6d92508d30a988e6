//! Domain codes: every code enum round-trips through both databases and the API, and the
//! label table the UI is served has a Japanese label for every variant (issue 12 item 1).
//! A domain operation whose 取扱記録 row cannot be written leaves no change behind (item 2,
//! R-PII-4).

use crate::common;

use chrono::Duration;
use madoguchi::calls::callerid::{CallerId, WithheldReason};
use madoguchi::calls::{
    CallEvent, CallInfo, CallPhase, CallbackResult, CallbackStatus, CallerKind, EndCause, EndCode,
    LineState, Outcome, Party, PresenceState, TalkPath, Topic,
};
use madoguchi::codes::Code;
use madoguchi::hours::ClosedReason;
use madoguchi::privacy::{AuditAction, AuditOutcome, AuditTarget, LoginRefusal, Role};
use madoguchi::sip::registrar::RegisterOutcome;
use madoguchi::store::{Backend, Db};
use serde_json::{json, Value};
use sqlx::Row;

use common::{a_working_morning, backends, Kind, TestApp, TestDb};

/// Writes every variant of `C` through sqlx into a text column and reads it back as `C`.
async fn db_round_trip<C>(db: &Db)
where
    C: Code
        + for<'q> sqlx::Encode<'q, sqlx::Any>
        + for<'r> sqlx::Decode<'r, sqlx::Any>
        + sqlx::Type<sqlx::Any>,
{
    for &code in C::ALL {
        sqlx::query("INSERT INTO code_probe (kind, code) VALUES ($1, $2)")
            .bind(C::KIND)
            .bind(code)
            .execute(db.pool())
            .await
            .unwrap();
    }
    let rows = sqlx::query("SELECT code FROM code_probe WHERE kind = $1 ORDER BY id")
        .bind(C::KIND)
        .fetch_all(db.pool())
        .await
        .unwrap();
    let back: Vec<C> = rows.iter().map(|r| r.try_get("code").unwrap()).collect();
    assert_eq!(back, C::ALL, "{} through {:?}", C::KIND, db.backend());
    // The stored text is the wire name, so SQL written against the name finds it.
    let raw: Vec<String> = rows.iter().map(|r| r.try_get("code").unwrap()).collect();
    let names: Vec<&str> = C::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(raw, names);
    // A text that is no code is refused on the way out, never turned into a wrong variant.
    sqlx::query("INSERT INTO code_probe (kind, code) VALUES ('bogus', 'no_such_code')")
        .execute(db.pool())
        .await
        .unwrap();
    let bogus = sqlx::query("SELECT code FROM code_probe WHERE kind = 'bogus'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(bogus.try_get::<C, _>("code").is_err(), "{}", C::KIND);
    sqlx::query("DELETE FROM code_probe WHERE kind = 'bogus'")
        .execute(db.pool())
        .await
        .unwrap();
}

/// Serialises every variant to JSON and back, and checks the label table's entry for it:
/// one per variant, in display order (`raw` is the body as sent; a parsed object is sorted).
fn json_round_trip<C: Code + serde::Serialize + serde::de::DeserializeOwned>(
    raw: &str,
    labels: &Value,
) {
    let table = labels[C::KIND]
        .as_object()
        .unwrap_or_else(|| panic!("/api/labels has no '{}'", C::KIND));
    assert_eq!(
        table.len(),
        C::ALL.len(),
        "{}: one label per variant",
        C::KIND
    );
    let mut at = raw.find(&format!("\"{}\":{{", C::KIND)).unwrap();
    let end = at + raw[at..].find('}').unwrap();
    for &code in C::ALL {
        let pair = format!("\"{}\":\"{}\"", code.as_str(), code.label_ja());
        let found = raw[at..end].find(&pair).map(|i| at + i);
        at = found.unwrap_or_else(|| panic!("{}: {pair} missing or out of order", C::KIND));
    }
    for &code in C::ALL {
        let v = serde_json::to_value(code).unwrap();
        assert_eq!(v, code.as_str());
        assert_eq!(serde_json::from_value::<C>(v).unwrap(), code);
        let label = table[code.as_str()].as_str().unwrap();
        assert_eq!(label, code.label_ja());
        assert!(
            !label.is_empty() && !label.is_ascii(),
            "{}.{} needs a Japanese label, got {label:?}",
            C::KIND,
            code.as_str()
        );
    }
    assert!(serde_json::from_value::<C>(json!("no_such_code")).is_err());
}

#[tokio::test]
async fn every_code_round_trips_through_each_database() {
    for kind in backends() {
        let tdb = TestDb::new(kind).await;
        let db = tdb.open().await;
        let id = match db.backend() {
            Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Backend::Postgres => "BIGSERIAL PRIMARY KEY",
        };
        sqlx::query(&format!(
            "CREATE TABLE code_probe (id {id}, kind TEXT NOT NULL, code TEXT NOT NULL)"
        ))
        .execute(db.pool())
        .await
        .unwrap();
        db_round_trip::<EndCode>(&db).await;
        db_round_trip::<ClosedReason>(&db).await;
        db_round_trip::<Outcome>(&db).await;
        db_round_trip::<Topic>(&db).await;
        db_round_trip::<CallbackResult>(&db).await;
        db_round_trip::<CallbackStatus>(&db).await;
        db_round_trip::<CallerKind>(&db).await;
        db_round_trip::<WithheldReason>(&db).await;
        db_round_trip::<Party>(&db).await;
        db_round_trip::<CallPhase>(&db).await;
        db_round_trip::<LineState>(&db).await;
        db_round_trip::<PresenceState>(&db).await;
        db_round_trip::<TalkPath>(&db).await;
        db_round_trip::<Role>(&db).await;
        db_round_trip::<AuditAction>(&db).await;
        db_round_trip::<AuditOutcome>(&db).await;
        db_round_trip::<AuditTarget>(&db).await;
        db_round_trip::<LoginRefusal>(&db).await;
        db_round_trip::<RegisterOutcome>(&db).await;
        db_round_trip::<madoguchi::sharing::ShareKind>(&db).await;
        db_round_trip::<madoguchi::sharing::ShareStatus>(&db).await;
        db_round_trip::<madoguchi::sharing::DueState>(&db).await;
        db_round_trip::<madoguchi::sharing::SentVia>(&db).await;
        db.close().await;
        tdb.cleanup().await;
    }
}

#[tokio::test]
async fn the_label_table_covers_every_variant_of_every_kind() {
    let app = TestApp::spawn(Kind::Sqlite).await;
    let admin = app.admin().await;
    let res = admin.get("/api/labels").await;
    assert_eq!(res.status(), 200);
    let raw = res.text().await.unwrap();
    let labels: Value = serde_json::from_str(&raw).unwrap();
    json_round_trip::<EndCode>(&raw, &labels);
    json_round_trip::<ClosedReason>(&raw, &labels);
    json_round_trip::<Outcome>(&raw, &labels);
    json_round_trip::<Topic>(&raw, &labels);
    json_round_trip::<CallbackResult>(&raw, &labels);
    json_round_trip::<CallbackStatus>(&raw, &labels);
    json_round_trip::<CallerKind>(&raw, &labels);
    json_round_trip::<WithheldReason>(&raw, &labels);
    json_round_trip::<Party>(&raw, &labels);
    json_round_trip::<CallPhase>(&raw, &labels);
    json_round_trip::<LineState>(&raw, &labels);
    json_round_trip::<PresenceState>(&raw, &labels);
    json_round_trip::<TalkPath>(&raw, &labels);
    json_round_trip::<Role>(&raw, &labels);
    json_round_trip::<AuditAction>(&raw, &labels);
    json_round_trip::<AuditOutcome>(&raw, &labels);
    json_round_trip::<AuditTarget>(&raw, &labels);
    json_round_trip::<LoginRefusal>(&raw, &labels);
    json_round_trip::<RegisterOutcome>(&raw, &labels);
    {
        use madoguchi::booking::*;
        json_round_trip::<VisitDayKind>(&raw, &labels);
        json_round_trip::<HalfDay>(&raw, &labels);
        json_round_trip::<BookingKind>(&raw, &labels);
        json_round_trip::<BookingStatus>(&raw, &labels);
        json_round_trip::<BookingChange>(&raw, &labels);
        json_round_trip::<ApplicationKind>(&raw, &labels);
        json_round_trip::<CallerRelation>(&raw, &labels);
        json_round_trip::<IdDocument>(&raw, &labels);
        json_round_trip::<Guidance>(&raw, &labels);
        json_round_trip::<FormKind>(&raw, &labels);
        json_round_trip::<FacilityStatus>(&raw, &labels);
        json_round_trip::<AddressMatch>(&raw, &labels);
    }
    {
        use madoguchi::sharing::*;
        json_round_trip::<ShareKind>(&raw, &labels);
        json_round_trip::<ShareStatus>(&raw, &labels);
        json_round_trip::<DueState>(&raw, &labels);
        json_round_trip::<SentVia>(&raw, &labels);
    }
    json_round_trip::<madoguchi::web::ErrorCode>(&raw, &labels);
    assert_eq!(
        labels.as_object().unwrap().len(),
        36,
        "a new kind needs its round-trip here too"
    );
    // Nobody outside the staff gets it.
    let anon = app
        .client()
        .get(app.url("/api/labels"))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    app.stop().await;
}

fn call(key: &str, caller: Option<CallerId>) -> CallInfo {
    CallInfo {
        key: key.into(),
        sip_call_id: format!("{key}@trunk"),
        caller,
        line_number: Some("0120000000".into()),
        source: "127.0.0.1:5070".into(),
        arrived_at: a_working_morning(),
    }
}

fn number(n: u32) -> Option<CallerId> {
    Some(CallerId::Number {
        e164: format!("+8113422{n:04}"),
        display: format!("0134-22-{n:04}"),
    })
}

/// An answered, completed call from a fresh number.
async fn answered_call(app: &TestApp, key: &str, n: u32) {
    let t0 = a_working_morning();
    let info = call(key, number(n));
    for e in [
        CallEvent::Answered {
            call: info.clone(),
            at: t0 + Duration::seconds(3),
            operator: Some("op1".into()),
            extension: "op1".into(),
        },
        CallEvent::Ended {
            call: info,
            at: t0 + Duration::seconds(60),
            cause: EndCause::Completed,
            hangup_by: Some(Party::Operator),
            rang_at: Some(t0),
            answered_at: Some(t0 + Duration::seconds(3)),
        },
    ] {
        app.server.state.calls.apply(&e).await.unwrap();
    }
}

async fn patch(s: &common::Session, path: &str, body: &Value) -> reqwest::Response {
    s.client
        .patch(format!("{}{}", s.base, path))
        .header("X-CSRF-Token", &s.csrf)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn codes_round_trip_through_the_api_on_each_database() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let op = app.user_with_role("op1", "operator").await;
        let mgr = app.user_with_role("mgr1", "manager").await;

        // Every end cause the proxy can report is stored and served as itself, and the
        // call-log filter finds it by its code.
        let t0 = a_working_morning();
        let causes = [
            EndCause::Completed,
            EndCause::Abandoned,
            EndCause::Busy,
            EndCause::Closed(ClosedReason::YearEnd),
            EndCause::Unstaffed,
            EndCause::NoAnswer,
            EndCause::Refused(603),
            EndCause::Rejected,
            EndCause::Interrupted,
            EndCause::Expired,
        ];
        assert_eq!(causes.len(), EndCode::ALL.len());
        for (i, cause) in causes.iter().enumerate() {
            let caller = match i % 3 {
                0 => number(100 + i as u32),
                1 => Some(CallerId::Withheld {
                    reason: WithheldReason::ALL[i % WithheldReason::ALL.len()],
                }),
                _ => Some(CallerId::Unparsed {
                    raw_digits: "12345".into(),
                }),
            };
            let ended = CallEvent::Ended {
                call: call(&format!("c{i}"), caller),
                at: t0 + Duration::seconds(30),
                cause: cause.clone(),
                hangup_by: (i == 0).then_some(Party::Caller),
                rang_at: None,
                answered_at: None,
            };
            app.server.state.calls.apply(&ended).await.unwrap();
        }
        for (i, code) in EndCode::ALL.iter().enumerate() {
            let res = mgr
                .get(&format!("/api/calls?end_cause={}", code.as_str()))
                .await;
            assert_eq!(res.status(), 200);
            let body: Value = res.json().await.unwrap();
            let calls = body["calls"].as_array().unwrap();
            assert_eq!(calls.len(), 1, "{kind:?} {code}");
            assert_eq!(calls[0]["call_key"], format!("c{i}"));
            assert_eq!(calls[0]["end_cause"], code.as_str());
            let expect_kind = [
                CallerKind::Number,
                CallerKind::Withheld,
                CallerKind::Unparsed,
            ];
            assert_eq!(calls[0]["caller"]["kind"], expect_kind[i % 3].as_str());
        }
        let closed: Value = mgr.get("/api/calls/c3").await.json().await.unwrap();
        assert_eq!(closed["end_detail"], "year_end");
        let first: Value = mgr.get("/api/calls/c0").await.json().await.unwrap();
        assert_eq!(first["hangup_by"], "caller");
        let bad = mgr.get("/api/calls?end_cause=hung_up").await;
        assert_eq!(bad.status(), 400, "an unknown code is refused, not ignored");

        // Every outcome and topic an operator saves comes back as saved.
        // (予約受付 is written by a booking, never by hand: issue 18 item 2.)
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            let key = format!("o{i}");
            if *outcome == Outcome::Booking {
                answered_call(&app, &key, 200 + i as u32).await;
                let res = patch(
                    &op,
                    &format!("/api/calls/{key}"),
                    &json!({ "outcome": outcome, "note": "メモ" }),
                )
                .await;
                assert_eq!(
                    res.status(),
                    422,
                    "{kind:?}: a booking outcome needs a booking"
                );
                continue;
            }
            answered_call(&app, &key, 200 + i as u32).await;
            let topics: Vec<&str> = if *outcome == Outcome::Inquiry {
                Topic::ALL.iter().map(|t| t.as_str()).collect()
            } else {
                vec![]
            };
            let res = patch(
                &op,
                &format!("/api/calls/{key}"),
                &json!({ "outcome": outcome, "note": "メモ", "topics": topics }),
            )
            .await;
            assert_eq!(res.status(), 200, "{kind:?} {outcome}");
            let row: Value = mgr
                .get(&format!("/api/calls/{key}"))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(row["outcome"], outcome.as_str());
            assert_eq!(row["outcome_topics"], json!(topics));
            let listed: Value = mgr
                .get(&format!("/api/calls?outcome={}", outcome.as_str()))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(listed["calls"].as_array().unwrap().len(), 1);
        }
        let bad = patch(&op, "/api/calls/o0", &json!({ "outcome": "bookings" })).await;
        assert_eq!(bad.status(), 422);
        let bad = patch(
            &op,
            "/api/calls/o0",
            &json!({ "outcome": "inquiry", "topics": ["weather"] }),
        )
        .await;
        assert_eq!(bad.status(), 422);

        // Callback results: a missed call per result, closed with it.
        for i in 0..CallbackResult::ALL.len() {
            let missed = CallEvent::Ended {
                call: call(&format!("m{i}"), number(300 + i as u32)),
                at: t0 + Duration::seconds(20),
                cause: EndCause::Abandoned,
                hangup_by: None,
                rang_at: Some(t0),
                answered_at: None,
            };
            app.server.state.calls.apply(&missed).await.unwrap();
        }
        let open: Value = op.get("/api/callbacks").await.json().await.unwrap();
        let open: Vec<Value> = open["callbacks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                c["caller"]["e164"]
                    .as_str()
                    .unwrap()
                    .starts_with("+811342203")
            })
            .cloned()
            .collect();
        assert_eq!(open.len(), CallbackResult::ALL.len());
        assert!(open.iter().all(|c| c["last_cause"] == "abandoned"));
        for (cb, result) in open.iter().zip(CallbackResult::ALL) {
            let res = op
                .post(
                    &format!("/api/callbacks/{}/close", cb["id"]),
                    &json!({ "result": result }),
                )
                .await;
            assert_eq!(res.status(), 200, "{kind:?} {result}");
        }
        let bad = op
            .post(
                &format!("/api/callbacks/{}/close", open.last().unwrap()["id"]),
                &json!({ "result": "answered_later" }),
            )
            .await;
        assert_eq!(bad.status(), 422, "only an operator's results may be sent");

        // Roles: an account of each role is created and listed with it.
        let admin = app.admin().await;
        for role in Role::ALL {
            let name = format!("r-{}", role.as_str());
            let res = admin
                .post(
                    "/api/users",
                    &json!({ "username": name, "role": role, "password": "a-long-password-1", "must_change_password": false }),
                )
                .await;
            assert_eq!(res.status(), 201);
        }
        let users: Value = admin.get("/api/users").await.json().await.unwrap();
        for role in Role::ALL {
            let name = format!("r-{}", role.as_str());
            let u = users
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["username"] == name.as_str())
                .unwrap();
            assert_eq!(u["role"], role.as_str());
        }

        // Audit actions, outcomes and targets written above are read back typed, and the
        // audit filter takes each action code.
        for action in [
            AuditAction::Login,
            AuditAction::CallRead,
            AuditAction::CallOutcome,
            AuditAction::CallbackRead,
            AuditAction::CallbackClose,
            AuditAction::UserCreate,
        ] {
            let rows: Value = admin
                .get(&format!("/api/audit?action={}", action.as_str()))
                .await
                .json()
                .await
                .unwrap();
            let rows = rows["rows"].as_array().unwrap();
            assert!(!rows.is_empty(), "{kind:?} {action}");
            assert!(rows.iter().all(|r| r["action"] == action.as_str()));
        }
        let closes: Value = admin
            .get("/api/audit?action=callback.close&target_kind=callback")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            closes["rows"].as_array().unwrap().len(),
            CallbackResult::ALL.len()
        );
        assert_eq!(closes["rows"][0]["outcome"], AuditOutcome::Ok.as_str());
        app.stop().await;
    }
}

/// Makes every insert into the audit log fail, as a full disk or a broken trigger would.
async fn break_the_audit_log(db: &Db) {
    match db.backend() {
        Backend::Sqlite => {
            sqlx::query(
                "CREATE TRIGGER audit_down BEFORE INSERT ON audit_log \
                 BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END",
            )
            .execute(db.pool())
            .await
            .unwrap();
        }
        Backend::Postgres => {
            sqlx::query(
                "CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'audit log unavailable'; END $$",
            )
            .execute(db.pool())
            .await
            .unwrap();
            sqlx::query(
                "CREATE TRIGGER audit_down BEFORE INSERT ON audit_log \
                 FOR EACH ROW EXECUTE FUNCTION audit_down()",
            )
            .execute(db.pool())
            .await
            .unwrap();
        }
    }
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

#[tokio::test]
async fn an_operation_whose_audit_row_fails_changes_nothing() {
    // R-PII-4: a change of personal data and its 取扱記録 row commit together or not at all.
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let op = app.user_with_role("op1", "operator").await;
        let admin = app.admin().await;
        answered_call(&app, "a1", 1).await;
        let t0 = a_working_morning();
        app.server
            .state
            .calls
            .apply(&CallEvent::Ended {
                call: call("m1", number(2)),
                at: t0,
                cause: EndCause::Busy,
                hangup_by: None,
                rang_at: None,
                answered_at: None,
            })
            .await
            .unwrap();
        let cb_id: i64 = count(&app.server.state.db, "SELECT MAX(id) FROM callbacks").await;
        let op2_id = {
            let res = admin
                .post(
                    "/api/users",
                    &json!({ "username": "op2", "role": "operator", "password": "a-long-password-2", "must_change_password": false }),
                )
                .await;
            let u: Value = res.json().await.unwrap();
            u["id"].as_i64().unwrap()
        };
        let db = app.server.state.db.clone();
        let audit_rows = count(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log").await;
        break_the_audit_log(&db).await;

        let res = patch(&op, "/api/calls/a1", &json!({ "outcome": "inquiry" })).await;
        assert_eq!(res.status(), 500, "{kind:?}");
        let outcomes = count(
            &db,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM calls WHERE outcome IS NOT NULL OR wrapup_ms IS NOT NULL",
        )
        .await;
        assert_eq!(outcomes, 0, "{kind:?}: the outcome was not saved");

        let res = op
            .post(
                &format!("/api/callbacks/{cb_id}/close"),
                &json!({ "result": "called_back" }),
            )
            .await;
        assert_eq!(res.status(), 500);
        let open = count(
            &db,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM callbacks WHERE status = 'open'",
        )
        .await;
        assert_eq!(open, 1, "{kind:?}: the callback is still open");

        let res = admin
            .post(
                "/api/users",
                &json!({ "username": "op3", "role": "operator", "password": "a-long-password-3", "must_change_password": false }),
            )
            .await;
        assert_eq!(res.status(), 500);
        let op3 = count(
            &db,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM users WHERE username = 'op3'",
        )
        .await;
        assert_eq!(op3, 0, "{kind:?}: no account without its audit row");

        let res = admin
            .post(&format!("/api/users/{op2_id}/disable"), &json!({}))
            .await;
        assert_eq!(res.status(), 500);
        let disabled = count(
            &db,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM users WHERE username = 'op2' AND disabled = 1",
        )
        .await;
        assert_eq!(disabled, 0, "{kind:?}: op2 is still enabled");

        let res = admin
            .post(
                &format!("/api/users/{op2_id}/password"),
                &json!({ "password": "another-password-9" }),
            )
            .await;
        assert_eq!(res.status(), 500);

        // Reads that cannot be recorded disclose nothing.
        let res = op.get("/api/calls/a1").await;
        assert_eq!(res.status(), 500);
        assert!(!res.text().await.unwrap().contains("0134"));
        let res = op.get("/api/callbacks").await;
        assert_eq!(res.status(), 500);

        assert_eq!(
            count(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log").await,
            audit_rows
        );
        // Once the log works again, op2's old password still works: the reset was rolled
        // back with its audit row.
        let repair = match db.backend() {
            Backend::Sqlite => "DROP TRIGGER audit_down",
            Backend::Postgres => "DROP TRIGGER audit_down ON audit_log",
        };
        sqlx::query(repair).execute(db.pool()).await.unwrap();
        app.login("op2", "a-long-password-2").await;
        app.stop().await;
    }
}
