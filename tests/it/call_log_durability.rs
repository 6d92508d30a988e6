//! The call log never stops for one bad event (issue 13 item 1): control bytes from the
//! network never reach storage as such, and an event the database refuses for good is kept
//! as a dead letter while every later call is still written.

use crate::common;

use std::time::Duration;

use chrono::Utc;
use common::rig::{expect_final, jst, wait, Rig};
use common::sipp;
use common::{backends, Kind, TestDb};
use madoguchi::calls::{
    spawn_writer, CallEvent, CallEvents, CallInfo, CallLog, EndCause, StoredEvents,
};
use madoguchi::store::Backend;
use sqlx::Row;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// The INVITE of the report: from an address outside the trunk, a NUL inside its Call-ID.
fn invite_with_nul(sip: &str, from_port: u16) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(
        format!(
            "INVITE sip:0120000000@{sip} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.3:{from_port};branch=z9hG4bK-nul-1\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:0134220001@127.0.0.3>;tag=nul1\r\n\
             To: <sip:0120000000@{sip}>\r\n\
             Call-ID: nul-"
        )
        .as_bytes(),
    );
    m.push(0);
    m.extend_from_slice(
        format!(
            "-id@127.0.0.3\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:0134220001@127.0.0.3:{from_port}>\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    );
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_a_call_id_does_not_stop_the_call_log() {
    // PostgreSQL refuses 0x00 in text: that is where the log used to stop for good.
    let kind = *backends().last().unwrap();
    let Some(rig) = Rig::on(kind, jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    let scanner = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let port = scanner.local_addr().unwrap().port();
    scanner
        .send_to(&invite_with_nul(&rig.sip, port), &rig.sip)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let answer = tokio::time::timeout(Duration::from_secs(5), scanner.recv_from(&mut buf))
        .await
        .map(|r| String::from_utf8_lossy(&buf[..r.unwrap().0]).to_string());
    if let Ok(a) = &answer {
        assert!(a.starts_with("SIP/2.0 4"), "refused, never routed: {a}");
    }

    // A normal call afterwards is written.
    let mut phone = rig.sipp_phone("ph1", "phone-answer", &[]).await;
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "500"],
    );
    assert_eq!(wait(&mut trunk, 20).await, 0, "trunk: {}", trunk.errors());
    assert_eq!(wait(&mut phone, 10).await, 0, "phone: {}", phone.errors());
    let ended = rig.ended_calls(1).await;
    assert!(
        ended.iter().any(|c| c["end_cause"] == "completed"),
        "{kind:?}: the call after the bad packet is in the log: {ended:?}"
    );
    let db = rig.app.server.state.db.clone();
    let rows = sqlx::query("SELECT sip_call_id FROM calls")
        .fetch_all(db.pool())
        .await
        .unwrap();
    for r in rows {
        let id: String = r.try_get(0).unwrap();
        assert!(!id.contains('\0'), "no control byte stored: {id:?}");
    }
    assert_eq!(rig.app.server.state.calls.counters().dead_letters, 0);
    rig.stop().await;
}

fn call(key: &str, sip_call_id: &str) -> CallInfo {
    CallInfo {
        key: key.into(),
        sip_call_id: sip_call_id.into(),
        caller: None,
        line_number: Some("0120000000".into()),
        source: "127.0.0.1:5070".into(),
        arrived_at: Utc::now(),
    }
}

fn ended(info: CallInfo) -> CallEvent {
    let at = Utc::now();
    CallEvent::Ended {
        call: info,
        at,
        cause: EndCause::Abandoned,
        hangup_by: None,
        rang_at: Some(at),
        answered_at: None,
    }
}

#[tokio::test]
async fn an_event_the_database_refuses_is_a_dead_letter_and_the_queue_moves_on() {
    for kind in backends() {
        let tdb = TestDb::new(kind).await;
        let db = tdb.open().await;
        // The database refuses one call for good, as a constraint or a bad value would.
        match db.backend() {
            Backend::Sqlite => {
                sqlx::query(
                    "CREATE TRIGGER poison BEFORE INSERT ON calls WHEN NEW.call_key = 'poison' \
                     BEGIN SELECT RAISE(ABORT, 'refused'); END",
                )
                .execute(db.pool())
                .await
                .unwrap();
            }
            Backend::Postgres => {
                sqlx::query(
                    "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                     IF NEW.call_key = 'poison' THEN RAISE EXCEPTION 'refused'; END IF; \
                     RETURN NEW; END $$",
                )
                .execute(db.pool())
                .await
                .unwrap();
                sqlx::query(
                    "CREATE TRIGGER poison BEFORE INSERT ON calls FOR EACH ROW EXECUTE FUNCTION poison()",
                )
                .execute(db.pool())
                .await
                .unwrap();
            }
        }
        let log = CallLog::new(db.clone(), "test");
        let (events, stored) = (CallEvents::new(), StoredEvents::new());
        let mut heard = stored.subscribe();
        let stop = CancellationToken::new();
        let writer = spawn_writer(log.clone(), events.subscribe(), stored, stop.clone());
        events.publish(ended(call("before", "a@trunk")));
        events.publish(ended(call("poison", "b@trunk")));
        events.publish(ended(call("nul", "c-\0-\u{1b}[31m@trunk")));
        events.publish(ended(call("after", "d@trunk")));
        for _ in 0..4 {
            tokio::time::timeout(Duration::from_secs(10), heard.recv())
                .await
                .expect("the writer goes on past the refused event")
                .unwrap();
        }
        stop.cancel();
        writer.await.unwrap();
        for key in ["before", "nul", "after"] {
            assert!(
                log.get_by_key(key).await.unwrap().is_some(),
                "{kind:?}: {key} written"
            );
        }
        assert!(log.get_by_key("poison").await.unwrap().is_none());
        let nul = sqlx::query("SELECT sip_call_id FROM calls WHERE call_key = 'nul'")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(
            nul.try_get::<String, _>(0).unwrap(),
            "c-\\u{0}-\\u{1b}[31m@trunk",
            "{kind:?}: control bytes stored escaped"
        );
        let dead = sqlx::query("SELECT call_key, error FROM call_log_dead_letters")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert_eq!(dead.len(), 1, "{kind:?}");
        assert_eq!(dead[0].try_get::<String, _>(0).unwrap(), "poison");
        assert!(dead[0].try_get::<String, _>(1).unwrap().contains("refused"));
        let c = log.counters();
        assert_eq!((c.written, c.dead_letters), (4, 1), "{kind:?}: {c:?}");
        db.close().await;
        drop(tdb);
    }
}

#[test]
fn which_failures_are_retried() {
    use madoguchi::calls::is_transient;
    assert!(is_transient(&sqlx::Error::PoolTimedOut));
    assert!(is_transient(&sqlx::Error::Io(std::io::Error::other(
        "reset"
    ))));
    assert!(!is_transient(&sqlx::Error::RowNotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_log_far_behind_gets_new_calls_503_until_it_catches_up() {
    // issue 13 item 5: the queue of call events is bounded by the overload policy — when the
    // database stalls, new calls get 503 + Retry-After instead of memory growing without end.
    let Some(rig) = Rig::on(Kind::Sqlite, jst(2026, 11, 25, 10, 0), |c| {
        c.log_backlog_max = 4;
    })
    .await
    else {
        return;
    };
    // Another process holds SQLite's write lock: the writer waits and retries.
    let stall = madoguchi::store::Db::connect(&rig.app.db.url, 1)
        .await
        .unwrap();
    let mut lock = stall.pool().acquire().await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let dir = rig.dir.path();
    // Nobody is registered: each call ends at once as unstaffed, one event each.
    for _ in 0..4 {
        let mut t = rig.trunk(&expect_final(dir, 480, false), "127.0.0.1", &[]);
        assert_eq!(wait(&mut t, 10).await, 0, "{}", t.errors());
    }
    let mut refused = rig.trunk(&expect_final(dir, 503, true), "127.0.0.1", &[]);
    assert_eq!(
        wait(&mut refused, 10).await,
        0,
        "the fifth call, with 4 events unwritten, gets 503: {}",
        refused.errors()
    );
    assert!(refused.messages().contains("Retry-After: 5"));

    // The database is back: the writer catches up and calls are taken again.
    sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
    drop(lock);
    stall.close().await;
    let logged = rig.ended_calls(4).await;
    assert_eq!(
        logged.len(),
        4,
        "the 503 call is counted, not logged: {logged:?}"
    );
    let mut again = rig.trunk(&expect_final(dir, 480, false), "127.0.0.1", &[]);
    assert_eq!(wait(&mut again, 10).await, 0, "{}", again.errors());
    let admin = rig.app.admin().await;
    let status: serde_json::Value = admin.get("/api/sip/status").await.json().await.unwrap();
    assert_eq!(status["counters"]["overloaded"], 1, "{status}");
    rig.stop().await;
}
