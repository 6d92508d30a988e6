use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::calls::callerid::{display_national, CallerId, WithheldReason};
use crate::clock::{from_db_time, to_db_time};
use crate::privacy::{
    append_audit, Actor, AuditAction, AuditEntry, AuditOutcome, AuditTarget, Role,
};
use crate::store::Db;

use super::{CallEvent, CallerKind, CallsError, EndCode, Outcome, Party, Topic};

/// The call log table.
#[derive(Clone)]
pub struct CallLog {
    db: Db,
    /// Which instance writes through this log: it owns the calls it inserts.
    instance: Arc<str>,
    counters: Arc<Counters>,
}

struct Counters {
    written: AtomicU64,
    batches: AtomicU64,
    retries: AtomicU64,
    dead_letters: AtomicU64,
    /// Calls whose end was written, by [`EndCode::ALL`] index.
    ended: Vec<AtomicU64>,
    /// Seconds each batch took to write, retries included (for `/metrics`).
    write_seconds: prometheus_client::metrics::histogram::Histogram,
    /// When the write in progress began, in ms after [`writer_epoch`] plus one; 0 = idle.
    busy_since: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            written: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            ended: EndCode::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            // 1 ms … about 16 s: a healthy batch takes milliseconds, a database away seconds.
            write_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15),
            ),
            busy_since: AtomicU64::new(0),
        }
    }
}

/// The instant the writer's busy clock counts from.
fn writer_epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// What the call-log writer has done since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriterCounters {
    /// Events written.
    pub written: u64,
    /// Transactions they were written in.
    pub batches: u64,
    /// Writes retried after a passing failure (the database away, busy, restarting).
    pub retries: u64,
    /// Events that could not be written at all; kept in `call_log_dead_letters`.
    pub dead_letters: u64,
}

/// Text from the network as it may be stored: control characters (a NUL, which PostgreSQL
/// refuses in text; an escape sequence for a terminal) become `\u{..}`.
pub fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The caller as stored and shown.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallerView {
    /// What the network told us.
    pub kind: CallerKind,
    /// E.164, for valid numbers.
    pub e164: Option<String>,
    /// What the operator sees: 0134-32-4111, the raw digits, or 非通知 / 公衆電話 / 表示圏外.
    pub display: String,
    /// Why the number is not shown.
    pub withheld_reason: Option<WithheldReason>,
}

impl CallerView {
    /// The view of what the network told us of the caller.
    pub fn of(caller: Option<&CallerId>) -> Self {
        let (kind, e164, display, withheld_reason) = match caller {
            Some(CallerId::Number { e164, display }) => (
                CallerKind::Number,
                Some(e164.clone()),
                display.clone(),
                None,
            ),
            Some(CallerId::Unparsed { raw_digits }) => {
                (CallerKind::Unparsed, None, raw_digits.clone(), None)
            }
            Some(CallerId::Withheld { reason }) => (
                CallerKind::Withheld,
                None,
                reason.label_ja().to_string(),
                Some(*reason),
            ),
            None => (
                CallerKind::Unknown,
                None,
                CallerKind::Unknown.label_ja().to_string(),
                None,
            ),
        };
        CallerView {
            kind,
            e164,
            display,
            withheld_reason,
        }
    }
}

/// One call as the API returns it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallRow {
    /// Row id.
    pub id: i64,
    /// Our call id.
    pub call_key: String,
    /// Who called.
    pub caller: CallerView,
    /// The number dialled.
    pub line_number: Option<String>,
    /// Arrival.
    pub arrived_at: DateTime<Utc>,
    /// When the phones started ringing.
    pub rang_at: Option<DateTime<Utc>>,
    /// When an operator answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// Which operator account answered.
    pub answered_by: Option<String>,
    /// Which phone answered.
    pub answered_extension: Option<String>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended.
    pub end_cause: Option<EndCode>,
    /// Extra detail: the closing reason, the refusing status.
    pub end_detail: Option<String>,
    /// Who hung up, for completed calls.
    pub hangup_by: Option<Party>,
    /// Seconds it rang before it was answered or given up.
    pub ring_seconds: Option<f64>,
    /// Seconds of conversation.
    pub talk_seconds: Option<f64>,
    /// The operator's outcome.
    pub outcome: Option<Outcome>,
    /// The operator's note.
    pub outcome_note: Option<String>,
    /// Topic tags of an inquiry.
    pub outcome_topics: Vec<Topic>,
    /// When the outcome was saved (the end of the wrap-up).
    pub outcome_at: Option<DateTime<Utc>>,
}

/// The longest note an operator can save with an outcome, in characters.
pub const NOTE_MAX_CHARS: usize = 1000;

/// What the operator records about an answered call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeInput {
    /// The outcome.
    pub outcome: Outcome,
    /// Free text (no personal data: the UI says so), at most [`NOTE_MAX_CHARS`] characters.
    #[serde(default)]
    pub note: String,
    /// Topic tags, for inquiries.
    #[serde(default)]
    pub topics: Vec<Topic>,
}

/// Why an outcome was not saved.
#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// No such call.
    #[error("no such call")]
    NotFound,
    /// The call was never answered: there is nothing to wrap up.
    #[error("the call was not answered")]
    NotAnswered,
    /// Another operator answered the call: only they, or a manager, record its outcome.
    #[error("the call was answered by someone else")]
    NotYours,
    /// Storage failed.
    #[error(transparent)]
    Calls(#[from] CallsError),
}

impl From<sqlx::Error> for OutcomeError {
    fn from(e: sqlx::Error) -> Self {
        OutcomeError::Calls(e.into())
    }
}

impl OutcomeInput {
    fn validate(&self) -> Result<(), OutcomeError> {
        // A booking outcome stands for a booking: the booking records it with the call (issue
        // 18 item 2), so it cannot be chosen by hand for a call no booking was made on.
        if self.outcome == Outcome::Booking {
            return Err(OutcomeError::Invalid(
                "「予約受付」は予約を登録すると自動で記録されます。「予約受付を開始」から予約を登録してください。"
                    .into(),
            ));
        }
        if self.note.chars().count() > NOTE_MAX_CHARS {
            return Err(OutcomeError::Invalid(format!(
                "メモは{NOTE_MAX_CHARS}文字以内で入力してください。"
            )));
        }
        Ok(())
    }
}

