//! Reports for the city on both backends (issue 15 items 1 and 7; R-REP-1, R-REP-3): the
//! weekly call counts of a generated season equal a count made here from the generated rows,
//! the files (CSV, XLSX, SVG, HTML) carry those figures, a sent report stays frozen, the
//! opinions list with its follow-up, and who may read what.

use std::collections::HashMap;
use std::io::Cursor;
use std::time::Instant;

use calamine::{Data, Reader, Xlsx};
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use madoguchi::clock::to_db_time;
use madoguchi::store::Db;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::common::{backends, cli_ok, TestApp};

/// One generated call, as inserted.
#[derive(Debug, Clone)]
pub(crate) struct Gen {
    arrived: DateTime<Utc>,
    pub(crate) end_cause: Option<&'static str>,
    detail: Option<&'static str>,
    answered: bool,
    ring_ms: Option<i64>,
    talk_ms: Option<i64>,
    wrapup_ms: Option<i64>,
    outcome: Option<&'static str>,
    topics: Option<Vec<&'static str>>,
    note: Option<String>,
    caller: Option<String>,
}

const CAUSES: &[(Option<&str>, u32)] = &[
    (Some("completed"), 40),
    (Some("abandoned"), 8),
    (Some("busy"), 8),
    (Some("closed"), 15),
    (Some("no_answer"), 5),
    (Some("refused"), 2),
    (Some("unstaffed"), 3),
    (Some("rejected"), 2),
    (Some("interrupted"), 1),
    (Some("expired"), 1),
    (None, 1),
];
const REASONS: &[Option<&str>] = &[
    Some("outside_hours"),
    Some("weekend"),
    Some("national_holiday"),
    Some("year_end"),
    Some("outside_period"),
    Some("extra_closed"),
    None,
    Some("not-a-reason"),
];
const OUTCOMES: &[Option<&str>] = &[
    Some("booking"),
    Some("facility_request"),
    Some("inquiry"),
    Some("opinion"),
    Some("complaint"),
    Some("wrong_number"),
    Some("other"),
    None,
];
const TOPICS: &[&str] = &["health_insurance", "renewal", "loss", "fee", "other"];

fn jst_date(t: DateTime<Utc>) -> NaiveDate {
    (t + Duration::hours(9)).date_naive()
}

fn jst_midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap()) - Duration::hours(9)
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut n = rng.gen_range(0..total);
    for (item, w) in items {
        if n < *w {
            return *item;
        }
        n -= w;
    }
    items[0].0
}

/// `n` made-up calls spread over the season (2026-06-01 to 2026-12-24, JST), daytime-heavy,
/// with every end cause, closing reason, outcome and topic.
fn season(n: usize, seed: u64) -> Vec<Gen> {
    let mut rng = StdRng::seed_from_u64(seed);
    let first = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
    let days = 207;
    (0..n)
        .map(|i| {
            let day = first + Duration::days(rng.gen_range(0..days));
            let hour = if rng.gen_bool(0.8) {
                rng.gen_range(9..17)
            } else {
                rng.gen_range(0..24)
            };
            let arrived = jst_midnight(day)
                + Duration::hours(hour)
                + Duration::milliseconds(rng.gen_range(0..3_600_000));
            let end_cause = pick(&mut rng, CAUSES);
            let answered = match end_cause {
                Some("completed" | "expired") => true,
                Some("interrupted") | None => rng.gen_bool(0.5),
                _ => false,
            };
            let detail = match end_cause {
                Some("closed") => REASONS[rng.gen_range(0..REASONS.len())],
                _ => None,
            };
            let ring_ms = match end_cause {
                Some("closed" | "rejected" | "busy" | "unstaffed") => None,
                _ if rng.gen_bool(0.9) => Some(rng.gen_range(0..40_000)),
                _ => None,
            };
            let talk_ms = (answered && end_cause.is_some()).then(|| rng.gen_range(5_000..900_000));
            let wrapup_ms = (answered && rng.gen_bool(0.7)).then(|| rng.gen_range(0..300_000));
            let outcome = if answered {
                OUTCOMES[rng.gen_range(0..OUTCOMES.len())]
            } else {
                None
            };
            let topics = (outcome == Some("inquiry")).then(|| {
                TOPICS
                    .iter()
                    .copied()
                    .filter(|_| rng.gen_bool(0.3))
                    .collect()
            });
            let note = matches!(outcome, Some("opinion" | "complaint"))
                .then(|| format!("ご意見の要旨 {i}"));
            let caller = rng
                .gen_bool(0.7)
                .then(|| format!("+81134{:07}", rng.gen_range(0..10_000_000)));
            Gen {
                arrived,
                end_cause,
                detail,
                answered,
                ring_ms,
                talk_ms,
                wrapup_ms,
                outcome,
                topics,
                note,
                caller,
            }
        })
        .collect()
}

