//! `scripts/bench-reports`: p50/p99/max of computing the weekly call counts (issue 15; goal:
//! ≤ 50 ms for a week) on a made-up season of 100,000 calls in a fresh SQLite file. The
//! reports domain is driven directly (no HTTP). Prints figures; never pass/fail. The calls are
//! stored in arrival order, as the call log writes them (`BENCH_REPORTS_ORDER=random` for a
//! shuffled layout; `BENCH_REPORTS_DB=path` keeps the database).
//!
//! - one week: the week's figures (days and total, every breakdown);
//! - one week's report: the figures and the season chart's series (what the API computes);
//! - the whole season: the figures of every week of the season, one after the other.

use std::time::Instant;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use madoguchi::clock::to_db_time;
use madoguchi::reports::weekly::{self, IsoWeek};
use madoguchi::reports::ReportSettings;
use madoguchi::store::Db;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CALLS: usize = 100_000;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn report(what: &str, v: &mut [f64]) {
    println!(
        "{what}: n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        v.len(),
        pct(v, 0.5),
        pct(v, 0.99),
        pct(v, 1.0)
    );
}

fn lit(v: Option<String>) -> String {
    v.map(|s| format!("'{s}'")).unwrap_or_else(|| "NULL".into())
}

fn num(v: Option<i64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "NULL".into())
}

/// 100,000 made-up calls over the season, daytime-heavy, every cause, reason and outcome.
async fn fill(db: &Db, first: NaiveDate, days: i64, random_order: bool) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(15);
    let causes = [
        "completed",
        "completed",
        "completed",
        "completed",
        "abandoned",
        "busy",
        "closed",
        "closed",
        "no_answer",
        "refused",
        "unstaffed",
        "rejected",
        "expired",
    ];
    let reasons = [
        "outside_hours",
        "weekend",
        "national_holiday",
        "year_end",
        "outside_period",
        "extra_closed",
    ];
    let outcomes = [
        "booking",
        "facility_request",
        "inquiry",
        "opinion",
        "complaint",
        "wrong_number",
        "other",
    ];
    let mut rows = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let day = first + Duration::days(rng.gen_range(0..days));
        let hour = if rng.gen_bool(0.8) {
            rng.gen_range(9..17)
        } else {
            rng.gen_range(0..24)
        };
        let at = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
            - Duration::hours(9)
            + Duration::hours(hour)
            + Duration::milliseconds(rng.gen_range(0..3_600_000));
        let cause = causes[rng.gen_range(0..causes.len())];
        let answered = matches!(cause, "completed" | "expired");
        let outcome = answered.then(|| outcomes[rng.gen_range(0..outcomes.len())]);
        let values = [
            lit(Some("unknown".into())),
            lit(Some(to_db_time(at))),
            lit(answered.then(|| to_db_time(at + Duration::seconds(8)))),
            lit(Some(cause.into())),
            lit((cause == "closed").then(|| reasons[rng.gen_range(0..reasons.len())].into())),
            num((!matches!(cause, "closed" | "rejected")).then(|| rng.gen_range(0..40_000))),
            num(answered.then(|| rng.gen_range(5_000..900_000))),
            lit(outcome.map(String::from)),
            lit((outcome == Some("inquiry")).then(|| "[\"fee\",\"renewal\"]".into())),
        ];
        rows.push((at, values.join(",")));
    }
    if !random_order {
        // The call log writes a call when it arrives: rows lie in time order on disk.
        rows.sort_by_key(|(at, _)| *at);
    }
    let mut tx = db.pool().begin().await?;
    for (chunk_no, chunk) in rows.chunks(1000).enumerate() {
        let mut sql = String::from(
            "INSERT INTO calls (call_key, sip_call_id, caller_kind, arrived_at, answered_at, end_cause, end_detail, \
             ring_ms, talk_ms, outcome, outcome_topics) VALUES ",
        );
        for (i, (_, values)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("('b-{chunk_no}-{i}','b-{chunk_no}-{i}',{values})"));
        }
        sqlx::query(&sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    // One 100,000-row transaction leaves a WAL of the whole table; the running service
    // checkpoints every 1000 pages, so measure on a checkpointed file as it would be.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(db.pool())
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // BENCH_REPORTS_DB=path keeps the season's database there (for EXPLAIN and the like).
    let path = std::env::var("BENCH_REPORTS_DB")
        .unwrap_or_else(|_| format!("{}/bench.db", dir.path().display()));
    let _ = std::fs::remove_file(&path);
    let db = Db::connect_and_migrate(&format!("sqlite://{path}"), 4).await?;
    let settings = ReportSettings {
        city_ja: "小樽市".into(),
        service_ja: "ベンチマーク".into(),
        season_start: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap_or_default(),
        season_end: NaiveDate::from_ymd_opt(2026, 12, 24).unwrap_or_default(),
        service_level_secs: 20,
    };
    let t = Instant::now();
    let days = (settings.season_end - settings.season_start).num_days() + 1;
    // BENCH_REPORTS_ORDER=random stores the calls in random order instead of arrival order
    // (a pessimistic layout: every row of a week on a different page).
    let random_order = std::env::var("BENCH_REPORTS_ORDER").as_deref() == Ok("random");
    fill(&db, settings.season_start, days, random_order).await?;
    println!(
        "season: {CALLS} calls over {} .. {} inserted in {} order in {:.1} s",
        settings.season_start,
        settings.season_end,
        if random_order { "random" } else { "arrival" },
        t.elapsed().as_secs_f64()
    );
    let first = weekly::season_first_week(&settings);
    let mut weeks = vec![first];
    while weeks
        .last()
        .is_some_and(|w| w.next().monday() <= settings.season_end)
    {
        let next = weeks.last().map(|w| w.next()).unwrap_or(first);
        weeks.push(next);
    }
    let now = Utc::now();
    let mut rng = StdRng::seed_from_u64(1);
    let mut checked = 0u64;
    let (mut week, mut report_ms) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let w: IsoWeek = weeks[rng.gen_range(0..weeks.len())];
        let t = Instant::now();
        let (_, total) = weekly::week_figures(&db, &settings, w, now).await?;
        week.push(t.elapsed().as_secs_f64() * 1000.0);
        checked += u64::from(total.offered + total.closed);
        let t = Instant::now();
        let r = weekly::live(&db, &settings, w, now).await?;
        report_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        checked += u64::from(r.total.answered);
    }
    let mut season = Vec::new();
    let mut season_calls = 0u64;
    for _ in 0..20 {
        let t = Instant::now();
        season_calls = 0;
        for w in &weeks {
            let (_, total) = weekly::week_figures(&db, &settings, *w, now).await?;
            season_calls += u64::from(total.offered + total.closed);
        }
        season.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    report("one week (figures)", &mut week);
    report("one week's report (figures + season chart)", &mut report_ms);
    report(
        &format!("whole season ({} weeks)", weeks.len()),
        &mut season,
    );
    println!(
        "season total: {season_calls} calls counted (all but the rejected); checksum {checked}"
    );
    println!("goal: one week ≤ 50 ms (p99). bench-reports done.");
    Ok(())
}
