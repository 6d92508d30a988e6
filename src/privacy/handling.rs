//! The handling record (取扱記録) read by subject, and the monthly handling report
//! (取扱状況報告, 第15) for the city (issue 15 item 6; R-PII-4, R-PII-6).
//!
//! Both read only the audit log (and the staff list for names): which bookings, calls and
//! numbers a subject means is decided by the booking domain, which hands over the record ids
//! as a [`Subject`]. Audit rows hold ids and codes, never personal data, so neither the
//! answer nor the report carries any.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc};
use rust_xlsxwriter::{Format, Workbook, XlsxError};
use serde::Serialize;
use sqlx::Row;

use crate::clock::{from_db_time, to_db_time};

use super::audit::{append, AuditRow};
use super::{Actor, AuditAction, AuditEntry, AuditTarget, Auditor, PrivacyError};

/// The records a subject of `GET /api/audit?subject=…` stands for.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Subject {
    /// `reception`, `booking` or `number`.
    pub kind: String,
    /// Bookings.
    pub booking_ids: Vec<i64>,
    /// Calls (row ids).
    pub call_ids: Vec<i64>,
    /// Calls (keys: screen pops are recorded by key).
    #[serde(skip)]
    pub call_keys: Vec<String>,
    /// Callback entries.
    pub callback_ids: Vec<i64>,
    /// Facility requests.
    pub facility_request_ids: Vec<i64>,
}

impl Subject {
    fn targets(&self) -> Vec<(AuditTarget, String)> {
        let mut t: Vec<(AuditTarget, String)> = Vec::new();
        t.extend(
            self.booking_ids
                .iter()
                .map(|i| (AuditTarget::Booking, i.to_string())),
        );
        t.extend(
            self.call_ids
                .iter()
                .map(|i| (AuditTarget::Call, i.to_string())),
        );
        t.extend(
            self.call_keys
                .iter()
                .map(|k| (AuditTarget::Call, k.clone())),
        );
        t.extend(
            self.callback_ids
                .iter()
                .map(|i| (AuditTarget::Callback, i.to_string())),
        );
        t.extend(
            self.facility_request_ids
                .iter()
                .map(|i| (AuditTarget::FacilityRequest, i.to_string())),
        );
        t
    }

    /// Whether a list read's detail (`booking_ids`, `call_ids` …) names one of its records.
    fn listed_in(&self, detail: &serde_json::Value) -> bool {
        let has = |key: &str, ids: &[i64]| {
            detail[key].as_array().is_some_and(|a| {
                a.iter()
                    .any(|v| v.as_i64().is_some_and(|v| ids.contains(&v)))
            })
        };
        has("booking_ids", &self.booking_ids)
            || has("call_ids", &self.call_ids)
            || has("callback_ids", &self.callback_ids)
            || has("facility_request_ids", &self.facility_request_ids)
    }
}

/// `GET /api/audit?subject=…`: every row about the subject's records, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectRecord {
    /// The records the subject stands for.
    pub subject: Subject,
    /// The rows: who read, changed, exported, sent or deleted them, when.
    pub rows: Vec<AuditRow>,
}

impl Auditor {
    /// Every audit row about `subject`'s records — those targeting one of them and the list
    /// reads naming one — oldest first; the read is recorded in the same transaction.
    pub async fn about(
        &self,
        actor: &Actor,
        subject: Subject,
    ) -> Result<SubjectRecord, PrivacyError> {
        let mut tx = self.db().pool().begin().await?;
        let mut rows = Vec::new();
        let targets = subject.targets();
        for chunk in targets.chunks(200) {
            let mut sql = String::from(
                "SELECT id, at, actor_user_id, actor_username, action, outcome, target_kind, target_id, ip, detail \
                 FROM audit_log WHERE ",
            );
            let conds: Vec<String> = (0..chunk.len())
                .map(|i| {
                    format!(
                        "(target_kind = ${} AND target_id = ${})",
                        2 * i + 1,
                        2 * i + 2
                    )
                })
                .collect();
            sql.push_str(&conds.join(" OR "));
            let mut q = sqlx::query(&sql);
            for (kind, id) in chunk {
                q = q.bind(kind.as_str()).bind(id.clone());
            }
            for r in q.fetch_all(&mut *tx).await? {
                rows.push(row_of(&r)?);
            }
        }
        if !subject.booking_ids.is_empty()
            || !subject.call_ids.is_empty()
            || !subject.callback_ids.is_empty()
            || !subject.facility_request_ids.is_empty()
        {
            let listed = sqlx::query(
                "SELECT id, at, actor_user_id, actor_username, action, outcome, target_kind, target_id, ip, detail \
                 FROM audit_log WHERE target_id IS NULL AND detail LIKE '%\\_ids%' ESCAPE '\\'",
            )
            .fetch_all(&mut *tx)
            .await?;
            for r in &listed {
                let row = row_of(r)?;
                if row.detail.as_ref().is_some_and(|d| subject.listed_in(d)) {
                    rows.push(row);
                }
            }
        }
        rows.sort_by_key(|r| r.id);
        rows.dedup_by_key(|r| r.id);
        let entry = AuditEntry::new(AuditAction::AuditRead).detail(serde_json::json!({
            "subject_kind": subject.kind,
            "subject_booking_ids": subject.booking_ids,
            "subject_call_ids": subject.call_ids,
        }));
        append(&mut tx, self.now(), actor, &entry).await?;
        tx.commit().await?;
        Ok(SubjectRecord { subject, rows })
    }

