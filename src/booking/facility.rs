//! Facility requests (R-BOOK-5, R-SLOT-2, R-CAL-3, R-PREP-3, R-PREP-4): the operator records
//! the request, which waits as a callback task for the manager; the manager agrees the visit
//! day(s), the on-site pre-meeting for 10+, the checklist and the applicant list.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use crate::calls::callerid::to_e164;
use crate::clock::{from_db_time, to_db_time};
use crate::privacy::{append_audit, Actor, AuditAction, AuditEntry, AuditTarget};

use super::bookings::{BookingSummary, Bookings, TEXT_MAX};
use super::slots::{Request, SlotRef, Wish};
use super::{BookingChange, BookingError, BookingKind, FacilityStatus, HalfDay};

/// What the operator records on the call (R-BOOK-5).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FacilityRequestInput {
    /// The call it came on.
    #[serde(default)]
    pub call_id: Option<i64>,
    /// Facility name.
    pub facility_name: String,
    /// Facility type (特養, グループホーム …).
    pub facility_type: String,
    /// Address.
    pub address: String,
    /// Phone.
    pub phone: String,
    /// Contact person.
    pub contact_person: String,
    /// Wished period and days, as said.
    #[serde(default)]
    pub wished: String,
    /// Rough number of applicants.
    pub applicants_estimate: u32,
    /// Other items.
    #[serde(default)]
    pub notes: String,
}

/// A facility request as the manager sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FacilityRequest {
    /// Id (施設申込番号).
    pub id: i64,
    /// Where it stands.
    pub status: FacilityStatus,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// Facility name.
    pub facility_name: String,
    /// Facility type.
    pub facility_type: String,
    /// The 町丁目, when matched.
    pub town: Option<String>,
    /// Rough number of applicants.
    pub applicants_estimate: i64,
    /// Address (personal data of the facility's contact: shown to staff, purged later).
    pub address: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Contact person.
    pub contact_person: Option<String>,
    /// Wished period, notes.
    pub details: serde_json::Value,
    /// The R-PREP-3 checklist.
    pub checklist: serde_json::Value,
    /// The R-PREP-4 applicant list.
    pub applicant_list: serde_json::Value,
    /// The on-site pre-meeting.
    pub pre_meeting_date: Option<NaiveDate>,
    /// Its half-day.
    pub pre_meeting_half_day: Option<HalfDay>,
    /// A pre-meeting is needed (10+ applicants, R-CAL-3).
    pub needs_pre_meeting: bool,
    /// Facility visits (half-days) needed: one per 20 applicants (R-SLOT-2).
    pub visits_needed: u32,
    /// Too few for a facility visit: book the residents into home slots (R-SLOT-2).
    pub steer_to_home: bool,
}

fn check_text(errors: &mut Vec<String>, label: &str, s: &str, required: bool) {
    if required && s.trim().is_empty() {
        errors.push(format!("{label}を入力してください。"));
    }
    if s.chars().count() > TEXT_MAX || s.chars().any(|c| c.is_control() && c != '\n') {
        errors.push(format!(
            "{label}の内容が長すぎるか、使えない文字が含まれています。"
        ));
    }
}

impl FacilityRequestInput {
    /// Every problem at once, in Japanese.
    pub fn validate(&self) -> Result<(), BookingError> {
        let mut e = Vec::new();
        check_text(&mut e, "施設名", &self.facility_name, true);
        check_text(&mut e, "施設の種類", &self.facility_type, true);
        check_text(&mut e, "所在地", &self.address, true);
        check_text(&mut e, "担当者", &self.contact_person, true);
        check_text(&mut e, "希望時期", &self.wished, false);
        check_text(&mut e, "その他", &self.notes, false);
        if to_e164(&self.phone).is_none() {
            e.push("施設の電話番号の形式が正しくありません。".into());
        }
        if !(1..=500).contains(&self.applicants_estimate) {
            e.push("申請者数の見込みは1〜500名で入力してください。".into());
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(BookingError::Invalid(e.join("\n")))
        }
    }
}

const COLUMNS: &str = "id, status, created_at, facility_name, facility_type, town, applicants_estimate, address, phone, \
     contact_person, details, checklist, applicant_list, pre_meeting_date, pre_meeting_half_day";

