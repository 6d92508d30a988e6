//! The live statistics move per call event instead of reading the whole day again (issue
//! 17), and the pop's caller history is read only while a screen watches.
//!
//! The figures a manager watches count every call (R-LINE-3), busy calls (R-LINE-2) and
//! calls outside the hours (R-HOURS-1); the pop shows the caller's earlier calls (R-LINE-4).
//! The hub, the call-log writer and the database are the real ones, on SQLite and on
//! PostgreSQL; the SIP side is replaced by publishing its call events directly, so a day
//! of 100,000 calls can be seeded in a few seconds.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::rig::jst;
use common::{backends, TestDb};
use madoguchi::booking::bookings::Bookings;
use madoguchi::booking::travel::StraightLine;
use madoguchi::booking::{BookingRules, TravelRules};
use madoguchi::calls::callerid::{display_national, to_e164, CallerId};
use madoguchi::calls::{
    spawn_writer, CallEvent, CallEvents, CallInfo, CallLog, EndCause, Outcome, OutcomeInput,
};
use madoguchi::clock::{to_db_time, ManualClock, SharedClock};
use madoguchi::hours::ClosedReason;
use madoguchi::hub::{Hub, Subscription};
use madoguchi::privacy::{Actor, Role};
use madoguchi::store::{Backend, Db};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Calls logged before the test's calls.
const SEEDED: u32 = 100_000;

/// Fills the day of `at` with `n` ended calls in one statement: answered (a tenth with a
/// wrap-up), abandoned, busy, closed and unanswered in turn.
async fn seed_day(db: &Db, at: DateTime<Utc>, n: u32) {
    let sql = format!(
        "INSERT INTO calls (call_key, sip_call_id, caller_kind, caller_e164, line_number, source, \
            arrived_at, rang_at, answered_at, ended_at, end_cause, ring_ms, talk_ms, wrapup_ms, instance) \
         WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {n}) \
         SELECT 'seed-' || CAST(n AS TEXT), 'seed-' || CAST(n AS TEXT) || '@trunk', 'number', \
            '+8190' || CAST(10000000 + n AS TEXT), '0120000000', '127.0.0.1:5060', \
            $1, CASE WHEN n % 5 IN (0, 1, 4) THEN $1 ELSE NULL END, \
            CASE WHEN n % 5 = 0 THEN $1 ELSE NULL END, $1, \
            CASE n % 5 WHEN 0 THEN 'completed' WHEN 1 THEN 'abandoned' WHEN 2 THEN 'busy' \
                WHEN 3 THEN 'closed' ELSE 'no_answer' END, \
            CASE n % 5 WHEN 0 THEN 1000 * (n % 40) WHEN 1 THEN 9000 WHEN 4 THEN 30000 ELSE NULL END, \
            CASE WHEN n % 5 = 0 THEN 60000 + n ELSE NULL END, \
            CASE WHEN n % 10 = 0 THEN 15000 ELSE NULL END, 'seed' \
         FROM seq"
    );
    let done = sqlx::query(&sql)
        .bind(to_db_time(at))
        .execute(db.pool())
        .await
        .expect("seed the day");
    assert_eq!(done.rows_affected(), u64::from(n));
}

/// The call side of one instance: the writer and the hub, on `db`, at `now`.
struct Line {
    events: CallEvents,
    stored: broadcast::Receiver<Arc<CallEvent>>,
    hub: Hub,
    log: CallLog,
    stop: CancellationToken,
}

impl Line {
    fn start(db: &Db, now: DateTime<Utc>) -> Line {
        let log = CallLog::new(db.clone(), "test");
        let events = CallEvents::new();
        let stored = events.stored().clone();
        let heard = stored.subscribe();
        let stop = CancellationToken::new();
        spawn_writer(
            log.clone(),
            events.subscribe(),
            stored.clone(),
            stop.clone(),
        );
        let clock: SharedClock = Arc::new(ManualClock::new(now));
        let bookings = Bookings::new(
            db.clone(),
            BookingRules::default(),
            Arc::new(StraightLine::new(TravelRules::default())),
            chrono_tz::Asia::Tokyo,
        );
        let (hub, _task) = Hub::start(
            &events,
            &stored,
            log.clone(),
            bookings,
            db.clone(),
            clock,
            20,
            stop.clone(),
        );
        Line {
            events,
            stored: heard,
            hub,
            log,
            stop,
        }
    }

