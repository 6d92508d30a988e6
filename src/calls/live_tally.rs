//! The live statistics kept up to date call event by call event (issue 17).
//!
//! [`LiveTally::load`] reads the day's sums from the call log once (a *re-base*); after that
//! every committed call event moves the counters by exactly what the call log's upsert (with
//! its `COALESCE`s) changes in the day's aggregate, so the figures equal a fresh
//! [`super::stats::compute`] while the work per event stays the same however many calls the
//! day already has. What the tally must remember per call is small and bounded: the calls of
//! the day still open (answered or not), the answered, ended calls whose wrap-up time has not
//! been saved yet (at most [`PENDING_MAX`] key hashes), and the open callbacks (one per
//! number).
//!
//! A saved outcome is not a call event: its wrap-up time comes in through
//! [`LiveTally::wrapup_saved`] (the hub's `outcome_saved`), before or after the end it follows
//! reached the tally — the sums are the same either way.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use crate::clock::{from_db_time, to_db_time};
use crate::store::Db;

use super::log::millis;
use super::stats::{self, LineState, LiveStats};
use super::{CallEvent, CallbackStatus, CallsError, DayTotals, EndCode};

/// Answered, ended calls waiting for their wrap-up time that the tally remembers (a 64-bit
/// hash of the key each, about 20 bytes: 4 MB at most); past this a saved outcome it does not
/// know asks for a re-base instead.
pub const PENDING_MAX: usize = 200_000;

/// The remembered form of a call key.
fn key_hash(key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// Today's figures, moved per call event (see the module documentation).
#[derive(Debug, Clone)]
pub struct LiveTally {
    date: NaiveDate,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    service_level_secs: u32,
    totals: DayTotals,
    /// Calls of the day with a row and no end yet: key → answered.
    open: HashMap<String, bool>,
    /// Answered, ended calls of the day whose wrap-up time is not counted yet (key hashes).
    pending_wrapup: HashSet<u64>,
    /// Some such calls were not remembered (more than [`PENDING_MAX`]).
    pending_full: bool,
    /// Wrap-up times saved for calls whose end the tally has not applied yet (the outcome
    /// came in before the hub heard that the end was stored): key hash → ms.
    early_wrapup: HashMap<u64, i64>,
    callbacks: OpenCallbacks,
}

/// The open callbacks, as the figures need them: one per number, with its first missed call.
#[derive(Debug, Clone, Default)]
pub struct OpenCallbacks {
    /// Number → first missed call.
    by_number: HashMap<String, DateTime<Utc>>,
    /// The same, oldest first.
    by_age: BTreeSet<(DateTime<Utc>, String)>,
}

impl OpenCallbacks {
    /// Reads them from the database.
    pub async fn load(db: &Db) -> Result<Self, CallsError> {
        let rows = sqlx::query(
            "SELECT caller_e164, first_missed_at FROM callbacks WHERE status = $1 AND caller_e164 IS NOT NULL",
        )
        .bind(CallbackStatus::Open)
        .fetch_all(db.pool())
        .await?;
        let mut open = OpenCallbacks::default();
        for r in &rows {
            let e164: String = r.try_get(0)?;
            let first: String = r.try_get(1)?;
            if let Some(first) = from_db_time(&first) {
                open.by_age.insert((first, e164.clone()));
                open.by_number.insert(e164, first);
            }
        }
        Ok(open)
    }

    /// How many, and the oldest first missed call.
    fn waiting(&self) -> (u32, Option<DateTime<Utc>>) {
        (
            u32::try_from(self.by_number.len()).unwrap_or(u32::MAX),
            self.by_age.first().map(|(t, _)| *t),
        )
    }

    fn missed(&mut self, e164: &str, at: DateTime<Utc>) {
        if !self.by_number.contains_key(e164) {
            self.by_number.insert(e164.to_string(), at);
            self.by_age.insert((at, e164.to_string()));
        }
    }

    fn answered(&mut self, e164: &str) {
        if let Some(first) = self.by_number.remove(e164) {
            self.by_age.remove(&(first, e164.to_string()));
        }
    }
}

/// What a saved outcome did to the tally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapupApplied {
    /// Counted (or nothing to count).
    Done,
    /// The tally cannot tell whether its wrap-up is counted: re-base.
    Unknown,
}