/// An SQL literal of made-up test text (no quotes in it) or NULL.
fn lit(v: Option<String>) -> String {
    match v {
        Some(s) => {
            assert!(!s.contains('\''));
            format!("'{s}'")
        }
        None => "NULL".into(),
    }
}

fn num(v: Option<i64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "NULL".into())
}

/// Inserts `rows` straight into `calls`: one transaction, multi-row INSERTs (literal values:
/// binding 1.5 million parameters one by one is what made an unoptimised build slow).
async fn insert(db: &Db, rows: &[Gen], key_prefix: &str) {
    let mut tx = db.pool().begin().await.unwrap();
    for (chunk_no, chunk) in rows.chunks(1000).enumerate() {
        let mut sql = String::from(
            "INSERT INTO calls (call_key, sip_call_id, caller_kind, caller_e164, arrived_at, answered_at, ended_at, \
             end_cause, end_detail, ring_ms, talk_ms, wrapup_ms, outcome, outcome_topics, outcome_note) VALUES ",
        );
        for (i, g) in chunk.iter().enumerate() {
            let key = format!("{key_prefix}-{chunk_no}-{i}");
            let ended = g.end_cause.map(|_| g.arrived + Duration::seconds(60));
            let values = [
                lit(Some(key.clone())),
                lit(Some(key)),
                lit(Some(
                    if g.caller.is_some() {
                        "number"
                    } else {
                        "withheld"
                    }
                    .into(),
                )),
                lit(g.caller.clone()),
                lit(Some(to_db_time(g.arrived))),
                lit(g
                    .answered
                    .then(|| to_db_time(g.arrived + Duration::seconds(10)))),
                lit(ended.map(to_db_time)),
                lit(g.end_cause.map(String::from)),
                lit(g.detail.map(String::from)),
                num(g.ring_ms),
                num(g.talk_ms),
                num(g.wrapup_ms),
                lit(g.outcome.map(String::from)),
                lit(g.topics.as_ref().map(|t| serde_json::to_string(t).unwrap())),
                lit(g.note.clone()),
            ];
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("({})", values.join(",")));
        }
        sqlx::query(&sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// One day's figures counted from the generated rows.
#[derive(Debug, Default, Clone)]
pub(crate) struct Expect {
    pub(crate) offered: u64,
    answered: u64,
    abandoned: u64,
    busy: u64,
    closed: u64,
    reasons: HashMap<&'static str, u64>,
    no_answer: u64,
    unstaffed: u64,
    outcomes: HashMap<&'static str, u64>,
    topics: HashMap<&'static str, u64>,
    hourly: [u64; 24],
    ring_sum: i64,
    ring_n: i64,
    within_20s: u64,
}

impl Expect {
    fn add(&mut self, g: &Gen) {
        let c = g.end_cause;
        if !matches!(c, Some("closed" | "rejected")) {
            self.offered += 1;
            self.hourly[(g.arrived + Duration::hours(9)).hour() as usize] += 1;
        }
        self.answered += u64::from(g.answered);
        self.abandoned += u64::from(c == Some("abandoned"));
        self.busy += u64::from(c == Some("busy"));
        self.no_answer += u64::from(matches!(c, Some("no_answer" | "refused")));
        self.unstaffed += u64::from(c == Some("unstaffed"));
        if c == Some("closed") {
            self.closed += 1;
            let key = match g.detail {
                Some("outside_hours") => "night",
                Some("weekend") => "weekend",
                Some("national_holiday") => "holiday",
                Some("year_end") => "year_end",
                Some("outside_period") => "outside_period",
                Some("extra_closed") => "extra_closed",
                _ => "unknown",
            };
            *self.reasons.entry(key).or_default() += 1;
        }
        if g.answered {
            *self
                .outcomes
                .entry(g.outcome.unwrap_or("none"))
                .or_default() += 1;
            if let Some(r) = g.ring_ms {
                self.ring_sum += r;
                self.ring_n += 1;
                self.within_20s += u64::from(r <= 20_000);
            }
        }
        for t in g.topics.iter().flatten() {
            *self.topics.entry(t).or_default() += 1;
        }
    }

    fn plus(&mut self, o: &Expect) {
        for g in [
            (&mut self.offered, o.offered),
            (&mut self.answered, o.answered),
            (&mut self.abandoned, o.abandoned),
            (&mut self.busy, o.busy),
            (&mut self.closed, o.closed),
            (&mut self.no_answer, o.no_answer),
            (&mut self.unstaffed, o.unstaffed),
            (&mut self.within_20s, o.within_20s),
        ] {
            *g.0 += g.1;
        }
        for (k, v) in &o.reasons {
            *self.reasons.entry(k).or_default() += v;
        }
        for (k, v) in &o.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        for (k, v) in &o.topics {
            *self.topics.entry(k).or_default() += v;
        }
        for h in 0..24 {
            self.hourly[h] += o.hourly[h];
        }
        self.ring_sum += o.ring_sum;
        self.ring_n += o.ring_n;
    }

    /// Compares with one figures object of the report.
    fn check(&self, f: &Value, what: &str) {
        let n = |v: &Value| {
            v.as_u64()
                .unwrap_or_else(|| panic!("{what}: {v} not a count"))
        };
        for (key, want) in [
            ("offered", self.offered),
            ("answered", self.answered),
            ("abandoned", self.abandoned),
            ("busy", self.busy),
            ("closed", self.closed),
            ("no_answer", self.no_answer),
            ("unstaffed", self.unstaffed),
        ] {
            assert_eq!(n(&f[key]), want, "{what}: {key}");
        }
        for key in [
            "night",
            "weekend",
            "holiday",
            "year_end",
            "outside_period",
            "extra_closed",
            "unknown",
        ] {
            let want = self.reasons.get(key).copied().unwrap_or(0);
            assert_eq!(n(&f["closed_by_reason"][key]), want, "{what}: closed {key}");
        }
        for key in [
            "booking",
            "facility_request",
            "inquiry",
            "opinion",
            "complaint",
            "wrong_number",
            "other",
            "none",
        ] {
            let want = self.outcomes.get(key).copied().unwrap_or(0);
            assert_eq!(n(&f["outcomes"][key]), want, "{what}: outcome {key}");
        }
        for key in TOPICS {
            let want = self.topics.get(key).copied().unwrap_or(0);
            assert_eq!(n(&f["inquiry_topics"][key]), want, "{what}: topic {key}");
        }
        let hourly: Vec<u64> = f["hourly_offered"]
            .as_array()
            .unwrap()
            .iter()
            .map(n)
            .collect();
        assert_eq!(hourly, self.hourly.to_vec(), "{what}: hourly");
        let close = |got: &Value, want: Option<f64>, key: &str| match want {
            None => assert!(got.is_null(), "{what}: {key} {got}"),
            Some(w) => {
                let g = got
                    .as_f64()
                    .unwrap_or_else(|| panic!("{what}: {key} {got}"));
                assert!(
                    (g - w).abs() < 1e-9 * w.abs().max(1.0),
                    "{what}: {key} {g} != {w}"
                );
            }
        };
        let asa = (self.ring_n > 0).then(|| self.ring_sum as f64 / self.ring_n as f64 / 1000.0);
        close(&f["asa_seconds"], asa, "asa_seconds");
        let sl = (self.offered > 0).then(|| self.within_20s as f64 / self.offered as f64);
        close(&f["service_level"], sl, "service_level");
    }
}

fn monday_of(week: &str) -> NaiveDate {
    let (y, w) = week.split_once("-W").unwrap();
    NaiveDate::from_isoywd_opt(y.parse().unwrap(), w.parse().unwrap(), chrono::Weekday::Mon)
        .unwrap()
}

/// The season's size in the test: 100,000 calls (the figure).
const SEASON_CALLS: usize = 100_000;

#[tokio::test]
async fn weekly_counts_of_a_generated_season_equal_an_independent_count() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let db = app.db.open().await;
        let rows = season(SEASON_CALLS, 15);
        let t = Instant::now();
        insert(&db, &rows, "gen").await;
        eprintln!(
            "{kind:?}: {SEASON_CALLS} calls inserted in {:?}",
            t.elapsed()
        );
        let mut by_day: HashMap<NaiveDate, Expect> = HashMap::new();
        for g in &rows {
            by_day.entry(jst_date(g.arrived)).or_default().add(g);
        }
        let manager = app.user_with_role("mgr", "manager").await;
        // The first week of the season, weeks in the middle, the week of the season's end.
        for week in ["2026-W23", "2026-W30", "2026-W40", "2026-W48", "2026-W52"] {
            let t = Instant::now();
            let res = manager
                .get(&format!(
                    "/api/reports/weekly-calls?week={week}&version=live"
                ))
                .await;
            assert_eq!(res.status(), 200, "{week}");
            let body: Value = res.json().await.unwrap();
            eprintln!("{kind:?}: {week} over HTTP in {:?}", t.elapsed());
            assert_eq!(body["status"], "live");
            let report = &body["report"];
            assert_eq!(report["week"], week);
            let monday = monday_of(week);
            let mut total = Expect::default();
            for i in 0..7 {
                let date = monday + Duration::days(i);
                let day = by_day.get(&date).cloned().unwrap_or_default();
                let f = &report["days"][i as usize];
                assert_eq!(f["date"], date.to_string());
                day.check(f, &format!("{kind:?} {date}"));
                total.plus(&day);
            }
            total.check(&report["total"], &format!("{kind:?} {week} total"));
            assert!(total.offered > 0 || week == "2026-W52");
        }
        // The season series of the last week: every week of the season.
        let body: Value = manager
            .get("/api/reports/weekly-calls?week=2026-W52&version=live")
            .await
            .json()
            .await
            .unwrap();
        let season_points = body["report"]["season"].as_array().unwrap();
        assert_eq!(season_points.len(), 30, "2026-W23 … 2026-W52");
        let mut sum = 0;
        for p in season_points {
            let monday: NaiveDate = p["monday"].as_str().unwrap().parse().unwrap();
            let mut week = Expect::default();
            for i in 0..7 {
                if let Some(d) = by_day.get(&(monday + Duration::days(i))) {
                    week.plus(d);
                }
            }
            assert_eq!(p["offered"].as_u64().unwrap(), week.offered, "{p}");
            assert_eq!(p["answered"].as_u64().unwrap(), week.answered, "{p}");
            assert_eq!(p["closed"].as_u64().unwrap(), week.closed, "{p}");
            sum += week.offered + week.closed;
        }
        let rejected = rows
            .iter()
            .filter(|g| g.end_cause == Some("rejected"))
            .count() as u64;
        assert_eq!(
            sum + rejected,
            SEASON_CALLS as u64,
            "every call is in one week"
        );

        // A day of the report equals the live statistics of that day (the dashboard's sums).
        let day = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let live: Value = manager.get("/api/stats/live").await.json().await.unwrap();
        let week: Value = manager
            .get("/api/reports/weekly-calls?week=2026-W48&version=live")
            .await
            .json()
            .await
            .unwrap();
        let f = &week["report"]["days"][(day.weekday().num_days_from_monday()) as usize];
        for key in [
            "offered",
            "answered",
            "abandoned",
            "busy",
            "closed",
            "no_answer",
            "unstaffed",
            "asa_seconds",
            "aht_seconds",
            "abandonment_rate",
            "service_level",
        ] {
            assert_eq!(f[key], live[key], "{key}: report vs /api/stats/live");
        }
        db.close().await;
        app.stop().await;
    }
}

