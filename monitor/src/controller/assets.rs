//! The dashboard's static files, embedded in the binary: no CDN, works without internet.
//! HTMX and its WebSocket extension are vendored from their npm packages (`htmx.org`,
//! `htmx-ext-ws`) with their licences (assets/web/vendor/).
use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use super::AppState;

/// (name, content type, bytes)
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/web/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/web/app.js"),
    ),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/web/vendor/htmx-2.0.11.min.js"),
    ),
    (
        "htmx-ext-ws.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/web/vendor/htmx-ext-ws-2.0.4.min.js"),
    ),
    (
        "LICENSE-htmx.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/web/vendor/LICENSE-htmx"),
    ),
    (
        "LICENSE-htmx-ext-ws.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/web/vendor/LICENSE-htmx-ext-ws"),
    ),
    (
        "openapi.json",
        "application/json",
        include_bytes!("../../assets/web/openapi.json"),
    ),
];

pub fn routes() -> Router<AppState> {
    Router::new().route("/assets/{name}", get(asset))
}

pub fn find(name: &str) -> Option<(&'static str, &'static [u8])> {
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, kind, bytes)| (*kind, *bytes))
}

async fn asset(Path(name): Path<String>) -> Response {
    match find(&name) {
        Some((kind, bytes)) => {
            let mut response = bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=300"),
            );
            response
        }
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
