//! The browser UI, embedded in the binary: no build tool, no CDN.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::AppState;

const LOGIN_HTML: &str = include_str!("ui/login.html");
const APP_HTML: &str = include_str!("ui/app.html");
macro_rules! asset {
    ($name:literal) => {
        ($name, include_str!(concat!("ui/", $name)))
    };
}

const ASSETS: &[(&str, &str)] = &[
    asset!("style.css"),
    asset!("login.js"),
    asset!("labels.js"),
    asset!("live.js"),
    asset!("operator.js"),
    asset!("manager.js"),
    asset!("app.js"),
];

fn mime_for(name: &str) -> &'static str {
    if name.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "text/javascript; charset=utf-8"
    }
}

/// Static pages: they hold no data, so they need no session; the API behind them does.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Html(APP_HTML) }))
        .route("/login", get(|| async { Html(LOGIN_HTML) }))
        .route("/assets/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _)| *name == file) {
        Some((name, body)) => ([(header::CONTENT_TYPE, mime_for(name))], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_a_page_loads_is_served() {
        for page in [LOGIN_HTML, APP_HTML] {
            for part in page.split("/assets/").skip(1) {
                let name = part.split('"').next().unwrap_or_default();
                let served = ASSETS.iter().any(|(n, _)| *n == name);
                assert!(served, "/assets/{name} is referenced but not served");
            }
        }
        assert_eq!(mime_for("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(mime_for("style.css"), "text/css; charset=utf-8");
    }
}
