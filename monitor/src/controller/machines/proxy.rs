//! The active machine: a browser session that chose a registered machine (the header's
//! selector sets the [`ACTIVE_COOKIE`]) has every page, action and live stream forwarded to
//! it, except this controller's own pages ([`is_local_only`]: login, assets, Machines, All
//! machines). The browser's request has passed this controller's security layer first (its
//! session, CSRF token and origin checked); what goes to the remote is the method, the path,
//! the body and a few harmless headers, with the remote's token as `Authorization: Bearer`,
//! never the browser's cookie, CSRF token or origin. A page load is asked of the remote as its
//! body only ([`PAGE_BODY_HEADER`]) and shown inside this controller's shell, whose header
//! names the machine shown. Every state change sent to a remote is written to the local audit
//! log with the machine's name.
use axum::{
    body::Bytes,
    extract::{FromRequestParts, Request, State, WebSocketUpgrade, ws},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::{SinkExt, StreamExt};
use maud::{PreEscaped, html};
use tokio_tungstenite::tungstenite;

use super::{
    LOCAL, Machine,
    client::{self, Answer, RemoteError, RemoteSocket},
    sanitize::remote_html,
};
use crate::controller::{
    AppState, MAX_BODY,
    auth::Identity,
    live::{MAX_CLIENT_MESSAGE, SEND_TIMEOUT},
    pages::layout::{NAV, PAGE_BODY_HEADER, is_htmx, message, shell},
    security::{Caller, cookie, error},
};

/// The cookie naming the machine a browser shows (`local` or a registered name; anything else
/// is this machine).
pub const ACTIVE_COOKIE: &str = "secmon_machine";

/// Request headers passed on to a remote: what the pages need, nothing that identifies the
/// browser's session.
const FORWARDED_REQUEST: &[&str] = &[
    "content-type",
    "accept",
    "hx-request",
    "hx-target",
    "hx-trigger",
    "hx-trigger-name",
];
/// Answer headers passed back: not `HX-Redirect`/`HX-Location` (a remote may not send this
/// browser elsewhere), not cookies.
const FORWARDED_ANSWER: &[&str] = &[
    "content-type",
    "allow",
    "hx-trigger",
    "hx-retarget",
    "hx-reswap",
];

/// Paths this controller always serves itself, whatever machine is active.
pub fn is_local_only(path: &str) -> bool {
    matches!(
        path,
        "/login" | "/logout" | "/machines" | "/all-machines" | "/api/v1/openapi.json"
    ) || path.starts_with("/assets/")
        || path.starts_with("/ui/machines")
        || path.starts_with("/ui/all-machines")
        || path.starts_with("/api/v1/machines")
        || path.starts_with("/api/v1/all-machines")
        || path.starts_with("/hosts/")
        || path.starts_with("/ui/hosts/")
        || path == "/api/v1/hosts"
        || path.starts_with("/api/v1/hosts/")
}

/// The registered machine this browser chose, if any (this machine otherwise).
pub fn active_machine(shared: &AppState, headers: &HeaderMap) -> Option<Machine> {
    cookie(headers, ACTIVE_COOKIE)
        .filter(|name| *name != LOCAL)
        .and_then(|name| shared.machines.find(name))
}

/// The layer after the security layer: a browser session's request goes to its active
/// machine when that is a registered one.
pub async fn layer(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    let session = request
        .extensions()
        .get::<Caller>()
        .filter(|caller| matches!(caller.identity, Identity::Session { .. }))
        .cloned();
    let (Some(caller), false) = (session, is_local_only(request.uri().path())) else {
        return next.run(request).await;
    };
    let Some(machine) = active_machine(&shared, request.headers()) else {
        return next.run(request).await;
    };
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let is_page = request.method() == Method::GET
        && !request.uri().path().starts_with("/api/")
        && !request.uri().path().starts_with("/ui/")
        && !is_htmx(request.headers())
        && !request.headers().contains_key(header::UPGRADE);
    if is_page {
        return page(&shared, &machine, &caller, request, &path).await;
    }
    forward(&shared, &machine, &caller, request, &path).await
}

/// The headers of `request` that go to a remote.
fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in FORWARDED_REQUEST {
        if let Some(value) = headers.get(*name) {
            out.insert(HeaderName::from_static(name), value.clone());
        }
    }
    out
}