impl LiveTally {
    /// An empty day (no calls, no callbacks).
    pub fn empty(date: NaiveDate, service_level_secs: u32) -> Self {
        let (from, to) = stats::day_bounds(date);
        LiveTally {
            date,
            from,
            to,
            service_level_secs,
            totals: DayTotals::default(),
            open: HashMap::new(),
            pending_wrapup: HashSet::new(),
            pending_full: false,
            early_wrapup: HashMap::new(),
            callbacks: OpenCallbacks::default(),
        }
    }

    /// Reads `date`'s sums, its open calls, its calls waiting for a wrap-up time and the open
    /// callbacks from the database: the full read the tally then saves for every event.
    /// Run it while no call event is being committed (the hub holds the writer's fence), so
    /// that what it read and the events announced after it do not overlap.
    pub async fn load(
        db: &Db,
        date: NaiveDate,
        service_level_secs: u32,
    ) -> Result<Self, CallsError> {
        let mut t = Self::empty(date, service_level_secs);
        let (from, to) = (to_db_time(t.from), to_db_time(t.to));
        let sql = format!(
            "SELECT {} FROM calls WHERE arrived_at >= $1 AND arrived_at < $2",
            super::tally::totals_columns()
        );
        let r = sqlx::query(&sql)
            .bind(&from)
            .bind(&to)
            .bind(i64::from(service_level_secs) * 1000)
            .fetch_one(db.pool())
            .await?;
        t.totals = super::tally::totals_from_row(&r, 0)?;
        let rows = sqlx::query(
            "SELECT call_key, CAST(CASE WHEN answered_at IS NOT NULL THEN 1 ELSE 0 END AS BIGINT) \
             FROM calls WHERE arrived_at >= $1 AND arrived_at < $2 AND ended_at IS NULL",
        )
        .bind(&from)
        .bind(&to)
        .fetch_all(db.pool())
        .await?;
        for r in &rows {
            t.open.insert(r.try_get(0)?, r.try_get::<i64, _>(1)? != 0);
        }
        let rows = sqlx::query(&format!(
            "SELECT call_key FROM calls WHERE arrived_at >= $1 AND arrived_at < $2 \
             AND answered_at IS NOT NULL AND talk_ms IS NOT NULL AND wrapup_ms IS NULL LIMIT {}",
            PENDING_MAX + 1
        ))
        .bind(&from)
        .bind(&to)
        .fetch_all(db.pool())
        .await?;
        for r in &rows {
            t.remember_pending(&r.try_get::<String, _>(0)?);
        }
        t.callbacks = OpenCallbacks::load(db).await?;
        Ok(t)
    }

    /// Replaces the open callbacks (read again: one was closed by hand, or purged).
    pub fn set_callbacks(&mut self, open: OpenCallbacks) {
        self.callbacks = open;
    }

    /// The day counted.
    pub fn date(&self) -> NaiveDate {
        self.date
    }

    /// The sums so far.
    pub fn totals(&self) -> &DayTotals {
        &self.totals
    }

    /// The figures now.
    pub fn stats(&self, line_state: LineState, now: DateTime<Utc>) -> LiveStats {
        stats::compute(
            self.date,
            &self.totals,
            line_state,
            self.callbacks.waiting(),
            now,
            self.service_level_secs,
        )
    }

    fn remember_pending(&mut self, key: &str) {
        if self.pending_wrapup.len() < PENDING_MAX {
            self.pending_wrapup.insert(key_hash(key));
        } else {
            self.pending_full = true;
        }
    }