/// One day's counts and sums (see [`CallLog::totals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayTotals {
    /// Calls while open (all but closed and rejected).
    pub offered: i64,
    /// Calls answered.
    pub answered: i64,
    /// Abandoned while ringing.
    pub abandoned: i64,
    /// Busy.
    pub busy: i64,
    /// Outside the hours.
    pub closed: i64,
    /// Ring timeout or every phone refused.
    pub no_answer: i64,
    /// No phone registered.
    pub unstaffed: i64,
    /// Ringing time of answered calls, ms.
    pub ring_ms_sum: i64,
    /// Answered calls with a ringing time.
    pub ring_n: i64,
    /// Talk + wrap-up of answered, ended calls, ms.
    pub handle_ms_sum: i64,
    /// Answered, ended calls.
    pub handle_n: i64,
    /// Answered within the service-level threshold.
    pub within_service_level: i64,
}

/// Filters for the call list; all optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallFilter {
    /// Arrived at or after.
    pub from: Option<DateTime<Utc>>,
    /// Arrived before.
    pub to: Option<DateTime<Utc>>,
    /// One day in Asia/Tokyo (`YYYY-MM-DD`); combines with from/to.
    pub date: Option<chrono::NaiveDate>,
    /// End cause.
    pub end_cause: Option<EndCode>,
    /// Outcome.
    pub outcome: Option<Outcome>,
    /// Only rows older than this id (paging, newest first).
    pub before_id: Option<i64>,
    /// Page size, default 50, at most 500.
    pub limit: Option<u32>,
}

const COLUMNS: &str = "id, call_key, caller_kind, caller_e164, caller_raw, caller_withheld, line_number, arrived_at, rang_at, \
    answered_at, answered_by_username, answered_extension, ended_at, end_cause, end_detail, hangup_by, ring_ms, talk_ms, outcome, outcome_note, outcome_topics, outcome_at";

fn opt_time(r: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    Ok(r.try_get::<Option<String>, _>(col)?
        .as_deref()
        .and_then(from_db_time))
}

fn row_to_call(r: &AnyRow) -> Result<CallRow, sqlx::Error> {
    let kind: CallerKind = r.try_get("caller_kind")?;
    let e164: Option<String> = r.try_get("caller_e164")?;
    let raw: Option<String> = r.try_get("caller_raw")?;
    let withheld: Option<WithheldReason> = r.try_get("caller_withheld")?;
    let display = match (&e164, &raw, withheld) {
        (Some(e), _, _) => display_national(e),
        (None, Some(raw), _) => raw.clone(),
        (None, None, Some(w)) => w.label_ja().to_string(),
        // A number the purge deleted (R-PII-5).
        (None, None, None) if matches!(kind, CallerKind::Number | CallerKind::Unparsed) => {
            "（削除済み）".to_string()
        }
        _ => CallerKind::Unknown.label_ja().to_string(),
    };
    let ms = |c: &str| -> Result<Option<f64>, sqlx::Error> {
        Ok(r.try_get::<Option<i64>, _>(c)?.map(|v| v as f64 / 1000.0))
    };
    Ok(CallRow {
        id: r.try_get("id")?,
        call_key: r.try_get("call_key")?,
        caller: CallerView {
            kind,
            e164,
            display,
            withheld_reason: withheld,
        },
        line_number: r.try_get("line_number")?,
        arrived_at: from_db_time(&r.try_get::<String, _>("arrived_at")?).unwrap_or_default(),
        rang_at: opt_time(r, "rang_at")?,
        answered_at: opt_time(r, "answered_at")?,
        answered_by: r.try_get("answered_by_username")?,
        answered_extension: r.try_get("answered_extension")?,
        ended_at: opt_time(r, "ended_at")?,
        end_cause: r.try_get("end_cause")?,
        end_detail: r.try_get("end_detail")?,
        hangup_by: r.try_get("hangup_by")?,
        ring_seconds: ms("ring_ms")?,
        talk_seconds: ms("talk_ms")?,
        outcome: r.try_get("outcome")?,
        outcome_note: r.try_get("outcome_note")?,
        outcome_topics: match r.try_get::<Option<String>, _>("outcome_topics")? {
            Some(t) => serde_json::from_str(&t).map_err(|e| sqlx::Error::Decode(e.into()))?,
            None => Vec::new(),
        },
        outcome_at: opt_time(r, "outcome_at")?,
    })
}

/// Milliseconds from `a` to `b` (never negative), when both are known.
pub(super) fn millis(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some((b - a).num_milliseconds().max(0)),
        _ => None,
    }
}

/// Every column an event can set, `None` meaning "leave as it is".
#[derive(Default)]
struct Upsert {
    rang_at: Option<DateTime<Utc>>,
    answered_at: Option<DateTime<Utc>>,
    answered_by: Option<String>,
    extension: Option<String>,
    ended_at: Option<DateTime<Utc>>,
    end_cause: Option<EndCode>,
    end_detail: Option<String>,
    hangup_by: Option<Party>,
    ring_ms: Option<i64>,
    talk_ms: Option<i64>,
}

impl CallLog {
    /// The log on `db`.
    pub fn new(db: Db, instance: &str) -> Self {
        Self {
            db,
            instance: Arc::from(instance),
            counters: Arc::default(),
        }
    }

