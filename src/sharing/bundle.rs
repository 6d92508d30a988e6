//! The bundle the city receives: one XLSX (a summary sheet and one printable A4 sheet per
//! slip, Japanese headings, 和暦 dates) inside a ZIP encrypted with AES-256 (WinZip AES, AE-1,
//! which 7-Zip, Lhaplus and current Windows 11 Explorer open), under a new random password.

use std::io::{Cursor, Write};

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use rand::Rng;
use rust_xlsxwriter::{Format, FormatAlign, FormatBorder, Workbook, Worksheet, XlsxError};
use zip::write::SimpleFileOptions;
use zip::{AesMode, CompressionMethod, ZipWriter};

use crate::booking::bookings::age_on;
use crate::wareki;

use super::facility::{FacilityList, ListedApplicant};
use super::slips::{Slip, SlipApplicant};

/// Characters of a share password: no look-alikes (0/O, 1/l/I), nothing a mail client or a
/// keyboard layout could change.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
/// Length of a share password (about 93 bits).
pub const PASSWORD_LEN: usize = 16;

/// A new password from the operating system's random source, every time.
pub fn new_password() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..PASSWORD_LEN)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The XLSX's name inside the archive: ASCII, so every unzip tool shows it the same.
pub fn xlsx_name(week_start: NaiveDate) -> String {
    format!("slips-{week_start}.xlsx")
}

/// The archive's file name.
pub fn archive_name(week_start: NaiveDate) -> String {
    format!("share-{week_start}.zip")
}

fn yes_no(v: bool) -> &'static str {
    if v {
        "はい"
    } else {
        "いいえ"
    }
}

fn a4(sheet: &mut Worksheet, title: &str) {
    sheet.set_paper_size(9);
    sheet.set_portrait();
    sheet.set_print_fit_to_pages(1, 0);
    sheet.set_margins(0.5, 0.5, 0.6, 0.6, 0.3, 0.3);
    sheet.set_header(format!("&L{title}&R&P / &N"));
}

fn applicant_rows(a: &SlipApplicant, visit: NaiveDate) -> Vec<(&'static str, String)> {
    let birth = a.birth_date.map_or_else(String::new, |d| {
        format!(
            "{}（{}）　{}歳",
            wareki::date(d),
            d.format("%Y-%m-%d"),
            age_on(d, visit)
        )
    });
    let docs: Vec<&str> = a.id_documents.iter().map(|d| d.label_ja()).collect();
    let mut docs = docs.join("、");
    if !a.id_documents_note.trim().is_empty() {
        docs.push_str(&format!("（{}）", a.id_documents_note.trim()));
    }
    vec![
        ("氏名", a.name.clone()),
        ("ふりがな", a.name_kana.clone()),
        ("生年月日（年齢）", birth),
        ("申請区分", a.application_kind.label_ja().to_string()),
        ("本人確認書類", docs),
        ("写真撮影", yes_no(a.can_photo).into()),
        ("自署", yes_no(a.can_write).into()),
        ("介助者の同席", yes_no(a.helper_present).into()),
        ("状態・配慮事項", a.condition_note.clone()),
        (
            "顔認証マイナンバーカード（暗証番号なし）",
            yes_no(a.face_auth_only).into(),
        ),
        ("健康保険証としての利用", yes_no(a.insurance_use).into()),
        ("住基カードの返納", yes_no(a.holds_juki_card).into()),
        ("通知カードの紛失", yes_no(a.notice_card_lost).into()),
    ]
}

