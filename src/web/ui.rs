//! The browser UI, embedded in the binary: no build tool, no CDN.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::AppState;

const LOGIN_HTML: &str = include_str!("ui/login.html");
const APP_HTML: &str = include_str!("ui/app.html");
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("ui/style.css"),
    ),
    (
        "login.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/login.js"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/app.js"),
    ),
];

/// Static pages: they hold no data, so they need no session; the API behind them does.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Html(APP_HTML) }))
        .route("/login", get(|| async { Html(LOGIN_HTML) }))
        .route("/assets/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, mime, body)) => ([(header::CONTENT_TYPE, *mime)], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