    /// Writes one event in its own transaction; idempotent, so a retry does no harm.
    pub async fn apply(&self, event: &CallEvent) -> Result<(), CallsError> {
        let mut tx = self.db.pool().begin().await?;
        apply_on(&mut tx, &self.instance, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes `events` in order in one transaction: all or none.
    pub async fn apply_batch(&self, events: &[Arc<CallEvent>]) -> Result<(), CallsError> {
        let mut conn = self.db.pool().acquire().await?;
        self.apply_batch_on(&mut conn, events).await
    }

    /// [`Self::apply_batch`] on a connection the caller keeps: the writer holds one, so its
    /// page cache stays warm instead of each batch meeting a connection whose cache another
    /// batch made stale (issue 17).
    async fn apply_batch_on(
        &self,
        conn: &mut AnyConnection,
        events: &[Arc<CallEvent>],
    ) -> Result<(), CallsError> {
        use sqlx::Connection;
        let mut tx = conn.begin().await?;
        if self.db.backend() == crate::store::Backend::Sqlite {
            apply_all_sqlite(&mut tx, &self.instance, events).await?;
        } else {
            for e in events {
                apply_on(&mut tx, &self.instance, e).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Keeps an event that cannot be written (a permanent database error) with the error,
    /// so nothing is silently lost and the writer can move on.
    pub async fn dead_letter(&self, event: &CallEvent, error: &str, at: DateTime<Utc>) {
        let res = sqlx::query(
            "INSERT INTO call_log_dead_letters (at, call_key, event, error) VALUES ($1, $2, $3, $4)",
        )
        .bind(to_db_time(at))
        .bind(clean(&event.call().key).as_ref())
        .bind(clean(&format!("{event:?}")).as_ref())
        .bind(clean(error).as_ref())
        .execute(self.db.pool())
        .await;
        self.counters.dead_letters.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = res {
            // The last resort is the service log: codes and our key only, no caller number.
            tracing::error!(error = %e, call = %clean(&event.call().key), "dead letter not stored");
        }
    }

    /// The writer's counters.
    pub fn counters(&self) -> WriterCounters {
        let c = &self.counters;
        WriterCounters {
            written: c.written.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            dead_letters: c.dead_letters.load(Ordering::Relaxed),
        }
    }

    /// Calls whose end the writer has written since the start, by end cause (every cause,
    /// zero included).
    pub fn ended_by_cause(&self) -> Vec<(EndCode, u64)> {
        EndCode::ALL
            .iter()
            .copied()
            .zip(&self.counters.ended)
            .map(|(code, n)| (code, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// The histogram of batch write durations in seconds (a handle on the live one).
    pub fn write_seconds(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.counters.write_seconds.clone()
    }

    /// How long the write in progress has been going (retries included); `None` when the
    /// writer is idle.
    pub fn busy_for(&self) -> Option<Duration> {
        let since = self.counters.busy_since.load(Ordering::Relaxed);
        let since = writer_epoch() + Duration::from_millis(since.checked_sub(1)?);
        Some(since.elapsed())
    }

    fn write_started(&self) -> std::time::Instant {
        let now = std::time::Instant::now();
        let ms = now.duration_since(writer_epoch()).as_millis();
        self.counters.busy_since.store(
            u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1,
            Ordering::Relaxed,
        );
        now
    }

    fn write_done(&self, started: std::time::Instant, batch: &[Arc<CallEvent>]) {
        self.counters.busy_since.store(0, Ordering::Relaxed);
        self.counters
            .write_seconds
            .observe(started.elapsed().as_secs_f64());
        for event in batch {
            if let CallEvent::Ended { cause, .. } = event.as_ref() {
                let code = cause.code();
                if let Some(i) = EndCode::ALL.iter().position(|c| *c == code) {
                    self.counters.ended[i].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Writes one event on `conn` (inside the caller's transaction).
async fn apply_on(
    conn: &mut AnyConnection,
    instance: &str,
    event: &CallEvent,
) -> Result<(), CallsError> {
    let row = UpsertRow::of(event);
    row.bind(sqlx::query(UPSERT_SQL), instance)
        .execute(&mut *conn)
        .await?;
    callbacks_on(conn, event).await
}

/// Writes `events` on an SQLite `conn` (inside the caller's transaction) as [`apply_on`] one
/// by one would, with the statements of up to [`CHUNK_MAX`] events in one statement list: one
/// trip to the database thread instead of one per event (issue 17). SQLite runs a list of
/// statements whose `$N` name the list's arguments; PostgreSQL's prepared statements take one
/// statement, so it writes event by event.
async fn apply_all_sqlite(
    conn: &mut AnyConnection,
    instance: &str,
    events: &[Arc<CallEvent>],
) -> Result<(), CallsError> {
    let rows: Vec<UpsertRow> = events.iter().map(|e| UpsertRow::of(e)).collect();
    for chunk in chunks(&rows) {
        let mut q = sqlx::query(UPSERTS.list(chunk.len()));
        for row in chunk {
            q = row.bind(q, instance);
        }
        q.execute(&mut *conn).await?;
    }
    // The callbacks after every row of the batch, in event order: they read only their own
    // table, and each call's row is there before its callback names it. Answers in a row
    // close their numbers' callbacks in one list; a missed call between them is written in
    // its place.
    let mut answered: Vec<(&str, String)> = Vec::new();
    for e in events {
        let e164 = e.call().caller.as_ref().and_then(CallerId::e164);
        match (e.as_ref(), e164) {
            (CallEvent::Answered { at, .. }, Some(e164)) => answered.push((e164, to_db_time(*at))),
            (CallEvent::Ended { cause, .. }, Some(_)) if cause.code().is_missed() => {
                close_answered(conn, &mut answered).await?;
                callbacks_on(conn, e).await?;
            }
            _ => {}
        }
    }
    close_answered(conn, &mut answered).await
}

/// Closes the callbacks of the numbers in `answered` (see `callbacks::answered_later`).
async fn close_answered(
    conn: &mut AnyConnection,
    answered: &mut Vec<(&str, String)>,
) -> Result<(), CallsError> {
    let rows = std::mem::take(answered);
    for chunk in chunks(&rows) {
        let mut q = sqlx::query(ANSWERED.list(chunk.len()));
        for (e164, at) in chunk {
            q = super::callbacks::bind_answered_later(q, e164, at.clone());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `rows` in chunks of a power of two, largest first, up to [`CHUNK_MAX`]: a handful of
/// statement lists per statement, each prepared once per connection.
fn chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (chunk, tail) = rest.split_at(1usize << rest.len().min(CHUNK_MAX).ilog2());
        rest = tail;
        Some(chunk)
    })
}

/// Most statements in one list.
const CHUNK_MAX: usize = 32;

/// One event's upsert of its call's row: new columns are set, set ones are kept (an event
/// that arrives twice changes nothing).
const UPSERT_SQL: &str = "INSERT INTO calls (call_key, sip_call_id, caller_kind, caller_e164, caller_raw, caller_withheld, line_number, source, arrived_at, \
            rang_at, answered_at, answered_by_username, answered_by_user_id, answered_extension, ended_at, end_cause, end_detail, hangup_by, ring_ms, talk_ms, instance) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, (SELECT id FROM users WHERE username = $12), $13, $14, $15, $16, $17, $18, $19, $20) \
         ON CONFLICT (call_key) DO UPDATE SET \
            rang_at = COALESCE(calls.rang_at, excluded.rang_at), \
            answered_at = COALESCE(calls.answered_at, excluded.answered_at), \
            answered_by_username = COALESCE(calls.answered_by_username, excluded.answered_by_username), \
            answered_by_user_id = COALESCE(calls.answered_by_user_id, excluded.answered_by_user_id), \
            answered_extension = COALESCE(calls.answered_extension, excluded.answered_extension), \
            ended_at = COALESCE(calls.ended_at, excluded.ended_at), \
            end_cause = COALESCE(calls.end_cause, excluded.end_cause), \
            end_detail = COALESCE(calls.end_detail, excluded.end_detail), \
            hangup_by = COALESCE(calls.hangup_by, excluded.hangup_by), \
            ring_ms = COALESCE(calls.ring_ms, excluded.ring_ms), \
            talk_ms = COALESCE(calls.talk_ms, excluded.talk_ms)";

/// The upserts as statement lists.
static UPSERTS: Lists = Lists::new(UPSERT_SQL, 20);

/// `callbacks::answered_later` as statement lists.
static ANSWERED: Lists = Lists::new(super::callbacks::ANSWERED_LATER_SQL, 4);

/// One statement repeated as lists of a power of two up to [`CHUNK_MAX`], the k-th copy
/// naming arguments `k*params+1 ..= k*params+params`; built once.
struct Lists {
    sql: &'static str,
    params: usize,
    built: std::sync::OnceLock<Vec<String>>,
}

impl Lists {
    const fn new(sql: &'static str, params: usize) -> Self {
        Self {
            sql,
            params,
            built: std::sync::OnceLock::new(),
        }
    }

    /// The list of `n` copies (`n` a power of two up to [`CHUNK_MAX`]; anything else: one).
    fn list(&self, n: usize) -> &str {
        let built = self.built.get_or_init(|| {
            (0..=CHUNK_MAX.ilog2())
                .map(|p| {
                    (0..1usize << p)
                        .map(|k| renumber(self.sql, k * self.params))
                        .collect::<Vec<_>>()
                        .join(";\n")
                })
                .collect()
        });
        let i = if n.is_power_of_two() && n <= CHUNK_MAX {
            n.ilog2() as usize
        } else {
            0
        };
        built.get(i).map_or(self.sql, String::as_str)
    }
}

/// `sql` with every `$N` written as `$(N + by)` (our own constant SQL: no strings or
/// comments in it hold a `$`).
fn renumber(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 40);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut n = 0usize;
        let mut digits = false;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            n = n * 10 + d as usize;
            digits = true;
            chars.next();
        }
        if digits {
            out.push_str(&(n + by).to_string());
        }
    }
    out
}

/// The bind values of one event's upsert, in the order of [`UPSERT_SQL`]'s `$1..$20`.
struct UpsertRow {
    key: String,
    sip_call_id: String,
    kind: CallerKind,
    e164: Option<String>,
    raw: Option<String>,
    withheld: Option<WithheldReason>,
    line_number: Option<String>,
    source: String,
    arrived_at: String,
    rang_at: Option<String>,
    answered_at: Option<String>,
    answered_by: Option<String>,
    extension: Option<String>,
    ended_at: Option<String>,
    end_cause: Option<EndCode>,
    end_detail: Option<String>,
    hangup_by: Option<Party>,
    ring_ms: Option<i64>,
    talk_ms: Option<i64>,
}

impl UpsertRow {
    fn of(event: &CallEvent) -> Self {
        let u = match event {
            CallEvent::Ringing { at, .. } => Upsert {
                rang_at: Some(*at),
                ..Default::default()
            },
            CallEvent::Answered {
                at,
                operator,
                extension,
                ..
            } => Upsert {
                answered_at: Some(*at),
                answered_by: operator.clone(),
                extension: Some(extension.clone()),
                ..Default::default()
            },
            CallEvent::Ended {
                at,
                cause,
                hangup_by,
                rang_at,
                answered_at,
                ..
            } => Upsert {
                rang_at: *rang_at,
                answered_at: *answered_at,
                ended_at: Some(*at),
                end_cause: Some(cause.code()),
                end_detail: cause.detail(),
                hangup_by: *hangup_by,
                // Ringing lasts until the answer, or until the caller or the timeout gave up.
                ring_ms: millis(*rang_at, Some(answered_at.unwrap_or(*at))),
                talk_ms: millis(*answered_at, Some(*at)),
                ..Default::default()
            },
        };
        let call = event.call();
        let (kind, e164, raw, withheld) = match &call.caller {
            Some(CallerId::Number { e164, .. }) => {
                (CallerKind::Number, Some(e164.clone()), None, None)
            }
            Some(CallerId::Unparsed { raw_digits }) => {
                (CallerKind::Unparsed, None, Some(raw_digits.clone()), None)
            }
            Some(CallerId::Withheld { reason }) => {
                (CallerKind::Withheld, None, None, Some(*reason))
            }
            None => (CallerKind::Unknown, None, None, None),
        };
        let owned = |s: &str| clean(s).into_owned();
        UpsertRow {
            key: owned(&call.key),
            sip_call_id: owned(&call.sip_call_id),
            kind,
            e164,
            raw: raw.as_deref().map(owned),
            withheld,
            line_number: call.line_number.as_deref().map(owned),
            source: owned(&call.source),
            arrived_at: to_db_time(call.arrived_at),
            rang_at: u.rang_at.map(to_db_time),
            answered_at: u.answered_at.map(to_db_time),
            answered_by: u.answered_by.as_deref().map(owned),
            extension: u.extension.as_deref().map(owned),
            ended_at: u.ended_at.map(to_db_time),
            end_cause: u.end_cause,
            end_detail: u.end_detail.as_deref().map(owned),
            hangup_by: u.hangup_by,
            ring_ms: u.ring_ms,
            talk_ms: u.talk_ms,
        }
    }

    /// Binds this row's 20 values next on `q`.
    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        instance: &'q str,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        q.bind(self.key.as_str())
            .bind(self.sip_call_id.as_str())
            .bind(self.kind)
            .bind(self.e164.as_deref())
            .bind(self.raw.as_deref())
            .bind(self.withheld)
            .bind(self.line_number.as_deref())
            .bind(self.source.as_str())
            .bind(self.arrived_at.as_str())
            .bind(self.rang_at.as_deref())
            .bind(self.answered_at.as_deref())
            .bind(self.answered_by.as_deref())
            .bind(self.extension.as_deref())
            .bind(self.ended_at.as_deref())
            .bind(self.end_cause)
            .bind(self.end_detail.as_deref())
            .bind(self.hangup_by)
            .bind(self.ring_ms)
            .bind(self.talk_ms)
            .bind(instance)
    }
}

/// What an event changes in the callback list: a missed call of a number opens or updates
/// its callback; an answered one closes it.
async fn callbacks_on(conn: &mut AnyConnection, event: &CallEvent) -> Result<(), CallsError> {
    let call = event.call();
    if let Some(e164) = call.caller.as_ref().and_then(CallerId::e164) {
        match event {
            CallEvent::Ended { cause, at, .. } if cause.code().is_missed() => {
                super::callbacks::record_missed(conn, e164, cause.code(), &call.key, *at).await?;
            }
            CallEvent::Answered { at, .. } => {
                super::callbacks::answered_later(conn, e164, *at).await?
            }
            _ => {}
        }
    }
    Ok(())
}

impl CallLog {
    /// Records `actor`'s outcome of an answered call, given by row id or call key (a
    /// correction overwrites it); the change and its `call.outcome` row commit together.
    /// Only the operator who answered, or a manager, may; a refusal is recorded as denied.
    pub async fn set_outcome(
        &self,
        actor: &Actor,
        id_or_key: &str,
        o: &OutcomeInput,
        at: DateTime<Utc>,
    ) -> Result<CallRow, OutcomeError> {
        o.validate()?;
        let id = self
            .resolve(id_or_key)
            .await?
            .ok_or(OutcomeError::NotFound)?;
        let mut tx = self.db.pool().begin().await?;
        let call = fetch_one(&mut tx, id)
            .await?
            .ok_or(OutcomeError::NotFound)?;
        if call.answered_at.is_none() {
            return Err(OutcomeError::NotAnswered);
        }
        if !may_record_outcome(actor, &call) {
            let entry = AuditEntry::new(AuditAction::CallOutcome)
                .target(AuditTarget::Call, id)
                .outcome(AuditOutcome::Denied);
            append_audit(&mut tx, at, actor, &entry).await?;
            tx.commit().await?;
            return Err(OutcomeError::NotYours);
        }
        sqlx::query(
            "UPDATE calls SET outcome = $1, outcome_note = $2, outcome_topics = $3, outcome_by_user_id = $4, outcome_at = $5, \
             wrapup_ms = COALESCE(wrapup_ms, $6) WHERE id = $7",
        )
        .bind(o.outcome)
        .bind(o.note.trim())
        .bind(serde_json::to_string(&o.topics).unwrap_or_default())
        .bind(actor.user_id)
        .bind(to_db_time(at))
        // The wrap-up ends with the first save after the call; a later correction is not work time.
        .bind(call.ended_at.map(|e| (at - e).num_milliseconds().max(0)))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let entry = AuditEntry::new(AuditAction::CallOutcome)
            .target(AuditTarget::Call, id)
            .detail(serde_json::json!({ "outcome": o.outcome }));
        append_audit(&mut tx, at, actor, &entry).await?;
        let row = fetch_one(&mut tx, id)
            .await?
            .ok_or(OutcomeError::NotFound)?;
        tx.commit().await?;
        Ok(row)
    }

    /// Answered calls still waiting for an outcome: the actor's own, or everyone's for a
    /// manager. The read of their numbers is recorded (R-PII-4).
    pub async fn read_wrapups(
        &self,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Vec<CallRow>, CallsError> {
        let all = actor.role == Some(Role::Manager);
        let mut tx = self.db.pool().begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM calls WHERE answered_at IS NOT NULL AND outcome IS NULL \
             AND (answered_by_username = $1 OR $2 = 1) ORDER BY id DESC LIMIT 200"
        ))
        .bind(&actor.username)
        .bind(i64::from(all))
        .fetch_all(&mut *tx)
        .await?;
        let rows = rows
            .iter()
            .map(row_to_call)
            .collect::<Result<Vec<_>, _>>()?;
        audit_reads(&mut tx, actor, at, &rows).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// The call log for `actor`: calls matching `f`, newest first; the read of their
    /// numbers is recorded in the same transaction (R-PII-4).
    pub async fn read_list(
        &self,
        actor: &Actor,
        f: &CallFilter,
        at: DateTime<Utc>,
    ) -> Result<Vec<CallRow>, CallsError> {
        let mut tx = self.db.pool().begin().await?;
        let rows = list_on(&mut tx, f).await?;
        audit_reads(&mut tx, actor, at, &rows).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// One call for `actor`, by row id or call key; the read is recorded (R-PII-4).
    pub async fn read_one(
        &self,
        actor: &Actor,
        id_or_key: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<CallRow>, CallsError> {
        let Some(id) = self.resolve(id_or_key).await? else {
            return Ok(None);
        };
        let mut tx = self.db.pool().begin().await?;
        let Some(row) = fetch_one(&mut tx, id).await? else {
            return Ok(None);
        };
        let entry = AuditEntry::new(AuditAction::CallRead).target(AuditTarget::Call, id);
        append_audit(&mut tx, at, actor, &entry).await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    /// Records that screen pops showed `actor` the callers of `pops` (call key, and the
    /// message that first showed it): one `call.pop` row each, in one transaction.
    pub async fn record_pops(
        &self,
        actor: &Actor,
        pops: &[(String, &'static str)],
        at: DateTime<Utc>,
    ) -> Result<(), CallsError> {
        let entry = |(key, via): &(String, &'static str)| {
            AuditEntry::new(AuditAction::CallPop)
                .target(AuditTarget::Call, key)
                .detail(serde_json::json!({ "via": via }))
        };
        if let [one] = pops {
            // One row is one statement, atomic by itself: no BEGIN and COMMIT around it,
            // two trips to the database fewer for each call a screen shows (issue 17).
            let mut conn = self.db.pool().acquire().await?;
            append_audit(&mut conn, at, actor, &entry(one)).await?;
            return Ok(());
        }
        let mut tx = self.db.pool().begin().await?;
        for pop in pops {
            append_audit(&mut tx, at, actor, &entry(pop)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Earlier calls from the same number, newest first, without `except_key`.
    pub async fn history(
        &self,
        e164: &str,
        except_key: &str,
        limit: u32,
    ) -> Result<Vec<CallRow>, CallsError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM calls WHERE caller_e164 = $1 AND call_key <> $2 ORDER BY id DESC LIMIT {}",
            limit.clamp(1, 100)
        ))
        .bind(e164)
        .bind(except_key)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(row_to_call).collect::<Result<_, _>>()?)
    }

    /// The day's totals behind the live statistics, aggregated in the database so the cost
    /// does not grow with the number of calls.
    pub async fn totals(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        service_level_ms: i64,
    ) -> Result<DayTotals, CallsError> {
        let sql = format!(
            "SELECT {} FROM calls WHERE arrived_at >= $1 AND arrived_at < $2",
            super::tally::totals_columns()
        );
        let r = sqlx::query(&sql)
            .bind(to_db_time(from))
            .bind(to_db_time(to))
            .bind(service_level_ms)
            .fetch_one(self.db.pool())
            .await?;
        Ok(super::tally::totals_from_row(&r, 0)?)
    }

    /// Closes this instance's calls left open by its previous run as `interrupted`; returns
    /// how many. Calls of other instances sharing the database are theirs to close (rows from
    /// before instances were recorded have none and are closed by any).
    pub async fn close_interrupted(&self, now: DateTime<Utc>) -> Result<u64, CallsError> {
        let n = sqlx::query(
            "UPDATE calls SET ended_at = $1, end_cause = $2 \
             WHERE ended_at IS NULL AND (instance = $3 OR instance IS NULL)",
        )
        .bind(to_db_time(now))
        .bind(EndCode::Interrupted)
        .bind(self.instance.as_ref())
        .execute(self.db.pool())
        .await?
        .rows_affected();
        Ok(n)
    }

    /// Calls matching `f`, newest first (not audited: for the service itself and tests;
    /// staff reads go through [`CallLog::read_list`]).
    pub async fn list(&self, f: &CallFilter) -> Result<Vec<CallRow>, CallsError> {
        let mut conn = self.db.pool().acquire().await?;
        list_on(&mut conn, f).await
    }

    /// One call by row id.
    pub async fn get(&self, id: i64) -> Result<Option<CallRow>, CallsError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM calls WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.as_ref().map(row_to_call).transpose()?)
    }

    /// The row id of a call given by row id or by call key.
    pub async fn resolve(&self, id_or_key: &str) -> Result<Option<i64>, CallsError> {
        if let Ok(id) = id_or_key.parse::<i64>() {
            return Ok(Some(id));
        }
        Ok(self.get_by_key(id_or_key).await?.map(|c| c.id))
    }

    /// One call by our call key.
    pub async fn get_by_key(&self, key: &str) -> Result<Option<CallRow>, CallsError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM calls WHERE call_key = $1"))
            .bind(key)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.as_ref().map(row_to_call).transpose()?)
    }

    /// Calls still open that other instances sharing the database carry (issue 16 item 1),
    /// oldest first: what a screen on this instance shows after a start or a lost link.
    pub async fn open_elsewhere(&self) -> Result<Vec<CallRow>, CallsError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM calls \
             WHERE ended_at IS NULL AND instance IS NOT NULL AND instance <> $1 \
             ORDER BY arrived_at"
        ))
        .bind(self.instance.as_ref())
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(row_to_call).collect::<Result<_, _>>()?)
    }
}

/// Calls matching `f`, newest first, on `conn`.
async fn list_on(conn: &mut AnyConnection, f: &CallFilter) -> Result<Vec<CallRow>, CallsError> {
    let mut sql = format!("SELECT {COLUMNS} FROM calls WHERE 1=1");
    let mut args: Vec<String> = Vec::new();
    let mut cond = |sql: &mut String, c: &str, v: String| {
        args.push(v);
        sql.push_str(&format!(" AND {c} ${}", args.len()));
    };
    if let Some(d) = f.date {
        let tz = chrono_tz::Asia::Tokyo;
        let start = d
            .and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_local_timezone(tz).single());
        if let Some(start) = start {
            let start = start.with_timezone(&Utc);
            cond(&mut sql, "arrived_at >=", to_db_time(start));
            cond(
                &mut sql,
                "arrived_at <",
                to_db_time(start + chrono::Duration::days(1)),
            );
        }
    }
    if let Some(v) = f.from {
        cond(&mut sql, "arrived_at >=", to_db_time(v));
    }
    if let Some(v) = f.to {
        cond(&mut sql, "arrived_at <", to_db_time(v));
    }
    if let Some(v) = f.end_cause {
        cond(&mut sql, "end_cause =", v.as_str().to_string());
    }
    if let Some(v) = f.outcome {
        cond(&mut sql, "outcome =", v.as_str().to_string());
    }
    let n = args.len();
    if f.before_id.is_some() {
        sql.push_str(&format!(" AND id < ${}", n + 1));
    }
    sql.push_str(&format!(
        " ORDER BY id DESC LIMIT {}",
        f.limit.unwrap_or(50).clamp(1, 500)
    ));
    let mut q = sqlx::query(&sql);
    for a in args {
        q = q.bind(a);
    }
    if let Some(b) = f.before_id {
        q = q.bind(b);
    }
    let rows = q.fetch_all(conn).await?;
    Ok(rows.iter().map(row_to_call).collect::<Result<_, _>>()?)
}

async fn fetch_one(conn: &mut AnyConnection, id: i64) -> Result<Option<CallRow>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM calls WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(row_to_call).transpose()
}

/// The outcome of a call is the word of the operator who took it; a manager may correct it.
fn may_record_outcome(actor: &Actor, call: &CallRow) -> bool {
    actor.role == Some(Role::Manager)
        || (actor.user_id.is_some() && call.answered_by.as_deref() == Some(actor.username.as_str()))
}

/// Whether a call shows a caller's number: a valid one, or digits that form none.
fn shows_number(kind: CallerKind) -> bool {
    matches!(kind, CallerKind::Number | CallerKind::Unparsed)
}

/// Records that `actor` saw the caller numbers of `rows`; nothing for number-less rows.
async fn audit_reads(
    conn: &mut AnyConnection,
    actor: &Actor,
    at: DateTime<Utc>,
    rows: &[CallRow],
) -> Result<(), sqlx::Error> {
    let ids: Vec<i64> = rows
        .iter()
        .filter(|r| shows_number(r.caller.kind))
        .map(|r| r.id)
        .collect();
    if !ids.is_empty() {
        let entry =
            AuditEntry::new(AuditAction::CallRead).detail(serde_json::json!({ "call_ids": ids }));
        append_audit(conn, at, actor, &entry).await?;
    }
    Ok(())
}

/// Call events the writer has committed to the call log, in the order written: for readers
/// of the log that must not run ahead of it (the hub's figures). A reader that falls behind
/// is told it missed some (`Lagged`); it never holds up the writer.
#[derive(Clone)]
pub struct StoredEvents(broadcast::Sender<Arc<CallEvent>>, Arc<Backlog>);

/// Events published and not yet stored, for the overload policy.
struct Backlog {
    /// Held by the writer from each write attempt until its events are announced; see
    /// [`StoredEvents::fence`].
    fence: tokio::sync::Mutex<()>,
    events: AtomicU64,
    behind: std::sync::atomic::AtomicBool,
    high: u64,
}

/// The default of `[database] log_backlog_max`: the call log is "behind" from this many
/// events waiting to be written, until it is down to a quarter of it again.
pub const BACKLOG_HIGH: u64 = 20_000;

/// Notifications a reader may fall behind by before it is told it missed some.
const STORED_QUEUE: usize = 1024;

impl StoredEvents {
    /// A channel with no readers yet.
    pub fn new() -> Self {
        Self::with_backlog_max(BACKLOG_HIGH)
    }

    /// A channel whose writer counts as far behind from `high` waiting events.
    pub fn with_backlog_max(high: u64) -> Self {
        let backlog = Backlog {
            fence: tokio::sync::Mutex::new(()),
            events: AtomicU64::new(0),
            behind: std::sync::atomic::AtomicBool::new(false),
            high,
        };
        Self(broadcast::channel(STORED_QUEUE).0, Arc::new(backlog))
    }

    /// One more event waits to be written.
    pub(super) fn published(&self) {
        self.1.events.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the writer is too far behind to take new calls: true from the high mark of
    /// waiting events until it is down to a quarter of it (hysteresis, so new calls are not
    /// refused and admitted in turn).
    pub fn behind(&self) -> bool {
        let waiting = self.1.events.load(Ordering::Relaxed);
        let was = self.1.behind.load(Ordering::Relaxed);
        let now = if was {
            waiting > self.1.high / 4
        } else {
            waiting >= self.1.high
        };
        if now != was {
            self.1.behind.store(now, Ordering::Relaxed);
        }
        now
    }

    /// The waiting events from which the writer counts as far behind.
    pub fn backlog_max(&self) -> u64 {
        self.1.high
    }

    /// Events published and not yet written.
    pub fn waiting(&self) -> u64 {
        self.1.events.load(Ordering::Relaxed)
    }

    fn written(&self, n: u64) {
        // Saturating: events published before the writer subscribed are not counted twice.
        let _ = self
            .1
            .events
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(w.saturating_sub(n))
            });
    }

    /// Waits until the writer is between writes and keeps it there while the guard lives:
    /// meanwhile no event is committed, and every event committed before has been announced
    /// (is in each reader's queue). A reader that drains its queue and then reads the
    /// database under the guard sees exactly the events it will not hear of again.
    pub async fn fence(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.1.fence.lock().await
    }

    /// A new reader; it hears of events stored from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CallEvent>> {
        self.0.subscribe()
    }
}

impl Default for StoredEvents {
    fn default() -> Self {
        Self::new()
    }
}

/// Events written in one transaction at most. A batch is what queued up while the previous
/// one was written, so under light load each event is its own transaction and is stored at
/// once; under load the cost per event falls instead of the queue growing.
const BATCH_MAX: usize = 256;

/// Least time from one commit to the start of the next (issue 17). An event that finds the
/// writer idle for longer is written at once; under load, what arrives within this gap shares
/// one transaction (one commit, one WAL append) instead of a commit for every event or two,
/// which cost the database thread more than the SIP path itself. A BYE's answer, held for
/// its call's end to be stored, waits at most this much longer.
const COMMIT_GAP: Duration = Duration::from_millis(5);

/// Runs the call-log writer: every event is written, in order, in batches; a passing failure
/// (the database away, busy or restarting) is retried until it succeeds, a permanent one
/// (the database refuses that event) sends the event to `call_log_dead_letters` and the
/// writer moves on, so one bad event can never stop the log. Each event is announced on
/// `stored` once committed.
///
/// Cancel `stop` only after the SIP side, the one publisher, has stopped: the writer then
/// closes its queue, writes everything still in it and ends, so an event published is an
/// event written.
pub fn spawn_writer(
    log: CallLog,
    mut rx: mpsc::UnboundedReceiver<Arc<CallEvent>>,
    stored: StoredEvents,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        let mut conn = None;
        let mut last_commit: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                biased;
                n = rx.recv_many(&mut batch, BATCH_MAX) => {
                    if n == 0 {
                        return;
                    }
                    if let Some(wait) = last_commit
                        .map(|t| (t + COMMIT_GAP).saturating_duration_since(tokio::time::Instant::now()))
                        .filter(|w| !w.is_zero() && batch.len() < BATCH_MAX)
                    {
                        tokio::select! {
                            biased;
                            () = stop.cancelled() => {}
                            () = tokio::time::sleep(wait) => {}
                        }
                        while batch.len() < BATCH_MAX {
                            match rx.try_recv() {
                                Ok(e) => batch.push(e),
                                Err(_) => break,
                            }
                        }
                    }
                    write_batch(&log, &stored, &mut batch, &mut conn).await;
                    last_commit = Some(tokio::time::Instant::now());
                }
                () = stop.cancelled() => break,
            }
        }
        // From here a late publish fails instead of queueing an event nobody would write.
        rx.close();
        let mut drained = 0u64;
        while rx.recv_many(&mut batch, BATCH_MAX).await > 0 {
            drained += batch.len() as u64;
            write_batch(&log, &stored, &mut batch, &mut conn).await;
        }
        tracing::info!(
            drained,
            "call log writer stopped; every event published was written"
        );
    })
}