/// A remote's answer as this controller's (the security layer adds its headers after).
fn answer_response(answer: Answer) -> Response {
    // An HTMX fragment is markup from the remote: made harmless first (sanitize.rs).
    let body = if is_html(&answer.headers) {
        Bytes::from(remote_html(&String::from_utf8_lossy(&answer.body)))
    } else {
        answer.body
    };
    let mut response = (answer.status, body).into_response();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    for name in FORWARDED_ANSWER {
        for value in answer.headers.get_all(*name) {
            headers.append(HeaderName::from_static(name), value.clone());
        }
    }
    response
}

/// The remote could not be asked: 502 with why (sanitised, no token).
fn unreachable(machine: &Machine, why: &RemoteError) -> Response {
    error(
        StatusCode::BAD_GATEWAY,
        &format!(
            "machine {} ({}) did not answer: {why}",
            machine.name, machine.url
        ),
    )
}

/// Sends `request` to `machine` as `path` (a WebSocket upgrade opens one to the remote and
/// joins the two) and returns its answer. A state change is audited here with the machine.
pub async fn forward(
    shared: &AppState,
    machine: &Machine,
    caller: &Caller,
    request: Request,
    path: &str,
) -> Response {
    if request.headers().contains_key(header::UPGRADE) {
        return websocket(shared, machine, request, path).await;
    }
    let method = request.method().clone();
    let headers = forwarded_headers(request.headers());
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the request body is larger than the {} KiB accepted",
                    MAX_BODY / 1024
                ),
            );
        }
    };
    let result = client::send(machine, method.clone(), path, headers, body).await;
    if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let target = format!(
            "{}: {method} {}",
            machine.name,
            crate::sanitize::for_terminal(path)
        );
        let (ok, outcome) = match &result {
            Ok(answer) => (
                answer.status.is_success(),
                format!("{} answered HTTP {}", machine.name, answer.status.as_u16()),
            ),
            Err(why) => (false, format!("{} did not answer: {why}", machine.name)),
        };
        shared
            .audit
            .record(caller.addr, "remote request", &target, ok, &outcome);
    }
    match result {
        Ok(answer) => answer_response(answer),
        Err(why) => unreachable(machine, &why),
    }
}

/// A page load: the remote's page body inside this controller's shell.
async fn page(
    shared: &AppState,
    machine: &Machine,
    caller: &Caller,
    request: Request,
    path: &str,
) -> Response {
    let mut headers = forwarded_headers(request.headers());
    headers.insert(PAGE_BODY_HEADER, HeaderValue::from_static("1"));
    let nav_path = request.uri().path().to_string();
    let title = NAV.iter().find(|(href, _)| *href == nav_path).map_or_else(
        || {
            if nav_path.starts_with("/process/") {
                "Process"
            } else {
                "Page"
            }
        },
        |(_, title)| title,
    );
    let body = match client::send(machine, Method::GET, path, headers, Bytes::new()).await {
        // The remote controller's own markup (its page, or its error page), escaped there by
        // the same code as here, and made harmless here in case the remote is not what it was
        // (sanitize.rs).
        Ok(answer) if is_html(&answer.headers) => {
            PreEscaped(remote_html(&String::from_utf8_lossy(&answer.body)))
        }
        Ok(answer) => {
            let why = serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| v["error"].as_str().map(String::from))
                .unwrap_or_else(|| format!("HTTP {}", answer.status.as_u16()));
            html! { (message(false, &format!("{}: {why}", machine.name))) }
        }
        Err(why) => html! {
            h1 { (title) }
            (message(false, &format!("machine {} ({}) did not answer: {why}", machine.name, machine.url)))
            p { "Choose another machine in the header, or see its state on the " a href="/machines" { "Machines" } " page." }
        },
    };
    shell(shared, caller, &nav_path, title, Some(machine), body)
}

fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|kind| kind.starts_with("text/html"))
}