    /// The monthly handling report for `month` (`YYYY-MM`, Asia/Tokyo); producing it is
    /// recorded.
    pub async fn handling_report(
        &self,
        actor: &Actor,
        month: &str,
        tz: chrono_tz::Tz,
    ) -> Result<HandlingReport, PrivacyError> {
        let first =
            NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").map_err(|_| {
                PrivacyError::Invalid(format!(
                    "'{month}' は月の指定ではありません（例: 2026-07）。"
                ))
            })?;
        let next = first
            .checked_add_months(chrono::Months::new(1))
            .ok_or_else(|| PrivacyError::Invalid("月の指定が範囲外です。".into()))?;
        let last = next.pred_opt().unwrap_or(first);
        let start = |d: NaiveDate| -> DateTime<Utc> {
            tz.from_local_datetime(&d.and_time(NaiveTime::MIN))
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        let mut tx = self.db().pool().begin().await?;
        let rows = sqlx::query(
            "SELECT a.action, a.outcome, a.actor_username, u.display_name, u.role, COUNT(*) AS n \
             FROM audit_log a LEFT JOIN users u ON u.username = a.actor_username \
             WHERE a.at >= $1 AND a.at < $2 \
             GROUP BY a.action, a.outcome, a.actor_username, u.display_name, u.role \
             ORDER BY a.actor_username, a.action",
        )
        .bind(to_db_time(start(first)))
        .bind(to_db_time(start(next)))
        .fetch_all(&mut *tx)
        .await?;
        let mut per_action: BTreeMap<String, i64> = BTreeMap::new();
        let mut per_staff: BTreeMap<String, StaffCounts> = BTreeMap::new();
        let mut denied = 0;
        for r in &rows {
            let action: String = r.try_get("action")?;
            let outcome: String = r.try_get("outcome")?;
            let user: Option<String> = r.try_get("actor_username")?;
            let n: i64 = r.try_get("n")?;
            *per_action.entry(action.clone()).or_default() += n;
            if outcome == "denied" {
                denied += n;
            }
            let user = user.unwrap_or_else(|| "(不明)".into());
            let s = per_staff
                .entry(user.clone())
                .or_insert_with(|| StaffCounts {
                    username: user,
                    display_name: r.try_get("display_name").ok().flatten(),
                    role: r.try_get("role").ok().flatten(),
                    ..StaffCounts::default()
                });
            match category(&action) {
                Category::Read => s.read += n,
                Category::Change => s.change += n,
                Category::Export => s.export_send += n,
                Category::Delete => s.delete += n,
                Category::Access => s.access += n,
            }
            s.total += n;
        }
        let purges = sqlx::query(
            "SELECT at, actor_username FROM audit_log WHERE action = $1 AND outcome = 'ok' AND at >= $2 AND at < $3 ORDER BY id",
        )
        .bind(AuditAction::BookingPurge)
        .bind(to_db_time(start(first)))
        .bind(to_db_time(start(next)))
        .fetch_all(&mut *tx)
        .await?;
        let mut by_day: BTreeMap<(NaiveDate, String), i64> = BTreeMap::new();
        for r in &purges {
            let at: String = r.try_get("at")?;
            let Some(at) = from_db_time(&at) else {
                continue;
            };
            let by: Option<String> = r.try_get("actor_username")?;
            *by_day
                .entry((at.with_timezone(&tz).date_naive(), by.unwrap_or_default()))
                .or_default() += 1;
        }
        let entry = AuditEntry::new(AuditAction::HandlingReport)
            .detail(serde_json::json!({ "month": month }));
        append(&mut tx, self.now(), actor, &entry).await?;
        tx.commit().await?;
        let now = self.now().with_timezone(&tz).date_naive();
        Ok(HandlingReport {
            month: format!("{:04}-{:02}", first.year(), first.month()),
            title: format!("取扱状況報告（{}）", month_ja(first)),
            period: format!(
                "{} 〜 {}",
                crate::wareki::date_with_weekday(first),
                crate::wareki::date_with_weekday(last)
            ),
            from: first,
            to: last,
            made_on: now,
            made_on_ja: crate::wareki::date_with_weekday(now),
            per_action: per_action
                .into_iter()
                .map(|(action, count)| ActionCount {
                    label: action
                        .parse::<AuditAction>()
                        .map(|a| a.label_ja().to_string())
                        .unwrap_or_else(|_| action.clone()),
                    action,
                    count,
                })
                .collect(),
            per_staff: per_staff.into_values().collect(),
            deletions: DeletionCounts {
                bookings: purges.len() as i64,
                by_day: by_day
                    .into_iter()
                    .map(|((date, by), count)| DeletionDay {
                        date,
                        date_ja: crate::wareki::date_with_weekday(date),
                        by,
                        count,
                    })
                    .collect(),
            },
            denied,
        })
    }
}

