//! Visits done and the city's week (issue 15 item 4): the `city` role (or a manager) marks a
//! visit ended with its date, the applications taken and a note; the city staff read the
//! week's schedule with what they need at the door (names, address, phone) — a read of
//! personal data, recorded per read (R-PII-4).
//!
//! **A second mark** of a visit already done is refused (`409`) unless it says
//! `correction: true`; a correction replaces the date, count and note and is recorded as
//! `visit.correct`, so nothing changes silently and a double click changes nothing.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::clock::{from_db_time, to_db_time};
use crate::privacy::{append_audit, Actor, AuditAction, AuditEntry, AuditTarget};

use super::bookings::{BookingSummary, Bookings, TEXT_MAX};
use super::slots::{self, SlotRef};
use super::{BookingError, BookingKind, BookingStatus, HalfDay, VisitDayKind};

/// Most applications one visit can take (a facility's two half-days stay well below).
pub const APPLICATIONS_MAX: u32 = 200;

/// `POST /api/visits/{booking_id}/done`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitDoneInput {
    /// The day the visit took place (Asia/Tokyo).
    pub date: NaiveDate,
    /// Applications taken at the visit.
    pub applications_taken: u32,
    /// A note (kept with the booking's personal data: the purge deletes it).
    #[serde(default)]
    pub note: String,
    /// Replaces an earlier mark instead of being refused.
    #[serde(default)]
    pub correction: bool,
}

/// An ISO week (Monday–Sunday), written `2026-W30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsoWeek {
    /// Its Monday.
    pub monday: NaiveDate,
}

impl IsoWeek {
    /// Parses `YYYY-Www`.
    pub fn parse(s: &str) -> Result<IsoWeek, BookingError> {
        let bad =
            || BookingError::Invalid(format!("'{s}' は週の指定ではありません（例: 2026-W30）。"));
        let (y, w) = s.split_once("-W").ok_or_else(bad)?;
        let y: i32 = y.parse().map_err(|_| bad())?;
        let w: u32 = w.parse().map_err(|_| bad())?;
        let monday = NaiveDate::from_isoywd_opt(y, w, chrono::Weekday::Mon).ok_or_else(bad)?;
        Ok(IsoWeek { monday })
    }

    /// The week holding `d`.
    pub fn of(d: NaiveDate) -> IsoWeek {
        let w = d.iso_week();
        IsoWeek {
            monday: NaiveDate::from_isoywd_opt(w.year(), w.week(), chrono::Weekday::Mon)
                .unwrap_or(d),
        }
    }

    /// Its Sunday.
    pub fn sunday(self) -> NaiveDate {
        self.monday + chrono::Duration::days(6)
    }
}

impl std::fmt::Display for IsoWeek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = self.monday.iso_week();
        write!(f, "{}-W{:02}", w.year(), w.week())
    }
}

/// One visit of the week as the city staff see it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VisitRow {
    /// The booking's id (the done button posts to it).
    pub booking_id: i64,
    /// 受付番号.
    pub reception_number: Option<i64>,
    /// Home or facility.
    pub kind: BookingKind,
    /// The visit day.
    pub date: NaiveDate,
    /// The same as the city writes it: 令和8年7月21日（火）.
    pub date_ja: String,
    /// Morning or afternoon.
    pub half_day: HalfDay,
    /// Visit order in the half-day.
    pub position: u8,
    /// The announced window.
    pub window: String,
    /// The 町丁目.
    pub town: Option<String>,
    /// Applicants booked.
    pub applicants: i64,
    /// The applicants' names (home visits); empty after the purge.
    pub names: Vec<String>,
    /// The facility's name (facility visits).
    pub facility_name: Option<String>,
    /// The facility's contact person.
    pub contact_person: Option<String>,
    /// Where to go; `None` after the purge.
    pub address: Option<String>,
    /// Whom to phone; `None` after the purge.
    pub phone: Option<String>,
    /// The day it ended, once marked.
    pub done_on: Option<NaiveDate>,
    /// Applications taken, once marked.
    pub applications_taken: Option<i64>,
    /// The note given with the mark.
    pub visit_note: Option<String>,
    /// The day its personal data was deleted.
    pub purged_on: Option<NaiveDate>,
}

/// `GET /api/visits?week=…`.
#[derive(Debug, Clone, Serialize)]
pub struct VisitWeek {
    /// `2026-W30`.
    pub week: String,
    /// Monday.
    pub from: NaiveDate,
    /// Sunday.
    pub to: NaiveDate,
    /// 令和… Monday – Sunday, as a heading.
    pub heading: String,
    /// Visits by date, half-day, position.
    pub visits: Vec<VisitRow>,
}

