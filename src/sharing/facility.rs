//! A facility's applicant list (R-PREP-4), shared with the city about a week before the
//! facility's first visit (the 7th day before it), the same way as the weekly slips.
//!
//! The list is what the manager recorded on the facility request (`applicant_list`, one JSON
//! object per applicant). The keys read: `name`, `address`, `birth_date` (YYYY-MM-DD),
//! `proxy_writer`, `face_auth_only`, `deliver_to_facility` (true/false), `reason` (why not a
//! new application), `notes`; any other key is listed under 備考 as `key: value`.

use chrono::{Days, NaiveDate};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::booking::{BookingKind, BookingStatus, HalfDay};

use super::SharingError;

/// How long before the first visit a facility's list is due (R-PREP-4: about a week).
pub const DAYS_BEFORE_VISIT: u64 = 7;

/// The due date of a facility's applicant list.
pub fn due_date(first_visit: NaiveDate) -> NaiveDate {
    first_visit - Days::new(DAYS_BEFORE_VISIT)
}

/// One applicant of a facility's list.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ListedApplicant {
    /// Name.
    pub name: String,
    /// Address (registered).
    pub address: String,
    /// Date of birth.
    pub birth_date: Option<NaiveDate>,
    /// Needs someone to write for them.
    pub proxy_writer: Option<bool>,
    /// Wants a face-authentication card without PIN.
    pub face_auth_only: Option<bool>,
    /// The card is to be delivered to the facility.
    pub deliver_to_facility: Option<bool>,
    /// Why, when it is not a new application.
    pub reason: String,
    /// Other notes (and any key not listed above).
    pub notes: String,
}

/// A facility's list as shared: the facility, its visits, the applicants.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FacilityList {
    /// The facility request.
    pub facility_request_id: i64,
    /// Facility name.
    pub facility_name: String,
    /// The facility's address.
    pub facility_address: String,
    /// Live facility visits: (booking id, reception number, date, half-day).
    pub visits: Vec<(i64, Option<i64>, NaiveDate, HalfDay)>,
    /// The applicants.
    pub applicants: Vec<ListedApplicant>,
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Reads one entry of the stored list; unknown keys go to the notes.
pub fn applicant(v: &serde_json::Value) -> ListedApplicant {
    let mut a = ListedApplicant::default();
    let Some(obj) = v.as_object() else {
        a.notes = text(v);
        return a;
    };
    let mut extra = Vec::new();
    for (k, val) in obj {
        match k.as_str() {
            "name" => a.name = text(val),
            "address" => a.address = text(val),
            "birth_date" => a.birth_date = val.as_str().and_then(|s| s.parse().ok()),
            "proxy_writer" => a.proxy_writer = val.as_bool(),
            "face_auth_only" => a.face_auth_only = val.as_bool(),
            "deliver_to_facility" => a.deliver_to_facility = val.as_bool(),
            "reason" => a.reason = text(val),
            "notes" => a.notes = text(val),
            _ => extra.push(format!("{k}: {}", text(val))),
        }
    }
    if let (Some(raw), None) = (obj.get("birth_date"), a.birth_date) {
        extra.push(format!("birth_date: {}", text(raw)));
    }
    if !extra.is_empty() {
        if !a.notes.is_empty() {
            a.notes.push('\n');
        }
        a.notes.push_str(&extra.join("\n"));
    }
    a
}

/// The facility request's list and its live visits.
pub(super) async fn read(conn: &mut AnyConnection, id: i64) -> Result<FacilityList, SharingError> {
    let row = sqlx::query(
        "SELECT facility_name, address, applicant_list FROM facility_requests WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(SharingError::NotFound("facility request"))?;
    let list: serde_json::Value = row
        .try_get::<Option<String>, _>("applicant_list")?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null);
    let visits = sqlx::query(
        "SELECT id, reception_number, visit_date, half_day FROM bookings \
         WHERE facility_request_id = $1 AND kind = $2 AND status = $3 ORDER BY visit_date, half_day",
    )
    .bind(id)
    .bind(BookingKind::Facility)
    .bind(BookingStatus::Booked)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        let d: String = r.try_get("visit_date")?;
        Ok((
            r.try_get("id")?,
            r.try_get("reception_number")?,
            d.parse().unwrap_or_default(),
            r.try_get("half_day")?,
        ))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(FacilityList {
        facility_request_id: id,
        facility_name: row.try_get("facility_name")?,
        facility_address: row
            .try_get::<Option<String>, _>("address")?
            .unwrap_or_default(),
        visits,
        applicants: list
            .as_array()
            .map(|a| a.iter().map(applicant).collect())
            .unwrap_or_default(),
    })
}

/// How many entries a stored list has (for the due list; nothing of it is shown).
pub(super) fn count(stored: Option<&str>) -> i64 {
    stored
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|v| v.as_array().map(|a| a.len() as i64))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_are_read_and_the_rest_kept_as_notes() {
        let a = applicant(&serde_json::json!({
            "name": "試験 一郎", "birth_date": "1930-01-01", "proxy_writer": true,
            "room": "203", "notes": "寝たきり"
        }));
        assert_eq!(a.name, "試験 一郎");
        assert_eq!(a.birth_date, "1930-01-01".parse().ok());
        assert_eq!(a.proxy_writer, Some(true));
        assert_eq!(a.notes, "寝たきり\nroom: 203");
        let b = applicant(&serde_json::json!({ "name": "x", "birth_date": "昭和5年" }));
        assert_eq!(b.birth_date, None);
        assert_eq!(
            b.notes, "birth_date: 昭和5年",
            "an unreadable date is not lost"
        );
        assert_eq!(
            due_date("2026-11-04".parse().unwrap()).to_string(),
            "2026-10-28"
        );
    }
}
