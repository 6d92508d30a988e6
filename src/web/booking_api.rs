//! Slots, home bookings, the bookings export and the reception list (issue 14 items 4, 5, 8,
//! 11; R-SLOT, R-BOOK, R-PREP-5). Translation only: the rules live in `booking`.

use super::download;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::booking::bookings::{
    guidance_for, BookingList, BookingSummary, HomeBookingInput, Located,
};
use crate::booking::facility::{FacilityRequest, FacilityRequestInput, FacilityUpdate};
use crate::booking::slots::{Request, Search, SlotRef, Wish};
use crate::booking::{ApplicationKind, BookingKind, Guidance};

use super::access::Staff;
use super::{parse_id, ApiError, JsonBody, QueryParams};

/// Where an address is, as the booking rules need it; refuses an address outside the city.
pub fn locate(state: &AppState, address: &str) -> Result<(Located, serde_json::Value), ApiError> {
    let lookup = state.places.lookup(address)?;
    if lookup.is_outside() {
        return Err(ApiError::invalid(lookup.reason.clone()));
    }
    let at = Located {
        town: lookup.town.as_ref().map(|t| t.town.clone()),
        place: lookup.place(),
    };
    Ok((at, serde_json::to_value(&lookup).unwrap_or_default()))
}

/// `POST /api/slots/search` body (the address is personal data: it travels in the body, not
/// the URL).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotQuery {
    /// Home (default) or facility.
    #[serde(default)]
    kind: Option<BookingKind>,
    /// The address to visit.
    address: String,
    /// Applicants of the household or facility.
    applicants: u32,
    /// The operator's travel estimate when the town is not in the list.
    #[serde(default)]
    manual_travel_minutes: Option<u32>,
    /// Wished period start.
    #[serde(default)]
    from: Option<NaiveDate>,
    /// Wished period end.
    #[serde(default)]
    to: Option<NaiveDate>,
    /// Wished weekdays, e.g. ["Mon","Wed"].
    #[serde(default)]
    weekdays: Vec<Weekday>,
    /// Wished half-day.
    #[serde(default)]
    half_day: Option<crate::booking::HalfDay>,
    /// A booking being moved (its own slot does not count against it).
    #[serde(default)]
    moving: Option<i64>,
}

/// The answer of a slot search: how the address was read, then the ranked slots.
#[derive(Serialize)]
pub struct SlotAnswer {
    address: serde_json::Value,
    #[serde(flatten)]
    search: Search,
}

/// `POST /api/slots/search`: the feasible slots, best first, or why none fits (R-SLOT-5).
pub async fn search_slots(
    State(state): State<AppState>,
    Staff { .. }: Staff,
    JsonBody(q): JsonBody<SlotQuery>,
) -> Result<Json<SlotAnswer>, ApiError> {
    if q.applicants == 0 || q.applicants > 200 {
        return Err(ApiError::invalid("申請者数は1〜200で入力してください。"));
    }
    let (at, address) = locate(&state, &q.address)?;
    if at.place.is_none() && q.manual_travel_minutes.is_none() {
        return Err(ApiError::invalid(
            "町名が一覧にない住所です。ほかの訪問先との移動時間の見込み（分）を入力してください。",
        ));
    }
    let req = Request {
        kind: q.kind.unwrap_or(BookingKind::Home),
        applicants: q.applicants,
        place: at.place,
        manual_minutes: q.manual_travel_minutes,
        wish: Wish {
            from: q.from,
            to: q.to,
            weekdays: q.weekdays,
            half_day: q.half_day,
        },
        moving: q.moving,
    };
    if req.kind == BookingKind::PreMeeting {
        return Err(ApiError::invalid("事前打合せは施設申込から登録します。"));
    }
    let search = state.bookings.search(state.clock.now(), &req).await?;
    Ok(Json(SlotAnswer { address, search }))
}

/// `POST /api/bookings`: books a home visit (R-BOOK-3..6).
pub async fn create_booking(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    JsonBody(input): JsonBody<HomeBookingInput>,
) -> Result<(StatusCode, Json<BookingSummary>), ApiError> {
    let (at, _) = locate(&state, &input.address)?;
    let booked = state
        .bookings
        .create_home(&actor, state.clock.now(), &input, &at)
        .await?;
    // The call it was taken on has its outcome now.
    if let Some(call) = input.call_id {
        state.hub.outcome_saved(call).await;
    }
    Ok((StatusCode::CREATED, Json(booked)))
}

/// Body of `POST /api/bookings/guidance`: the application kinds of a household's applicants.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuidanceQuery {
    /// One per applicant, in any order; repeats allowed.
    application_kinds: Vec<ApplicationKind>,
}

/// The guidance that applies, in display order.
#[derive(Serialize)]
pub struct GuidanceAnswer {
    guidance: Vec<Guidance>,
}

/// `POST /api/bookings/guidance`: which guidance items (R-BOOK-4) the operator must give for
/// these application kinds — the same rule the booking write checks, so the console's
/// checklist never disagrees with the server.
pub async fn booking_guidance(
    Staff { .. }: Staff,
    JsonBody(q): JsonBody<GuidanceQuery>,
) -> Json<GuidanceAnswer> {
    Json(GuidanceAnswer {
        guidance: guidance_for(&q.application_kinds),
    })
}

/// Body of a reschedule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    slot: SlotRef,
    #[serde(default)]
    reason: String,
}

/// `POST /api/bookings/{id}/reschedule`.
pub async fn reschedule_booking(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<MoveBody>,
) -> Result<Json<BookingSummary>, ApiError> {
    let id = parse_id(&id)?;
    let moved = state
        .bookings
        .reschedule(&actor, state.clock.now(), id, body.slot, &body.reason)
        .await?;
    Ok(Json(moved))
}

