//! The storage suite: every test runs on SQLite and, when DATABASE_URL points to one, on
//! PostgreSQL, each on a fresh database (R-PII-1, R-PII-4).

use crate::common;

use std::sync::Arc;

use chrono::Duration;
use common::{a_working_morning, backends, Kind, TestDb};
use madoguchi::clock::{ManualClock, SharedClock};
use madoguchi::config::AuthConfig;
use madoguchi::privacy::{
    Actor, AuditAction, AuditEntry, AuditFilter, AuditOutcome, AuditTarget, Auditor, LoginFailure,
    NewUser, PrivacyError, Role, SessionStore, Users,
};
use madoguchi::store::Db;
use sqlx::Row;

struct Ctx {
    db: Db,
    clock: ManualClock,
    users: Users,
    sessions: SessionStore,
    audit: Auditor,
    test_db: TestDb,
}

async fn ctx(kind: Kind) -> Ctx {
    let test_db = TestDb::new(kind).await;
    let db = test_db.open().await;
    let clock = ManualClock::new(a_working_morning());
    let shared: SharedClock = Arc::new(clock.clone());
    let auth = AuthConfig {
        max_failed_logins: 3,
        lockout_minutes: 10,
        session_idle_minutes: 30,
        ..AuthConfig::default()
    };
    Ctx {
        users: Users::new(db.clone(), shared.clone(), auth.clone()),
        sessions: SessionStore::new(db.clone(), shared.clone(), auth),
        audit: Auditor::new(db.clone(), shared),
        db,
        clock,
        test_db,
    }
}

impl Ctx {
    async fn done(self) {
        self.db.close().await;
        self.test_db.cleanup().await;
    }
}

fn new_user(name: &str, role: Role) -> NewUser {
    NewUser {
        username: name.into(),
        display_name: format!("{name} さん"),
        role,
        password: format!("pw-of-{name}-123"),
        must_change_password: false,
    }
}

/// The actor of set-up steps (like the command line).
fn test_actor() -> Actor {
    Actor::cli()
}

fn sato() -> Actor {
    Actor::system("sato")
}

/// Whoever reads the log in a test; each read leaves its own `audit.read` row.
fn reader() -> Actor {
    Actor::system("(test reader)")
}

#[tokio::test]
async fn migrations_are_idempotent() {
    for kind in backends() {
        let c = ctx(kind).await;
        c.db.migrate().await.expect("second migrate is a no-op");
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM users")
            .fetch_one(c.db.pool())
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{kind:?}");
        c.done().await;
    }
}

#[tokio::test]
async fn staff_list_records_accounts_and_roles() {
    // R-PII-1: the staff list and their roles are recorded.
    for kind in backends() {
        let c = ctx(kind).await;
        let op = c
            .users
            .create(&test_actor(), new_user("sato", Role::Operator))
            .await
            .unwrap();
        c.users
            .create(&test_actor(), new_user("kato", Role::Manager))
            .await
            .unwrap();
        let list = c.users.list().await.unwrap();
        let names: Vec<_> = list.iter().map(|u| (u.username.as_str(), u.role)).collect();
        assert_eq!(
            names,
            vec![("kato", Role::Manager), ("sato", Role::Operator)],
            "{kind:?}"
        );
        assert_eq!(
            c.users.get(op.id).await.unwrap().unwrap().display_name,
            "sato さん"
        );
        c.done().await;
    }
}

#[tokio::test]
async fn bad_or_duplicate_account_changes_nothing() {
    for kind in backends() {
        let c = ctx(kind).await;
        c.users
            .create(&test_actor(), new_user("sato", Role::Operator))
            .await
            .unwrap();
        let dup = c
            .users
            .create(&test_actor(), new_user("sato", Role::Admin))
            .await;
        assert!(
            matches!(dup, Err(PrivacyError::DuplicateUsername(_))),
            "{kind:?}"
        );
        let bad_name = c
            .users
            .create(&test_actor(), new_user("Sa To", Role::Operator))
            .await;
        assert!(matches!(bad_name, Err(PrivacyError::Invalid(_))));
        let short_pw = c
            .users
            .create(
                &test_actor(),
                NewUser {
                    password: "short".into(),
                    ..new_user("suzuki", Role::Operator)
                },
            )
            .await;
        assert!(matches!(short_pw, Err(PrivacyError::Invalid(_))));
        let list = c.users.list().await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(
            list[0].role,
            Role::Operator,
            "the duplicate did not change the role"
        );
        c.done().await;
    }
}

