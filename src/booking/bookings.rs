//! Home and facility bookings (R-BOOK-1..6, R-PREP-5): validation of the slip (受付票) items,
//! the write that can never double-book, reschedule and cancel with history, reception
//! numbers, and the lists built from them.
//!
//! **No double booking.** Cal.com's and Easy!Appointments' double bookings came from
//! check-then-insert without a lock. Here every write first bumps its half-day's row in
//! `half_day_locks` — on PostgreSQL that row lock serialises writers of the half-day, on SQLite
//! the first write takes the database's write lock at once — and only then reads the
//! half-day and runs the same [`slots::check`] the offers came from. The partial unique index
//! `bookings_live_slot` backs it: one live booking per slot whatever the code does.
//! Reception numbers come from a counter row bumped in the same transaction: a rollback gives
//! the number back, so the sequence has no gaps and no repeats.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use crate::calls::callerid::{display_national, to_e164};
use crate::calls::Outcome;
use crate::clock::{from_db_time, to_db_time};
use crate::privacy::{append_audit, Actor, AuditAction, AuditEntry, AuditTarget, Role};
use crate::store::Db;

use super::rules::BookingRules;
use super::slots::{self, DayState, Occupant, Offer, Request, SlotRef, Wish};
use super::travel::{Place, TravelModel};
use super::{
    ApplicationKind, BookingChange, BookingError, BookingKind, BookingStatus, CallerRelation,
    FormKind, Guidance, HalfDay, IdDocument, VisitDayKind,
};

/// Longest free-text item, in characters.
pub const TEXT_MAX: usize = 1000;
/// Most applicants in one booking.
pub const APPLICANTS_MAX: usize = 60;

/// One applicant of a booking (R-BOOK-3 a, c, e, f; R-PREP-5 wishes).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApplicantInput {
    /// Full name.
    pub name: String,
    /// Reading in kana.
    #[serde(default)]
    pub name_kana: String,
    /// Date of birth.
    pub birth_date: NaiveDate,
    /// New, renewal, loss or damage (c).
    pub application_kind: ApplicationKind,
    /// Identity documents they can present (e).
    #[serde(default)]
    pub id_documents: Vec<IdDocument>,
    /// Notes on the documents (e.g. what "other" is).
    #[serde(default)]
    pub id_documents_note: String,
    /// A photo can be taken on the day (f).
    #[serde(default = "yes")]
    pub can_photo: bool,
    /// They can write (sign) themselves (f).
    #[serde(default = "yes")]
    pub can_write: bool,
    /// A helper will be present (f).
    #[serde(default)]
    pub helper_present: bool,
    /// More on their condition (f).
    #[serde(default)]
    pub condition_note: String,
    /// Wants a card for face authentication only, without a PIN.
    #[serde(default)]
    pub face_auth_only: bool,
    /// Wants to use the card as the health-insurance card (マイナ保険証).
    #[serde(default)]
    pub insurance_use: bool,
    /// Holds a 住基カード to return.
    #[serde(default)]
    pub holds_juki_card: bool,
    /// Lost the notification card (通知カード).
    #[serde(default)]
    pub notice_card_lost: bool,
}

fn yes() -> bool {
    true
}

/// A home booking as the operator's form sends it (R-BOOK-3 items a–i).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HomeBookingInput {
    /// The slot picked from the ranked list.
    pub slot: SlotRef,
    /// The call it was taken on (its outcome becomes `booking`).
    #[serde(default)]
    pub call_id: Option<i64>,
    /// The home address in Otaru (a).
    pub address: String,
    /// The operator's travel estimate, minutes, when the town is not in the list.
    #[serde(default)]
    pub manual_travel_minutes: Option<u32>,
    /// Contact number (a).
    pub contact_phone: String,
    /// Who called (R-BOOK-1).
    pub caller_relation: CallerRelation,
    /// The caller's name when not the applicant (a).
    #[serde(default)]
    pub caller_name: String,
    /// Why going out is difficult (b).
    pub going_out_difficulty: String,
    /// The wished visit date, as said (d).
    #[serde(default)]
    pub wished: String,
    /// A parking space at the home (g).
    #[serde(default)]
    pub parking: Option<bool>,
    /// Anything to take care of on the visit (h).
    #[serde(default)]
    pub care_notes: String,
    /// Other agreed items (i).
    #[serde(default)]
    pub other: String,
    /// The applicants of the household.
    pub applicants: Vec<ApplicantInput>,
    /// The guidance the operator gave (R-BOOK-4), ticked on the checklist.
    #[serde(default)]
    pub guidance_given: Vec<Guidance>,
}

/// Where a booking is, as resolved from its address by the caller of [`Bookings::create_home`].
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    /// The 町丁目, when matched.
    pub town: Option<String>,
    /// Its representative point.
    pub place: Option<Place>,
}

