//! HTTP: the route table with its access rules, JSON errors, and the embedded UI.
//!
//! `web/` only translates HTTP into calls on the domains (`privacy`, later `calls`,
//! `booking` …); the rules live in those domains.

pub mod access;
mod account_api;
mod address_api;
mod audit_export;
mod booking_api;
mod calendar_api;
mod calls_api;
pub mod client_addr;
mod console_api;
mod day_stats_api;
mod download;
mod error;
mod labels;
mod messages;
mod metrics_api;
mod privacy_api;
mod reports_api;
mod serve;
mod sharing_api;
mod ui;

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{DefaultBodyLimit, Request};
use axum::handler::Handler;
use axum::http::{header, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::privacy::Role;

pub use access::{Access, CurrentUser};
pub use error::{ApiError, JsonBody, QueryParams};
pub use labels::label_table;
pub use messages::{has_japanese, ErrorCode};
pub use reports_api::report_settings;
pub use serve::{serve, HEADER_READ_TIMEOUT, REQUEST_TIMEOUT};

/// The answer of an action that has nothing else to say.
#[derive(serde::Serialize)]
pub struct Done {
    ok: bool,
}

impl Done {
    /// Done.
    pub const OK: Done = Done { ok: true };
}

/// A record id from the path; anything else is a 400.
fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request(format!("番号「{raw}」は正しい ID ではありません。")))
}

/// One API route: method, path, who may call it, and the handler.
pub struct ApiRoute {
    /// HTTP method.
    pub method: Method,
    /// axum path pattern, e.g. `/api/users/{id}/disable`.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    handler: MethodRouter<AppState>,
}

/// Builds a table entry; the only way a handler becomes reachable.
fn route<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> ApiRoute
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
    ApiRoute {
        method,
        path,
        access,
        handler: on(filter, handler),
    }
}

const ADMIN: Access = Access::Roles(&[Role::Admin]);
const ADMIN_MANAGER: Access = Access::Roles(&[Role::Admin, Role::Manager]);
const STAFF_NOT_ADMIN: Access = Access::Roles(&[Role::Operator, Role::Manager, Role::City]);
const MANAGER: Access = Access::Roles(&[Role::Manager]);
const OPERATOR_MANAGER: Access = Access::Roles(&[Role::Operator, Role::Manager]);
const OPERATOR_MANAGER_ADMIN: Access = Access::Roles(&[Role::Operator, Role::Manager, Role::Admin]);
const CITY_MANAGER: Access = Access::Roles(&[Role::City, Role::Manager]);
/// Who reads the reports for the city: the contractor's manager and admin, and the city.
// The city role sees its week's visits and nothing else (issue 15 item 4): the reports reach
// the city as the documents the contractor sends.
const REPORT_READERS: Access = Access::Roles(&[Role::Manager, Role::Admin]);

