//! The reception list (受付一覧表, R-BOOK-6) and the bookings export (issue 14 item 11):
//! CSV for Excel (UTF-8 with BOM) and XLSX with Japanese headings.

use chrono::NaiveDate;
use rust_xlsxwriter::{Format, Workbook, XlsxError};
use serde::Serialize;

use super::bookings::BookingSummary;
use super::BookingKind;

/// One row of the reception list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReceptionRow {
    /// 受付番号.
    pub reception_number: i64,
    /// 受付日.
    pub booked_on: NaiveDate,
    /// 訪問日.
    pub visit_date: NaiveDate,
    /// 申請件数.
    pub applications: i64,
    /// 自宅 / 施設.
    pub kind: BookingKind,
    /// 予約済 / 取消: a cancelled booking keeps its number, so the list has no gaps.
    pub status: super::BookingStatus,
    /// 市への共有日.
    pub shared_on: Option<NaiveDate>,
    /// 訪問完了日.
    pub visit_done_on: Option<NaiveDate>,
    /// 個人情報削除日.
    pub purged_on: Option<NaiveDate>,
}

/// The rows, by reception number (pre-meetings have none and are not listed).
pub fn rows(list: &[BookingSummary]) -> Vec<ReceptionRow> {
    let mut rows: Vec<ReceptionRow> = list
        .iter()
        .filter_map(|b| {
            Some(ReceptionRow {
                reception_number: b.reception_number?,
                booked_on: b.booked_on,
                visit_date: b.slot.date,
                applications: b.applicants,
                kind: b.kind,
                status: b.status,
                shared_on: b.shared_on,
                visit_done_on: b.visit_done_on,
                purged_on: b.purged_on,
            })
        })
        .collect();
    rows.sort_by_key(|r| r.reception_number);
    rows
}

const RECEPTION_HEADINGS: [&str; 9] = [
    "受付番号",
    "受付日",
    "訪問日",
    "申請件数",
    "訪問種別",
    "状態",
    "市への共有日",
    "訪問完了日",
    "個人情報削除日",
];

fn opt(d: Option<NaiveDate>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

/// A CSV field, quoted when it must be (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv(headings: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    // The BOM makes Excel read UTF-8; CRLF is what it writes itself.
    let mut out = String::from("\u{feff}");
    out.push_str(&headings.join(","));
    out.push_str("\r\n");
    for r in rows {
        out.push_str(&r.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

fn reception_cells(r: &ReceptionRow) -> Vec<String> {
    vec![
        r.reception_number.to_string(),
        r.booked_on.to_string(),
        r.visit_date.to_string(),
        r.applications.to_string(),
        r.kind.label_ja().to_string(),
        r.status.label_ja().to_string(),
        opt(r.shared_on),
        opt(r.visit_done_on),
        opt(r.purged_on),
    ]
}

/// The reception list as CSV (UTF-8 with BOM, CRLF; opens in Excel).
pub fn reception_csv(rows: &[ReceptionRow]) -> String {
    csv(&RECEPTION_HEADINGS, rows.iter().map(reception_cells))
}

/// The reception list as an XLSX workbook with Japanese headings.
pub fn reception_xlsx(rows: &[ReceptionRow]) -> Result<Vec<u8>, XlsxError> {
    let mut wb = Workbook::new();
    let sheet = wb.add_worksheet();
    sheet.set_name("受付一覧表")?;
    let bold = Format::new().set_bold();
    for (c, h) in RECEPTION_HEADINGS.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, *h, &bold)?;
        sheet.set_column_width(c as u16, 14)?;
    }
    for (i, r) in rows.iter().enumerate() {
        let row = i as u32 + 1;
        sheet.write_number(row, 0, r.reception_number as f64)?;
        for (c, v) in reception_cells(r).into_iter().enumerate().skip(1) {
            if c == 3 {
                sheet.write_number(row, c as u16, r.applications as f64)?;
            } else {
                sheet.write_string(row, c as u16, v)?;
            }
        }
    }
    sheet.set_freeze_panes(1, 0)?;
    wb.save_to_buffer()
}

const BOOKING_HEADINGS: [&str; 13] = [
    "受付番号",
    "種別",
    "受付日",
    "訪問日",
    "午前午後",
    "順番",
    "案内時間",
    "申請者数",
    "町丁目",
    "状態",
    "施設申込番号",
    "事前打合せ日",
    "必要な様式",
];

/// The bookings export as CSV (item 11).
pub fn bookings_csv(list: &[BookingSummary]) -> String {
    csv(
        &BOOKING_HEADINGS,
        list.iter().map(|b| {
            vec![
                b.reception_number
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                b.kind.label_ja().to_string(),
                b.booked_on.to_string(),
                b.slot.date.to_string(),
                b.slot.half_day.label_ja().to_string(),
                b.slot.position.to_string(),
                b.window.clone(),
                b.applicants.to_string(),
                b.town.clone().unwrap_or_default(),
                b.status.label_ja().to_string(),
                b.facility_request_id
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                opt(b.pre_meeting_date),
                b.forms
                    .iter()
                    .map(|f| format!("{}×{}", f.form.label_ja(), f.count))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_starts_with_a_bom_and_quotes_what_it_must() {
        let s = csv(
            &["a", "b"],
            std::iter::once(vec!["x,y".into(), "q\"".into()]),
        );
        assert!(s.starts_with('\u{feff}'));
        assert_eq!(
            s.trim_start_matches('\u{feff}'),
            "a,b\r\n\"x,y\",\"q\"\"\"\r\n"
        );
    }

    #[test]
    fn the_workbook_is_a_zip_with_the_sheet() {
        let bytes = reception_xlsx(&[]).unwrap();
        assert_eq!(&bytes[..2], b"PK");
    }
}