impl Bookings {
    /// Records a facility request; it waits for the manager's call back (R-BOOK-5).
    pub async fn create_facility_request(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        input: &FacilityRequestInput,
        town: Option<String>,
    ) -> Result<FacilityRequest, BookingError> {
        input.validate()?;
        let mut tx = self.db().pool().begin().await?;
        let details = serde_json::json!({ "wished": input.wished, "notes": input.notes });
        let stamp = to_db_time(now);
        let id: i64 = sqlx::query(
            "INSERT INTO facility_requests (status, created_at, created_by_user_id, call_id, facility_name, facility_type, \
             town, applicants_estimate, address, phone, contact_person, details, checklist, applicant_list, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, '{}', '[]', $2) RETURNING id",
        )
        .bind(FacilityStatus::Requested)
        .bind(&stamp)
        .bind(actor.user_id)
        .bind(input.call_id)
        .bind(input.facility_name.trim())
        .bind(input.facility_type.trim())
        .bind(town)
        .bind(i64::from(input.applicants_estimate))
        .bind(input.address.trim())
        .bind(input.phone.trim())
        .bind(input.contact_person.trim())
        .bind(details.to_string())
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let entry = AuditEntry::new(AuditAction::FacilityCreate)
            .target(AuditTarget::FacilityRequest, id)
            .detail(serde_json::json!({ "applicants_estimate": input.applicants_estimate }));
        append_audit(&mut tx, now, actor, &entry).await?;
        let r = self.request_on(&mut tx, id).await?;
        tx.commit().await?;
        Ok(r)
    }

