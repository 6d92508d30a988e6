//! The reports as files: CSV for Excel (UTF-8 with BOM, CRLF), XLSX with Japanese headings
//! and native charts, a hand-written SVG chart and a printable A4 HTML page.

use rust_xlsxwriter::{Chart, ChartType, Format, Workbook};

use crate::calls::{Outcome, Topic};

use super::completion::CompletionReport;
use super::opinions::OpinionRow;
use super::weekly::{Figures, WeekPoint, WeeklyReport};
use super::ReportsError;

/// One cell of the figures table.
#[derive(Debug, Clone, Copy)]
enum Cell {
    /// A count.
    N(u32),
    /// Seconds.
    Sec(Option<f64>),
    /// A rate.
    Pct(Option<f64>),
}

impl Cell {
    fn text(self) -> String {
        match self {
            Cell::N(n) => n.to_string(),
            Cell::Sec(s) => s.map(|s| format!("{s:.1}")).unwrap_or_default(),
            Cell::Pct(p) => p.map(|p| format!("{:.1}%", p * 100.0)).unwrap_or_default(),
        }
    }
}

/// Reads one count of a day's figures.
type Count = fn(&Figures) -> u32;

/// One row of the figures table: a label, the formula's key, Monday … Sunday and the week.
struct Line {
    label: String,
    formula: &'static str,
    cells: Vec<Cell>,
}

/// The rows of the figures table, in the order every rendering shows them.
fn lines(r: &WeeklyReport) -> Vec<Line> {
    type Get = Box<dyn Fn(&Figures) -> Cell>;
    let mut rows: Vec<(String, &'static str, Get)> = vec![
        (
            "受付件数".into(),
            "offered",
            Box::new(|f| Cell::N(f.offered)),
        ),
        (
            "応答件数".into(),
            "answered",
            Box::new(|f| Cell::N(f.answered)),
        ),
        (
            "放棄".into(),
            "abandoned",
            Box::new(|f| Cell::N(f.abandoned)),
        ),
        ("話中".into(), "busy", Box::new(|f| Cell::N(f.busy))),
        (
            "応答なし".into(),
            "no_answer",
            Box::new(|f| Cell::N(f.no_answer)),
        ),
        (
            "不在".into(),
            "unstaffed",
            Box::new(|f| Cell::N(f.unstaffed)),
        ),
        ("時間外".into(), "closed", Box::new(|f| Cell::N(f.closed))),
        (
            "時間外のうち夜間".into(),
            "closed_by_reason",
            Box::new(|f| Cell::N(f.closed_by_reason.night)),
        ),
        (
            "時間外のうち土日".into(),
            "closed_by_reason",
            Box::new(|f| Cell::N(f.closed_by_reason.weekend)),
        ),
        (
            "時間外のうち祝日".into(),
            "closed_by_reason",
            Box::new(|f| Cell::N(f.closed_by_reason.holiday)),
        ),
        (
            "時間外のうち年末年始".into(),
            "closed_by_reason",
            Box::new(|f| Cell::N(f.closed_by_reason.year_end)),
        ),
        (
            "時間外のうち受付期間外".into(),
            "closed_by_reason",
            Box::new(|f| Cell::N(f.closed_by_reason.outside_period)),
        ),
        (
            "時間外のうち臨時休業日".into(),
            "closed_by_reason",
            Box::new(|f| Cell::N(f.closed_by_reason.extra_closed)),
        ),
        (
            "時間外のうち理由不明".into(),
            "closed_by_reason",
            Box::new(|f| Cell::N(f.closed_by_reason.unknown)),
        ),
    ];
    let outcomes: [(Option<Outcome>, Count); 8] = [
        (Some(Outcome::Booking), |f| f.outcomes.booking),
        (Some(Outcome::FacilityRequest), |f| {
            f.outcomes.facility_request
        }),
        (Some(Outcome::Inquiry), |f| f.outcomes.inquiry),
        (Some(Outcome::Opinion), |f| f.outcomes.opinion),
        (Some(Outcome::Complaint), |f| f.outcomes.complaint),
        (Some(Outcome::WrongNumber), |f| f.outcomes.wrong_number),
        (Some(Outcome::Other), |f| f.outcomes.other),
        (None, |f| f.outcomes.none),
    ];
    for (o, get) in outcomes {
        let name = o.map(Outcome::label_ja).unwrap_or("未記録");
        rows.push((
            format!("対応：{name}"),
            "outcomes",
            Box::new(move |f| Cell::N(get(f))),
        ));
    }
    let topics: [(Topic, Count); 5] = [
        (Topic::HealthInsurance, |f| {
            f.inquiry_topics.health_insurance
        }),
        (Topic::Renewal, |f| f.inquiry_topics.renewal),
        (Topic::Loss, |f| f.inquiry_topics.loss),
        (Topic::Fee, |f| f.inquiry_topics.fee),
        (Topic::Other, |f| f.inquiry_topics.other),
    ];
    for (t, get) in topics {
        rows.push((
            format!("問合せ：{}", t.label_ja()),
            "inquiry_topics",
            Box::new(move |f| Cell::N(get(f))),
        ));
    }
    rows.push((
        "平均応答時間（秒）".into(),
        "asa_seconds",
        Box::new(|f| Cell::Sec(f.asa_seconds)),
    ));
    rows.push((
        format!("サービスレベル（{}秒以内）", r.service_level_secs),
        "service_level",
        Box::new(|f| Cell::Pct(f.service_level)),
    ));
    rows.push((
        "放棄率".into(),
        "abandonment_rate",
        Box::new(|f| Cell::Pct(f.abandonment_rate)),
    ));
    rows.push((
        "平均処理時間（秒）".into(),
        "aht_seconds",
        Box::new(|f| Cell::Sec(f.aht_seconds)),
    ));
    for h in 0..24 {
        rows.push((
            format!("受付件数 {h}時台"),
            "hourly_offered",
            Box::new(move |f| Cell::N(f.hourly_offered.get(h).copied().unwrap_or(0))),
        ));
    }
    rows.into_iter()
        .map(|(label, formula, get)| Line {
            label,
            formula,
            cells: r.days.iter().chain([&r.total]).map(&get).collect(),
        })
        .collect()
}