/// A small season with a few calls in the week 2026-W48 (23–29 November).
pub(crate) async fn small_week(app: &TestApp) -> Vec<Gen> {
    let db = app.db.open().await;
    let mut rows: Vec<Gen> = season(3_000, 7)
        .into_iter()
        .filter(|g| jst_date(g.arrived) >= NaiveDate::from_ymd_opt(2026, 11, 1).unwrap())
        .collect();
    rows.truncate(400);
    insert(&db, &rows, "small").await;
    db.close().await;
    rows
}

pub(crate) fn week_expect(rows: &[Gen], week: &str) -> Expect {
    let monday = monday_of(week);
    let mut e = Expect::default();
    for g in rows {
        let d = jst_date(g.arrived);
        if d >= monday && d < monday + Duration::days(7) {
            e.add(g);
        }
    }
    e
}

#[tokio::test]
async fn the_files_carry_the_figures_csv_xlsx_svg_html_and_the_cli_agrees() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let rows = small_week(&app).await;
        let want = week_expect(&rows, "2026-W48");
        assert!(want.offered > 0);
        let reader = app.user_with_role("kanri2", "admin").await;
        let q = "/api/reports/weekly-calls?week=2026-W48";

        // CSV: BOM, Japanese headings, the week's offered calls in the 週計 column.
        let res = reader.get(&format!("{q}&format=csv")).await;
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let csv = res.text().await.unwrap();
        assert!(csv.starts_with('\u{feff}'), "BOM");
        let mut lines = csv.trim_start_matches('\u{feff}').lines();
        let head: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(head[0], "項目");
        assert_eq!(head[1], "令和8年11月23日（月） 2026-11-23");
        assert_eq!(head[8], "週計");
        assert_eq!(head[9], "計算式");
        let offered: Vec<&str> = lines
            .find(|l| l.starts_with("受付件数,"))
            .unwrap()
            .split(',')
            .collect();
        assert_eq!(offered[8], want.offered.to_string());
        assert!(csv.contains("時間外のうち夜間"));
        assert!(csv.contains("対応：苦情"));
        assert!(csv.contains("サービスレベル = 規定秒数以内に応答した件数 ÷ 受付件数"));

        // XLSX opens with calamine; the figures sheet holds the counts.
        let res = reader.get(&format!("{q}&format=xlsx")).await;
        assert_eq!(res.status(), 200);
        let bytes = res.bytes().await.unwrap().to_vec();
        let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes)).unwrap();
        assert_eq!(book.sheet_names(), vec!["受電件数", "期間推移", "グラフ"]);
        let sheet = book.worksheet_range("受電件数").unwrap();
        let row_of = |label: &str| {
            sheet
                .rows()
                .find(|r| r.first() == Some(&Data::String(label.into())))
                .unwrap_or_else(|| panic!("no row {label}"))
                .to_vec()
        };
        let heads = row_of("項目");
        assert_eq!(heads[8], Data::String("週計".into()));
        for (label, v) in [
            ("受付件数", want.offered),
            ("応答件数", want.answered),
            ("時間外", want.closed),
            ("放棄", want.abandoned),
        ] {
            assert_eq!(row_of(label)[8], Data::Float(v as f64), "{label}");
        }
        let season = book.worksheet_range("期間推移").unwrap();
        assert_eq!(season.get((0, 0)), Some(&Data::String("週".into())));

        // SVG: well-formed XML, one bar per day carrying its count.
        let res = reader.get(&format!("{q}&format=svg")).await;
        assert_eq!(res.headers()["content-type"], "image/svg+xml");
        let svg = res.text().await.unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
        let bars: Vec<_> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("day-bar"))
            .collect();
        assert_eq!(bars.len(), 7, "one bar per day");
        let sum: u64 = bars
            .iter()
            .map(|b| b.attribute("data-offered").unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(sum, want.offered);
        let weeks = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("week-bar"))
            .count();
        assert_eq!(weeks, 26, "2026-W23 … 2026-W48");

        // HTML: a printable page with 和暦 dates, the figures and the served style.
        let res = reader.get(&format!("{q}&format=html")).await;
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let html = res.text().await.unwrap();
        assert!(html.contains("令和8年11月23日（月） 〜 令和8年11月29日（日）"));
        assert!(html.contains("速報値（未送付）"));
        assert!(html.contains("/assets/report.css"));
        let css = reader.get("/assets/report.css").await;
        assert_eq!(css.status(), 200);
        assert!(css.text().await.unwrap().contains("size: A4"));

        // The command line prints the same CSV.
        let out = cli_ok(
            &app.db.url,
            &[
                "report",
                "weekly-calls",
                "--week",
                "2026-W48",
                "--format",
                "csv",
            ],
        );
        assert_eq!(out, csv);

        let bad = reader.get("/api/reports/weekly-calls?week=2026-24").await;
        assert_eq!(bad.status(), 422);
        let bad = reader.get(&format!("{q}&format=pdf")).await;
        assert_eq!(bad.status(), 422);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_sent_report_stays_frozen_and_a_later_change_is_a_new_version() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let rows = small_week(&app).await;
        let want = week_expect(&rows, "2026-W48");
        let manager = app.user_with_role("mgr", "manager").await;
        let q = "/api/reports/weekly-calls?week=2026-W48";

        let res = manager
            .post("/api/reports/weekly-calls/2026-W48/sent", &json!({}))
            .await;
        assert_eq!(res.status(), 201);
        let v1: Value = res.json().await.unwrap();
        assert_eq!(v1["version"], 1);
        assert!(v1["revision_of"].is_null());
        assert_eq!(v1["sha256"].as_str().unwrap().len(), 64);
        // The very figures again: nothing new to send.
        let again = manager
            .post("/api/reports/weekly-calls/2026-W48/sent", &json!({}))
            .await;
        assert_eq!(again.status(), 409);

        let view: Value = manager.get(q).await.json().await.unwrap();
        assert_eq!(view["status"], "sent");
        assert_eq!(view["sent"]["version"], 1);
        assert_eq!(view["changed_since_sent"], false);
        assert_eq!(view["report"]["total"]["offered"], want.offered);

        // A late call of that week arrives in the log (e.g. a retried write).
        let late = Gen {
            arrived: jst_midnight(NaiveDate::from_ymd_opt(2026, 11, 24).unwrap())
                + Duration::hours(10),
            end_cause: Some("completed"),
            detail: None,
            answered: true,
            ring_ms: Some(5_000),
            talk_ms: Some(60_000),
            wrapup_ms: None,
            outcome: Some("booking"),
            topics: None,
            note: None,
            caller: None,
        };
        let db = app.db.open().await;
        insert(&db, &[late], "late").await;

        // The sent version is served as stored; the change is flagged, the live figures differ.
        let view: Value = manager.get(q).await.json().await.unwrap();
        assert_eq!(view["status"], "sent");
        assert_eq!(view["sent"]["version"], 1);
        assert_eq!(view["report"]["total"]["offered"], want.offered);
        assert_eq!(view["changed_since_sent"], true);
        let html = manager
            .get(&format!("{q}&format=html"))
            .await
            .text()
            .await
            .unwrap();
        assert!(html.contains("送付済み 第1版"), "{html}");
        assert!(html.contains("送付後に集計値が変わりました"));
        let live: Value = manager
            .get(&format!("{q}&version=live"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(live["status"], "live");
        assert_eq!(live["report"]["total"]["offered"], want.offered + 1);
        assert_eq!(live["changed_since_sent"], true);

        // Sending again makes version 2, a revision of version 1; version 1 stays as it was.
        let res = manager
            .post("/api/reports/weekly-calls/2026-W48/sent", &json!({}))
            .await;
        assert_eq!(res.status(), 201);
        let v2: Value = res.json().await.unwrap();
        assert_eq!(v2["version"], 2);
        assert_eq!(v2["revision_of"], 1);
        let view: Value = manager.get(q).await.json().await.unwrap();
        assert_eq!(view["sent"]["version"], 2);
        assert_eq!(view["changed_since_sent"], false);
        assert_eq!(view["versions"].as_array().unwrap().len(), 2);
        assert_eq!(view["report"]["total"]["offered"], want.offered + 1);
        let old: Value = manager
            .get(&format!("{q}&version=1"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(old["report"]["total"]["offered"], want.offered);
        assert_eq!(old["sent"]["sha256"], v1["sha256"]);
        let missing = manager.get(&format!("{q}&version=3")).await;
        assert_eq!(missing.status(), 404);
        let csv = manager.get(&format!("{q}&format=csv&version=1")).await;
        assert!(csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("weekly-calls-2026-W48-v1.csv"));

        // The stored text is what its hash says.
        let body: String = sqlx::query_scalar("SELECT body FROM report_versions WHERE version = 1")
            .fetch_one(db.pool())
            .await
            .unwrap();
        use sha2::Digest;
        let hash: String = sha2::Sha256::digest(body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(v1["sha256"], hash);
        // Both sends are in the handling record.
        let sends: Vec<String> = sqlx::query_scalar(
            "SELECT target_id FROM audit_log WHERE action = 'report.send' ORDER BY id",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert_eq!(
            sends,
            ["weekly_calls/2026-W48/v1", "weekly_calls/2026-W48/v2"]
        );
        db.close().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn opinions_list_with_follow_up_audited_and_without_numbers() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let rows = small_week(&app).await;
        let manager = app.user_with_role("mgr", "manager").await;
        let reader = app.user_with_role("kanri2", "admin").await;
        let res = reader
            .get("/api/reports/opinions?from=2026-11-01&to=2026-12-24")
            .await;
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        let list: Value = serde_json::from_str(&text).unwrap();
        let list = list["opinions"].as_array().unwrap();
        let want = rows
            .iter()
            .filter(|g| matches!(g.outcome, Some("opinion" | "complaint")))
            .count();
        assert!(want > 0);
        assert_eq!(list.len(), want);
        for g in &rows {
            if let Some(c) = &g.caller {
                assert!(!text.contains(c.as_str()), "caller numbers are not listed");
            }
        }
        let first = &list[0];
        assert!(first["summary"]
            .as_str()
            .unwrap()
            .starts_with("ご意見の要旨"));
        assert!(first["date_ja"].as_str().unwrap().starts_with("令和8年"));
        assert!(first["follow_up"].is_null());
        let id = first["call_id"].as_i64().unwrap();

        let patch = |who: &crate::common::Session, id: i64, text: &str| {
            who.client
                .patch(format!("{}/api/reports/opinions/{id}", who.base))
                .header("X-CSRF-Token", &who.csrf)
                .json(&json!({ "follow_up": text }))
                .send()
        };
        let res = patch(&manager, id, "担当課へ連絡済み").await.unwrap();
        assert_eq!(res.status(), 200);
        let res = patch(&reader, id, "市の記入").await.unwrap();
        assert_eq!(res.status(), 403);
        let too_long = "あ".repeat(2001);
        let res = patch(&manager, id, &too_long).await.unwrap();
        assert_eq!(res.status(), 422);

        let db = app.db.open().await;
        let booking_call: i64 =
            sqlx::query_scalar("SELECT id FROM calls WHERE outcome = 'booking' LIMIT 1")
                .fetch_one(db.pool())
                .await
                .unwrap();
        let res = patch(&manager, booking_call, "x").await.unwrap();
        assert_eq!(res.status(), 409);
        let res = patch(&manager, 999_999, "x").await.unwrap();
        assert_eq!(res.status(), 404);

        let list: Value = manager
            .get("/api/reports/opinions?from=2026-11-01")
            .await
            .json()
            .await
            .unwrap();
        let row = list["opinions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["call_id"] == id)
            .unwrap();
        assert_eq!(row["follow_up"], "担当課へ連絡済み");
        assert_eq!(row["follow_up_by"], "mgr");

        let csv = manager
            .get("/api/reports/opinions?format=csv")
            .await
            .text()
            .await
            .unwrap();
        assert!(csv.starts_with("\u{feff}受付日,日付,時刻,区分,概要,対応状況"));
        assert!(csv.contains("担当課へ連絡済み"));
        let xlsx = manager
            .get("/api/reports/opinions?format=xlsx")
            .await
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(xlsx)).unwrap();
        let sheet = book.worksheet_range("意見・苦情").unwrap();
        assert_eq!(sheet.height(), want + 1);

        // Reads of the notes and the follow-up change are in the handling record.
        let reads: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'call.read' AND actor_username = 'kanri2'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(reads, 1);
        let changes: Vec<String> = sqlx::query_scalar(
            "SELECT target_id FROM audit_log WHERE action = 'call.follow_up' AND outcome = 'ok'",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert_eq!(changes, [id.to_string()]);
        let bad = manager
            .get("/api/reports/opinions?from=2026-12-01&to=2026-11-01")
            .await;
        assert_eq!(bad.status(), 422);
        db.close().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn only_managers_and_admins_read_reports_and_only_managers_send() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let operator = app.user_with_role("op1", "operator").await;
        let city = app.user_with_role("city1", "city").await;
        let admin = app.admin().await;
        let q = "/api/reports/weekly-calls?week=2026-W48";
        assert_eq!(operator.get(q).await.status(), 403);
        assert_eq!(operator.get("/api/reports/opinions").await.status(), 403);
        // The city role sees its week's visits only; the reports reach it as sent documents.
        assert_eq!(city.get(q).await.status(), 403);
        assert_eq!(city.get("/api/reports/opinions").await.status(), 403);
        assert_eq!(city.get("/api/reports/completion").await.status(), 403);
        assert_eq!(admin.get(q).await.status(), 200);
        assert_eq!(admin.get("/api/reports/opinions").await.status(), 200);
        for who in [&operator, &city, &admin] {
            let res = who
                .post("/api/reports/weekly-calls/2026-W48/sent", &json!({}))
                .await;
            assert_eq!(res.status(), 403);
        }
        // Without a week: the current one (the test clock: 2026-11-25).
        let now: Value = admin
            .get("/api/reports/weekly-calls")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(now["week"], "2026-W48");
        app.stop().await;
    }
}

/// kind, status, visit date, position, applicants, shared at (UTC), done, purged, facility.
type BookingRow<'a> = (
    &'a str,
    &'a str,
    &'a str,
    i64,
    i64,
    Option<&'a str>,
    bool,
    bool,
    Option<&'a str>,
);

/// Bookings in every state the completion report tells apart, straight into the tables.
async fn completion_bookings(db: &Db) {
    sqlx::query(
        "INSERT INTO facility_requests (status, created_at, facility_name, facility_type, applicants_estimate, updated_at) \
         VALUES ('scheduled', '2026-06-10T01:00:00.000Z', 'テスト施設', 'nursing_home', 20, '2026-06-10T01:00:00.000Z')",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let fid: i64 = sqlx::query_scalar("SELECT MAX(id) FROM facility_requests")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let f = fid.to_string();
    // kind, status, visit date, position, applicants, shared at (UTC), done, purged, facility
    let rows: [BookingRow; 6] = [
        // Due Tuesday 23 June; shared 23 June 10:00 JST: on time.
        (
            "home",
            "booked",
            "2026-07-01",
            1,
            2,
            Some("2026-06-23T01:00:00.000Z"),
            true,
            true,
            None,
        ),
        // Shared 24 June 00:30 JST (still the 23rd in UTC): late.
        (
            "home",
            "booked",
            "2026-07-01",
            2,
            1,
            Some("2026-06-23T15:30:00.000Z"),
            true,
            false,
            None,
        ),
        (
            "home",
            "booked",
            "2026-07-02",
            1,
            1,
            None,
            false,
            false,
            None,
        ),
        (
            "home",
            "cancelled",
            "2026-07-02",
            1,
            3,
            None,
            false,
            false,
            None,
        ),
        (
            "facility",
            "booked",
            "2026-07-03",
            1,
            15,
            Some("2026-06-20T01:00:00.000Z"),
            true,
            false,
            Some(&f),
        ),
        (
            "pre_meeting",
            "booked",
            "2026-06-26",
            1,
            0,
            None,
            false,
            false,
            Some(&f),
        ),
    ];
    for (kind, status, visit, pos, n, shared, done, purged, facility) in rows {
        sqlx::query(&format!(
            "INSERT INTO bookings (kind, status, visit_date, half_day, position, booked_at, updated_at, applicant_count, \
             shared_at, visit_done_at, purged_at, facility_request_id) VALUES ($1, $2, $3, 'am', $4, $5, $5, $6, $7, $8, $9, {})",
            facility.unwrap_or("NULL")
        ))
        .bind(kind)
        .bind(status)
        .bind(visit)
        .bind(pos)
        .bind("2026-06-15T01:00:00.000Z")
        .bind(n)
        .bind(shared)
        .bind(done.then_some("2026-07-03T08:00:00.000Z"))
        .bind(purged.then_some("2026-07-10T08:00:00.000Z"))
        .execute(db.pool())
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn the_completion_report_counts_calls_visits_shares_and_deletions() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let rows = small_week(&app).await;
        let db = app.db.open().await;
        completion_bookings(&db).await;
        let mut calls = Expect::default();
        for g in &rows {
            calls.add(g);
        }
        let reader = app.user_with_role("kanri2", "admin").await;
        let res = reader.get("/api/reports/completion").await;
        assert_eq!(res.status(), 200);
        let c: Value = res.json().await.unwrap();
        calls.check(&c["calls"], &format!("{kind:?} completion"));
        assert_eq!(c["period_from"], "2026-06-01");
        assert_eq!(c["period_to"], "2026-12-24");
        assert_eq!(c["weeks"].as_array().unwrap().len(), 30);
        let b = &c["bookings"];
        for (key, want) in [
            ("home_booked", 3),
            ("facility_booked", 1),
            ("pre_meetings", 1),
            ("cancelled", 1),
            ("home_done", 2),
            ("facility_done", 1),
            ("home_applicants_done", 3),
            ("facility_applicants_done", 15),
            ("facility_requests", 1),
            ("facilities_visited", 1),
            ("shared_on_time", 2),
            ("shared_late", 1),
            ("not_shared", 1),
            ("purged", 1),
        ] {
            assert_eq!(b[key], want, "{kind:?} {key}");
        }

        let xlsx = reader
            .get("/api/reports/completion?format=xlsx")
            .await
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(xlsx)).unwrap();
        assert_eq!(book.sheet_names(), vec!["完了報告", "週別受電件数"]);
        let sheet = book.worksheet_range("完了報告").unwrap();
        let value = |label: &str| {
            sheet
                .rows()
                .find(|r| r.get(1) == Some(&Data::String(label.into())))
                .unwrap_or_else(|| panic!("no row {label}"))[2]
                .clone()
        };
        assert_eq!(value("受付件数"), Data::Float(calls.offered as f64));
        assert_eq!(value("期限後に共有"), Data::Float(1.0));
        assert_eq!(value("訪問完了分の申請者数（施設）"), Data::Float(15.0));
        assert_eq!(
            value("苦情"),
            Data::Float(calls.outcomes["complaint"] as f64)
        );

        let html = reader
            .get("/api/reports/completion?format=html")
            .await
            .text()
            .await
            .unwrap();
        assert!(html.contains("委託業務完了報告書"));
        assert!(html.contains("受付期間：令和8年6月1日（月） 〜 令和8年12月24日（木）"));
        assert!(html.contains(&format!("<th>受付件数</th><td>{}</td>", calls.offered)));
        let operator = app.user_with_role("op1", "operator").await;
        assert_eq!(operator.get("/api/reports/completion").await.status(), 403);
        db.close().await;
        app.stop().await;
    }
}