/// The guidance that applies to a household (R-BOOK-4): always the preparation (c), renewal
/// (a) and loss/damage (b) items when an applicant's kind calls for them.
pub fn guidance_for(kinds: &[ApplicationKind]) -> Vec<Guidance> {
    let mut g = vec![Guidance::Prepare];
    if kinds.contains(&ApplicationKind::Renewal) {
        g.extend([
            Guidance::RenewalOldCard,
            Guidance::RenewalInsuranceCertificate,
        ]);
    }
    let lost = kinds.contains(&ApplicationKind::Loss);
    if lost || kinds.contains(&ApplicationKind::Damage) {
        g.push(Guidance::LossSuspend);
        if lost {
            g.push(Guidance::LossPolice);
        }
        g.extend([Guidance::LossFee, Guidance::LossExpress]);
    }
    g.sort();
    g
}

/// The application forms a visit needs (R-PREP-5), from its applicants' kinds and wishes.
pub fn forms_for(applicants: &[ApplicantInput]) -> Vec<(FormKind, u32)> {
    let mut counts = std::collections::BTreeMap::new();
    let mut add = |f: FormKind| *counts.entry(f).or_insert(0u32) += 1;
    for a in applicants {
        add(FormKind::IssueApplication);
        // On a visit the staff certify the photo they take as the applicant's.
        add(FormKind::PhotoCertificate);
        if !a.face_auth_only {
            add(FormKind::PinSetting);
        }
        if a.insurance_use {
            add(FormKind::InsuranceConsent);
        }
        match a.application_kind {
            ApplicationKind::Loss => add(FormKind::LossReport),
            ApplicationKind::Renewal | ApplicationKind::Damage => add(FormKind::ReturnReport),
            ApplicationKind::New => {}
        }
        if a.notice_card_lost {
            add(FormKind::NoticeCardLoss);
        }
        if a.holds_juki_card {
            add(FormKind::JukiCardReturn);
        }
    }
    counts.into_iter().collect()
}

/// Age in full years on `on`.
pub fn age_on(birth: NaiveDate, on: NaiveDate) -> i32 {
    let mut age = on.year() - birth.year();
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

fn text(errors: &mut Vec<String>, label: &str, s: &str, required: bool) {
    if required && s.trim().is_empty() {
        errors.push(format!("{label}を入力してください。"));
    }
    if s.chars().count() > TEXT_MAX {
        errors.push(format!("{label}は{TEXT_MAX}文字以内で入力してください。"));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        errors.push(format!("{label}に使えない文字が含まれています。"));
    }
}

impl HomeBookingInput {
    /// Checks every item; all problems at once, in Japanese. Returns the contact number in
    /// E.164.
    pub fn validate(&self, today: NaiveDate) -> Result<String, BookingError> {
        let mut errors = Vec::new();
        text(&mut errors, "住所", &self.address, true);
        text(
            &mut errors,
            "外出が困難な理由",
            &self.going_out_difficulty,
            true,
        );
        text(&mut errors, "連絡者の氏名", &self.caller_name, false);
        if self.caller_relation != CallerRelation::Applicant && self.caller_name.trim().is_empty() {
            errors.push("申込者本人以外からの電話は、連絡者の氏名を入力してください。".into());
        }
        for (label, s) in [
            ("希望日", &self.wished),
            ("訪問時の留意事項", &self.care_notes),
            ("その他", &self.other),
        ] {
            text(&mut errors, label, s, false);
        }
        let e164 = to_e164(&self.contact_phone);
        if e164.is_none() {
            errors.push("連絡先の電話番号の形式が正しくありません（例: 0134-22-0001）。".into());
        }
        if self.applicants.is_empty() {
            errors.push("申請者を1名以上入力してください。".into());
        }
        if self.applicants.len() > APPLICANTS_MAX {
            errors.push(format!("申請者は{APPLICANTS_MAX}名までです。"));
        }
        for (i, a) in self.applicants.iter().enumerate() {
            let n = i + 1;
            text(&mut errors, &format!("申請者{n}の氏名"), &a.name, true);
            text(
                &mut errors,
                &format!("申請者{n}のふりがな"),
                &a.name_kana,
                false,
            );
            text(
                &mut errors,
                &format!("申請者{n}の状態"),
                &a.condition_note,
                false,
            );
            text(
                &mut errors,
                &format!("申請者{n}の本人確認書類の補足"),
                &a.id_documents_note,
                false,
            );
            if a.birth_date >= today || a.birth_date.year() < 1900 {
                errors.push(format!("申請者{n}の生年月日が正しくありません。"));
            }
            if a.id_documents.is_empty() {
                errors.push(format!("申請者{n}の本人確認書類を選んでください。"));
            }
        }
        if let Some(m) = self.manual_travel_minutes {
            if !(1..=180).contains(&m) {
                errors.push("移動時間の見込みは1〜180分で入力してください。".into());
            }
        }
        let kinds: Vec<ApplicationKind> =
            self.applicants.iter().map(|a| a.application_kind).collect();
        let missing: Vec<&str> = guidance_for(&kinds)
            .into_iter()
            .filter(|g| !self.guidance_given.contains(g))
            .map(|g| g.label_ja())
            .collect();
        if !missing.is_empty() {
            errors.push(format!("次の案内が済んでいません: {}", missing.join("／")));
        }
        if errors.is_empty() {
            Ok(e164.unwrap_or_default())
        } else {
            Err(BookingError::Invalid(errors.join("\n")))
        }
    }
}

/// A booking as the lists show it: no personal data beyond the town (R-BOOK-6, item 11).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BookingSummary {
    /// Row id.
    pub id: i64,
    /// 受付番号 (none for a pre-meeting).
    pub reception_number: Option<i64>,
    /// Home, facility or pre-meeting.
    pub kind: BookingKind,
    /// Booked or cancelled.
    pub status: BookingStatus,
    /// The date it was booked (Asia/Tokyo).
    pub booked_on: NaiveDate,
    /// The visit.
    pub slot: SlotRef,
    /// The window announced to the citizen.
    pub window: String,
    /// Applicants.
    pub applicants: i64,
    /// The 町丁目, when matched.
    pub town: Option<String>,
    /// The facility request it belongs to.
    pub facility_request_id: Option<i64>,
    /// The facility's pre-meeting date, when it has one.
    pub pre_meeting_date: Option<NaiveDate>,
    /// Application forms the visit needs (R-PREP-5).
    pub forms: Vec<FormCount>,
    /// Date shared with the city (filled by the weekly share).
    pub shared_on: Option<NaiveDate>,
    /// Date the visit ended (filled by the city's side).
    pub visit_done_on: Option<NaiveDate>,
    /// Date its personal data was deleted.
    pub purged_on: Option<NaiveDate>,
}