/// What a mark answers: the booking as the lists show it, and what was stored.
#[derive(Debug, Clone, Serialize)]
pub struct VisitDone {
    /// The booking (its `visit_done_on` filled).
    pub booking: BookingSummary,
    /// Applications taken.
    pub applications_taken: i64,
    /// Whether this replaced an earlier mark.
    pub corrected: bool,
}

impl Bookings {
    /// Marks a visit ended (or corrects the mark), audited in the same transaction.
    pub async fn mark_visit_done(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        id: i64,
        input: &VisitDoneInput,
    ) -> Result<VisitDone, BookingError> {
        let today = self.today(now);
        let mut errors = Vec::new();
        if input.applications_taken > APPLICATIONS_MAX {
            errors.push(format!(
                "申請件数は{APPLICATIONS_MAX}件までで入力してください。"
            ));
        }
        if input.note.chars().count() > TEXT_MAX {
            errors.push(format!("備考は{TEXT_MAX}文字までです。"));
        }
        if input.date > today {
            errors.push("訪問完了日に未来の日付は指定できません。".into());
        }
        if !errors.is_empty() {
            return Err(BookingError::Invalid(errors.join("\n")));
        }
        let mut tx = self.db().pool().begin().await?;
        let row = sqlx::query(
            "SELECT kind, status, visit_date, visit_done_at, purged_at FROM bookings WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(BookingError::NotFound("booking"))?;
        let kind: BookingKind = row.try_get("kind")?;
        let status: BookingStatus = row.try_get("status")?;
        let visit_date: NaiveDate = row
            .try_get::<String, _>("visit_date")?
            .parse()
            .map_err(|_| BookingError::NotFound("booking"))?;
        let done: Option<String> = row.try_get("visit_done_at")?;
        let purged: Option<String> = row.try_get("purged_at")?;
        if kind == BookingKind::PreMeeting {
            return Err(BookingError::Invalid(
                "事前打合せは訪問完了の対象ではありません。".into(),
            ));
        }
        if status != BookingStatus::Booked {
            return Err(BookingError::Conflict(
                "取り消された予約は訪問完了にできません。".into(),
            ));
        }
        if purged.is_some() {
            return Err(BookingError::Conflict(
                "個人情報を削除済みの予約は変更できません。".into(),
            ));
        }
        if input.date < visit_date {
            return Err(BookingError::Invalid(format!(
                "訪問完了日は訪問日（{}）以降の日付にしてください。",
                crate::wareki::date_with_weekday(visit_date)
            )));
        }
        if done.is_some() && !input.correction {
            let on = done
                .as_deref()
                .and_then(from_db_time)
                .map(|t| self.day(t))
                .map(crate::wareki::date_with_weekday)
                .unwrap_or_default();
            return Err(BookingError::Conflict(format!(
                "この訪問は{on}に完了済みです。訂正する場合は「訂正」として送信してください（correction: true）。"
            )));
        }
        let note = input.note.trim();
        let stamp = to_db_time(self.start_of(input.date));
        // The guard on the old value makes a concurrent second mark lose instead of overwrite.
        let changed = sqlx::query(
            "UPDATE bookings SET visit_done_at = $1, applications_taken = $2, visit_note = $3, updated_at = $4 \
             WHERE id = $5 AND (visit_done_at IS NULL OR $6 = 1) AND purged_at IS NULL",
        )
        .bind(&stamp)
        .bind(i64::from(input.applications_taken))
        .bind((!note.is_empty()).then_some(note))
        .bind(to_db_time(now))
        .bind(id)
        .bind(i64::from(input.correction))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(BookingError::Conflict(
                "この訪問はたった今ほかの人が完了にしました。".into(),
            ));
        }
        let corrected = done.is_some();
        let action = if corrected {
            AuditAction::VisitCorrect
        } else {
            AuditAction::VisitDone
        };
        let entry = AuditEntry::new(action)
            .target(AuditTarget::Booking, id)
            .detail(serde_json::json!({
                "date": input.date,
                "applications_taken": input.applications_taken,
                "note": !note.is_empty(),
            }));
        append_audit(&mut tx, now, actor, &entry).await?;
        let booking = self.summary(&mut tx, id).await?;
        tx.commit().await?;
        Ok(VisitDone {
            booking,
            applications_taken: i64::from(input.applications_taken),
            corrected,
        })
    }

