//! The weekly share to the city (issue 15 items 2 and 3; R-PREP-1, R-PREP-2): the due list,
//! the allow-list, preparation, approval, sending and the no-SMTP downloads. Translation
//! only: the rules live in `sharing`.

use super::download;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::sharing::{
    DueWeek, FacilityDue, PrepareInput, Prepared, Recipient, SecretKind, SendOutcome, ShareView,
};

use super::access::Staff;
use super::{parse_id, ApiError, Done, JsonBody};

/// Response of `GET /api/shares/due`.
#[derive(Serialize)]
pub struct DueList {
    /// Today (Asia/Tokyo), the date the states are judged on.
    today: chrono::NaiveDate,
    /// `smtp` or `download`: how this server sends.
    delivery: crate::sharing::SentVia,
    /// Every visit week with home visits, oldest first.
    weeks: Vec<DueWeek>,
    /// Every facility with visits: its applicant list, due the 7th day before the first.
    facilities: Vec<FacilityDue>,
}

/// `GET /api/shares/due`.
pub async fn due(
    State(state): State<AppState>,
    Staff { .. }: Staff,
) -> Result<Json<DueList>, ApiError> {
    let weeks = state.sharing.due().await?;
    let facilities = state.sharing.facility_due().await?;
    let delivery = if state.config.sharing.smtp_enabled() {
        crate::sharing::SentVia::Smtp
    } else {
        crate::sharing::SentVia::Download
    };
    Ok(Json(DueList {
        today: state.bookings.today(state.clock.now()),
        delivery,
        weeks,
        facilities,
    }))
}

/// Response of `GET /api/shares`.
#[derive(Serialize)]
pub struct ShareList {
    /// Every share, newest first.
    shares: Vec<ShareView>,
}

/// `GET /api/shares`.
pub async fn list(
    State(state): State<AppState>,
    Staff { .. }: Staff,
) -> Result<Json<ShareList>, ApiError> {
    Ok(Json(ShareList {
        shares: state.sharing.list().await?,
    }))
}

/// `GET /api/shares/{id}`: what the approver checks first.
pub async fn get(
    State(state): State<AppState>,
    Staff { .. }: Staff,
    Path(id): Path<String>,
) -> Result<Json<ShareView>, ApiError> {
    Ok(Json(state.sharing.get(parse_id(&id)?).await?))
}

/// `POST /api/shares`: prepares a week's share; the password is in this answer only.
pub async fn prepare(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    JsonBody(input): JsonBody<PrepareInput>,
) -> Result<(StatusCode, Json<Prepared>), ApiError> {
    let p = state.sharing.prepare(&actor, &input).await?;
    Ok((StatusCode::CREATED, Json(p)))
}

/// `POST /api/shares/{id}/approve`.
pub async fn approve(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
) -> Result<Json<ShareView>, ApiError> {
    Ok(Json(state.sharing.approve(&actor, parse_id(&id)?).await?))
}

/// `POST /api/shares/{id}/send`: mails it, or (no SMTP) marks it sent after the downloads.
pub async fn send(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
) -> Result<Json<SendOutcome>, ApiError> {
    Ok(Json(state.sharing.send(&actor, parse_id(&id)?).await?))
}

async fn secret(
    state: &AppState,
    staff: &Staff,
    id: &str,
    kind: SecretKind,
) -> Result<Response, ApiError> {
    let s = state
        .sharing
        .download(&staff.actor, parse_id(id)?, kind)
        .await?;
    let mime = match kind {
        SecretKind::Archive => "application/zip",
        SecretKind::Password => "text/plain; charset=utf-8",
    };
    Ok(download::attachment(s.bytes, mime, &s.name))
}

/// `GET /api/shares/{id}/archive` (no-SMTP path; preparer or approver).
pub async fn archive(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    secret(&state, &staff, &id, SecretKind::Archive).await
}

/// `GET /api/shares/{id}/password` (no-SMTP path; preparer or approver).
pub async fn password(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    secret(&state, &staff, &id, SecretKind::Password).await
}

/// Response of `GET /api/shares/recipients`.
#[derive(Serialize)]
pub struct RecipientList {
    /// The allow-list.
    recipients: Vec<Recipient>,
}

/// `GET /api/shares/recipients`.
pub async fn recipients(
    State(state): State<AppState>,
    Staff { .. }: Staff,
) -> Result<Json<RecipientList>, ApiError> {
    Ok(Json(RecipientList {
        recipients: state.sharing.recipients().await?,
    }))
}

/// Body of `POST /api/shares/recipients`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientBody {
    address: String,
    #[serde(default)]
    label: String,
}

/// `POST /api/shares/recipients` (admin).
pub async fn add_recipient(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    JsonBody(body): JsonBody<RecipientBody>,
) -> Result<(StatusCode, Json<Recipient>), ApiError> {
    let r = state
        .sharing
        .add_recipient(&actor, &body.address, &body.label)
        .await?;
    Ok((StatusCode::CREATED, Json(r)))
}

/// `DELETE /api/shares/recipients/{id}` (admin).
pub async fn remove_recipient(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
) -> Result<Json<Done>, ApiError> {
    state
        .sharing
        .remove_recipient(&actor, parse_id(&id)?)
        .await?;
    Ok(Json(Done::OK))
}