#[tokio::test]
async fn lockout_after_failures_lasts_the_configured_time() {
    for kind in backends() {
        let c = ctx(kind).await;
        c.users
            .create(&test_actor(), new_user("sato", Role::Operator))
            .await
            .unwrap();
        for i in 1..3 {
            let a = c
                .users
                .authenticate("sato", "wrong", None, AuditAction::Login)
                .await
                .unwrap();
            assert_eq!(
                a.result.unwrap_err(),
                LoginFailure::InvalidCredentials {
                    failures: i,
                    remaining: Some(3 - i)
                }
            );
        }
        let third = c
            .users
            .authenticate("sato", "wrong", None, AuditAction::Login)
            .await
            .unwrap();
        assert!(
            matches!(third.result, Err(LoginFailure::Locked { .. })),
            "{kind:?}"
        );
        // Even the right password is refused while locked.
        c.clock.advance(Duration::minutes(9));
        let during = c
            .users
            .authenticate("sato", "pw-of-sato-123", None, AuditAction::Login)
            .await
            .unwrap();
        assert!(matches!(during.result, Err(LoginFailure::Locked { .. })));
        c.clock.advance(Duration::minutes(1));
        let after = c
            .users
            .authenticate("sato", "pw-of-sato-123", None, AuditAction::Login)
            .await
            .unwrap();
        assert!(after.result.is_ok(), "{kind:?}: unlocked after 10 minutes");
        c.done().await;
    }
}

#[tokio::test]
async fn sessions_end_when_idle_or_disabled() {
    for kind in backends() {
        let c = ctx(kind).await;
        let u = c
            .users
            .create(&test_actor(), new_user("sato", Role::Operator))
            .await
            .unwrap();
        let (token, _) = c
            .sessions
            .create(&u, Some("127.0.0.1".into()))
            .await
            .unwrap();
        c.clock.advance(Duration::minutes(29));
        assert!(
            c.sessions.lookup(&token).await.unwrap().is_some(),
            "{kind:?}"
        );
        // Use keeps it alive; 30 idle minutes end it.
        c.clock.advance(Duration::minutes(29));
        assert!(c.sessions.lookup(&token).await.unwrap().is_some());
        c.clock.advance(Duration::minutes(30));
        assert!(
            c.sessions.lookup(&token).await.unwrap().is_none(),
            "{kind:?}: idle session ended"
        );

        let (token, _) = c.sessions.create(&u, None).await.unwrap();
        c.users.disable(&test_actor(), u.id).await.unwrap();
        assert!(
            c.sessions.lookup(&token).await.unwrap().is_none(),
            "{kind:?}: disabled account has no session"
        );
        let login = c
            .users
            .authenticate("sato", "pw-of-sato-123", None, AuditAction::Login)
            .await
            .unwrap();
        assert!(login.result.is_err());
        assert!(c.sessions.lookup("not-a-token").await.unwrap().is_none());
        c.done().await;
    }
}

#[tokio::test]
async fn password_change_ends_sessions_and_takes_effect() {
    for kind in backends() {
        let c = ctx(kind).await;
        let u = c
            .users
            .create(&test_actor(), new_user("sato", Role::Operator))
            .await
            .unwrap();
        let (token, _) = c.sessions.create(&u, None).await.unwrap();
        c.users
            .set_password(&test_actor(), u.id, "a-brand-new-password")
            .await
            .unwrap();
        assert!(
            c.sessions.lookup(&token).await.unwrap().is_none(),
            "{kind:?}"
        );
        assert!(c
            .users
            .authenticate("sato", "pw-of-sato-123", None, AuditAction::Login)
            .await
            .unwrap()
            .result
            .is_err());
        assert!(c
            .users
            .authenticate("sato", "a-brand-new-password", None, AuditAction::Login)
            .await
            .unwrap()
            .result
            .is_ok());
        assert!(matches!(
            c.users
                .set_password(&test_actor(), 999_999, "a-brand-new-password")
                .await,
            Err(PrivacyError::UnknownUser)
        ));
        c.done().await;
    }
}