/// A WebSocket to the remote's `path`, joined to the browser's.
async fn websocket(shared: &AppState, machine: &Machine, request: Request, path: &str) -> Response {
    let (mut parts, _) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let Ok(place) = shared.machines.sockets.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live streams from other machines at once; try again later",
        );
    };
    // The dashboard's live stream carries HTML fragments; the API's, JSON.
    let is_html_stream = path.starts_with("/ui/");
    let remote = match client::websocket(machine, path).await {
        Ok(remote) => remote,
        Err(why) => return unreachable(machine, &why),
    };
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            join(socket, remote, is_html_stream).await;
            drop(place);
        })
}

/// Passes messages both ways until either side closes. A browser that does not take a message
/// within [`SEND_TIMEOUT`] is disconnected (the remote then counts what it could not send, as
/// for any slow client).
async fn join(browser: ws::WebSocket, remote: RemoteSocket, html: bool) {
    let (mut to_browser, mut from_browser) = browser.split();
    let (mut to_remote, mut from_remote) = remote.split();
    let down = async {
        while let Some(Ok(message)) = from_remote.next().await {
            let Some(message) = to_browser_message(message, html) else {
                continue;
            };
            let closing = matches!(message, ws::Message::Close(_));
            match tokio::time::timeout(SEND_TIMEOUT, to_browser.send(message)).await {
                Ok(Ok(())) if !closing => {}
                _ => break,
            }
        }
    };
    let up = async {
        while let Some(Ok(message)) = from_browser.next().await {
            let Some(message) = to_remote_message(message) else {
                continue;
            };
            if to_remote.send(message).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = down => {}
        () = up => {}
    }
}

fn to_browser_message(message: tungstenite::Message, html: bool) -> Option<ws::Message> {
    Some(match message {
        tungstenite::Message::Text(text) if html => {
            ws::Message::Text(remote_html(text.as_str()).into())
        }
        tungstenite::Message::Text(text) => ws::Message::Text(text.as_str().into()),
        tungstenite::Message::Binary(bytes) => ws::Message::Binary(bytes),
        tungstenite::Message::Close(_) => ws::Message::Close(None),
        // Pings are answered by each side's own library.
        tungstenite::Message::Ping(_)
        | tungstenite::Message::Pong(_)
        | tungstenite::Message::Frame(_) => return None,
    })
}

fn to_remote_message(message: ws::Message) -> Option<tungstenite::Message> {
    Some(match message {
        ws::Message::Text(text) => tungstenite::Message::Text(text.as_str().into()),
        ws::Message::Binary(bytes) => tungstenite::Message::Binary(bytes),
        ws::Message::Close(_) => tungstenite::Message::Close(None),
        ws::Message::Ping(_) | ws::Message::Pong(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browsers_credentials_are_not_forwarded() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("cookie", "secmon_session=abc; secmon_machine=web-1"),
            ("authorization", "Bearer local-token"),
            ("x-csrf-token", "csrf"),
            ("origin", "http://127.0.0.1:9988"),
            ("referer", "http://127.0.0.1:9988/"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("hx-request", "true"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let forwarded = forwarded_headers(&headers);
        let names: Vec<&str> = forwarded.keys().map(HeaderName::as_str).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"content-type") && names.contains(&"hx-request"));
    }

    #[test]
    fn this_controllers_own_pages_stay_local() {
        for path in [
            "/login",
            "/logout",
            "/assets/app.js",
            "/machines",
            "/all-machines",
            "/ui/machines/select",
            "/api/v1/machines",
            "/api/v1/machines/a/api/status",
        ] {
            assert!(is_local_only(path), "{path}");
        }
        for path in [
            "/",
            "/probes",
            "/ui/live",
            "/ui/probes/file",
            "/api/v1/status",
            "/process/1",
        ] {
            assert!(!is_local_only(path), "{path}");
        }
    }

    #[test]
    fn a_remote_may_not_redirect_the_browser_or_set_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "hx-redirect",
            HeaderValue::from_static("https://evil.example"),
        );
        headers.insert("set-cookie", HeaderValue::from_static("secmon_session=x"));
        headers.insert("content-type", HeaderValue::from_static("text/html"));
        let response = answer_response(Answer {
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(b"<p>x</p>"),
        });
        assert!(response.headers().get("hx-redirect").is_none());
        assert!(response.headers().get("set-cookie").is_none());
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html");
    }
}