/// Every API route with its access rule. Add new routes here and nowhere else.
pub fn api_routes() -> Vec<ApiRoute> {
    use account_api as a;
    vec![
        route(
            Method::GET,
            "/healthz",
            Access::Public,
            metrics_api::healthz,
        ),
        route(Method::GET, "/readyz", Access::Public, metrics_api::readyz),
        // Guarded by the `[metrics]` allow-list and token in the handler, not by a session.
        route(
            Method::GET,
            "/metrics",
            Access::Public,
            metrics_api::metrics,
        ),
        route(Method::POST, "/api/login", Access::Public, a::login),
        route(Method::POST, "/api/logout", Access::STAFF, a::logout),
        route(Method::GET, "/api/me", Access::STAFF, a::me),
        route(Method::GET, "/api/labels", Access::STAFF, labels::labels),
        route(Method::GET, "/api/limits", Access::STAFF, a::limits),
        route(
            Method::POST,
            "/api/users/{id}/unlock",
            ADMIN,
            a::unlock_user,
        ),
        route(
            Method::POST,
            "/api/me/password",
            Access::STAFF,
            a::change_own_password,
        ),
        route(Method::GET, "/api/users", ADMIN_MANAGER, a::list_users),
        route(Method::POST, "/api/users", ADMIN, a::create_user),
        route(
            Method::POST,
            "/api/users/{id}/disable",
            ADMIN,
            a::disable_user,
        ),
        route(
            Method::POST,
            "/api/users/{id}/password",
            ADMIN,
            a::reset_password,
        ),
        route(Method::GET, "/api/audit", ADMIN_MANAGER, a::audit_log),
        route(
            Method::GET,
            "/api/audit/export",
            ADMIN_MANAGER,
            audit_export::export,
        ),
        route(
            Method::GET,
            "/api/calls",
            OPERATOR_MANAGER,
            calls_api::list_calls,
        ),
        route(
            Method::GET,
            "/api/calls/{id}",
            OPERATOR_MANAGER,
            calls_api::get_call,
        ),
        route(
            Method::GET,
            "/api/sip/status",
            ADMIN_MANAGER,
            calls_api::sip_status,
        ),
        route(Method::GET, "/api/alarms", ADMIN_MANAGER, calls_api::alarms),
        route(
            Method::GET,
            "/api/calls/wrapups",
            OPERATOR_MANAGER,
            console_api::wrapups,
        ),
        route(
            Method::PATCH,
            "/api/calls/{id}",
            OPERATOR_MANAGER,
            console_api::set_outcome,
        ),
        route(
            Method::GET,
            "/api/callbacks",
            OPERATOR_MANAGER,
            console_api::callback_list,
        ),
        route(
            Method::POST,
            "/api/callbacks/{id}/close",
            OPERATOR_MANAGER,
            console_api::callback_close,
        ),
        route(
            Method::GET,
            "/api/stats/live",
            OPERATOR_MANAGER,
            console_api::stats_live,
        ),
        route(
            Method::GET,
            "/api/stats/day",
            MANAGER,
            day_stats_api::day_stats,
        ),
        route(
            Method::GET,
            "/api/talk-script",
            OPERATOR_MANAGER,
            console_api::talk_script,
        ),
        route(
            Method::GET,
            "/api/presence",
            ADMIN_MANAGER,
            console_api::presence,
        ),
        route(Method::GET, "/ws", OPERATOR_MANAGER, console_api::ws),
        route(
            Method::POST,
            "/api/slots/search",
            OPERATOR_MANAGER,
            booking_api::search_slots,
        ),
        route(
            Method::GET,
            "/api/bookings",
            OPERATOR_MANAGER,
            booking_api::list_bookings,
        ),
        route(
            Method::POST,
            "/api/bookings",
            OPERATOR_MANAGER,
            booking_api::create_booking,
        ),
        route(
            Method::POST,
            "/api/bookings/guidance",
            OPERATOR_MANAGER,
            booking_api::booking_guidance,
        ),
        route(
            Method::POST,
            "/api/bookings/{id}/reschedule",
            OPERATOR_MANAGER,
            booking_api::reschedule_booking,
        ),
        route(
            Method::POST,
            "/api/bookings/{id}/cancel",
            OPERATOR_MANAGER,
            booking_api::cancel_booking,
        ),
        route(
            Method::GET,
            "/api/reception-list",
            STAFF_NOT_ADMIN,
            booking_api::reception_list,
        ),
        route(
            Method::GET,
            "/api/capacity",
            OPERATOR_MANAGER,
            booking_api::capacity,
        ),
        route(
            Method::POST,
            "/api/facility-requests",
            OPERATOR_MANAGER,
            booking_api::create_facility_request,
        ),
        route(
            Method::GET,
            "/api/facility-requests",
            MANAGER,
            booking_api::list_facility_requests,
        ),
        route(
            Method::PATCH,
            "/api/facility-requests/{id}",
            MANAGER,
            booking_api::update_facility_request,
        ),
        route(
            Method::POST,
            "/api/facility-requests/{id}/visits",
            MANAGER,
            booking_api::schedule_facility_visit,
        ),
        route(
            Method::POST,
            "/api/facility-requests/{id}/pre-meeting",
            MANAGER,
            booking_api::set_pre_meeting,
        ),
        route(
            Method::GET,
            "/api/calendar",
            OPERATOR_MANAGER,
            calendar_api::get_calendar,
        ),
        route(
            Method::GET,
            "/api/calendar/export",
            OPERATOR_MANAGER,
            calendar_api::export,
        ),
        route(
            Method::POST,
            "/api/calendar/propose",
            ADMIN_MANAGER,
            calendar_api::propose,
        ),
        route(
            Method::POST,
            "/api/calendar/import",
            MANAGER,
            calendar_api::import,
        ),
        route(
            Method::POST,
            "/api/calendar/fix",
            MANAGER,
            calendar_api::fix,
        ),
        route(
            Method::PUT,
            "/api/calendar/days/{date}",
            MANAGER,
            calendar_api::put_day,
        ),
        route(
            Method::DELETE,
            "/api/calendar/days/{date}",
            MANAGER,
            calendar_api::delete_day,
        ),
        route(
            Method::GET,
            "/api/addresses/lookup",
            OPERATOR_MANAGER_ADMIN,
            address_api::lookup,
        ),
        route(
            Method::GET,
            "/api/travel",
            OPERATOR_MANAGER_ADMIN,
            address_api::travel,
        ),
        route(
            Method::GET,
            "/api/travel/overrides",
            OPERATOR_MANAGER_ADMIN,
            address_api::list_overrides,
        ),
        route(
            Method::PUT,
            "/api/travel/overrides",
            MANAGER,
            address_api::set_override,
        ),
        route(
            Method::DELETE,
            "/api/travel/overrides",
            MANAGER,
            address_api::delete_override,
        ),
        route(
            Method::GET,
            "/api/visits",
            CITY_MANAGER,
            privacy_api::visit_week,
        ),
        route(
            Method::POST,
            "/api/visits/{id}/done",
            CITY_MANAGER,
            privacy_api::visit_done,
        ),
        route(
            Method::GET,
            "/api/purge/preview",
            MANAGER,
            privacy_api::purge_preview,
        ),
        route(Method::POST, "/api/purge", MANAGER, privacy_api::purge),
        route(
            Method::GET,
            "/api/reports/handling",
            ADMIN_MANAGER,
            privacy_api::handling_report,
        ),
        route(
            Method::GET,
            "/api/shares/due",
            ADMIN_MANAGER,
            sharing_api::due,
        ),
        route(Method::GET, "/api/shares", ADMIN_MANAGER, sharing_api::list),
        route(Method::POST, "/api/shares", MANAGER, sharing_api::prepare),
        route(
            Method::GET,
            "/api/shares/recipients",
            ADMIN_MANAGER,
            sharing_api::recipients,
        ),
        route(
            Method::POST,
            "/api/shares/recipients",
            ADMIN,
            sharing_api::add_recipient,
        ),
        route(
            Method::DELETE,
            "/api/shares/recipients/{id}",
            ADMIN,
            sharing_api::remove_recipient,
        ),
        route(
            Method::GET,
            "/api/shares/{id}",
            ADMIN_MANAGER,
            sharing_api::get,
        ),
        route(
            Method::POST,
            "/api/shares/{id}/approve",
            ADMIN_MANAGER,
            sharing_api::approve,
        ),
        route(
            Method::POST,
            "/api/shares/{id}/send",
            ADMIN_MANAGER,
            sharing_api::send,
        ),
        route(
            Method::GET,
            "/api/shares/{id}/archive",
            ADMIN_MANAGER,
            sharing_api::archive,
        ),
        route(
            Method::GET,
            "/api/shares/{id}/password",
            ADMIN_MANAGER,
            sharing_api::password,
        ),
        route(
            Method::GET,
            "/api/reports/weekly-calls",
            REPORT_READERS,
            reports_api::weekly_calls,
        ),
        route(
            Method::POST,
            "/api/reports/weekly-calls/{week}/sent",
            MANAGER,
            reports_api::weekly_calls_sent,
        ),
        route(
            Method::GET,
            "/api/reports/completion",
            REPORT_READERS,
            reports_api::completion,
        ),
        route(
            Method::GET,
            "/api/reports/opinions",
            REPORT_READERS,
            reports_api::opinion_list,
        ),
        route(
            Method::PATCH,
            "/api/reports/opinions/{id}",
            MANAGER,
            reports_api::opinion_follow_up,
        ),
    ]
}

/// The route table without handlers, for tests and documentation.
pub fn route_table() -> Vec<(Method, &'static str, Access)> {
    api_routes()
        .into_iter()
        .map(|r| (r.method, r.path, r.access))
        .collect()
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    for r in api_routes() {
        let layer = middleware::from_fn_with_state((state.clone(), r.access), access::authorize);
        api = api.route(r.path, r.handler.route_layer(layer));
    }
    let api = api
        .fallback(|| async { ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(256 * 1024))
        .layer(middleware::from_fn(no_store));
    Router::new()
        .merge(ui::routes())
        .merge(api)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            client_addr::client_addr,
        ))
        .layer(middleware::from_fn(serve::request_timeout))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::Metrics::track_http,
        ))
        .layer(middleware::from_fn(messages::japanese_errors))
        .layer(middleware::from_fn(security_headers))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            static NEXT_ID: AtomicU64 = AtomicU64::new(1);
            // Path only: query strings may later carry search terms such as phone numbers.
            tracing::info_span!(
                "http",
                request_id = NEXT_ID.fetch_add(1, Ordering::Relaxed),
                method = %req.method(),
                path = %req.uri().path(),
            )
        }))
        .with_state(state)
}

async fn no_store(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    res
}