    /// Publishes `ev` as the proxy would and waits until the call log has committed it.
    async fn publish(&mut self, ev: CallEvent) {
        self.events.publish(ev);
        tokio::time::timeout(Duration::from_secs(20), self.stored.recv())
            .await
            .expect("the call log stores the event")
            .expect("stored");
    }
}

fn call(key: &str, number: Option<&str>, arrived_at: DateTime<Utc>) -> CallInfo {
    CallInfo {
        key: key.into(),
        sip_call_id: format!("{key}@trunk"),
        caller: number.map(|n| {
            let e164 = to_e164(n).expect("a valid number");
            CallerId::Number {
                display: display_national(&e164),
                e164,
            }
        }),
        line_number: Some("0120000000".into()),
        source: "127.0.0.1:5060".into(),
        arrived_at,
    }
}

fn at(c: &CallInfo, ms: i64) -> DateTime<Utc> {
    c.arrived_at + chrono::Duration::milliseconds(ms)
}

fn ringing(c: &CallInfo) -> CallEvent {
    CallEvent::Ringing {
        call: c.clone(),
        at: at(c, 100),
    }
}

fn answered(c: &CallInfo, ms: i64) -> CallEvent {
    CallEvent::Answered {
        call: c.clone(),
        at: at(c, ms),
        operator: Some("operator1".into()),
        extension: "ph1".into(),
    }
}

fn ended(c: &CallInfo, cause: EndCause, rang: bool, answer: Option<i64>, end: i64) -> CallEvent {
    CallEvent::Ended {
        call: c.clone(),
        at: at(c, end),
        cause,
        hangup_by: None,
        rang_at: rang.then(|| at(c, 100)),
        answered_at: answer.map(|ms| at(c, ms)),
    }
}