/// The bookings export (item 11): `GET /api/bookings?format=json` and
/// `madoguchi bookings export` print this.
#[derive(Debug, Clone, Serialize)]
pub struct BookingList {
    /// Every booking, by reception number.
    pub bookings: Vec<BookingSummary>,
}

/// How many of a form a visit needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FormCount {
    /// The form.
    pub form: FormKind,
    /// How many.
    pub count: u32,
}

/// The booking domain's handle: rules, travel model, time zone and the database.
#[derive(Clone)]
pub struct Bookings {
    db: Db,
    rules: Arc<BookingRules>,
    model: Arc<dyn TravelModel>,
    tz: chrono_tz::Tz,
    conflicts: Arc<super::conflicts::ConflictCounts>,
}

/// Why a slot could not be booked, with fresh alternatives for the caller.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SlotTaken {
    /// Why, in words for the caller.
    pub reason: String,
    /// The best slots still open for the same request.
    pub alternatives: Vec<Offer>,
}

const SUMMARY_COLUMNS: &str =
    "b.id, b.reception_number, b.kind, b.status, b.booked_at, b.visit_date, b.half_day, \
     b.position, b.applicant_count, b.town, b.facility_request_id, f.pre_meeting_date, b.forms, \
     b.shared_at, b.visit_done_at, b.purged_at, v.kind AS day_kind";

impl Bookings {
    /// The handle.
    pub fn new(
        db: Db,
        rules: BookingRules,
        model: Arc<dyn TravelModel>,
        tz: chrono_tz::Tz,
    ) -> Self {
        Bookings {
            db,
            rules: Arc::new(rules),
            model,
            tz,
            conflicts: Arc::default(),
        }
    }

    /// Conflicts (409s) since the start, by operation and kind (for `/metrics`).
    pub fn conflicts(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.conflicts.snapshot()
    }

    /// The rules in force.
    pub fn rules(&self) -> &BookingRules {
        &self.rules
    }

    /// The travel model.
    pub fn model(&self) -> &dyn TravelModel {
        self.model.as_ref()
    }

