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

/// Every file under `/assets/`. The scripts are ES modules: a page loads one entry module
/// (`app.js`, `login.js`) and each module imports what it uses by relative path.
const ASSETS: &[(&str, &str)] = &[
    asset!("style.css"),
    asset!("login.js"),
    asset!("app.js"),
    asset!("api.js"),
    asset!("dom.js"),
    asset!("labels.js"),
    asset!("limits.js"),
    asset!("clock.js"),
    asset!("format.js"),
    asset!("live.js"),
    asset!("shell.js"),
    asset!("operator.js"),
    asset!("manager.js"),
    asset!("booking.js"),
    asset!("reception.js"),
    asset!("accounts.js"),
    asset!("calendar.js"),
    asset!("visits.js"),
    asset!("handling.js"),
    asset!("sharing.js"),
    asset!("reports.js"),
    ("report.css", crate::reports::REPORT_CSS),
];

/// Module scripts must come as JavaScript or the browser refuses them.
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

    fn served(name: &str) -> bool {
        ASSETS.iter().any(|(n, _)| *n == name)
    }

    fn scripts() -> impl Iterator<Item = (&'static str, &'static str)> {
        ASSETS.iter().copied().filter(|(n, _)| n.ends_with(".js"))
    }

    #[test]
    fn every_asset_a_page_loads_is_served() {
        for page in [LOGIN_HTML, APP_HTML] {
            for part in page.split("/assets/").skip(1) {
                let name = part.split('"').next().unwrap_or_default();
                assert!(served(name), "/assets/{name} is referenced but not served");
            }
            // Classic scripts would run in page order with globals; the UI is modules only.
            for tag in page.split("<script").skip(1) {
                assert!(tag.starts_with(r#" type="module""#), "<script{tag}");
            }
        }
        assert_eq!(mime_for("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(mime_for("style.css"), "text/css; charset=utf-8");
    }

    #[test]
    fn every_module_a_script_imports_is_served() {
        for (name, body) in scripts() {
            for part in body.split(r#"from "./"#).skip(1) {
                let import = part.split('"').next().unwrap_or_default();
                assert!(
                    served(import),
                    "{name} imports ./{import}, which is not served"
                );
            }
        }
    }

    #[test]
    fn only_the_dom_module_creates_elements_or_parses_html() {
        for (name, body) in scripts().filter(|(n, _)| *n != "dom.js") {
            for pattern in [
                "createElement",
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
            ] {
                assert!(
                    !body.contains(pattern),
                    "{name} uses {pattern}; build DOM with h()"
                );
            }
        }
    }
}
