//! Which records a subject of the handling record (`GET /api/audit?subject=…`, R-PII-4/6)
//! stands for: a reception number, a booking id or a caller number. The audit rows themselves
//! are read by [`crate::privacy::Auditor::about`].
//!
//! Forms: `123` or `reception:123` (受付番号), `booking:45` (a booking's row id), a number in
//! E.164 (`+81134…`) or national form (`0134-…`, `0134…`). A booking brings its linked call
//! and facility request; a number brings every booking, call, callback and facility request
//! holding it. After the purge a number no longer finds the records it was deleted from: ask
//! by reception number or booking id then.

use sqlx::Row;

use crate::calls::callerid::to_e164;
use crate::privacy::handling::Subject;

use super::bookings::Bookings;
use super::BookingError;

impl Bookings {
    /// Resolves `subject` to its records; an unknown booking or reception number is a 404.
    pub async fn subject(&self, subject: &str) -> Result<Subject, BookingError> {
        let s = subject.trim();
        let mut conn = self.db().pool().acquire().await?;
        let mut out = Subject::default();
        let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
        if let Some(n) = s.strip_prefix("booking:") {
            let id: i64 = n.trim().parse().map_err(|_| {
                BookingError::Invalid(format!("「{n}」は予約番号として正しくありません。"))
            })?;
            out.kind = "booking".into();
            out.booking_ids.push(id);
        } else if let Some(n) = s.strip_prefix("reception:").or_else(|| {
            (s.len() <= 9 && !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())).then_some(s)
        }) {
            let number: i64 = n
                .trim()
                .parse()
                .map_err(|_| BookingError::Invalid(format!("'{n}' は受付番号ではありません。")))?;
            out.kind = "reception".into();
            let id: Option<i64> =
                sqlx::query_scalar("SELECT id FROM bookings WHERE reception_number = $1")
                    .bind(number)
                    .fetch_optional(&mut *conn)
                    .await?;
            out.booking_ids.extend(id);
        } else if digits.len() >= 10 && (s.starts_with('+') || s.starts_with('0')) {
            let e164 = to_e164(s).ok_or_else(|| {
                BookingError::Invalid(format!("'{s}' は電話番号として読めません。"))
            })?;
            out.kind = "number".into();
            let ids: Vec<i64> =
                sqlx::query_scalar("SELECT id FROM bookings WHERE caller_e164 = $1")
                    .bind(&e164)
                    .fetch_all(&mut *conn)
                    .await?;
            out.booking_ids.extend(ids);
            // The contact number is kept as typed: compare it normalised.
            for r in sqlx::query(
                "SELECT id, contact_phone FROM bookings WHERE contact_phone IS NOT NULL",
            )
            .fetch_all(&mut *conn)
            .await?
            {
                let phone: String = r.try_get("contact_phone")?;
                if to_e164(&phone).as_deref() == Some(e164.as_str()) {
                    out.booking_ids.push(r.try_get("id")?);
                }
            }
            for r in sqlx::query("SELECT id, phone FROM facility_requests WHERE phone IS NOT NULL")
                .fetch_all(&mut *conn)
                .await?
            {
                let phone: String = r.try_get("phone")?;
                if to_e164(&phone).as_deref() == Some(e164.as_str()) {
                    out.facility_request_ids.push(r.try_get("id")?);
                }
            }
            for r in sqlx::query("SELECT id, call_key FROM calls WHERE caller_e164 = $1")
                .bind(&e164)
                .fetch_all(&mut *conn)
                .await?
            {
                out.call_ids.push(r.try_get("id")?);
                out.call_keys.push(r.try_get("call_key")?);
            }
            let ids: Vec<i64> =
                sqlx::query_scalar("SELECT id FROM callbacks WHERE caller_e164 = $1")
                    .bind(&e164)
                    .fetch_all(&mut *conn)
                    .await?;
            out.callback_ids.extend(ids);
        } else {
            return Err(BookingError::Invalid(
                "subject は受付番号、booking:ID、または電話番号（+81… / 0134…）で指定してください。"
                    .into(),
            ));
        }
        out.booking_ids.sort_unstable();
        out.booking_ids.dedup();
        // A booking brings its call and its facility request.
        for id in out.booking_ids.clone() {
            let row =
                sqlx::query("SELECT call_id, facility_request_id FROM bookings WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
            let Some(row) = row else {
                return Err(BookingError::NotFound("booking"));
            };
            if let Some(call) = row.try_get::<Option<i64>, _>("call_id")? {
                if !out.call_ids.contains(&call) {
                    out.call_ids.push(call);
                    let key: Option<String> =
                        sqlx::query_scalar("SELECT call_key FROM calls WHERE id = $1")
                            .bind(call)
                            .fetch_optional(&mut *conn)
                            .await?;
                    out.call_keys.extend(key);
                }
            }
            if let Some(f) = row.try_get::<Option<i64>, _>("facility_request_id")? {
                if !out.facility_request_ids.contains(&f) {
                    out.facility_request_ids.push(f);
                }
            }
        }
        if out.kind == "reception" && out.booking_ids.is_empty() {
            return Err(BookingError::NotFound("reception number"));
        }
        Ok(out)
    }
}