/// The rows of one slip: heading, then label/value pairs (None = a section heading).
fn slip_rows(s: &Slip) -> Vec<(Option<&'static str>, String)> {
    let mut rows: Vec<(Option<&'static str>, String)> = vec![
        (Some("受付番号"), s.reception_number.to_string()),
        (
            Some("受付日"),
            s.booked_on
                .map(wareki::date_with_weekday)
                .unwrap_or_default(),
        ),
        (
            Some("訪問予定日"),
            format!(
                "{}　{}　{}",
                wareki::date_with_weekday(s.slot.date),
                s.slot.half_day.label_ja(),
                s.window
            ),
        ),
        (Some("住所"), s.address.clone()),
        (Some("町名"), s.town.clone().unwrap_or_default()),
        (Some("連絡先電話番号"), s.contact_phone.clone()),
        (
            Some("電話をかけた方"),
            s.caller_relation
                .map(|r| r.label_ja().to_string())
                .unwrap_or_default(),
        ),
        (Some("連絡者氏名"), s.caller_name.clone()),
        (Some("外出が困難な理由"), s.going_out_difficulty.clone()),
        (Some("訪問希望日（聞き取り）"), s.wished.clone()),
        (
            Some("駐車スペース"),
            match s.parking {
                Some(true) => "あり",
                Some(false) => "なし",
                None => "未確認",
            }
            .into(),
        ),
        (Some("訪問時の留意事項"), s.care_notes.clone()),
        (Some("その他の合意事項"), s.other.clone()),
        (
            Some("案内済みの事項"),
            s.guidance
                .iter()
                .map(|g| g.label_ja())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        (
            Some("必要な様式"),
            s.forms
                .iter()
                .map(|f| format!("{} {}部", f.form.label_ja(), f.count))
                .collect::<Vec<_>>()
                .join("、"),
        ),
        (Some("申請者数"), format!("{}名", s.applicants.len())),
    ];
    for (i, a) in s.applicants.iter().enumerate() {
        rows.push((None, format!("申請者{}", i + 1)));
        rows.extend(
            applicant_rows(a, s.slot.date)
                .into_iter()
                .map(|(k, v)| (Some(k), v)),
        );
    }
    rows
}

/// The summary's column headings.
pub const SUMMARY_HEADINGS: [&str; 9] = [
    "受付番号",
    "訪問日",
    "訪問日（ISO）",
    "午前・午後",
    "訪問時間帯",
    "町名",
    "申請者数",
    "申請者氏名",
    "シート",
];

/// Sheet name of a slip: 受付票 and the reception number.
pub fn slip_sheet_name(reception_number: i64) -> String {
    format!("受付票{reception_number}")
}

/// The workbook: 一覧 (summary) and one 受付票 sheet per slip.
pub fn workbook(week_start: NaiveDate, slips: &[Slip]) -> Result<Vec<u8>, XlsxError> {
    let week_end = week_start + chrono::Days::new(6);
    let title = format!(
        "自宅訪問 受付票　{}〜{}",
        wareki::date_with_weekday(week_start),
        wareki::date_with_weekday(week_end)
    );
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let big = Format::new().set_bold().set_font_size(14);
    let head = Format::new()
        .set_bold()
        .set_border(FormatBorder::Thin)
        .set_background_color("#E8EEF7")
        .set_text_wrap()
        .set_align(FormatAlign::VerticalCenter);
    let cell = Format::new()
        .set_border(FormatBorder::Thin)
        .set_text_wrap()
        .set_align(FormatAlign::VerticalCenter);

    let sheet = wb.add_worksheet();
    sheet.set_name("一覧")?;
    a4(sheet, "自宅訪問 受付票 一覧");
    sheet.set_landscape();
    sheet.write_string_with_format(0, 0, &title, &big)?;
    sheet.write_string(1, 0, format!("{}件", slips.len()))?;
    for (c, h) in SUMMARY_HEADINGS.iter().enumerate() {
        sheet.write_string_with_format(3, c as u16, *h, &head)?;
    }
    for (c, w) in [10, 24, 12, 10, 14, 16, 9, 30, 12].iter().enumerate() {
        sheet.set_column_width(c as u16, *w)?;
    }
    for (i, s) in slips.iter().enumerate() {
        let row = 4 + i as u32;
        sheet.write_number_with_format(row, 0, s.reception_number as f64, &cell)?;
        sheet.write_string_with_format(row, 1, wareki::date_with_weekday(s.slot.date), &cell)?;
        sheet.write_string_with_format(row, 2, s.slot.date.to_string(), &cell)?;
        sheet.write_string_with_format(row, 3, s.slot.half_day.label_ja(), &cell)?;
        sheet.write_string_with_format(row, 4, &s.window, &cell)?;
        sheet.write_string_with_format(row, 5, s.town.clone().unwrap_or_default(), &cell)?;
        sheet.write_number_with_format(row, 6, s.applicants.len() as f64, &cell)?;
        let names: Vec<&str> = s.applicants.iter().map(|a| a.name.as_str()).collect();
        sheet.write_string_with_format(row, 7, names.join("、"), &cell)?;
        sheet.write_string_with_format(row, 8, slip_sheet_name(s.reception_number), &cell)?;
    }
    sheet.set_repeat_rows(3, 3)?;

    for s in slips {
        let sheet = wb.add_worksheet();
        sheet.set_name(slip_sheet_name(s.reception_number))?;
        a4(sheet, &format!("受付票 受付番号{}", s.reception_number));
        sheet.set_column_width(0, 30)?;
        sheet.set_column_width(1, 60)?;
        sheet.write_string_with_format(0, 0, "受付票（自宅訪問）", &big)?;
        sheet.write_string_with_format(1, 0, format!("受付番号 {}", s.reception_number), &bold)?;
        let mut row = 3u32;
        for (label, value) in slip_rows(s) {
            match label {
                Some(l) => {
                    sheet.write_string_with_format(row, 0, l, &head)?;
                    sheet.write_string_with_format(row, 1, &value, &cell)?;
                }
                None => {
                    row += 1;
                    sheet.write_string_with_format(row, 0, &value, &bold)?;
                }
            }
            row += 1;
        }
    }
    wb.save_to_buffer()
}

/// The XLSX name of a facility's list.
pub fn facility_xlsx_name(facility_request_id: i64, first_visit: NaiveDate) -> String {
    format!("facility-{facility_request_id}-{first_visit}.xlsx")
}

/// The archive name of a facility's list.
pub fn facility_archive_name(facility_request_id: i64, first_visit: NaiveDate) -> String {
    format!("facility-{facility_request_id}-{first_visit}.zip")
}

/// The facility list's column headings (R-PREP-4).
pub const FACILITY_HEADINGS: [&str; 10] = [
    "番号",
    "氏名",
    "住所",
    "生年月日",
    "年齢",
    "代筆が必要",
    "顔認証マイナンバーカード（暗証番号なし）",
    "施設への送付",
    "新規以外の理由",
    "備考",
];

fn maybe(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "はい",
        Some(false) => "いいえ",
        None => "",
    }
}