#[tokio::test]
async fn audit_log_is_append_only_in_the_database() {
    // R-PII-4: nothing, not even a direct SQL statement, changes or removes a record.
    for kind in backends() {
        let c = ctx(kind).await;
        c.audit
            .record(&sato(), AuditEntry::new(AuditAction::Login))
            .await
            .unwrap();
        let upd = sqlx::query("UPDATE audit_log SET action = 'x'")
            .execute(c.db.pool())
            .await;
        assert!(upd.is_err(), "{kind:?}: update refused");
        let del = sqlx::query("DELETE FROM audit_log")
            .execute(c.db.pool())
            .await;
        assert!(del.is_err(), "{kind:?}: delete refused");
        if kind == Kind::Postgres {
            let trunc = sqlx::query("TRUNCATE audit_log").execute(c.db.pool()).await;
            assert!(trunc.is_err(), "truncate refused");
        }
        let rows = c
            .audit
            .read(&reader(), &AuditFilter::default())
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].action, AuditAction::Login);
        c.done().await;
    }
}

#[tokio::test]
async fn an_audit_row_cannot_be_replaced_by_an_insert() {
    // SQLite's INSERT OR REPLACE deletes the old row without firing the delete trigger; an
    // upsert is the same attempt in either dialect. Each must fail and leave the row as it was.
    for kind in backends() {
        let c = ctx(kind).await;
        let id = c
            .audit
            .record(&sato(), AuditEntry::new(AuditAction::Login))
            .await
            .unwrap();
        let attempts: &[&str] = match kind {
            Kind::Sqlite => &[
                "INSERT OR REPLACE INTO audit_log (id, at, action, outcome) VALUES ($1, 'x', 'logout', 'ok')",
                "REPLACE INTO audit_log (id, at, action, outcome) VALUES ($1, 'x', 'logout', 'ok')",
                "INSERT INTO audit_log (id, at, action, outcome) VALUES ($1, 'x', 'logout', 'ok') \
                 ON CONFLICT (id) DO UPDATE SET action = excluded.action",
            ],
            Kind::Postgres => &[
                "INSERT INTO audit_log (id, at, action, outcome) OVERRIDING SYSTEM VALUE \
                 VALUES ($1, 'x', 'logout', 'ok') ON CONFLICT (id) DO UPDATE SET action = excluded.action",
            ],
        };
        for sql in attempts {
            let res = sqlx::query(sql).bind(id).execute(c.db.pool()).await;
            assert!(res.is_err(), "{kind:?}: refused: {sql}");
        }
        let rows = c
            .audit
            .read(&reader(), &AuditFilter::default())
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{kind:?}: {rows:?}");
        assert_eq!(rows[0].id, id);
        assert_eq!(rows[0].action, AuditAction::Login);
        assert_eq!(rows[0].actor_username.as_deref(), Some("sato"));
        c.done().await;
    }
}