/// Whether a failed write may succeed if tried again: the connection or the server is away
/// or busy, not the data wrong.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // SQLite: BUSY (5), LOCKED (6), IOERR (10), FULL (13; space may be freed).
            // PostgreSQL: connection exceptions (08…), serialization failures and deadlocks
            // (40001, 40P01), insufficient resources (53…), server shutting down (57P…).
            matches!(code.as_ref(), "5" | "6" | "10" | "13" | "40001" | "40P01")
                || code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
        }
        _ => false,
    }
}

/// The writer's own connection, kept between batches (see [`CallLog::apply_batch_on`]).
type WriterConn = Option<sqlx::pool::PoolConnection<sqlx::Any>>;

/// The writer keeps a connection of its own only in a pool of at least this many (the
/// default is 8): in a smaller one it gives it back after each batch.
const WRITER_KEEPS_FROM: u32 = 4;

async fn write_batch(
    log: &CallLog,
    stored: &StoredEvents,
    batch: &mut Vec<Arc<CallEvent>>,
    conn: &mut WriterConn,
) {
    let started = log.write_started();
    let mut backoff = Duration::from_millis(100);
    // Held from the attempt that succeeds until its events are announced (not while waiting
    // to retry): see `StoredEvents::fence`.
    let _fence = loop {
        let fence = stored.fence().await;
        let attempt = match conn {
            Some(c) => log.apply_batch_on(c, batch).await,
            None => match log.db.pool().acquire().await {
                Ok(c) => log.apply_batch_on(conn.insert(c), batch).await,
                Err(e) => Err(e.into()),
            },
        };
        match attempt {
            Ok(()) => {
                log.counters.batches.fetch_add(1, Ordering::Relaxed);
                // A small pool cannot spare a connection for the writer alone.
                if log.db.pool().options().get_max_connections() < WRITER_KEEPS_FROM {
                    *conn = None;
                }
                break fence;
            }
            Err(CallsError::Store(e)) if is_transient(&e) => {
                drop(fence);
                // The connection may be what broke (a restarted server): take a fresh one.
                *conn = None;
                log.counters.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, events = batch.len(), "call log write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                // One of them is refused for good: write them one by one, so only that one
                // goes to the dead letters and every other is kept.
                tracing::warn!(error = %e, events = batch.len(), "call log batch refused; writing one by one");
                *conn = None;
                for event in batch.iter() {
                    write_alone(log, event).await;
                }
                break fence;
            }
        }
    };
    log.write_done(started, batch);
    log.counters
        .written
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    stored.written(batch.len() as u64);
    for event in batch.drain(..) {
        // No reader (the hub not started, or gone) is fine: the row is what matters.
        let _ = stored.0.send(event);
    }
}

