//! The slips (受付票) of a visit week as the city receives them: every R-BOOK-3 item a–i of
//! each live home booking, read in one transaction with the share's audit row.

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::booking::bookings::FormCount;
use crate::booking::slots::{self, SlotRef};
use crate::booking::{
    ApplicationKind, BookingKind, BookingRules, BookingStatus, CallerRelation, Guidance, HalfDay,
    IdDocument, VisitDayKind,
};
use crate::clock::from_db_time;

use super::SharingError;

/// One applicant on a slip (R-BOOK-3 a, c, e, f).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SlipApplicant {
    /// Name.
    pub name: String,
    /// Reading in kana.
    pub name_kana: String,
    /// Date of birth.
    pub birth_date: Option<NaiveDate>,
    /// New, renewal, loss or damage (c).
    pub application_kind: ApplicationKind,
    /// Identity documents they can present (e).
    pub id_documents: Vec<IdDocument>,
    /// Notes on the documents.
    pub id_documents_note: String,
    /// A photo can be taken (f).
    pub can_photo: bool,
    /// They can write themselves (f).
    pub can_write: bool,
    /// A helper will be present (f).
    pub helper_present: bool,
    /// More on their condition (f).
    pub condition_note: String,
    /// Face authentication only, no PIN.
    pub face_auth_only: bool,
    /// Card used as the health-insurance card.
    pub insurance_use: bool,
    /// Holds a 住基カード to return.
    pub holds_juki_card: bool,
    /// Lost the notification card.
    pub notice_card_lost: bool,
}

/// One home visit's slip (受付票).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Slip {
    /// Booking row id.
    pub booking_id: i64,
    /// 受付番号.
    pub reception_number: i64,
    /// Date booked (Asia/Tokyo).
    pub booked_on: Option<NaiveDate>,
    /// The visit.
    pub slot: SlotRef,
    /// The window announced to the citizen.
    pub window: String,
    /// 町丁目.
    pub town: Option<String>,
    /// Address (a).
    pub address: String,
    /// Contact number as given (a).
    pub contact_phone: String,
    /// Who called (a).
    pub caller_relation: Option<CallerRelation>,
    /// The caller's name when not the applicant (a).
    pub caller_name: String,
    /// Why going out is difficult (b).
    pub going_out_difficulty: String,
    /// The wished date as said (d).
    pub wished: String,
    /// Parking at the home (g).
    pub parking: Option<bool>,
    /// Anything to take care of on the visit (h).
    pub care_notes: String,
    /// Other agreed items (i).
    pub other: String,
    /// Guidance given on the phone (R-BOOK-4).
    pub guidance: Vec<Guidance>,
    /// Forms the visit needs (R-PREP-5).
    pub forms: Vec<FormCount>,
    /// The household's applicants.
    pub applicants: Vec<SlipApplicant>,
}

fn s(v: &serde_json::Value, key: &str) -> String {
    v.get(key)
        .and_then(|x| x.as_str())
        .unwrap_or_default()
        .to_string()
}

fn b(v: &serde_json::Value, key: &str, default: bool) -> bool {
    v.get(key).and_then(|x| x.as_bool()).unwrap_or(default)
}

fn json(text: Option<String>) -> serde_json::Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn date(text: &str) -> Result<NaiveDate, SharingError> {
    text.parse()
        .map_err(|_| SharingError::Invalid(format!("stored date '{text}' is not a date")))
}

/// The live home bookings visited from `from` to `to` (inclusive), by visit order.
pub(super) async fn read_week(
    conn: &mut AnyConnection,
    rules: &BookingRules,
    tz: chrono_tz::Tz,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<Slip>, SharingError> {
    let rows = sqlx::query(
        "SELECT b.id, b.reception_number, b.booked_at, b.visit_date, b.half_day, b.position, b.town, \
         b.address, b.contact_phone, b.caller_relation, b.caller_name, b.details, b.guidance, b.forms, \
         v.kind AS day_kind \
         FROM bookings b LEFT JOIN visit_days v ON v.visit_date = b.visit_date \
         WHERE b.kind = $1 AND b.status = $2 AND b.visit_date >= $3 AND b.visit_date <= $4 \
         ORDER BY b.visit_date, b.half_day, b.position",
    )
    .bind(BookingKind::Home)
    .bind(BookingStatus::Booked)
    .bind(from.to_string())
    .bind(to.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: i64 = r.try_get("id")?;
        let slot = SlotRef {
            date: date(&r.try_get::<String, _>("visit_date")?)?,
            half_day: r.try_get::<HalfDay, _>("half_day")?,
            position: u8::try_from(r.try_get::<i64, _>("position")?).unwrap_or(0),
        };
        let day_kind: Option<VisitDayKind> = r.try_get("day_kind")?;
        let details = json(r.try_get("details")?);
        let applicants = sqlx::query(
            "SELECT application_kind, name, name_kana, birth_date, details FROM booking_applicants \
             WHERE booking_id = $1 ORDER BY idx",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|a| {
            let d = json(a.try_get("details")?);
            Ok(SlipApplicant {
                name: a.try_get::<Option<String>, _>("name")?.unwrap_or_default(),
                name_kana: a.try_get::<Option<String>, _>("name_kana")?.unwrap_or_default(),
                birth_date: a
                    .try_get::<Option<String>, _>("birth_date")?
                    .and_then(|t| t.parse().ok()),
                application_kind: a.try_get("application_kind")?,
                id_documents: d
                    .get("id_documents")
                    .and_then(|x| serde_json::from_value(x.clone()).ok())
                    .unwrap_or_default(),
                id_documents_note: s(&d, "id_documents_note"),
                can_photo: b(&d, "can_photo", true),
                can_write: b(&d, "can_write", true),
                helper_present: b(&d, "helper_present", false),
                condition_note: s(&d, "condition_note"),
                face_auth_only: b(&d, "face_auth_only", false),
                insurance_use: b(&d, "insurance_use", false),
                holds_juki_card: b(&d, "holds_juki_card", false),
                notice_card_lost: b(&d, "notice_card_lost", false),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        out.push(Slip {
            booking_id: id,
            reception_number: r
                .try_get::<Option<i64>, _>("reception_number")?
                .unwrap_or(0),
            booked_on: from_db_time(&r.try_get::<String, _>("booked_at")?)
                .map(|t| t.with_timezone(&tz).date_naive()),
            window: slots::window(rules, day_kind.unwrap_or(VisitDayKind::Home), slot),
            slot,
            town: r.try_get("town")?,
            address: r
                .try_get::<Option<String>, _>("address")?
                .unwrap_or_default(),
            contact_phone: r
                .try_get::<Option<String>, _>("contact_phone")?
                .unwrap_or_default(),
            caller_relation: r.try_get("caller_relation")?,
            caller_name: r
                .try_get::<Option<String>, _>("caller_name")?
                .unwrap_or_default(),
            going_out_difficulty: s(&details, "going_out_difficulty"),
            wished: s(&details, "wished"),
            parking: details.get("parking").and_then(|x| x.as_bool()),
            care_notes: s(&details, "care_notes"),
            other: s(&details, "other"),
            guidance: serde_json::from_str(&r.try_get::<String, _>("guidance")?)
                .unwrap_or_default(),
            forms: serde_json::from_str(&r.try_get::<String, _>("forms")?).unwrap_or_default(),
            applicants,
        });
    }
    Ok(out)
}
