//! Addresses and travel (issue 14 item 3, R-BOOK-3 a, R-SLOT-4): what the system decided
//! about an address and why, the travel minutes between two, and the manager's corrections.
//!
//! Queries carry addresses (personal data): they are never logged (request spans hold the
//! path only) and nothing here writes them to the log.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::booking::address::AddressLookup;
use crate::booking::places::{OverrideView, TravelAnswer};

use super::access::Staff;
use super::{ApiError, Done, JsonBody, QueryParams};

/// `?q=` of the lookup.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    #[serde(default)]
    q: String,
}

/// `GET /api/addresses/lookup?q=…`: the 町丁目 an address matches, or why it does not.
pub async fn lookup(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<LookupQuery>,
) -> Result<Json<AddressLookup>, ApiError> {
    Ok(Json(state.places.lookup(&query.q)?))
}

/// `?from=…&to=…` of the travel estimate (each an address or a town).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TravelQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// `GET /api/travel?from=…&to=…`: both lookups, the minutes, the distance and how.
pub async fn travel(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<TravelQuery>,
) -> Result<Json<TravelAnswer>, ApiError> {
    Ok(Json(state.places.travel_between(&query.from, &query.to)?))
}

/// The manager's corrections.
#[derive(Serialize)]
pub struct OverrideList {
    overrides: Vec<OverrideView>,
}

/// `GET /api/travel/overrides`: every correction with the model's minutes beside it.
pub async fn list_overrides(State(state): State<AppState>) -> Json<OverrideList> {
    Json(OverrideList {
        overrides: state.places.overrides(),
    })
}

/// The body of `PUT /api/travel/overrides`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetOverride {
    from_town: String,
    to_town: String,
    minutes: u32,
}

/// `PUT /api/travel/overrides`: sets the minutes between two 町丁目 (either order).
pub async fn set_override(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    JsonBody(req): JsonBody<SetOverride>,
) -> Result<Json<OverrideView>, ApiError> {
    let view = state
        .places
        .set_override(
            &state.db,
            &actor,
            &req.from_town,
            &req.to_town,
            req.minutes,
            state.clock.now(),
        )
        .await?;
    Ok(Json(view))
}

/// `?from_town=…&to_town=…` of the removal.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverridePair {
    #[serde(default)]
    from_town: String,
    #[serde(default)]
    to_town: String,
}

/// `DELETE /api/travel/overrides?from_town=…&to_town=…`: the model's estimate applies again.
pub async fn delete_override(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    QueryParams(pair): QueryParams<OverridePair>,
) -> Result<Json<Done>, ApiError> {
    state
        .places
        .delete_override(
            &state.db,
            &actor,
            &pair.from_town,
            &pair.to_town,
            state.clock.now(),
        )
        .await?;
    Ok(Json(Done::OK))
}