/// Waits for the screen's next `stats` message that equals a fresh aggregate of the whole
/// day, and returns it; fails when none comes.
async fn figures_match_a_fresh_aggregate(screen: &mut Subscription, hub: &Hub) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Through JSON text, as the screen reads it (parsing a float is not exact).
    let fresh = serde_json::to_string(&hub.compute_stats().await.expect("fresh figures")).unwrap();
    let fresh: Value = serde_json::from_str(&fresh).unwrap();
    let mut last = Value::Null;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(next) = tokio::time::timeout(left, screen.next()).await else {
            panic!(
                "the pushed figures never equal a fresh aggregate:\npushed {last}\nfresh  {fresh}"
            );
        };
        for text in next.expect("recorded").expect("still subscribed") {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "stats" {
                if v["stats"] == fresh {
                    return fresh;
                }
                last = v["stats"].clone();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_moves_the_figures_without_reading_the_day_again() {
    for kind in backends() {
        eprintln!("backend {kind:?}");
        let tdb = TestDb::new(kind).await;
        let db = tdb.open().await;
        let now = jst(2026, 11, 25, 14, 0);
        seed_day(&db, jst(2026, 11, 25, 9, 30), SEEDED).await;
        let mut line = Line::start(&db, now);
        let mut screen = line.hub.subscribe(Actor::system("screen"));
        let first = figures_match_a_fresh_aggregate(&mut screen, &line.hub).await;
        // A figure, not a pass/fail timing: what every event cost before (a full aggregate).
        let started = std::time::Instant::now();
        line.hub.compute_stats().await.unwrap();
        eprintln!(
            "{kind:?}: one full aggregate of {SEEDED} calls takes {:?}",
            started.elapsed()
        );
        assert!(first["offered"].as_u64().unwrap() >= 80_000, "{first}");
        let rebases = line.hub.stats_rebases();

        let t0 = jst(2026, 11, 25, 13, 50);
        let a = call("a", Some("0134220001"), t0);
        let b = call("b", Some("0134220002"), t0);
        let c = call("c", Some("0134220003"), t0);
        let d = call("d", None, t0);
        let e = call("e", Some("0134220002"), t0 + chrono::Duration::minutes(2));
        let f = call("f", Some("0134220004"), t0);
        let g = call("g", None, t0);
        let events = [
            ringing(&a),
            answered(&a, 6_000),
            ringing(&b),
            ended(&b, EndCause::Abandoned, true, None, 12_000),
            ended(&a, EndCause::Completed, true, Some(6_000), 190_000),
            ended(&c, EndCause::Busy, false, None, 5),
            ended(&d, EndCause::Closed(ClosedReason::Weekend), false, None, 5),
            ended(&f, EndCause::Unstaffed, false, None, 5),
            ringing(&g),
            ended(&g, EndCause::NoAnswer, true, None, 30_100),
            // The caller who gave up gets through: off the callback list.
            ringing(&e),
            answered(&e, 25_000),
            ended(&e, EndCause::Completed, true, Some(25_000), 80_000),
        ];
        let mut previous = first.clone();
        for ev in events {
            let what = format!("{ev:?}");
            line.publish(ev).await;
            let now = figures_match_a_fresh_aggregate(&mut screen, &line.hub).await;
            assert_ne!(now, previous, "the figures moved after {what}");
            previous = now;
        }
        assert_eq!(previous["busy"], first["busy"].as_u64().unwrap() + 1);
        assert_eq!(previous["closed"], first["closed"].as_u64().unwrap() + 1);
        assert_eq!(
            previous["answered"],
            first["answered"].as_u64().unwrap() + 2
        );

        // The operator's outcome closes the wrap-up: its time joins the handling time.
        let manager = Actor {
            user_id: None,
            username: "manager1".into(),
            role: Some(Role::Manager),
            ip: None,
        };
        let outcome = OutcomeInput {
            outcome: Outcome::Inquiry,
            note: String::new(),
            topics: Vec::new(),
        };
        let row = line
            .log
            .set_outcome(&manager, "a", &outcome, now)
            .await
            .unwrap();
        line.hub.outcome_saved(row.id).await;
        let after = figures_match_a_fresh_aggregate(&mut screen, &line.hub).await;
        assert_ne!(after["aht_seconds"], previous["aht_seconds"]);

        assert_eq!(
            line.hub.stats_rebases(),
            rebases,
            "no event read the day's {SEEDED} calls again"
        );
        line.stop.cancel();
        drop(screen);
        db.close().await;
        tdb.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_call_reads_no_history_until_a_screen_connects() {
    for kind in backends() {
        eprintln!("backend {kind:?}");
        let tdb = TestDb::new(kind).await;
        let db = tdb.open().await;
        let now = jst(2026, 11, 25, 10, 0);
        let mut line = Line::start(&db, now);
        // An earlier call from the number.
        let earlier = call(
            "earlier",
            Some("0134220001"),
            now - chrono::Duration::days(1),
        );
        line.publish(ended(&earlier, EndCause::Abandoned, true, None, 8_000))
            .await;

        // It rings while nobody watches: no history is read.
        let ring = call("now", Some("0134220001"), now);
        line.publish(ringing(&ring)).await;
        assert_eq!(line.hub.history_reads(), 0, "nobody watches");

        // A screen opens while it rings: its first message shows the history.
        let mut screen = line
            .hub
            .subscribe_with_history(Actor::system("screen"))
            .await;
        let texts = screen.next().await.unwrap().unwrap();
        let snapshot: Value = serde_json::from_str(&texts[0]).unwrap();
        assert_eq!(snapshot["type"], "snapshot");
        let history = &snapshot["calls"][0]["history"]["calls"];
        assert_eq!(history.as_array().unwrap().len(), 1, "{snapshot}");
        assert_eq!(history[0]["end_cause"], "abandoned");
        assert_eq!(line.hub.history_reads(), 1);

        // A second screen gets the same pop without reading it again.
        let mut second = line
            .hub
            .subscribe_with_history(Actor::system("screen 2"))
            .await;
        let texts = second.next().await.unwrap().unwrap();
        let snapshot: Value = serde_json::from_str(&texts[0]).unwrap();
        assert_eq!(
            snapshot["calls"][0]["history"]["calls"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(line.hub.history_reads(), 1);

        // While screens watch, the next call's pop carries its history as it rings.
        line.publish(ended(&ring, EndCause::Abandoned, true, None, 9_000))
            .await;
        let next = call(
            "next",
            Some("0134220001"),
            now + chrono::Duration::minutes(1),
        );
        line.publish(ringing(&next)).await;
        let pop = loop {
            let texts = tokio::time::timeout(Duration::from_secs(10), screen.next())
                .await
                .expect("the pop")
                .unwrap()
                .unwrap();
            let found = texts
                .iter()
                .map(|t| serde_json::from_str::<Value>(t).unwrap())
                .find(|v| v["type"] == "call.ringing");
            if let Some(v) = found {
                break v;
            }
        };
        assert_eq!(
            pop["call"]["history"]["calls"].as_array().unwrap().len(),
            2,
            "both earlier calls: {pop}"
        );
        assert_eq!(line.hub.history_reads(), 2);
        line.stop.cancel();
        drop((screen, second));
        db.close().await;
        tdb.cleanup().await;
    }
}

/// The database refuses one call for good, as a constraint or a bad value would.
async fn poison(db: &Db) {
    let statements: &[&str] = match db.backend() {
        Backend::Sqlite => &[
            "CREATE TRIGGER poison BEFORE INSERT ON calls WHEN NEW.call_key = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        ],
        Backend::Postgres => &[
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.call_key = 'poison' THEN RAISE EXCEPTION 'refused'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER poison BEFORE INSERT ON calls FOR EACH ROW EXECUTE FUNCTION poison()",
        ],
    };
    for sql in statements {
        sqlx::query(sql).execute(db.pool()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_call_log_refuses_is_not_counted() {
    for kind in backends() {
        eprintln!("backend {kind:?}");
        let tdb = TestDb::new(kind).await;
        let db = tdb.open().await;
        poison(&db).await;
        let now = jst(2026, 11, 25, 11, 0);
        let mut line = Line::start(&db, now);
        let mut screen = line.hub.subscribe(Actor::system("screen"));
        let before = figures_match_a_fresh_aggregate(&mut screen, &line.hub).await;
        let rebases = line.hub.stats_rebases();
        // The writer gives up on it (a dead letter): the figures are read again, not moved.
        let refused = call("poison", None, now - chrono::Duration::minutes(1));
        line.publish(ended(&refused, EndCause::Busy, false, None, 5))
            .await;
        let after = figures_match_a_fresh_aggregate(&mut screen, &line.hub).await;
        assert_eq!(
            after["busy"], before["busy"],
            "the refused call is not in the log"
        );
        // Re-bases in a row are a second apart (the start's was just now): wait for it.
        for _ in 0..100 {
            if line.hub.stats_rebases() > rebases {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(line.hub.stats_rebases(), rebases + 1);
        // The next call moves them again without a re-base.
        let next = call("next", None, now - chrono::Duration::minutes(1));
        line.publish(ended(&next, EndCause::Busy, false, None, 5))
            .await;
        let last = figures_match_a_fresh_aggregate(&mut screen, &line.hub).await;
        assert_eq!(last["busy"], before["busy"].as_u64().unwrap() + 1);
        assert_eq!(line.hub.stats_rebases(), rebases + 1);
        line.stop.cancel();
        drop(screen);
        db.close().await;
        tdb.cleanup().await;
    }
}