    /// Moves the figures by one event the call log has committed. Each event counts once: the
    /// writer announces every event once, and a call ends once.
    pub fn apply(&mut self, ev: &CallEvent) {
        let call = ev.call();
        // The callback list is not per day.
        if let Some(e164) = call.caller.as_ref().and_then(|c| c.e164()) {
            match ev {
                CallEvent::Ended { cause, at, .. } if cause.code().is_missed() => {
                    self.callbacks.missed(e164, *at)
                }
                CallEvent::Answered { .. } => self.callbacks.answered(e164),
                _ => {}
            }
        }
        if call.arrived_at < self.from || call.arrived_at >= self.to {
            return;
        }
        let t = &mut self.totals;
        match ev {
            CallEvent::Ringing { .. } => {
                if !self.open.contains_key(&call.key) {
                    t.offered += 1;
                    self.open.insert(call.key.clone(), false);
                }
            }
            CallEvent::Answered { .. } => {
                let answered = self.open.entry(call.key.clone()).or_insert_with(|| {
                    t.offered += 1;
                    false
                });
                if !*answered {
                    *answered = true;
                    t.answered += 1;
                }
            }
            CallEvent::Ended {
                at,
                cause,
                rang_at,
                answered_at,
                ..
            } => {
                let code = cause.code();
                let not_offered = EndCode::NOT_OFFERED.contains(&code);
                let was_answered = match self.open.remove(&call.key) {
                    // The row was offered while it had no end cause.
                    Some(answered) => {
                        if not_offered {
                            t.offered -= 1;
                        }
                        answered
                    }
                    None => {
                        if !not_offered {
                            t.offered += 1;
                        }
                        false
                    }
                };
                let answered = was_answered || answered_at.is_some();
                if answered && !was_answered {
                    t.answered += 1;
                }
                match code {
                    EndCode::Abandoned => t.abandoned += 1,
                    EndCode::Busy => t.busy += 1,
                    EndCode::Closed => t.closed += 1,
                    EndCode::Unstaffed => t.unstaffed += 1,
                    c if EndCode::NO_ANSWER.contains(&c) => t.no_answer += 1,
                    _ => {}
                }
                let ring_ms = millis(*rang_at, Some(answered_at.unwrap_or(*at)));
                let talk_ms = millis(*answered_at, Some(*at));
                if let (true, Some(ring)) = (answered, ring_ms) {
                    t.ring_ms_sum += ring;
                    t.ring_n += 1;
                    if ring <= i64::from(self.service_level_secs) * 1000 {
                        t.within_service_level += 1;
                    }
                }
                if let (true, Some(talk)) = (answered, talk_ms) {
                    t.handle_ms_sum += talk;
                    t.handle_n += 1;
                    match self.early_wrapup.remove(&key_hash(&call.key)) {
                        Some(wrapup) => t.handle_ms_sum += wrapup,
                        None => self.remember_pending(&call.key),
                    }
                }
            }
        }
    }

    /// An outcome was saved for call `key` of the day, which now has `wrapup_ms`: the first
    /// such save after the call ended adds the wrap-up time.
    pub fn wrapup_saved(
        &mut self,
        key: &str,
        arrived_at: DateTime<Utc>,
        wrapup_ms: Option<i64>,
    ) -> WrapupApplied {
        let Some(wrapup) = wrapup_ms else {
            return WrapupApplied::Done;
        };
        if arrived_at < self.from || arrived_at >= self.to {
            return WrapupApplied::Done;
        }
        let h = key_hash(key);
        if self.pending_wrapup.remove(&h) {
            self.totals.handle_ms_sum += wrapup;
            WrapupApplied::Done
        } else if self.open.contains_key(key) {
            // Its end is stored (a wrap-up needs it) and on its way to the tally.
            if self.early_wrapup.len() < PENDING_MAX {
                self.early_wrapup.insert(h, wrapup);
                WrapupApplied::Done
            } else {
                WrapupApplied::Unknown
            }
        } else if self.pending_full {
            WrapupApplied::Unknown
        } else {
            WrapupApplied::Done
        }
    }
}

/// A saved outcome's call as the tally needs it: key, arrival, wrap-up.
pub struct SavedWrapup {
    /// Our call id.
    pub call_key: String,
    /// Arrival.
    pub arrived_at: DateTime<Utc>,
    /// The wrap-up time now stored.
    pub wrapup_ms: Option<i64>,
}