    /// Today in the city's time zone.
    pub fn today(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.tz).date_naive()
    }

    /// Every visit day from `from` on, with its live bookings.
    pub async fn days_from(&self, from: NaiveDate) -> Result<Vec<DayState>, BookingError> {
        let mut conn = self.db.pool().acquire().await?;
        load_days(&mut conn, from, None).await
    }

    /// The ranked slots for `req` (R-SLOT-5).
    pub async fn search(
        &self,
        now: DateTime<Utc>,
        req: &Request,
    ) -> Result<slots::Search, BookingError> {
        let today = self.today(now);
        let days = self.days_from(today).await?;
        Ok(slots::search(
            &self.rules,
            self.model.as_ref(),
            today,
            &days,
            req,
        ))
    }

    /// Books a home visit (R-BOOK-3, R-BOOK-6): validates, locks the half-day, re-checks
    /// every rule, numbers it, links the call, records the audit row, all in one transaction.
    pub async fn create_home(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        input: &HomeBookingInput,
        at: &Located,
    ) -> Result<BookingSummary, BookingError> {
        let result = self.create_home_counted(actor, now, input, at).await;
        self.conflicts.seen(0, result)
    }

    async fn create_home_counted(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        input: &HomeBookingInput,
        at: &Located,
    ) -> Result<BookingSummary, BookingError> {
        let today = self.today(now);
        let e164 = input.validate(today)?;
        if at.place.is_none() && input.manual_travel_minutes.is_none() {
            return Err(BookingError::Invalid(
                "町名が一覧にない住所です。ほかの訪問先との移動時間の見込み（分）を入力してください。"
                    .into(),
            ));
        }
        let applicants = input.applicants.len() as u32;
        let req = Request {
            kind: BookingKind::Home,
            applicants,
            place: at.place.clone(),
            manual_minutes: input.manual_travel_minutes,
            wish: Wish::default(),
            moving: None,
        };
        let forms: Vec<FormCount> = forms_for(&input.applicants)
            .into_iter()
            .map(|(form, count)| FormCount { form, count })
            .collect();
        let mut tx = self.db.pool().begin().await?;
        lock_half_day(&mut tx, input.slot).await?;
        if let Err(reason) = self.recheck_on(&mut tx, today, input.slot, &req).await? {
            tx.rollback().await?;
            return Err(self.taken(now, &req, reason).await);
        }
        let number = next_reception_number(&mut tx).await?;
        let whole = applicants >= self.rules.whole_half_day_applicants;
        let details = serde_json::json!({
            "going_out_difficulty": input.going_out_difficulty,
            "wished": input.wished,
            "parking": input.parking,
            "care_notes": input.care_notes,
            "other": input.other,
        });
        // A call's own number identifies the caller better than the number they gave.
        let call_e164 = match input.call_id {
            Some(id) => sqlx::query("SELECT caller_e164 FROM calls WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get::<Option<String>, _>(0))
                .transpose()?
                .flatten(),
            None => None,
        };
        let stamp = to_db_time(now);
        let id: i64 = sqlx::query(
            "INSERT INTO bookings (reception_number, kind, status, visit_date, half_day, position, whole_half_day, \
             booked_at, booked_by_user_id, updated_at, call_id, applicant_count, town, town_known, lat, lng, \
             manual_travel_minutes, forms, guidance, caller_e164, contact_phone, address, caller_name, caller_relation, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24) \
             RETURNING id",
        )
        .bind(number)
        .bind(BookingKind::Home)
        .bind(BookingStatus::Booked)
        .bind(input.slot.date.to_string())
        .bind(input.slot.half_day)
        .bind(i64::from(input.slot.position))
        .bind(i64::from(whole))
        .bind(&stamp)
        .bind(actor.user_id)
        .bind(input.call_id)
        .bind(i64::from(applicants))
        .bind(at.town.clone())
        .bind(i64::from(at.place.is_some()))
        .bind(at.place.as_ref().map(|p| p.lat))
        .bind(at.place.as_ref().map(|p| p.lng))
        .bind(input.manual_travel_minutes.map(i64::from))
        .bind(serde_json::to_string(&forms).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&input.guidance_given).unwrap_or_else(|_| "[]".into()))
        .bind(call_e164.unwrap_or(e164))
        .bind(input.contact_phone.trim())
        .bind(input.address.trim())
        .bind(input.caller_name.trim())
        .bind(input.caller_relation)
        .bind(details.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(slot_conflict)?
        .try_get(0)?;
        for (i, a) in input.applicants.iter().enumerate() {
            let details = serde_json::json!({
                "id_documents": a.id_documents,
                "id_documents_note": a.id_documents_note,
                "can_photo": a.can_photo,
                "can_write": a.can_write,
                "helper_present": a.helper_present,
                "condition_note": a.condition_note,
                "face_auth_only": a.face_auth_only,
                "insurance_use": a.insurance_use,
                "holds_juki_card": a.holds_juki_card,
                "notice_card_lost": a.notice_card_lost,
            });
            sqlx::query(
                "INSERT INTO booking_applicants (booking_id, idx, application_kind, name, name_kana, birth_date, details) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(i as i64 + 1)
            .bind(a.application_kind)
            .bind(a.name.trim())
            .bind(a.name_kana.trim())
            .bind(a.birth_date.to_string())
            .bind(details.to_string())
            .execute(&mut *tx)
            .await?;
        }
        history(
            &mut tx,
            id,
            now,
            actor,
            BookingChange::Created,
            None,
            Some(input.slot),
            "",
        )
        .await?;
        if let Some(call) = input.call_id {
            link_call(&mut tx, call, actor, now).await?;
        }
        let entry = AuditEntry::new(AuditAction::BookingCreate)
            .target(AuditTarget::Booking, id)
            .detail(serde_json::json!({
                "reception_number": number,
                "slot": input.slot.to_string(),
                "applicants": applicants,
                "call_id": input.call_id,
            }));
        append_audit(&mut tx, now, actor, &entry).await?;
        let summary = summary_on(&mut tx, &self.rules, self.tz, id).await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// Moves a booking to another slot, re-checking every rule there; history kept.
    pub async fn reschedule(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        id: i64,
        to: SlotRef,
        reason: &str,
    ) -> Result<BookingSummary, BookingError> {
        let result = self.reschedule_counted(actor, now, id, to, reason).await;
        self.conflicts.seen(1, result)
    }

    async fn reschedule_counted(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        id: i64,
        to: SlotRef,
        reason: &str,
    ) -> Result<BookingSummary, BookingError> {
        if reason.chars().count() > TEXT_MAX {
            return Err(BookingError::Invalid("理由が長すぎます。".into()));
        }
        let today = self.today(now);
        let mut tx = self.db.pool().begin().await?;
        let current = live_booking(&mut tx, id).await?;
        // Both half-days locked, in one order, so two moves in opposite directions cannot
        // deadlock on PostgreSQL.
        let mut keys = [current.slot, to];
        keys.sort();
        lock_half_day(&mut tx, keys[0]).await?;
        if (keys[0].date, keys[0].half_day) != (keys[1].date, keys[1].half_day) {
            lock_half_day(&mut tx, keys[1]).await?;
        }
        let req = Request {
            kind: current.kind,
            applicants: current.applicants,
            place: current.place.clone(),
            manual_minutes: current.manual_minutes,
            wish: Wish::default(),
            moving: Some(id),
        };
        if let Err(reason) = self.recheck_on(&mut tx, today, to, &req).await? {
            tx.rollback().await?;
            return Err(self.taken(now, &req, reason).await);
        }
        sqlx::query(
            "UPDATE bookings SET visit_date = $1, half_day = $2, position = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(to.date.to_string())
        .bind(to.half_day)
        .bind(i64::from(to.position))
        .bind(to_db_time(now))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(slot_conflict)?;
        history(
            &mut tx,
            id,
            now,
            actor,
            BookingChange::Rescheduled,
            Some(current.slot),
            Some(to),
            reason,
        )
        .await?;
        let entry = AuditEntry::new(AuditAction::BookingReschedule)
            .target(AuditTarget::Booking, id)
            .detail(serde_json::json!({ "from": current.slot.to_string(), "to": to.to_string() }));
        append_audit(&mut tx, now, actor, &entry).await?;
        let summary = summary_on(&mut tx, &self.rules, self.tz, id).await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// Cancels a booking: the slot is free again; the reception number stays with it.
    pub async fn cancel(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        id: i64,
        reason: &str,
    ) -> Result<BookingSummary, BookingError> {
        let result = self.cancel_counted(actor, now, id, reason).await;
        self.conflicts.seen(2, result)
    }

    async fn cancel_counted(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        id: i64,
        reason: &str,
    ) -> Result<BookingSummary, BookingError> {
        if reason.chars().count() > TEXT_MAX {
            return Err(BookingError::Invalid("理由が長すぎます。".into()));
        }
        let mut tx = self.db.pool().begin().await?;
        let current = live_booking(&mut tx, id).await?;
        lock_half_day(&mut tx, current.slot).await?;
        sqlx::query(
            "UPDATE bookings SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4",
        )
        .bind(BookingStatus::Cancelled)
        .bind(to_db_time(now))
        .bind(id)
        .bind(BookingStatus::Booked)
        .execute(&mut *tx)
        .await?;
        history(
            &mut tx,
            id,
            now,
            actor,
            BookingChange::Cancelled,
            Some(current.slot),
            None,
            reason,
        )
        .await?;
        let entry = AuditEntry::new(AuditAction::BookingCancel)
            .target(AuditTarget::Booking, id)
            .detail(serde_json::json!({ "slot": current.slot.to_string() }));
        append_audit(&mut tx, now, actor, &entry).await?;
        let summary = summary_on(&mut tx, &self.rules, self.tz, id).await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// Every booking, by reception number then id (item 11; no personal data).
    pub async fn list(&self) -> Result<Vec<BookingSummary>, BookingError> {
        let rows = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM bookings b LEFT JOIN facility_requests f ON f.id = b.facility_request_id \
             LEFT JOIN visit_days v ON v.visit_date = b.visit_date \
             ORDER BY b.reception_number IS NULL, b.reception_number, b.id"
        ))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| summary_of(r, &self.rules, self.tz))
            .collect()
    }

    /// Live bookings of a caller's number, for the screen pop (R-LINE-4): date, slot, count.
    pub async fn for_caller(&self, e164: &str) -> Result<Vec<BookingSummary>, BookingError> {
        let rows = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM bookings b LEFT JOIN facility_requests f ON f.id = b.facility_request_id \
             LEFT JOIN visit_days v ON v.visit_date = b.visit_date \
             WHERE b.caller_e164 = $1 ORDER BY b.id DESC LIMIT 20"
        ))
        .bind(e164)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| summary_of(r, &self.rules, self.tz))
            .collect()
    }

    /// The database.
    pub(super) fn db(&self) -> &Db {
        &self.db
    }

    /// The city's time zone.
    pub fn tz(&self) -> chrono_tz::Tz {
        self.tz
    }

    /// A booking's summary inside a transaction.
    pub(super) async fn summary(
        &self,
        conn: &mut AnyConnection,
        id: i64,
    ) -> Result<BookingSummary, BookingError> {
        summary_on(conn, &self.rules, self.tz, id).await
    }

    /// Runs the slot rules on the locked half-day.
    pub(super) async fn recheck_on(
        &self,
        conn: &mut AnyConnection,
        today: NaiveDate,
        slot: SlotRef,
        req: &Request,
    ) -> Result<Result<u32, String>, BookingError> {
        let days = load_days(conn, slot.date, Some(slot.date)).await?;
        let Some(day) = days.into_iter().next() else {
            return Ok(Err(format!(
                "{}は訪問日ではありません。",
                slots::ja_date(slot.date)
            )));
        };
        Ok(
            slots::check(&self.rules, self.model.as_ref(), today, &day, slot, req)
                .map_err(|r| r.say()),
        )
    }

    async fn taken(&self, now: DateTime<Utc>, req: &Request, reason: String) -> BookingError {
        let alternatives = match self.search(now, req).await {
            Ok(s) => s.offers.into_iter().take(5).collect(),
            Err(e) => return e,
        };
        BookingError::SlotTaken(SlotTaken {
            reason: format!("この枠はたった今ふさがりました。{reason}"),
            alternatives,
        })
    }
}