/// Body of a cancel.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    #[serde(default)]
    reason: String,
}

/// `POST /api/bookings/{id}/cancel`.
pub async fn cancel_booking(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CancelBody>,
) -> Result<Json<BookingSummary>, ApiError> {
    let id = parse_id(&id)?;
    let done = state
        .bookings
        .cancel(&actor, state.clock.now(), id, &body.reason)
        .await?;
    Ok(Json(done))
}

/// `?format=` of the lists.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FormatQuery {
    #[serde(default)]
    format: Option<String>,
}

/// `GET /api/bookings?format=json|csv`: every booking, per visit (item 11; no personal data).
pub async fn list_bookings(
    State(state): State<AppState>,
    Staff { .. }: Staff,
    QueryParams(q): QueryParams<FormatQuery>,
) -> Result<Response, ApiError> {
    let list = state.bookings.list().await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(BookingList { bookings: list }).into_response()),
        "csv" => Ok(csv_response(
            "bookings.csv",
            &crate::booking::reception::bookings_csv(&list),
        )),
        other => Err(ApiError::invalid(format!(
            "出力形式「{other}」は指定できません（json、csv のいずれか）。"
        ))),
    }
}

/// `GET /api/reception-list?format=json|csv|xlsx`: the 受付一覧表 (R-BOOK-6).
pub async fn reception_list(
    State(state): State<AppState>,
    Staff { .. }: Staff,
    QueryParams(q): QueryParams<FormatQuery>,
) -> Result<Response, ApiError> {
    use crate::booking::reception;
    let rows = reception::rows(&state.bookings.list().await?);
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(ReceptionList { rows }).into_response()),
        "csv" => Ok(csv_response(
            "reception-list.csv",
            &reception::reception_csv(&rows),
        )),
        "xlsx" => {
            let bytes = reception::reception_xlsx(&rows).map_err(ApiError::internal)?;
            Ok(download::attachment(
                bytes,
                download::XLSX,
                "reception-list.xlsx",
            ))
        }
        other => Err(ApiError::invalid(format!(
            "出力形式「{other}」は指定できません（json、csv、xlsx のいずれか）。"
        ))),
    }
}

fn csv_response(name: &'static str, body: &str) -> Response {
    download::attachment(body.to_string(), download::CSV, name)
}

/// `POST /api/facility-requests`: the operator records a facility's request (R-BOOK-5).
pub async fn create_facility_request(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    JsonBody(input): JsonBody<FacilityRequestInput>,
) -> Result<(StatusCode, Json<FacilityRequest>), ApiError> {
    let (at, _) = locate(&state, &input.address)?;
    let made = state
        .bookings
        .create_facility_request(&actor, state.clock.now(), &input, at.town)
        .await?;
    Ok((StatusCode::CREATED, Json(made)))
}

/// `GET /api/facility-requests`: the manager's callback tasks and agreed facilities.
pub async fn list_facility_requests(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
) -> Result<Json<FacilityRequestList>, ApiError> {
    let requests = state
        .bookings
        .read_facility_requests(&actor, state.clock.now())
        .await?;
    Ok(Json(FacilityRequestList { requests }))
}

/// Response of `GET /api/facility-requests`.
#[derive(Debug, Serialize)]
pub struct FacilityRequestList {
    /// Open tasks and agreed facilities.
    pub requests: Vec<FacilityRequest>,
}

/// Response of `GET /api/reception-list?format=json`.
#[derive(Debug, Serialize)]
pub struct ReceptionList {
    /// 受付一覧表 rows by reception number.
    pub rows: Vec<crate::booking::reception::ReceptionRow>,
}

/// Body of a facility visit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitBody {
    slot: SlotRef,
    #[serde(default)]
    applicants: Option<u32>,
}

/// `POST /api/facility-requests/{id}/visits`: books an agreed facility visit.
pub async fn schedule_facility_visit(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<VisitBody>,
) -> Result<(StatusCode, Json<BookingSummary>), ApiError> {
    let id = parse_id(&id)?;
    let made = state
        .bookings
        .schedule_facility_visit(&actor, state.clock.now(), id, body.slot, body.applicants)
        .await?;
    Ok((StatusCode::CREATED, Json(made)))
}

/// Body of a pre-meeting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreMeetingBody {
    date: NaiveDate,
    half_day: crate::booking::HalfDay,
}

/// `POST /api/facility-requests/{id}/pre-meeting` (R-CAL-3).
pub async fn set_pre_meeting(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PreMeetingBody>,
) -> Result<Json<FacilityRequest>, ApiError> {
    let id = parse_id(&id)?;
    let r = state
        .bookings
        .set_pre_meeting(&actor, state.clock.now(), id, body.date, body.half_day)
        .await?;
    Ok(Json(r))
}

/// `PATCH /api/facility-requests/{id}`: checklist (R-PREP-3), applicant list (R-PREP-4), close.
pub async fn update_facility_request(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<FacilityUpdate>,
) -> Result<Json<FacilityRequest>, ApiError> {
    let id = parse_id(&id)?;
    let r = state
        .bookings
        .update_facility_request(&actor, state.clock.now(), id, &body)
        .await?;
    Ok(Json(r))
}

/// `GET /api/capacity`: slots left per week and half-day, and the season's forecast.
pub async fn capacity(
    State(state): State<AppState>,
    Staff { .. }: Staff,
) -> Result<Json<crate::booking::capacity::Capacity>, ApiError> {
    let today = state.bookings.today(state.clock.now());
    Ok(Json(state.bookings.capacity(today).await?))
}
