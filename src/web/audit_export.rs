//! `GET /api/audit/export`: the 取扱記録 as filtered on the screen, as CSV (UTF-8 with BOM,
//! for Excel) or XLSX, for the city's inspection (issue 18 item 6; 第13, 第15). Actions,
//! results and targets are written in Japanese from the label table, with the actor's and
//! the target account's names; the export itself is recorded (`audit.export`).

use super::download;
use std::collections::HashMap;

use axum::extract::State;

use axum::response::Response;
use chrono::{DateTime, Utc};
use rust_xlsxwriter::{Format, Workbook};
use serde::Deserialize;

use crate::app::AppState;
use crate::privacy::{AuditAction, AuditEntry, AuditFilter, AuditRow};

use super::access::Staff;
use super::{ApiError, QueryParams};

/// Rows read per page; the export reads at most [`MAX_PAGES`] pages.
const PAGE: u32 = 1000;
const MAX_PAGES: usize = 100;

/// The screen's filters and the file format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `csv` or `xlsx`.
    format: String,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    actor: Option<String>,
    action: Option<AuditAction>,
}

const HEADINGS: [&str; 10] = [
    "日時",
    "操作者",
    "操作者名",
    "操作",
    "結果",
    "対象の種類",
    "対象",
    "対象の名前",
    "接続元",
    "操作コード",
];

/// `GET /api/audit/export?format=csv|xlsx&from=&to=&actor=&action=`.
pub async fn export(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    QueryParams(q): QueryParams<ExportQuery>,
) -> Result<Response, ApiError> {
    if q.format != "csv" && q.format != "xlsx" {
        return Err(ApiError::invalid(
            "出力形式は csv か xlsx を指定してください。",
        ));
    }
    let mut filter = AuditFilter {
        from: q.from,
        to: q.to,
        actor: q.actor.clone().filter(|a| !a.is_empty()),
        action: q.action,
        limit: Some(PAGE),
        ..AuditFilter::default()
    };
    let mut rows: Vec<AuditRow> = Vec::new();
    let mut complete = false;
    for _ in 0..MAX_PAGES {
        let page = state.audit.read(&actor, &filter).await?;
        let full = page.len() == PAGE as usize;
        filter.before_id = page.last().map(|r| r.id);
        rows.extend(page);
        if !full {
            complete = true;
            break;
        }
    }
    // An inspection file must hold every row the filters name: never a silent cut.
    if !complete {
        return Err(ApiError::invalid(format!(
            "該当する記録が{}件を超えるため出力できません。期間や操作者で絞り込んでください。",
            PAGE as usize * MAX_PAGES
        )));
    }
    let names: HashMap<String, (i64, String)> = state
        .users
        .list()
        .await?
        .into_iter()
        .map(|u| (u.username.clone(), (u.id, u.display_name)))
        .collect();
    let by_id: HashMap<String, String> = names
        .iter()
        .map(|(username, (id, name))| (id.to_string(), format!("{name}（{username}）")))
        .collect();
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            let who = r.actor_username.clone().unwrap_or_default();
            let who_name = names.get(&who).map(|(_, n)| n.clone()).unwrap_or_default();
            let target_name = match (r.target_kind, &r.target_id) {
                (Some(crate::privacy::AuditTarget::User), Some(id)) => {
                    by_id.get(id).cloned().unwrap_or_default()
                }
                _ => String::new(),
            };
            [
                r.at.with_timezone(&chrono_tz::Asia::Tokyo)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string(),
                who,
                who_name,
                r.action.label_ja().to_string(),
                r.outcome.label_ja().to_string(),
                r.target_kind
                    .map(|k| k.label_ja().to_string())
                    .unwrap_or_default(),
                r.target_id.clone().unwrap_or_default(),
                target_name,
                r.ip.clone().unwrap_or_default(),
                r.action.as_str().to_string(),
            ]
        })
        .collect();
    let entry = AuditEntry::new(AuditAction::AuditExport).detail(serde_json::json!({
        "format": q.format,
        "rows": cells.len(),
        "from": q.from,
        "to": q.to,
        "actor": q.actor,
        "action": q.action,
    }));
    state.audit.record(&actor, entry).await?;
    let stamp = state
        .clock
        .now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .format("%Y%m%d-%H%M");
    // Building a large file is CPU work: off the runtime's workers (the SIP core runs there).
    tokio::task::spawn_blocking(move || build_file(&q.format, &cells, &stamp.to_string()))
        .await
        .map_err(ApiError::internal)?
}

/// The CSV or XLSX download of the export's rows.
fn build_file(format: &str, cells: &[[String; 10]], stamp: &str) -> Result<Response, ApiError> {
    if format == "csv" {
        let mut out = String::from("\u{feff}");
        out.push_str(&HEADINGS.join(","));
        out.push_str("\r\n");
        for r in cells {
            out.push_str(&r.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
            out.push_str("\r\n");
        }
        Ok(download::attachment(
            out.into_bytes(),
            "text/csv; charset=utf-8",
            &format!("audit-log-{stamp}.csv"),
        ))
    } else {
        let bytes = xlsx(cells).map_err(ApiError::internal)?;
        Ok(download::attachment(
            bytes,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            &format!("audit-log-{stamp}.xlsx"),
        ))
    }
}

/// A CSV field, quoted when it must be (RFC 4180); a leading `=`, `+`, `-`, `@` is kept
/// as text so that Excel does not run it as a formula.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn xlsx(rows: &[[String; 10]]) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    let mut wb = Workbook::new();
    let sheet = wb.add_worksheet();
    sheet.set_name("取扱記録")?;
    let bold = Format::new().set_bold();
    for (c, h) in HEADINGS.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, *h, &bold)?;
        sheet.set_column_width(c as u16, if c == 0 { 20 } else { 16 })?;
    }
    for (i, r) in rows.iter().enumerate() {
        for (c, v) in r.iter().enumerate() {
            sheet.write_string(i as u32 + 1, c as u16, v)?;
        }
    }
    sheet.set_freeze_panes(1, 0)?;
    wb.save_to_buffer()
}