/// Inserts a facility visit or a pre-meeting (no slip items).
#[allow(clippy::too_many_arguments)]
pub(super) async fn insert_plain(
    conn: &mut AnyConnection,
    number: Option<i64>,
    kind: BookingKind,
    slot: SlotRef,
    applicants: u32,
    town: Option<String>,
    facility_request: Option<i64>,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<i64, BookingError> {
    let stamp = to_db_time(now);
    let row = sqlx::query(
        "INSERT INTO bookings (reception_number, kind, status, visit_date, half_day, position, whole_half_day, \
         booked_at, booked_by_user_id, updated_at, facility_request_id, applicant_count, town, town_known) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $7, $9, $10, $11, 0) RETURNING id",
    )
    .bind(number)
    .bind(kind)
    .bind(BookingStatus::Booked)
    .bind(slot.date.to_string())
    .bind(slot.half_day)
    .bind(i64::from(slot.position))
    .bind(&stamp)
    .bind(actor.user_id)
    .bind(facility_request)
    .bind(i64::from(applicants))
    .bind(town)
    .fetch_one(conn)
    .await
    .map_err(slot_conflict)?;
    Ok(row.try_get(0)?)
}

/// A unique-index violation on the slot is someone else's booking landing first.
fn slot_conflict(e: sqlx::Error) -> BookingError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => BookingError::Conflict(
            "この枠はたった今ふさがりました。別の枠を選んでください。".into(),
        ),
        _ => BookingError::Store(e),
    }
}