    /// Every facility request, open ones first; the read is recorded (contact data).
    pub async fn read_facility_requests(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<FacilityRequest>, BookingError> {
        let mut tx = self.db().pool().begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM facility_requests ORDER BY CASE WHEN status = 'requested' THEN 0 ELSE 1 END, id"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let list = rows
            .iter()
            .map(|r| self.request_of(r))
            .collect::<Result<Vec<_>, _>>()?;
        if !list.is_empty() {
            let ids: Vec<i64> = list.iter().map(|r| r.id).collect();
            let entry = AuditEntry::new(AuditAction::FacilityRead)
                .detail(serde_json::json!({ "facility_request_ids": ids }));
            append_audit(&mut tx, now, actor, &entry).await?;
        }
        tx.commit().await?;
        Ok(list)
    }

    /// Books a facility visit on a facility day for the request (R-SLOT-2, R-SLOT-5): the
    /// half-day is the facility's; lead time a month for 6+.
    pub async fn schedule_facility_visit(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        id: i64,
        slot: SlotRef,
        applicants: Option<u32>,
    ) -> Result<BookingSummary, BookingError> {
        let today = self.today(now);
        let mut tx = self.db().pool().begin().await?;
        super::bookings::lock_half_day(&mut tx, slot).await?;
        let r = self.request_on(&mut tx, id).await?;
        if r.status == FacilityStatus::Closed {
            return Err(BookingError::Conflict(
                "この施設申込は終了しています。".into(),
            ));
        }
        let rules = self.rules();
        let n = applicants.unwrap_or(u32::try_from(r.applicants_estimate).unwrap_or(0));
        if n < rules.facility_min_applicants {
            return Err(BookingError::Invalid(format!(
                "申請者が{}名以下の施設は、自宅訪問の枠で一人ずつ予約してください。",
                rules.facility_min_applicants - 1
            )));
        }
        if n > rules.facility_half_day_applicants {
            return Err(BookingError::Invalid(format!(
                "1回の施設訪問は{}名までです。午前と午後、または別の日に分けて登録してください。",
                rules.facility_half_day_applicants
            )));
        }
        let req = Request {
            kind: BookingKind::Facility,
            applicants: n,
            place: None,
            manual_minutes: None,
            wish: Wish::default(),
            moving: None,
        };
        if let Err(reason) = self.recheck_on(&mut tx, today, slot, &req).await? {
            tx.rollback().await?;
            return Err(BookingError::Conflict(reason));
        }
        let number = super::bookings::next_reception_number(&mut tx).await?;
        let booking = super::bookings::insert_plain(
            &mut tx,
            Some(number),
            BookingKind::Facility,
            slot,
            n,
            r.town.clone(),
            Some(id),
            actor,
            now,
        )
        .await?;
        sqlx::query("UPDATE facility_requests SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(FacilityStatus::Scheduled)
            .bind(to_db_time(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        super::bookings::history(
            &mut tx,
            booking,
            now,
            actor,
            BookingChange::Created,
            None,
            Some(slot),
            "",
        )
        .await?;
        let entry = AuditEntry::new(AuditAction::BookingCreate)
            .target(AuditTarget::Booking, booking)
            .detail(serde_json::json!({
                "reception_number": number, "slot": slot.to_string(), "facility_request_id": id, "applicants": n,
            }));
        append_audit(&mut tx, now, actor, &entry).await?;
        let s = self.summary(&mut tx, booking).await?;
        tx.commit().await?;
        Ok(s)
    }

    /// Records the on-site pre-meeting (R-CAL-3): on a non-visit day, or on a facility day's
    /// half-day with no booking yet — which it then holds, so operators see it taken.
    pub async fn set_pre_meeting(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        id: i64,
        date: NaiveDate,
        half_day: HalfDay,
    ) -> Result<FacilityRequest, BookingError> {
        let today = self.today(now);
        if date < today {
            return Err(BookingError::Invalid("過去の日付は指定できません。".into()));
        }
        let slot = SlotRef {
            date,
            half_day,
            position: 1,
        };
        let mut tx = self.db().pool().begin().await?;
        super::bookings::lock_half_day(&mut tx, slot).await?;
        let r = self.request_on(&mut tx, id).await?;
        if r.pre_meeting_date.is_some() {
            return Err(BookingError::Conflict(
                "事前打合せは登録済みです。変更は取り消してから登録してください。".into(),
            ));
        }
        let day_kind: Option<super::VisitDayKind> =
            sqlx::query("SELECT kind FROM visit_days WHERE visit_date = $1")
                .bind(date.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
        match day_kind {
            Some(super::VisitDayKind::Home) => {
                return Err(BookingError::Conflict(
                    "事前打合せは、訪問日以外の日か、予約のない施設訪問日に設定してください。"
                        .into(),
                ))
            }
            Some(super::VisitDayKind::Facility) => {
                let req = Request {
                    kind: BookingKind::PreMeeting,
                    applicants: 0,
                    place: None,
                    manual_minutes: None,
                    wish: Wish::default(),
                    moving: None,
                };
                if let Err(reason) = self.recheck_on(&mut tx, today, slot, &req).await? {
                    tx.rollback().await?;
                    return Err(BookingError::Conflict(reason));
                }
                let b = super::bookings::insert_plain(
                    &mut tx,
                    None,
                    BookingKind::PreMeeting,
                    slot,
                    0,
                    r.town.clone(),
                    Some(id),
                    actor,
                    now,
                )
                .await?;
                super::bookings::history(
                    &mut tx,
                    b,
                    now,
                    actor,
                    BookingChange::Created,
                    None,
                    Some(slot),
                    "",
                )
                .await?;
            }
            None => {}
        }
        sqlx::query(
            "UPDATE facility_requests SET pre_meeting_date = $1, pre_meeting_half_day = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(date.to_string())
        .bind(half_day)
        .bind(to_db_time(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let entry = AuditEntry::new(AuditAction::FacilityUpdate)
            .target(AuditTarget::FacilityRequest, id)
            .detail(serde_json::json!({ "pre_meeting": slot.to_string() }));
        append_audit(&mut tx, now, actor, &entry).await?;
        let out = self.request_on(&mut tx, id).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Replaces the R-PREP-3 checklist and/or the R-PREP-4 applicant list; closes the request
    /// when asked (e.g. steered to home slots).
    pub async fn update_facility_request(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        id: i64,
        update: &FacilityUpdate,
    ) -> Result<FacilityRequest, BookingError> {
        let checklist = update.checklist.as_ref().map(|c| c.to_string());
        let list = update.applicant_list.as_ref().map(|c| c.to_string());
        for s in [&checklist, &list].into_iter().flatten() {
            if s.len() > 200_000 {
                return Err(BookingError::Invalid("内容が大きすぎます。".into()));
            }
        }
        if let Some(l) = &update.applicant_list {
            if !l.is_array() {
                return Err(BookingError::Invalid(
                    "申請者一覧は配列で送ってください。".into(),
                ));
            }
        }
        if let Some(c) = &update.checklist {
            if !c.is_object() {
                return Err(BookingError::Invalid(
                    "確認事項はオブジェクトで送ってください。".into(),
                ));
            }
        }
        let mut tx = self.db().pool().begin().await?;
        self.request_on(&mut tx, id).await?;
        sqlx::query(
            "UPDATE facility_requests SET checklist = COALESCE($1, checklist), applicant_list = COALESCE($2, applicant_list), \
             status = CASE WHEN $3 = 1 THEN 'closed' ELSE status END, updated_at = $4 WHERE id = $5",
        )
        .bind(checklist)
        .bind(list)
        .bind(i64::from(update.close))
        .bind(to_db_time(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let entry = AuditEntry::new(AuditAction::FacilityUpdate)
            .target(AuditTarget::FacilityRequest, id)
            .detail(serde_json::json!({
                "checklist": update.checklist.is_some(),
                "applicant_list": update.applicant_list.is_some(),
                "closed": update.close,
            }));
        append_audit(&mut tx, now, actor, &entry).await?;
        let out = self.request_on(&mut tx, id).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn request_on(
        &self,
        conn: &mut AnyConnection,
        id: i64,
    ) -> Result<FacilityRequest, BookingError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM facility_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(BookingError::NotFound("facility request"))?;
        self.request_of(&row)
    }

    fn request_of(&self, r: &sqlx::any::AnyRow) -> Result<FacilityRequest, BookingError> {
        let rules = self.rules();
        let n: i64 = r.try_get("applicants_estimate")?;
        let json = |col: &str| -> Result<serde_json::Value, BookingError> {
            Ok(r.try_get::<Option<String>, _>(col)?
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(serde_json::Value::Null))
        };
        let per_visit = i64::from(rules.facility_half_day_applicants.max(1));
        Ok(FacilityRequest {
            id: r.try_get("id")?,
            status: r.try_get("status")?,
            created_at: from_db_time(&r.try_get::<String, _>("created_at")?).unwrap_or_default(),
            facility_name: r.try_get("facility_name")?,
            facility_type: r.try_get("facility_type")?,
            town: r.try_get("town")?,
            applicants_estimate: n,
            address: r.try_get("address")?,
            phone: r.try_get("phone")?,
            contact_person: r.try_get("contact_person")?,
            details: json("details")?,
            checklist: json("checklist")?,
            applicant_list: json("applicant_list")?,
            pre_meeting_date: r
                .try_get::<Option<String>, _>("pre_meeting_date")?
                .and_then(|s| s.parse().ok()),
            pre_meeting_half_day: r
                .try_get::<Option<String>, _>("pre_meeting_half_day")?
                .and_then(|s| s.parse().ok()),
            needs_pre_meeting: n >= i64::from(rules.pre_meeting_applicants),
            visits_needed: u32::try_from((n + per_visit - 1) / per_visit).unwrap_or(1),
            steer_to_home: n < i64::from(rules.facility_min_applicants),
        })
    }
}

/// The manager's update of a facility request.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FacilityUpdate {
    /// The R-PREP-3 checklist, item by item (procedure, documents, applicant list, photo
    /// place, desk and power, residents' condition, face-auth-only wish, delivery address,
    /// card keeping, explanation by city staff first).
    #[serde(default)]
    pub checklist: Option<serde_json::Value>,
    /// The R-PREP-4 applicant list (name, address, date of birth, proxy writer, face-auth
    /// card, delivery to the facility, reason if not new, notes), one object per applicant.
    #[serde(default)]
    pub applicant_list: Option<serde_json::Value>,
    /// Close the request (steered to home slots, or withdrawn).
    #[serde(default)]
    pub close: bool,
}