/// Reads what [`LiveTally::wrapup_saved`] needs of call `id` (one row by its key).
pub async fn saved_wrapup(db: &Db, id: i64) -> Result<Option<SavedWrapup>, CallsError> {
    let row = sqlx::query("SELECT call_key, arrived_at, wrapup_ms FROM calls WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(SavedWrapup {
        call_key: r.try_get(0)?,
        arrived_at: from_db_time(&r.try_get::<String, _>(1)?).unwrap_or_default(),
        wrapup_ms: r.try_get(2)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::callerid::CallerId;
    use crate::calls::{callbacks, CallInfo, CallLog, EndCause, Outcome, OutcomeInput};
    use crate::hours::ClosedReason;
    use crate::privacy::{Actor, Role};
    use chrono::{Duration, TimeZone};

    const SL: u32 = 20;

    fn now() -> DateTime<Utc> {
        chrono_tz::Asia::Tokyo
            .with_ymd_and_hms(2026, 11, 25, 11, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn call(key: &str, number: Option<&str>, arrived_at: DateTime<Utc>) -> CallInfo {
        CallInfo {
            key: key.into(),
            sip_call_id: format!("{key}@trunk"),
            caller: number.map(|n| CallerId::Number {
                e164: n.into(),
                display: n.into(),
            }),
            line_number: Some("0120000000".into()),
            source: "127.0.0.1:5060".into(),
            arrived_at,
        }
    }

    fn ringing(c: &CallInfo, after: i64) -> CallEvent {
        CallEvent::Ringing {
            call: c.clone(),
            at: c.arrived_at + Duration::milliseconds(after),
        }
    }

    fn answered(c: &CallInfo, after: i64) -> CallEvent {
        CallEvent::Answered {
            call: c.clone(),
            at: c.arrived_at + Duration::milliseconds(after),
            operator: Some("operator1".into()),
            extension: "201".into(),
        }
    }

    fn ended(
        c: &CallInfo,
        cause: EndCause,
        rang: Option<i64>,
        ans: Option<i64>,
        end: i64,
    ) -> CallEvent {
        let t = |ms: i64| c.arrived_at + Duration::milliseconds(ms);
        CallEvent::Ended {
            call: c.clone(),
            at: t(end),
            cause,
            hangup_by: None,
            rang_at: rang.map(t),
            answered_at: ans.map(t),
        }
    }

    async fn fresh(db: &Db, log: &CallLog) -> LiveStats {
        let date = now().with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
        let (from, to) = stats::day_bounds(date);
        let totals = log.totals(from, to, i64::from(SL) * 1000).await.unwrap();
        let waiting = callbacks::waiting(db).await.unwrap();
        stats::compute(date, &totals, LineState::Idle, waiting, now(), SL)
    }

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect_and_migrate(&format!("sqlite://{}/t.db", dir.path().display()), 1)
            .await
            .unwrap();
        (dir, db)
    }

    /// Every kind of call, in the orders the proxy publishes them, with the callback list
    /// and a saved outcome: after each event the tally equals a fresh aggregate, and a
    /// re-base half way changes nothing.
    #[tokio::test]
    async fn every_event_moves_the_figures_to_what_a_fresh_aggregate_says() {
        let (_dir, db) = db().await;
        let log = CallLog::new(db.clone(), "test");
        let date = now().with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
        let t0 = now() - Duration::minutes(30);
        let yesterday = now() - Duration::days(1);
        let a = call("a", Some("+81134220001"), t0);
        let b = call("b", Some("+81134220002"), t0);
        let c = call("c", Some("+81134220003"), t0);
        let d = call("d", None, t0);
        let e = call("e", Some("+81134220002"), t0 + Duration::minutes(1));
        let old = call("old", Some("+81134220004"), yesterday);
        let events = vec![
            ringing(&a, 100),
            answered(&a, 5_000),
            ringing(&b, 100),
            ended(&b, EndCause::Abandoned, Some(100), None, 9_000),
            ended(&a, EndCause::Completed, Some(100), Some(5_000), 65_000),
            ended(&c, EndCause::Busy, None, None, 10),
            ended(
                &d,
                EndCause::Closed(ClosedReason::OutsideHours),
                None,
                None,
                10,
            ),
            ended(&call("r", None, t0), EndCause::Rejected, None, None, 1),
            ended(
                &call("u", Some("+81134220005"), t0),
                EndCause::Unstaffed,
                None,
                None,
                1,
            ),
            ringing(&call("n", None, t0), 50),
            ended(
                &call("n", None, t0),
                EndCause::NoAnswer,
                Some(50),
                None,
                30_050,
            ),
            ended(
                &call("f", None, t0),
                EndCause::Refused(486),
                Some(50),
                None,
                2_000,
            ),
            // The number that abandoned gets through: its callback is moot.
            ringing(&e, 100),
            answered(&e, 30_000),
            ended(&e, EndCause::Completed, Some(100), Some(30_000), 90_000),
            // Answered without an answered event, and the line cut by a restart.
            ringing(&call("g", None, t0), 10),
            ended(
                &call("g", None, t0),
                EndCause::Expired,
                Some(10),
                Some(3_000),
                100_000,
            ),
            ringing(&call("i", None, t0), 10),
            answered(&call("i", None, t0), 1_000),
            ended(
                &call("i", None, t0),
                EndCause::Interrupted,
                None,
                None,
                50_000,
            ),
            // Yesterday's call ending today counts on the callback list only.
            ended(&old, EndCause::Abandoned, Some(10), None, 5_000),
        ];
        let mut tally = LiveTally::load(&db, date, SL).await.unwrap();
        for (i, ev) in events.iter().enumerate() {
            log.apply(ev).await.unwrap();
            tally.apply(ev);
            assert_eq!(
                tally.stats(LineState::Idle, now()),
                fresh(&db, &log).await,
                "event {i}: {ev:?}"
            );
            if i == 3 {
                // A re-base while calls are open keeps them.
                tally = LiveTally::load(&db, date, SL).await.unwrap();
                assert_eq!(tally.stats(LineState::Idle, now()), fresh(&db, &log).await);
            }
        }
        let s = tally.stats(LineState::Idle, now());
        assert_eq!((s.offered, s.answered, s.abandoned, s.busy), (9, 4, 1, 1));
        assert_eq!((s.closed, s.no_answer, s.unstaffed), (1, 2, 1));
        assert_eq!(s.callbacks_waiting, 3, "{s:?}");

        // The first outcome saved after the end adds the wrap-up; a correction does not.
        let manager = Actor {
            user_id: None,
            username: "manager1".into(),
            role: Some(Role::Manager),
            ip: None,
        };
        let input = OutcomeInput {
            outcome: Outcome::Other,
            note: String::new(),
            topics: Vec::new(),
        };
        for at in [now(), now() + Duration::minutes(3)] {
            let row = log.set_outcome(&manager, "a", &input, at).await.unwrap();
            let saved = saved_wrapup(&db, row.id).await.unwrap().unwrap();
            assert_eq!(
                tally.wrapup_saved(&saved.call_key, saved.arrived_at, saved.wrapup_ms),
                WrapupApplied::Done
            );
            assert_eq!(tally.stats(LineState::Idle, now()), fresh(&db, &log).await);
        }
        // An outcome saved before the tally heard of the end it follows.
        let h = call("h", None, t0);
        for ev in [ringing(&h, 10), answered(&h, 2_000)] {
            log.apply(&ev).await.unwrap();
            tally.apply(&ev);
        }
        let end = ended(&h, EndCause::Completed, Some(10), Some(2_000), 40_000);
        log.apply(&end).await.unwrap();
        let row = log.set_outcome(&manager, "h", &input, now()).await.unwrap();
        let saved = saved_wrapup(&db, row.id).await.unwrap().unwrap();
        assert_eq!(
            tally.wrapup_saved(&saved.call_key, saved.arrived_at, saved.wrapup_ms),
            WrapupApplied::Done
        );
        tally.apply(&end);
        assert_eq!(tally.stats(LineState::Idle, now()), fresh(&db, &log).await);

        // A re-base knows which calls still wait for their wrap-up.
        let mut tally = LiveTally::load(&db, date, SL).await.unwrap();
        let row = log.set_outcome(&manager, "e", &input, now()).await.unwrap();
        let saved = saved_wrapup(&db, row.id).await.unwrap().unwrap();
        tally.wrapup_saved(&saved.call_key, saved.arrived_at, saved.wrapup_ms);
        assert_eq!(tally.stats(LineState::Idle, now()), fresh(&db, &log).await);
    }
}