    /// The week's visits with what the city staff need at the door; the read is recorded
    /// (one `visit.read` row listing the bookings shown) in the same transaction.
    pub async fn visit_week(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        week: IsoWeek,
    ) -> Result<VisitWeek, BookingError> {
        let mut tx = self.db().pool().begin().await?;
        let rows = sqlx::query(
            "SELECT b.id, b.reception_number, b.kind, b.visit_date, b.half_day, b.position, b.applicant_count, \
             b.town, b.address, b.contact_phone, b.visit_done_at, b.applications_taken, b.visit_note, b.purged_at, \
             f.facility_name, f.contact_person, f.address AS f_address, f.phone AS f_phone, v.kind AS day_kind \
             FROM bookings b LEFT JOIN facility_requests f ON f.id = b.facility_request_id \
             LEFT JOIN visit_days v ON v.visit_date = b.visit_date \
             WHERE b.visit_date >= $1 AND b.visit_date <= $2 AND b.status = $3 AND b.kind <> $4 \
             ORDER BY b.visit_date, b.half_day, b.position, b.id",
        )
        .bind(week.monday.to_string())
        .bind(week.sunday().to_string())
        .bind(BookingStatus::Booked)
        .bind(BookingKind::PreMeeting)
        .fetch_all(&mut *tx)
        .await?;
        let mut visits = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            let kind: BookingKind = r.try_get("kind")?;
            let date: NaiveDate = r
                .try_get::<String, _>("visit_date")?
                .parse()
                .map_err(|_| BookingError::NotFound("booking"))?;
            let slot = SlotRef {
                date,
                half_day: r.try_get("half_day")?,
                position: u8::try_from(r.try_get::<i64, _>("position")?).unwrap_or(0),
            };
            let day_kind: Option<VisitDayKind> = r.try_get("day_kind")?;
            let day_kind = day_kind.unwrap_or(match kind {
                BookingKind::Home => VisitDayKind::Home,
                _ => VisitDayKind::Facility,
            });
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM booking_applicants WHERE booking_id = $1 AND name IS NOT NULL ORDER BY idx",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            let day = |col: &str| -> Result<Option<NaiveDate>, BookingError> {
                Ok(r.try_get::<Option<String>, _>(col)?
                    .as_deref()
                    .and_then(from_db_time)
                    .map(|t| self.day(t)))
            };
            let facility = kind == BookingKind::Facility;
            visits.push(VisitRow {
                booking_id: id,
                reception_number: r.try_get("reception_number")?,
                kind,
                date,
                date_ja: crate::wareki::date_with_weekday(date),
                half_day: slot.half_day,
                position: slot.position,
                window: slots::window(self.rules(), day_kind, slot),
                town: r.try_get("town")?,
                applicants: r.try_get("applicant_count")?,
                names,
                facility_name: r.try_get("facility_name")?,
                contact_person: r.try_get("contact_person")?,
                address: if facility {
                    r.try_get("f_address")?
                } else {
                    r.try_get("address")?
                },
                phone: if facility {
                    r.try_get("f_phone")?
                } else {
                    r.try_get("contact_phone")?
                },
                done_on: day("visit_done_at")?,
                applications_taken: r.try_get("applications_taken")?,
                visit_note: r.try_get("visit_note")?,
                purged_on: day("purged_at")?,
            });
        }
        let ids: Vec<i64> = visits.iter().map(|v| v.booking_id).collect();
        let entry = AuditEntry::new(AuditAction::VisitRead).detail(serde_json::json!({
            "week": week.to_string(),
            "booking_ids": ids,
        }));
        append_audit(&mut tx, now, actor, &entry).await?;
        tx.commit().await?;
        Ok(VisitWeek {
            week: week.to_string(),
            from: week.monday,
            to: week.sunday(),
            heading: format!(
                "{} 〜 {}",
                crate::wareki::date_with_weekday(week.monday),
                crate::wareki::date_with_weekday(week.sunday())
            ),
            visits,
        })
    }

    /// The civil day of an instant in the city's time zone.
    pub(super) fn day(&self, t: DateTime<Utc>) -> NaiveDate {
        self.today(t)
    }

    /// Midnight of `d` in the city's time zone, as UTC (a date stored as an instant reads
    /// back as the same civil date).
    pub(super) fn start_of(&self, d: NaiveDate) -> DateTime<Utc> {
        let local = d.and_time(NaiveTime::MIN);
        self.tz()
            .from_local_datetime(&local)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_parse_and_print() {
        let w = IsoWeek::parse("2026-W30").unwrap();
        assert_eq!(w.monday, NaiveDate::from_ymd_opt(2026, 7, 20).unwrap());
        assert_eq!(w.sunday(), NaiveDate::from_ymd_opt(2026, 7, 26).unwrap());
        assert_eq!(w.to_string(), "2026-W30");
        assert_eq!(
            IsoWeek::of(NaiveDate::from_ymd_opt(2026, 7, 26).unwrap()),
            w
        );
        assert!(IsoWeek::parse("2026-30").is_err());
        assert!(IsoWeek::parse("2026-W54").is_err());
    }
}