/// The column headings: the item, each day (和暦 with the ISO date), the week, the formula.
fn headings(r: &WeeklyReport) -> Vec<String> {
    let mut h = vec!["項目".to_string()];
    for d in &r.days {
        let iso = d.date.map(|d| d.to_string()).unwrap_or_default();
        h.push(format!("{} {iso}", d.label_ja));
    }
    h.push("週計".into());
    h.push("計算式".into());
    h
}

/// A CSV field, quoted when it must be (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv(rows: impl Iterator<Item = Vec<String>>) -> String {
    // The BOM makes Excel read UTF-8; CRLF is what it writes itself.
    let mut out = String::from("\u{feff}");
    for r in rows {
        out.push_str(&r.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

fn formula<'a>(r: &'a WeeklyReport, key: &str) -> &'a str {
    r.formulas.get(key).map(String::as_str).unwrap_or_default()
}

/// The weekly report as CSV for Excel: one row per figure, a column per day, the week and
/// the formula.
pub fn weekly_csv(r: &WeeklyReport) -> String {
    let head = std::iter::once(headings(r));
    let body = lines(r).into_iter().map(|l| {
        let mut row = vec![l.label];
        row.extend(l.cells.iter().map(|c| c.text()));
        row.push(formula(r, l.formula).to_string());
        row
    });
    csv(head.chain(body))
}