/// Bumps the half-day's lock row: the transaction's first write (see the module doc).
pub(super) async fn lock_half_day(
    conn: &mut AnyConnection,
    slot: SlotRef,
) -> Result<(), BookingError> {
    sqlx::query(
        "INSERT INTO half_day_locks (visit_date, half_day, version) VALUES ($1, $2, 1) \
         ON CONFLICT (visit_date, half_day) DO UPDATE SET version = half_day_locks.version + 1",
    )
    .bind(slot.date.to_string())
    .bind(slot.half_day)
    .execute(conn)
    .await?;
    Ok(())
}

/// The next 受付番号, inside the caller's transaction.
pub(super) async fn next_reception_number(conn: &mut AnyConnection) -> Result<i64, BookingError> {
    let row = sqlx::query(
        "UPDATE sequences SET value = value + 1 WHERE name = 'reception_number' RETURNING value",
    )
    .fetch_one(conn)
    .await?;
    Ok(row.try_get(0)?)
}

/// A call's outcome becomes `booking` when the booking was taken on it (R-LINE-3); as for
/// any outcome, only the operator who answered the call or a manager may set it.
async fn link_call(
    conn: &mut AnyConnection,
    call_id: i64,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Result<(), BookingError> {
    let row = sqlx::query(
        "SELECT answered_by_username, ended_at FROM calls WHERE id = $1 AND answered_at IS NOT NULL",
    )
    .bind(call_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Err(BookingError::Invalid(
            "指定の通話が見つからないか、応答していない通話です。".into(),
        ));
    };
    let answered_by: Option<String> = row.try_get(0)?;
    let ended_at = row
        .try_get::<Option<String>, _>(1)?
        .and_then(|s| from_db_time(&s));
    if actor.role != Some(Role::Manager) && answered_by.as_deref() != Some(actor.username.as_str())
    {
        return Err(BookingError::Invalid(
            "この通話に応答したオペレーターか管理者だけが、通話に予約を結び付けられます。".into(),
        ));
    }
    sqlx::query(
        "UPDATE calls SET outcome = $1, outcome_by_user_id = $2, outcome_at = $3, \
         wrapup_ms = COALESCE(wrapup_ms, $4) WHERE id = $5",
    )
    .bind(Outcome::Booking)
    .bind(actor.user_id)
    .bind(to_db_time(at))
    // The wrap-up ends with the first save after the call (as for any outcome).
    .bind(ended_at.map(|e| (at - e).num_milliseconds().max(0)))
    .bind(call_id)
    .execute(&mut *conn)
    .await?;
    let entry = AuditEntry::new(AuditAction::CallOutcome)
        .target(AuditTarget::Call, call_id)
        .detail(serde_json::json!({ "outcome": Outcome::Booking }));
    append_audit(conn, at, actor, &entry).await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn history(
    conn: &mut AnyConnection,
    id: i64,
    at: DateTime<Utc>,
    actor: &Actor,
    change: BookingChange,
    from: Option<SlotRef>,
    to: Option<SlotRef>,
    reason: &str,
) -> Result<(), BookingError> {
    sqlx::query(
        "INSERT INTO booking_history (booking_id, at, by_user_id, change, from_slot, to_slot, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(to_db_time(at))
    .bind(actor.user_id)
    .bind(change)
    .bind(from.map(|s| s.to_string()))
    .bind(to.map(|s| s.to_string()))
    .bind(reason.trim())
    .execute(conn)
    .await?;
    Ok(())
}

/// What a move needs to know of a live booking.
struct Live {
    slot: SlotRef,
    kind: BookingKind,
    applicants: u32,
    place: Option<Place>,
    manual_minutes: Option<u32>,
}

async fn live_booking(conn: &mut AnyConnection, id: i64) -> Result<Live, BookingError> {
    let row = sqlx::query(
        "SELECT visit_date, half_day, position, kind, applicant_count, lat, lng, manual_travel_minutes, status, town \
         FROM bookings WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(BookingError::NotFound("booking"))?;
    let status: BookingStatus = row.try_get("status")?;
    if status != BookingStatus::Booked {
        return Err(BookingError::Conflict(
            "この予約は取り消し済みです。".into(),
        ));
    }
    let occ = occupant_of(&row, id)?;
    Ok(Live {
        slot: SlotRef {
            date: parse_date(&row.try_get::<String, _>("visit_date")?)?,
            half_day: row.try_get("half_day")?,
            position: occ.position,
        },
        kind: occ.kind,
        applicants: occ.applicants,
        place: occ.place,
        manual_minutes: occ.manual_minutes,
    })
}

fn parse_date(s: &str) -> Result<NaiveDate, BookingError> {
    s.parse()
        .map_err(|_| BookingError::Invalid(format!("stored date '{s}' is not a date")))
}

fn occupant_of(row: &sqlx::any::AnyRow, id: i64) -> Result<Occupant, BookingError> {
    let lat: Option<f64> = row.try_get("lat")?;
    let lng: Option<f64> = row.try_get("lng")?;
    let applicants: i64 = row.try_get("applicant_count")?;
    let kind: BookingKind = row.try_get("kind")?;
    let position: i64 = row.try_get("position")?;
    let whole = match row.try_get::<Option<i64>, _>("whole_half_day") {
        Ok(w) => w.unwrap_or(0) == 1,
        Err(_) => false,
    };
    Ok(Occupant {
        booking_id: id,
        position: u8::try_from(position).unwrap_or(u8::MAX),
        kind,
        applicants: u32::try_from(applicants).unwrap_or(0),
        whole: whole || kind != BookingKind::Home,
        place: match (lat, lng) {
            (Some(lat), Some(lng)) => Some(Place {
                town: row.try_get("town")?,
                lat,
                lng,
            }),
            _ => None,
        },
        manual_minutes: row
            .try_get::<Option<i64>, _>("manual_travel_minutes")?
            .and_then(|m| u32::try_from(m).ok()),
    })
}

/// Visit days from `from` (to `to`, when given) with their live bookings.
async fn load_days(
    conn: &mut AnyConnection,
    from: NaiveDate,
    to: Option<NaiveDate>,
) -> Result<Vec<DayState>, BookingError> {
    let to = to.map_or_else(|| "9999-12-31".to_string(), |d| d.to_string());
    let days = sqlx::query(
        "SELECT visit_date, kind, pm_extra_open FROM visit_days WHERE visit_date >= $1 AND visit_date <= $2 ORDER BY visit_date",
    )
    .bind(from.to_string())
    .bind(&to)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(days.len());
    for r in &days {
        let kind: VisitDayKind = r.try_get("kind")?;
        let extra: i64 = r.try_get("pm_extra_open")?;
        out.push(DayState::new(
            parse_date(&r.try_get::<String, _>("visit_date")?)?,
            kind,
            extra == 1,
        ));
    }
    let rows = sqlx::query(
        "SELECT id, visit_date, half_day, position, kind, applicant_count, whole_half_day, lat, lng, town, manual_travel_minutes \
         FROM bookings WHERE status = $1 AND visit_date >= $2 AND visit_date <= $3",
    )
    .bind(BookingStatus::Booked)
    .bind(from.to_string())
    .bind(&to)
    .fetch_all(&mut *conn)
    .await?;
    for r in &rows {
        let date = parse_date(&r.try_get::<String, _>("visit_date")?)?;
        let h: HalfDay = r.try_get("half_day")?;
        let occ = occupant_of(r, r.try_get("id")?)?;
        if let Ok(i) = out.binary_search_by_key(&date, |d| d.date) {
            out[i].push(h, occ);
        }
    }
    Ok(out)
}

fn day_of(stamp: &str, tz: chrono_tz::Tz) -> Option<NaiveDate> {
    from_db_time(stamp).map(|t| t.with_timezone(&tz).date_naive())
}

fn summary_of(
    r: &sqlx::any::AnyRow,
    rules: &BookingRules,
    tz: chrono_tz::Tz,
) -> Result<BookingSummary, BookingError> {
    let slot = SlotRef {
        date: parse_date(&r.try_get::<String, _>("visit_date")?)?,
        half_day: r.try_get("half_day")?,
        position: u8::try_from(r.try_get::<i64, _>("position")?).unwrap_or(0),
    };
    let kind: BookingKind = r.try_get("kind")?;
    let day_kind: Option<VisitDayKind> = r.try_get("day_kind")?;
    let day_kind = day_kind.unwrap_or(match kind {
        BookingKind::Home => VisitDayKind::Home,
        _ => VisitDayKind::Facility,
    });
    let opt_day = |col: &str| -> Result<Option<NaiveDate>, BookingError> {
        Ok(r.try_get::<Option<String>, _>(col)?
            .and_then(|s| day_of(&s, tz)))
    };
    Ok(BookingSummary {
        id: r.try_get("id")?,
        reception_number: r.try_get("reception_number")?,
        kind,
        status: r.try_get("status")?,
        booked_on: day_of(&r.try_get::<String, _>("booked_at")?, tz).unwrap_or(slot.date),
        window: slots::window(rules, day_kind, slot),
        slot,
        applicants: r.try_get("applicant_count")?,
        town: r.try_get("town")?,
        facility_request_id: r.try_get("facility_request_id")?,
        pre_meeting_date: r
            .try_get::<Option<String>, _>("pre_meeting_date")?
            .and_then(|s| s.parse().ok()),
        forms: serde_json::from_str(&r.try_get::<String, _>("forms")?).unwrap_or_default(),
        shared_on: opt_day("shared_at")?,
        visit_done_on: opt_day("visit_done_at")?,
        purged_on: opt_day("purged_at")?,
    })
}

async fn summary_on(
    conn: &mut AnyConnection,
    rules: &BookingRules,
    tz: chrono_tz::Tz,
    id: i64,
) -> Result<BookingSummary, BookingError> {
    let row = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM bookings b LEFT JOIN facility_requests f ON f.id = b.facility_request_id \
         LEFT JOIN visit_days v ON v.visit_date = b.visit_date WHERE b.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(BookingError::NotFound("booking"))?;
    summary_of(&row, rules, tz)
}

/// National display of a stored E.164 contact number.
pub fn show_number(e164: &str) -> String {
    display_national(e164)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guidance_and_forms_follow_the_applicants() {
        // R-BOOK-4: a renewal and a loss in one household get a, b and c.
        let g = guidance_for(&[ApplicationKind::Renewal, ApplicationKind::Loss]);
        assert!(g.contains(&Guidance::Prepare));
        assert!(g.contains(&Guidance::RenewalOldCard));
        assert!(g.contains(&Guidance::LossPolice));
        assert_eq!(
            guidance_for(&[ApplicationKind::New]),
            vec![Guidance::Prepare]
        );
        assert!(!guidance_for(&[ApplicationKind::Damage]).contains(&Guidance::LossPolice));
        // R-PREP-5.
        let a = ApplicantInput {
            name: "小樽 花子".into(),
            name_kana: String::new(),
            birth_date: "1940-04-01".parse().unwrap(),
            application_kind: ApplicationKind::Loss,
            id_documents: vec![IdDocument::InsuranceCertificate],
            id_documents_note: String::new(),
            can_photo: true,
            can_write: false,
            helper_present: false,
            condition_note: String::new(),
            face_auth_only: true,
            insurance_use: true,
            holds_juki_card: false,
            notice_card_lost: false,
        };
        let forms = forms_for(&[
            a.clone(),
            ApplicantInput {
                application_kind: ApplicationKind::New,
                face_auth_only: false,
                insurance_use: false,
                ..a
            },
        ]);
        assert_eq!(
            forms,
            vec![
                (FormKind::IssueApplication, 2),
                (FormKind::PinSetting, 1),
                (FormKind::PhotoCertificate, 2),
                (FormKind::InsuranceConsent, 1),
                (FormKind::LossReport, 1),
            ]
        );
    }

    #[test]
    fn age_counts_full_years() {
        let b: NaiveDate = "1950-07-02".parse().unwrap();
        assert_eq!(age_on(b, "2026-07-01".parse().unwrap()), 75);
        assert_eq!(age_on(b, "2026-07-02".parse().unwrap()), 76);
    }
}