fn listed_cells(i: usize, a: &ListedApplicant, first_visit: NaiveDate) -> [String; 10] {
    [
        (i + 1).to_string(),
        a.name.clone(),
        a.address.clone(),
        a.birth_date
            .map(|d| format!("{}（{}）", wareki::date(d), d.format("%Y-%m-%d")))
            .unwrap_or_default(),
        a.birth_date
            .map(|d| format!("{}歳", age_on(d, first_visit)))
            .unwrap_or_default(),
        maybe(a.proxy_writer).into(),
        maybe(a.face_auth_only).into(),
        maybe(a.deliver_to_facility).into(),
        a.reason.clone(),
        a.notes.clone(),
    ]
}

/// A facility's applicant list as one A4 landscape sheet (申請者一覧).
pub fn facility_workbook(list: &FacilityList) -> Result<Vec<u8>, XlsxError> {
    let first_visit = list.visits.first().map(|v| v.2).unwrap_or_default();
    let mut wb = Workbook::new();
    let big = Format::new().set_bold().set_font_size(14);
    let head = Format::new()
        .set_bold()
        .set_border(FormatBorder::Thin)
        .set_background_color("#E8EEF7")
        .set_text_wrap()
        .set_align(FormatAlign::VerticalCenter);
    let cell = Format::new()
        .set_border(FormatBorder::Thin)
        .set_text_wrap()
        .set_align(FormatAlign::VerticalCenter);
    let sheet = wb.add_worksheet();
    sheet.set_name("申請者一覧")?;
    a4(
        sheet,
        &format!("施設訪問 申請者一覧 {}", list.facility_name),
    );
    sheet.set_landscape();
    sheet.write_string_with_format(
        0,
        0,
        format!("施設訪問 申請者一覧　{}", list.facility_name),
        &big,
    )?;
    sheet.write_string(1, 0, format!("施設の所在地：{}", list.facility_address))?;
    let visits: Vec<String> = list
        .visits
        .iter()
        .map(|(_, _, d, h)| format!("{}{}", wareki::date_with_weekday(*d), h.label_ja()))
        .collect();
    sheet.write_string(2, 0, format!("訪問日：{}", visits.join("、")))?;
    sheet.write_string(3, 0, format!("申請者数：{}名", list.applicants.len()))?;
    for (c, h) in FACILITY_HEADINGS.iter().enumerate() {
        sheet.write_string_with_format(5, c as u16, *h, &head)?;
    }
    for (c, w) in [6, 16, 28, 24, 7, 9, 14, 9, 16, 24].iter().enumerate() {
        sheet.set_column_width(c as u16, *w)?;
    }
    for (i, a) in list.applicants.iter().enumerate() {
        for (c, v) in listed_cells(i, a, first_visit).iter().enumerate() {
            sheet.write_string_with_format(6 + i as u32, c as u16, v, &cell)?;
        }
    }
    sheet.set_repeat_rows(5, 5)?;
    wb.save_to_buffer()
}

/// The ZIP with `file` inside, AES-256 encrypted under `password`, stamped `at` (JST).
pub fn encrypt(
    file: &str,
    content: &[u8],
    password: &str,
    at: NaiveDateTime,
) -> zip::result::ZipResult<Vec<u8>> {
    let stamp = zip::DateTime::from_date_and_time(
        u16::try_from(at.year()).unwrap_or(1980),
        at.month() as u8,
        at.day() as u8,
        at.hour() as u8,
        at.minute() as u8,
        at.second() as u8,
    )
    .unwrap_or_default();
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(stamp)
        .with_aes_encryption(AesMode::Aes256, password);
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file(file, options)?;
    zip.write_all(content)?;
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_new_each_time_and_unambiguous() {
        let a = new_password();
        let b = new_password();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
        assert!(!a.contains(['0', 'O', '1', 'l', 'I']));
    }

    #[test]
    fn the_archive_is_aes_and_opens_only_with_the_password() {
        use std::io::Read;
        let at = NaiveDate::from_ymd_opt(2026, 11, 25)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap();
        let zip = encrypt("a.xlsx", b"hello slips", "Secret2345abcdEF", at).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        assert!(archive.by_index(0).is_err(), "no password, no content");
        let mut f = archive
            .by_index_decrypt(0, b"Secret2345abcdEF")
            .expect("the right password opens it");
        let mut out = String::new();
        f.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello slips");
        drop(f);
        assert!(archive.by_index_decrypt(0, b"wrong").is_err());
    }
}