/// The weekly report as XLSX: the figures (受電件数), the season (期間推移) and the charts
/// (グラフ, native Excel charts drawn from the first two sheets).
pub fn weekly_xlsx(r: &WeeklyReport) -> Result<Vec<u8>, ReportsError> {
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let wrap = Format::new().set_text_wrap();
    let secs = Format::new().set_num_format("0.0");
    let pct = Format::new().set_num_format("0.0%");
    const FIGURES: &str = "受電件数";
    const SEASON: &str = "期間推移";
    let ls = lines(r);
    {
        let ws = wb.add_worksheet();
        ws.set_name(FIGURES)?;
        ws.write_string_with_format(0, 0, format!("受電件数報告 {}", r.week), &bold)?;
        ws.write_string(
            1,
            0,
            format!(
                "{} {} 対象期間：{} 〜 {}",
                r.city_ja,
                r.service_ja,
                crate::wareki::date_with_weekday(r.from),
                crate::wareki::date_with_weekday(r.to)
            ),
        )?;
        for (c, h) in headings(r).iter().enumerate() {
            ws.write_string_with_format(3, c as u16, h, &bold)?;
        }
        for (i, l) in ls.iter().enumerate() {
            let row = 4 + i as u32;
            ws.write_string(row, 0, &l.label)?;
            for (j, cell) in l.cells.iter().enumerate() {
                let col = 1 + j as u16;
                match *cell {
                    Cell::N(n) => {
                        ws.write_number(row, col, f64::from(n))?;
                    }
                    Cell::Sec(Some(s)) => {
                        ws.write_number_with_format(row, col, s, &secs)?;
                    }
                    Cell::Pct(Some(p)) => {
                        ws.write_number_with_format(row, col, p, &pct)?;
                    }
                    Cell::Sec(None) | Cell::Pct(None) => {}
                }
            }
            ws.write_string_with_format(row, 9, formula(r, l.formula), &wrap)?;
        }
        ws.set_column_width(0, 24)?;
        for c in 1..=8 {
            ws.set_column_width(c, 14)?;
        }
        ws.set_column_width(9, 60)?;
    }
    {
        let ws = wb.add_worksheet();
        ws.set_name(SEASON)?;
        for (c, h) in ["週", "月曜日", "受付件数", "応答件数", "時間外"]
            .iter()
            .enumerate()
        {
            ws.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        for (i, p) in r.season.iter().enumerate() {
            let row = 1 + i as u32;
            ws.write_string(row, 0, &p.week)?;
            ws.write_string(row, 1, p.monday.to_string())?;
            ws.write_number(row, 2, f64::from(p.offered))?;
            ws.write_number(row, 3, f64::from(p.answered))?;
            ws.write_number(row, 4, f64::from(p.closed))?;
        }
        ws.set_column_width(0, 12)?;
        ws.set_column_width(1, 12)?;
    }
    {
        let ws = wb.add_worksheet();
        ws.set_name("グラフ")?;
        // The 受付件数 row is the first row of the figures (sheet row 4), days in columns 1–7.
        let mut week = Chart::new(ChartType::Column);
        week.title().set_name(&format!("日別受付件数 {}", r.week));
        week.add_series()
            .set_name("受付件数")
            .set_categories((FIGURES, 3, 1, 3, 7))
            .set_values((FIGURES, 4, 1, 4, 7));
        week.add_series()
            .set_name("応答件数")
            .set_categories((FIGURES, 3, 1, 3, 7))
            .set_values((FIGURES, 5, 1, 5, 7));
        ws.insert_chart(1, 1, &week)?;
        let last = r.season.len().max(1) as u32;
        let mut season = Chart::new(ChartType::Line);
        season.title().set_name("週別受付件数（期間推移）");
        season
            .add_series()
            .set_name("受付件数")
            .set_categories((SEASON, 1, 0, last, 0))
            .set_values((SEASON, 1, 2, last, 2));
        season
            .add_series()
            .set_name("応答件数")
            .set_categories((SEASON, 1, 0, last, 0))
            .set_values((SEASON, 1, 3, last, 3));
        ws.insert_chart(18, 1, &season)?;
    }
    Ok(wb.save_to_buffer()?)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round top for an axis: 1, 2 or 5 times a power of ten, at least `max`.
fn nice_max(max: u32) -> u32 {
    let mut step = 1u32;
    loop {
        for m in [1, 2, 5] {
            if step.saturating_mul(m) >= max.max(1) {
                return step.saturating_mul(m);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// The chart as SVG: a bar per day of the week (offered, answered inside it), and a bar
/// per week of the season so far with the report's week marked.
pub fn weekly_svg(r: &WeeklyReport) -> String {
    let (w, h) = (760.0, 540.0);
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12" role="img" aria-label="受電件数 {week}">"##,
        week = esc(&r.week)
    );
    s.push_str(&format!(
        r##"<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/><text x="20" y="24" font-size="16" font-weight="bold">日別受付件数 {}（{} 〜 {}）</text>"##,
        esc(&r.week),
        esc(&crate::wareki::date_with_weekday(r.from)),
        esc(&crate::wareki::date_with_weekday(r.to))
    ));
    // The week: one bar per day.
    let (x0, y0, pw, ph) = (60.0, 50.0, 660.0, 190.0);
    let top = nice_max(r.days.iter().map(|d| d.offered).max().unwrap_or(0));
    s.push_str(&axis(x0, y0, pw, ph, top));
    let slot = pw / 7.0;
    for (i, d) in r.days.iter().enumerate() {
        let bw = slot * 0.6;
        let x = x0 + slot * i as f64 + (slot - bw) / 2.0;
        let bh = ph * f64::from(d.offered) / f64::from(top);
        let ah = ph * f64::from(d.answered) / f64::from(top);
        let day = d.date.map(crate::wareki::weekday).unwrap_or_default();
        let md = d
            .date
            .map(|d| d.format("%-m/%-d").to_string())
            .unwrap_or_default();
        s.push_str(&format!(
            r##"<rect class="day-bar" data-date="{iso}" data-offered="{o}" x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" fill="#4a7ab5"><title>{md}（{day}） 受付 {o} 件</title></rect>"##,
            iso = d.date.map(|d| d.to_string()).unwrap_or_default(),
            o = d.offered,
            y = y0 + ph - bh,
        ));
        s.push_str(&format!(
            r##"<rect class="day-answered" x="{x:.1}" y="{y:.1}" width="{aw:.1}" height="{ah:.1}" fill="#9cc3e6"/>"##,
            x = x + bw * 0.25,
            y = y0 + ph - ah,
            aw = bw * 0.5,
        ));
        s.push_str(&format!(
            r##"<text x="{cx:.1}" y="{ty:.1}" text-anchor="middle">{o}</text><text x="{cx:.1}" y="{ly:.1}" text-anchor="middle">{md}（{day}）</text>"##,
            cx = x + bw / 2.0,
            ty = y0 + ph - bh - 4.0,
            o = d.offered,
            ly = y0 + ph + 16.0,
        ));
    }
    s.push_str(&legend(x0, y0 + ph + 34.0));
    s.push_str(&season_panel(&r.season, Some(&r.week), 330.0));
    s.push_str("</svg>");
    s
}

/// The season's weeks as bars (the week `mark` highlighted), with its heading, from `y1 - 18`.
fn season_panel(season: &[WeekPoint], mark: Option<&str>, y1: f64) -> String {
    let mut s = String::new();
    let (x0, pw, ph1) = (60.0, 660.0, 170.0);
    s.push_str(&format!(
        r##"<text x="20" y="{}" font-size="16" font-weight="bold">週別受付件数（期間推移）</text>"##,
        y1 - 18.0
    ));
    let top = nice_max(season.iter().map(|p| p.offered).max().unwrap_or(0));
    s.push_str(&axis(x0, y1, pw, ph1, top));
    let n = season.len().max(1);
    let slot = pw / n as f64;
    for (i, p) in season.iter().enumerate() {
        let bw = (slot * 0.7).max(1.0);
        let x = x0 + slot * i as f64 + (slot - bw) / 2.0;
        let bh = ph1 * f64::from(p.offered) / f64::from(top);
        let fill = if Some(p.week.as_str()) == mark {
            "#d9822b"
        } else {
            "#7f9fc6"
        };
        s.push_str(&format!(
            r##"<rect class="week-bar" data-week="{wk}" data-offered="{o}" x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" fill="{fill}"><title>{wk} 受付 {o} 件</title></rect>"##,
            wk = esc(&p.week),
            o = p.offered,
            y = y1 + ph1 - bh,
        ));
        if n <= 12 || i % 4 == 0 || Some(p.week.as_str()) == mark {
            s.push_str(&format!(
                r##"<text x="{cx:.1}" y="{ly:.1}" text-anchor="middle" font-size="10">{md}</text>"##,
                cx = x + bw / 2.0,
                ly = y1 + ph1 + 14.0,
                md = p.monday.format("%-m/%-d"),
            ));
        }
    }
    s
}

fn axis(x0: f64, y0: f64, pw: f64, ph: f64, top: u32) -> String {
    let mut s = String::new();
    for k in 0..=4 {
        let v = f64::from(top) * f64::from(k) / 4.0;
        let y = y0 + ph - ph * v / f64::from(top);
        s.push_str(&format!(
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" stroke="#dddddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end" font-size="10">{v}</text>"##,
            v = if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") },
            x2 = x0 + pw,
            tx = x0 - 6.0,
            ty = y + 4.0,
        ));
    }
    s.push_str(&format!(
        r##"<line x1="{x0}" y1="{y}" x2="{x2}" y2="{y}" stroke="#333333"/>"##,
        y = y0 + ph,
        x2 = x0 + pw
    ));
    s
}

fn legend(x: f64, y: f64) -> String {
    format!(
        r##"<rect x="{x}" y="{y0}" width="12" height="12" fill="#4a7ab5"/><text x="{x1}" y="{y}">受付件数</text><rect x="{x2}" y="{y0}" width="12" height="12" fill="#9cc3e6"/><text x="{x3}" y="{y}">応答件数</text>"##,
        y0 = y - 10.0,
        x1 = x + 16.0,
        x2 = x + 90.0,
        x3 = x + 106.0,
    )
}

/// The print style of the report pages (A4), also served as `/assets/report.css`.
pub const REPORT_CSS: &str = include_str!("report.css");

/// The weekly report as a printable Japanese HTML page (A4). `note` says which version it
/// is; `inline_css` puts the style in the page (for a file), otherwise it links the served one.
pub fn weekly_html(r: &WeeklyReport, note: &str, inline_css: bool) -> String {
    let mut s = String::from("<!DOCTYPE html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\">");
    s.push_str(&format!("<title>受電件数報告 {}</title>", esc(&r.week)));
    if inline_css {
        s.push_str(&format!("<style>{REPORT_CSS}</style>"));
    } else {
        s.push_str(r#"<link rel="stylesheet" href="/assets/report.css">"#);
    }
    s.push_str("</head><body class=\"report\">");
    s.push_str(&format!(
        "<header><h1>受電件数報告（週報）</h1><p>{} {}</p><p>対象期間：{} 〜 {}（{}）</p><p class=\"note\" id=\"report-note\">{}</p></header>",
        esc(&r.city_ja),
        esc(&r.service_ja),
        esc(&crate::wareki::date_with_weekday(r.from)),
        esc(&crate::wareki::date_with_weekday(r.to)),
        esc(&r.week),
        esc(note),
    ));
    s.push_str("<table class=\"figures\"><thead><tr><th>項目</th>");
    for d in &r.days {
        s.push_str(&format!("<th>{}</th>", esc(&d.label_ja)));
    }
    s.push_str("<th>週計</th></tr></thead><tbody>");
    for l in lines(r) {
        let key = l.formula;
        s.push_str(&format!(
            "<tr data-key=\"{key}\"><th title=\"{}\">{}</th>",
            esc(formula(r, key)),
            esc(&l.label)
        ));
        let last = l.cells.len().saturating_sub(1);
        for (i, c) in l.cells.iter().enumerate() {
            let class = if i == last { " class=\"total\"" } else { "" };
            s.push_str(&format!("<td{class}>{}</td>", esc(&c.text())));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s.push_str(&format!(
        "<section class=\"chart\">{}</section>",
        weekly_svg(r)
    ));
    s.push_str("<section class=\"formulas\"><h2>算出方法</h2><dl>");
    for (k, v) in &r.formulas {
        s.push_str(&format!("<dt>{}</dt><dd>{}</dd>", esc(k), esc(v)));
    }
    s.push_str("</dl></section>");
    let made = r.computed_at.with_timezone(&chrono_tz::Asia::Tokyo);
    s.push_str(&format!(
        "<footer>集計日時：{} {}</footer></body></html>\n",
        esc(&crate::wareki::date_with_weekday(made.date_naive())),
        made.format("%H:%M")
    ));
    s
}

const OPINION_HEADINGS: [&str; 8] = [
    "受付日",
    "日付",
    "時刻",
    "区分",
    "概要",
    "対応状況",
    "対応記録日時",
    "通話ID",
];

fn opinion_cells(o: &OpinionRow) -> Vec<String> {
    vec![
        o.date_ja.clone(),
        o.date.to_string(),
        o.time.clone(),
        o.kind_ja.to_string(),
        o.summary.clone(),
        o.follow_up.clone().unwrap_or_default(),
        o.follow_up_at
            .map(|t| {
                t.with_timezone(&chrono_tz::Asia::Tokyo)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default(),
        o.call_id.to_string(),
    ]
}

/// The opinions and complaints as CSV for Excel.
pub fn opinions_csv(rows: &[OpinionRow]) -> String {
    let head = std::iter::once(OPINION_HEADINGS.iter().map(|h| h.to_string()).collect());
    csv(head.chain(rows.iter().map(opinion_cells)))
}

/// The opinions and complaints as XLSX (sheet 意見・苦情).
pub fn opinions_xlsx(rows: &[OpinionRow]) -> Result<Vec<u8>, ReportsError> {
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let wrap = Format::new().set_text_wrap();
    let ws = wb.add_worksheet();
    ws.set_name("意見・苦情")?;
    for (c, h) in OPINION_HEADINGS.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *h, &bold)?;
    }
    for (i, o) in rows.iter().enumerate() {
        for (c, v) in opinion_cells(o).iter().enumerate() {
            ws.write_string_with_format(1 + i as u32, c as u16, v, &wrap)?;
        }
    }
    for (c, w) in [22, 12, 8, 8, 50, 50, 16, 8].iter().enumerate() {
        ws.set_column_width(c as u16, *w)?;
    }
    Ok(wb.save_to_buffer()?)
}

/// One line of the completion report: section, item, value.
type Item = (&'static str, String, Cell);

fn completion_items(c: &CompletionReport) -> Vec<Item> {
    let f = &c.calls;
    let b = &c.bookings;
    let mut v: Vec<Item> = vec![
        ("受電実績", "受付件数".into(), Cell::N(f.offered)),
        ("受電実績", "応答件数".into(), Cell::N(f.answered)),
        ("受電実績", "放棄".into(), Cell::N(f.abandoned)),
        ("受電実績", "話中".into(), Cell::N(f.busy)),
        ("受電実績", "応答なし".into(), Cell::N(f.no_answer)),
        ("受電実績", "不在".into(), Cell::N(f.unstaffed)),
        ("受電実績", "時間外".into(), Cell::N(f.closed)),
        (
            "受電実績",
            "平均応答時間（秒）".into(),
            Cell::Sec(f.asa_seconds),
        ),
        (
            "受電実績",
            "サービスレベル".into(),
            Cell::Pct(f.service_level),
        ),
        ("受電実績", "放棄率".into(), Cell::Pct(f.abandonment_rate)),
    ];
    let o = &f.outcomes;
    for (name, n) in [
        (Outcome::Booking.label_ja(), o.booking),
        (Outcome::FacilityRequest.label_ja(), o.facility_request),
        (Outcome::Inquiry.label_ja(), o.inquiry),
        (Outcome::Opinion.label_ja(), o.opinion),
        (Outcome::Complaint.label_ja(), o.complaint),
        (Outcome::WrongNumber.label_ja(), o.wrong_number),
        (Outcome::Other.label_ja(), o.other),
        ("未記録", o.none),
    ] {
        v.push(("対応区分", name.into(), Cell::N(n)));
    }
    for (name, n) in [
        ("自宅訪問の予約", b.home_booked),
        ("施設訪問の予約", b.facility_booked),
        ("施設との事前打合せ", b.pre_meetings),
        ("取消", b.cancelled),
        ("自宅訪問の完了", b.home_done),
        ("施設訪問の完了", b.facility_done),
        ("訪問完了分の申請者数（自宅）", b.home_applicants_done),
        ("訪問完了分の申請者数（施設）", b.facility_applicants_done),
        ("施設申込", b.facility_requests),
        ("訪問した施設", b.facilities_visited),
    ] {
        v.push(("予約・訪問", name.into(), Cell::N(n)));
    }
    for (name, n) in [
        ("期限内に共有", b.shared_on_time),
        ("期限後に共有", b.shared_late),
        ("未共有", b.not_shared),
    ] {
        v.push(("受付票の市への共有", name.into(), Cell::N(n)));
    }
    v.push(("個人情報の削除", "削除済みの予約".into(), Cell::N(b.purged)));
    v.push(("意見・苦情", "意見".into(), Cell::N(o.opinion)));
    v.push(("意見・苦情", "苦情".into(), Cell::N(o.complaint)));
    v
}

fn week_span(p: &WeekPoint) -> String {
    format!(
        "{} 〜 {}",
        crate::wareki::date_with_weekday(p.monday),
        crate::wareki::date_with_weekday(p.monday + chrono::Duration::days(6))
    )
}

/// The completion report as a printable Japanese HTML page (A4).
pub fn completion_html(c: &CompletionReport, inline_css: bool) -> String {
    let mut s = String::from("<!DOCTYPE html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\">");
    s.push_str("<title>委託業務完了報告書</title>");
    if inline_css {
        s.push_str(&format!("<style>{REPORT_CSS}</style>"));
    } else {
        s.push_str(r#"<link rel="stylesheet" href="/assets/report.css">"#);
    }
    s.push_str("</head><body class=\"report\">");
    s.push_str(&format!(
        "<header><h1>委託業務完了報告書</h1><p>{} {}</p><p>受付期間：{} 〜 {}</p></header>",
        esc(&c.city_ja),
        esc(&c.service_ja),
        esc(&crate::wareki::date_with_weekday(c.period_from)),
        esc(&crate::wareki::date_with_weekday(c.period_to)),
    ));
    s.push_str("<table class=\"figures\" id=\"completion-figures\"><thead><tr><th>区分</th><th>項目</th><th>件数</th></tr></thead><tbody>");
    for (section, name, cell) in completion_items(c) {
        s.push_str(&format!(
            "<tr><th>{}</th><th>{}</th><td>{}</td></tr>",
            esc(section),
            esc(&name),
            esc(&cell.text())
        ));
    }
    s.push_str("</tbody></table><h2>週別受電件数</h2><table class=\"figures\"><thead><tr><th>週</th><th>期間</th><th>受付件数</th><th>応答件数</th><th>時間外</th></tr></thead><tbody>");
    for p in &c.weeks {
        s.push_str(&format!(
            "<tr><th>{}</th><th>{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.week),
            esc(&week_span(p)),
            p.offered,
            p.answered,
            p.closed
        ));
    }
    s.push_str("</tbody></table>");
    s.push_str(&format!(
        r##"<section class="chart"><svg xmlns="http://www.w3.org/2000/svg" width="760" height="240" viewBox="0 0 760 240" font-family="sans-serif" font-size="12"><rect x="0" y="0" width="760" height="240" fill="#ffffff"/>{}</svg></section>"##,
        season_panel(&c.weeks, None, 40.0)
    ));
    s.push_str("<section class=\"formulas\"><h2>算出方法</h2><dl>");
    for (k, v) in &c.formulas {
        s.push_str(&format!("<dt>{}</dt><dd>{}</dd>", esc(k), esc(v)));
    }
    s.push_str("</dl></section>");
    let made = c.computed_at.with_timezone(&chrono_tz::Asia::Tokyo);
    s.push_str(&format!(
        "<footer>集計日時：{} {}</footer></body></html>\n",
        esc(&crate::wareki::date_with_weekday(made.date_naive())),
        made.format("%H:%M")
    ));
    s
}

/// The completion report as XLSX: the figures (完了報告), the weeks (週別受電件数) with a chart.
pub fn completion_xlsx(c: &CompletionReport) -> Result<Vec<u8>, ReportsError> {
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let secs = Format::new().set_num_format("0.0");
    let pct = Format::new().set_num_format("0.0%");
    const WEEKS: &str = "週別受電件数";
    {
        let ws = wb.add_worksheet();
        ws.set_name("完了報告")?;
        ws.write_string_with_format(0, 0, "委託業務完了報告書", &bold)?;
        ws.write_string(
            1,
            0,
            format!(
                "{} {} 受付期間：{} 〜 {}",
                c.city_ja,
                c.service_ja,
                crate::wareki::date_with_weekday(c.period_from),
                crate::wareki::date_with_weekday(c.period_to)
            ),
        )?;
        for (col, h) in ["区分", "項目", "件数"].iter().enumerate() {
            ws.write_string_with_format(3, col as u16, *h, &bold)?;
        }
        for (i, (section, name, cell)) in completion_items(c).into_iter().enumerate() {
            let row = 4 + i as u32;
            ws.write_string(row, 0, section)?;
            ws.write_string(row, 1, &name)?;
            match cell {
                Cell::N(n) => {
                    ws.write_number(row, 2, f64::from(n))?;
                }
                Cell::Sec(Some(v)) => {
                    ws.write_number_with_format(row, 2, v, &secs)?;
                }
                Cell::Pct(Some(v)) => {
                    ws.write_number_with_format(row, 2, v, &pct)?;
                }
                _ => {}
            }
        }
        ws.set_column_width(0, 20)?;
        ws.set_column_width(1, 30)?;
        ws.set_column_width(2, 12)?;
    }
    {
        let ws = wb.add_worksheet();
        ws.set_name(WEEKS)?;
        for (col, h) in ["週", "期間", "月曜日", "受付件数", "応答件数", "時間外"]
            .iter()
            .enumerate()
        {
            ws.write_string_with_format(0, col as u16, *h, &bold)?;
        }
        for (i, p) in c.weeks.iter().enumerate() {
            let row = 1 + i as u32;
            ws.write_string(row, 0, &p.week)?;
            ws.write_string(row, 1, week_span(p))?;
            ws.write_string(row, 2, p.monday.to_string())?;
            ws.write_number(row, 3, f64::from(p.offered))?;
            ws.write_number(row, 4, f64::from(p.answered))?;
            ws.write_number(row, 5, f64::from(p.closed))?;
        }
        ws.set_column_width(1, 44)?;
        let last = c.weeks.len().max(1) as u32;
        let mut chart = Chart::new(ChartType::Column);
        chart.title().set_name("週別受付件数");
        chart
            .add_series()
            .set_name("受付件数")
            .set_categories((WEEKS, 1, 0, last, 0))
            .set_values((WEEKS, 1, 3, last, 3));
        ws.insert_chart(1, 7, &chart)?;
    }
    Ok(wb.save_to_buffer()?)
}