async fn write_alone(log: &CallLog, event: &CallEvent) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match log.apply(event).await {
            Ok(()) => {
                log.counters.batches.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(CallsError::Store(e)) if is_transient(&e) => {
                log.counters.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, call = %clean(&event.call().key), "call log write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(error = %e, call = %clean(&event.call().key), "call log refused an event; kept as a dead letter");
                log.dead_letter(event, &e.to_string(), Utc::now()).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::{CallEvents, CallInfo, EndCause};

    fn call(i: usize) -> CallInfo {
        CallInfo {
            key: format!("key-{i}"),
            sip_call_id: format!("call-{i}"),
            caller: None,
            line_number: Some("0120000000".into()),
            source: "127.0.0.1:5060".into(),
            arrived_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn on_stop_the_writer_writes_everything_queued_and_announces_each() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/w.db", dir.path().display());
        let log = CallLog::new(Db::connect_and_migrate(&url, 1).await.unwrap(), "test");
        let (events, stored) = (CallEvents::new(), StoredEvents::new());
        let mut heard = stored.subscribe();
        let queue = events.subscribe();
        for i in 0..20 {
            let at = Utc::now();
            events.publish(CallEvent::Ringing { call: call(i), at });
            events.publish(CallEvent::Ended {
                call: call(i),
                at,
                cause: EndCause::Abandoned,
                hangup_by: None,
                rang_at: Some(at),
                answered_at: None,
            });
        }
        // Told to stop before it has written anything: all 40 events are still queued.
        let stop = CancellationToken::new();
        stop.cancel();
        spawn_writer(log.clone(), queue, stored, stop)
            .await
            .unwrap();
        for i in 0..20 {
            let row = log.get_by_key(&format!("key-{i}")).await.unwrap().unwrap();
            assert_eq!(row.end_cause, Some(EndCode::Abandoned));
        }
        for _ in 0..40 {
            assert!(heard.try_recv().is_ok(), "each stored event is announced");
        }
        assert!(heard.try_recv().is_err());
    }

    /// Everything a database holds of calls and callbacks, as text to compare.
    async fn contents(log: &CallLog) -> (Vec<String>, Vec<String>) {
        let calls = sqlx::query(
            "SELECT call_key, caller_e164, rang_at, answered_at, answered_by_username, answered_extension, \
             ended_at, end_cause, hangup_by, ring_ms, talk_ms, instance FROM calls ORDER BY call_key",
        )
        .fetch_all(log.db.pool())
        .await
        .unwrap();
        let text = |r: &sqlx::any::AnyRow, i: usize| -> String {
            r.try_get::<Option<String>, _>(i)
                .map(|v| format!("{v:?}"))
                .or_else(|_| r.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
                .unwrap()
        };
        let calls = calls
            .iter()
            .map(|r| (0..12).map(|i| text(r, i)).collect::<Vec<_>>().join("|"))
            .collect();
        let callbacks = sqlx::query(
            "SELECT caller_e164, first_missed_at, last_missed_at, missed_count, last_cause, last_call_key, status, closed_at \
             FROM callbacks ORDER BY caller_e164, first_missed_at",
        )
        .fetch_all(log.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (0..8).map(|i| text(r, i)).collect::<Vec<_>>().join("|"))
        .collect();
        (calls, callbacks)
    }

    #[tokio::test]
    async fn a_batch_in_statement_lists_stores_what_events_one_by_one_store() {
        // Issue 17: SQLite writes a batch's upserts and callback closes as statement lists of
        // up to 32; the rows must be exactly those of writing each event alone, in order.
        let t0 = Utc::now();
        let mut events: Vec<Arc<CallEvent>> = Vec::new();
        for i in 0..45usize {
            let mut c = call(i);
            c.caller = match i % 7 {
                6 => None,
                5 => Some(CallerId::Withheld {
                    reason: WithheldReason::Anonymous,
                }),
                n => Some(CallerId::Number {
                    e164: format!("+8113400000{n}"),
                    display: format!("0134-00-000{n}"),
                }),
            };
            let at = t0 + chrono::Duration::seconds(i as i64);
            events.push(Arc::new(CallEvent::Ringing {
                call: c.clone(),
                at,
            }));
            // Every third call is missed (its number gets a callback); the others are answered,
            // which closes an open callback of their number, within the same batch.
            if i % 3 == 0 {
                events.push(Arc::new(CallEvent::Ended {
                    call: c,
                    at: at + chrono::Duration::seconds(9),
                    cause: EndCause::Abandoned,
                    hangup_by: None,
                    rang_at: Some(at),
                    answered_at: None,
                }));
            } else {
                let answered = at + chrono::Duration::seconds(2);
                events.push(Arc::new(CallEvent::Answered {
                    call: c.clone(),
                    at: answered,
                    operator: Some("operator1".into()),
                    extension: "op1".into(),
                }));
                events.push(Arc::new(CallEvent::Ended {
                    call: c,
                    at: answered + chrono::Duration::seconds(30),
                    cause: EndCause::Completed,
                    hangup_by: Some(Party::Caller),
                    rang_at: Some(at),
                    answered_at: Some(answered),
                }));
            }
        }
        // The same event twice changes nothing (a redelivery).
        events.push(events[3].clone());
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| format!("sqlite://{}/{name}.db", dir.path().display());
        let batched = CallLog::new(Db::connect_and_migrate(&open("b"), 4).await.unwrap(), "i");
        let alone = CallLog::new(Db::connect_and_migrate(&open("a"), 4).await.unwrap(), "i");
        // Batches of every size up to the whole lot, so every list length is used.
        let mut rest = events.as_slice();
        let mut size = 1;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(size.min(rest.len()));
            batched.apply_batch(now).await.unwrap();
            rest = later;
            size += 7;
        }
        for e in &events {
            alone.apply(e).await.unwrap();
        }
        let (calls, callbacks) = contents(&batched).await;
        assert_eq!(calls.len(), 45);
        assert!(
            callbacks.iter().any(|c| c.contains("answered_later"))
                && callbacks.iter().any(|c| c.contains("\"open\"")),
            "the case covers opened and closed callbacks: {callbacks:?}"
        );
        assert_eq!((calls, callbacks), contents(&alone).await);
    }

    #[test]
    fn statement_lists_name_each_copy_its_own_arguments() {
        assert_eq!(
            renumber("a = $1 AND b = $12, $", 20),
            "a = $21 AND b = $32, $"
        );
        let list = ANSWERED.list(4);
        assert_eq!(list.matches("UPDATE callbacks").count(), 4);
        assert!(list.contains("$13") && list.contains("$16") && !list.contains("$17"));
        assert_eq!(
            ANSWERED.list(3),
            super::super::callbacks::ANSWERED_LATER_SQL
        );
        let sizes: Vec<usize> = chunks(&[0u8; 45]).map(<[u8]>::len).collect();
        assert_eq!(sizes, [32, 8, 4, 1]);
    }
}