fn row_of(r: &sqlx::any::AnyRow) -> Result<AuditRow, sqlx::Error> {
    let at: String = r.try_get("at")?;
    let detail: Option<String> = r.try_get("detail")?;
    Ok(AuditRow {
        id: r.try_get("id")?,
        at: from_db_time(&at).unwrap_or_default(),
        actor_user_id: r.try_get("actor_user_id")?,
        actor_username: r.try_get("actor_username")?,
        action: r.try_get("action")?,
        outcome: r.try_get("outcome")?,
        target_kind: r.try_get("target_kind")?,
        target_id: r.try_get("target_id")?,
        ip: r.try_get("ip")?,
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

/// How the report groups actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Read,
    Change,
    Export,
    Delete,
    Access,
}

/// By the action's code, so actions added later (the share, the reports) fall in place.
fn category(action: &str) -> Category {
    if action.contains("purge") || action.ends_with(".delete") {
        Category::Delete
    } else if action.ends_with(".read") || action == "call.pop" {
        Category::Read
    } else if ["export", "share", "send", "report", "download"]
        .iter()
        .any(|w| action.contains(w))
    {
        Category::Export
    } else if ["login", "logout", "access"].contains(&action) {
        Category::Access
    } else {
        Category::Change
    }
}

fn month_ja(first: NaiveDate) -> String {
    match crate::wareki::era(first) {
        Some((era, 1)) => format!("{era}元年{}月", first.month()),
        Some((era, y)) => format!("{era}{y}年{}月", first.month()),
        None => format!("{}年{}月", first.year(), first.month()),
    }
}

/// One action's count in the month.
#[derive(Debug, Clone, Serialize)]
pub struct ActionCount {
    /// Its code.
    pub action: String,
    /// Its Japanese label.
    pub label: String,
    /// Rows in the month.
    pub count: i64,
}

/// One staff member's counts in the month.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StaffCounts {
    /// Account (or `(cli)`, `(unknown)` …).
    pub username: String,
    /// Name shown.
    pub display_name: Option<String>,
    /// Role.
    pub role: Option<String>,
    /// 閲覧.
    pub read: i64,
    /// 登録・変更.
    pub change: i64,
    /// 出力・送付.
    pub export_send: i64,
    /// 削除.
    pub delete: i64,
    /// ログイン等.
    pub access: i64,
    /// 合計.
    pub total: i64,
}

/// Deletions of personal data done in the month.
#[derive(Debug, Clone, Serialize)]
pub struct DeletionCounts {
    /// Bookings whose personal data was deleted.
    pub bookings: i64,
    /// Per day and person.
    pub by_day: Vec<DeletionDay>,
}

/// Deletions on one day by one person.
#[derive(Debug, Clone, Serialize)]
pub struct DeletionDay {
    /// The day (Asia/Tokyo).
    pub date: NaiveDate,
    /// 令和….
    pub date_ja: String,
    /// Who ran the purge.
    pub by: String,
    /// Bookings.
    pub count: i64,
}

/// 取扱状況報告 for one month.
#[derive(Debug, Clone, Serialize)]
pub struct HandlingReport {
    /// `2026-07`.
    pub month: String,
    /// 取扱状況報告（令和8年7月）.
    pub title: String,
    /// 令和8年7月1日（水） 〜 令和8年7月31日（金）.
    pub period: String,
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
    /// The day it was made.
    pub made_on: NaiveDate,
    /// The same in 和暦.
    pub made_on_ja: String,
    /// Rows per action.
    pub per_action: Vec<ActionCount>,
    /// Rows per staff member.
    pub per_staff: Vec<StaffCounts>,
    /// Deletions done.
    pub deletions: DeletionCounts,
    /// Refused attempts (権限外のアクセス, locked logins …).
    pub denied: i64,
}

impl HandlingReport {
    /// The report as an XLSX workbook (A4, Japanese headings).
    pub fn xlsx(&self) -> Result<Vec<u8>, XlsxError> {
        let mut wb = Workbook::new();
        let sheet = wb.add_worksheet();
        sheet.set_name("取扱状況報告")?;
        sheet.set_paper_size(9); // A4
        let bold = Format::new().set_bold();
        let title = Format::new().set_bold().set_font_size(14);
        sheet.set_column_width(0, 26)?;
        for c in 1..8 {
            sheet.set_column_width(c, 12)?;
        }
        sheet.write_string_with_format(0, 0, &self.title, &title)?;
        sheet.write_string(1, 0, format!("対象期間: {}", self.period))?;
        sheet.write_string(
            2,
            0,
            format!("作成日: {}（{}）", self.made_on_ja, self.made_on),
        )?;
        let mut row = 4;
        sheet.write_string_with_format(row, 0, "1. 取扱の種類別件数", &bold)?;
        row += 1;
        for (c, h) in ["取扱の種類", "コード", "件数"].iter().enumerate() {
            sheet.write_string_with_format(row, c as u16, *h, &bold)?;
        }
        for a in &self.per_action {
            row += 1;
            sheet.write_string(row, 0, &a.label)?;
            sheet.write_string(row, 1, &a.action)?;
            sheet.write_number(row, 2, a.count as f64)?;
        }
        row += 2;
        sheet.write_string_with_format(row, 0, "2. 担当者別件数", &bold)?;
        row += 1;
        let heads = [
            "担当者",
            "氏名",
            "役割",
            "閲覧",
            "登録・変更",
            "出力・送付",
            "削除",
            "ログイン等",
            "合計",
        ];
        for (c, h) in heads.iter().enumerate() {
            sheet.write_string_with_format(row, c as u16, *h, &bold)?;
        }
        for s in &self.per_staff {
            row += 1;
            sheet.write_string(row, 0, &s.username)?;
            sheet.write_string(row, 1, s.display_name.clone().unwrap_or_default())?;
            let role = s
                .role
                .as_deref()
                .and_then(|r| r.parse::<super::Role>().ok())
                .map(|r| r.label_ja().to_string())
                .unwrap_or_default();
            sheet.write_string(row, 2, role)?;
            for (c, v) in [s.read, s.change, s.export_send, s.delete, s.access, s.total]
                .into_iter()
                .enumerate()
            {
                sheet.write_number(row, 3 + c as u16, v as f64)?;
            }
        }
        row += 2;
        sheet.write_string_with_format(row, 0, "3. 個人情報の削除", &bold)?;
        row += 1;
        sheet.write_string(row, 0, "削除した予約の件数")?;
        sheet.write_number(row, 2, self.deletions.bookings as f64)?;
        row += 1;
        for (c, h) in ["削除日", "日付（ISO）", "実施者", "件数"]
            .iter()
            .enumerate()
        {
            sheet.write_string_with_format(row, c as u16, *h, &bold)?;
        }
        for d in &self.deletions.by_day {
            row += 1;
            sheet.write_string(row, 0, &d.date_ja)?;
            sheet.write_string(row, 1, d.date.to_string())?;
            sheet.write_string(row, 2, &d.by)?;
            sheet.write_number(row, 3, d.count as f64)?;
        }
        row += 2;
        sheet.write_string(row, 0, "拒否された操作の件数")?;
        sheet.write_number(row, 2, self.denied as f64)?;
        wb.save_to_buffer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_fall_in_their_category() {
        assert_eq!(category("booking.purge"), Category::Delete);
        assert_eq!(category("purge.run"), Category::Delete);
        assert_eq!(category("call.read"), Category::Read);
        assert_eq!(category("call.pop"), Category::Read);
        assert_eq!(category("visit.read"), Category::Read);
        assert_eq!(category("share.send"), Category::Export);
        assert_eq!(category("report.handling"), Category::Export);
        assert_eq!(category("login"), Category::Access);
        assert_eq!(category("booking.create"), Category::Change);
        assert_eq!(
            month_ja(NaiveDate::from_ymd_opt(2026, 7, 1).unwrap()),
            "令和8年7月"
        );
    }
}