#[tokio::test]
async fn audit_log_filters_and_pages_newest_first() {
    for kind in backends() {
        let c = ctx(kind).await;
        for i in 0..5 {
            c.audit
                .record(
                    &Actor::system(if i < 3 { "sato" } else { "kato" }),
                    AuditEntry::new(if i % 2 == 0 {
                        AuditAction::Login
                    } else {
                        AuditAction::UserCreate
                    })
                    .target(AuditTarget::User, i)
                    .outcome(if i == 4 {
                        AuditOutcome::Failed
                    } else {
                        AuditOutcome::Ok
                    })
                    .detail(serde_json::json!({ "n": i })),
                )
                .await
                .unwrap();
            c.clock.advance(Duration::minutes(1));
        }
        let all = c
            .audit
            .read(&reader(), &AuditFilter::default())
            .await
            .unwrap();
        assert_eq!(
            all.iter()
                .map(|r| r.target_id.clone().unwrap())
                .collect::<Vec<_>>(),
            ["4", "3", "2", "1", "0"]
        );
        assert_eq!(all[0].outcome, AuditOutcome::Failed);
        assert_eq!(all[0].detail, Some(serde_json::json!({ "n": 4 })));

        let logins = c
            .audit
            .read(
                &reader(),
                &AuditFilter {
                    action: Some(AuditAction::Login),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(logins.len(), 3, "{kind:?}");
        let kato = c
            .audit
            .read(
                &reader(),
                &AuditFilter {
                    actor: Some("kato".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(kato.len(), 2);
        let window = AuditFilter {
            from: Some(a_working_morning() + Duration::minutes(1)),
            to: Some(a_working_morning() + Duration::minutes(3)),
            ..Default::default()
        };
        assert_eq!(
            c.audit.read(&reader(), &window).await.unwrap().len(),
            2,
            "{kind:?}: from inclusive, to exclusive"
        );
        let page1 = c
            .audit
            .read(
                &reader(),
                &AuditFilter {
                    limit: Some(2),
                    target_kind: Some(AuditTarget::User),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let page2 = c
            .audit
            .read(
                &reader(),
                &AuditFilter {
                    limit: Some(2),
                    target_kind: Some(AuditTarget::User),
                    before_id: Some(page1[1].id),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            page2
                .iter()
                .map(|r| r.target_id.clone().unwrap())
                .collect::<Vec<_>>(),
            ["2", "1"]
        );
        let one = AuditFilter {
            target_kind: Some(AuditTarget::User),
            target_id: Some("3".into()),
            ..Default::default()
        };
        assert_eq!(c.audit.read(&reader(), &one).await.unwrap().len(), 1);
        c.done().await;
    }
}

#[tokio::test]
async fn call_log_records_each_event_once_and_closes_interrupted_calls() {
    // R-LINE-3: one row per call, completed as it ends; a restart closes open calls.
    use madoguchi::calls::callerid::{CallerId, WithheldReason};
    use madoguchi::calls::{CallEvent, CallInfo, CallLog, EndCause, EndCode, Party};
    for kind in backends() {
        let c = ctx(kind).await;
        c.users
            .create(&test_actor(), new_user("sato", Role::Operator))
            .await
            .unwrap();
        let log = CallLog::new(c.db.clone(), "instance-a");
        let t0 = a_working_morning();
        let info = |key: &str, caller: Option<CallerId>| CallInfo {
            key: key.into(),
            sip_call_id: format!("{key}@trunk"),
            caller,
            line_number: Some("0120000000".into()),
            source: "127.0.0.1:5070".into(),
            arrived_at: t0,
        };
        let a = info(
            "a",
            Some(CallerId::Number {
                e164: "+81134220001".into(),
                display: "0134-22-0001".into(),
            }),
        );
        let events = [
            CallEvent::Ringing {
                call: a.clone(),
                at: t0,
            },
            CallEvent::Answered {
                call: a.clone(),
                at: t0 + Duration::seconds(4),
                operator: Some("sato".into()),
                extension: "op1".into(),
            },
            CallEvent::Ended {
                call: a.clone(),
                at: t0 + Duration::seconds(64),
                cause: EndCause::Completed,
                hangup_by: Some(Party::Caller),
                rang_at: Some(t0),
                answered_at: Some(t0 + Duration::seconds(4)),
            },
        ];
        for e in &events {
            log.apply(e).await.unwrap();
            log.apply(e).await.unwrap(); // a retry after a failure changes nothing
        }
        let w = info(
            "w",
            Some(CallerId::Withheld {
                reason: WithheldReason::Payphone,
            }),
        );
        log.apply(&CallEvent::Ringing { call: w, at: t0 })
            .await
            .unwrap();

        let rows = log.list(&Default::default()).await.unwrap();
        assert_eq!(rows.len(), 2, "{kind:?}");
        let a = rows.iter().find(|r| r.call_key == "a").unwrap();
        assert_eq!(a.end_cause, Some(EndCode::Completed));
        assert_eq!(a.hangup_by, Some(Party::Caller));
        assert_eq!(a.answered_by.as_deref(), Some("sato"));
        assert_eq!(a.ring_seconds, Some(4.0));
        assert_eq!(a.talk_seconds, Some(60.0));
        assert_eq!(a.caller.display, "0134-22-0001");
        let w = rows.iter().find(|r| r.call_key == "w").unwrap();
        assert_eq!(w.caller.display, "公衆電話");
        assert!(w.caller.e164.is_none());

        // Another instance sharing the database leaves instance-a's live call alone.
        let other = CallLog::new(c.db.clone(), "instance-b");
        assert_eq!(
            other
                .close_interrupted(t0 + Duration::minutes(5))
                .await
                .unwrap(),
            0,
            "{kind:?}: not instance-b's call"
        );
        assert_eq!(
            log.close_interrupted(t0 + Duration::minutes(5))
                .await
                .unwrap(),
            1,
            "{kind:?}"
        );
        let w = log.get_by_key("w").await.unwrap().unwrap();
        assert_eq!(w.end_cause, Some(EndCode::Interrupted));
        let day = madoguchi::calls::CallFilter {
            date: Some(t0.date_naive()),
            ..Default::default()
        };
        assert_eq!(log.list(&day).await.unwrap().len(), 2);
        let completed = madoguchi::calls::CallFilter {
            end_cause: Some(EndCode::Completed),
            ..Default::default()
        };
        assert_eq!(log.list(&completed).await.unwrap().len(), 1);

        // A missed call from another number waits for a callback; the day's totals add up.
        let m = info(
            "m",
            Some(CallerId::Number {
                e164: "+819012345678".into(),
                display: "090-1234-5678".into(),
            }),
        );
        let missed = CallEvent::Ended {
            call: m,
            at: t0 + Duration::seconds(10),
            cause: EndCause::Abandoned,
            hangup_by: None,
            rang_at: Some(t0),
            answered_at: None,
        };
        log.apply(&missed).await.unwrap();
        log.apply(&missed).await.unwrap();
        let (n, oldest) = madoguchi::calls::callbacks::waiting(&c.db).await.unwrap();
        assert_eq!(
            (n, oldest),
            (1, Some(t0 + Duration::seconds(10))),
            "{kind:?}"
        );
        let open = madoguchi::calls::callbacks::list_open(&c.db).await.unwrap();
        assert_eq!(
            open[0].missed_count, 1,
            "a retried event is not a second missed call"
        );
        let (from, to) = madoguchi::calls::stats::day_bounds(
            t0.with_timezone(&chrono_tz::Asia::Tokyo).date_naive(),
        );
        let t = log.totals(from, to, 20_000).await.unwrap();
        assert_eq!(
            (t.offered, t.answered, t.abandoned),
            (3, 1, 1),
            "{kind:?}: {t:?}"
        );
        assert_eq!(
            (
                t.ring_ms_sum,
                t.ring_n,
                t.handle_ms_sum,
                t.handle_n,
                t.within_service_level
            ),
            (4000, 1, 60_000, 1, 1)
        );
        c.done().await;
    }
}

#[tokio::test]
async fn postgres_connections_can_require_tls() {
    // issue 13 item 13: `sslmode=require` must connect encrypted, not fail or fall back.
    let Ok(url) = std::env::var("DATABASE_URL") else {
        return;
    };
    if !url.starts_with("postgres") {
        return;
    }
    let plain = Db::connect(&url, 1).await.unwrap();
    let ssl_on: String = sqlx::query("SHOW ssl")
        .fetch_one(plain.pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    plain.close().await;
    if ssl_on != "on" {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI's PostgreSQL has TLS off; this test cannot check sslmode=require"
        );
        eprintln!("note: this PostgreSQL has ssl=off; sslmode=require not checked");
        return;
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    let db = Db::connect(&format!("{url}{sep}sslmode=require"), 1)
        .await
        .expect("sslmode=require connects");
    let encrypted: i64 = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl",
    )
    .fetch_one(db.pool())
    .await
    .unwrap()
    .try_get(0)
    .unwrap();
    assert_eq!(encrypted, 1, "the connection is encrypted");
    db.close().await;
}
