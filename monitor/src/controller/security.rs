//! The layer every request passes before a handler: a bound on requests in flight, the Host
//! check (against DNS rebinding), authentication (bearer token or session cookie, failures
//! counted and locked out), the CSRF check on state changes (the page's origin, and the
//! session's token in `X-CSRF-Token`), the origin check on WebSocket upgrades, and the
//! security headers on every answer (a strict Content-Security-Policy among them).
use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};

use super::{
    AppState,
    auth::{FAILURES_ALLOWED, Identity, csrf_matches},
};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "secmon_session";
/// The header that carries the session's CSRF token on state changes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What handlers know about the caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub addr: SocketAddr,
    pub identity: Identity,
}

impl Caller {
    /// The session's CSRF token, for the pages to embed (empty for API clients).
    pub fn csrf(&self) -> &str {
        match &self.identity {
            Identity::Session { csrf } => csrf,
            Identity::Bearer => "",
        }
    }
}

/// `default-src 'none'`: scripts, styles, images and connections from this server only; no
/// inline script or style (HTMX is configured not to inject its indicator style), no frames,
/// no form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

pub async fn layer(
    State(shared): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = shared.requests.try_acquire() else {
        return with_headers(
            error(StatusCode::SERVICE_UNAVAILABLE, "too many requests at once"),
            &shared,
        );
    };
    let has_body = request_has_body(request.headers());
    let mut answer = match check(&shared, addr, &request) {
        Ok(caller) => {
            if let Some(caller) = caller {
                request.extensions_mut().insert(caller);
            }
            next.run(request).await
        }
        Err(refusal) => *refusal,
    };
    // A refusal may leave the body unread, and then the connection cannot carry another
    // request: say so, or a client that pools connections sends its next request on one the
    // server is closing ("peer disconnected").
    if has_body && (answer.status().is_client_error() || answer.status().is_server_error()) {
        answer
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    with_headers(answer, &shared)
}

fn request_has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

/// `Ok(Some(caller))` for an authenticated request, `Ok(None)` for a public path, or the
/// refusal to send.
fn check(
    shared: &AppState,
    addr: SocketAddr,
    request: &Request,
) -> Result<Option<Caller>, Box<Response>> {
    let headers = request.headers();
    if !host_allowed(shared, headers) {
        return Err(Box::new(error(
            StatusCode::MISDIRECTED_REQUEST,
            "this Host is not the controller's (see [controller] allowed_origins)",
        )));
    }
    let path = request.uri().path();
    let changes_state = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let upgrade = headers.contains_key(header::UPGRADE);
    if (changes_state || upgrade) && !origin_allowed(shared, headers, false) {
        shared.audit.record_refusal(
            addr,
            "request",
            path,
            "cross-origin request (Origin is not this controller's)",
        );
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "cross-origin request refused (the Origin header is not this controller's)",
        )));
    }
    if is_public(path) {
        return Ok(None);
    }
    let identity = identify(shared, addr, headers, path)?;
    if changes_state && let Identity::Session { csrf } = &identity {
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !origin_allowed(shared, headers, true) || !csrf_matches(csrf, given) {
            shared.audit.record_refusal(
                addr,
                "request",
                path,
                "missing or wrong CSRF token or Origin",
            );
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "refused: a state change from a browser needs this page's CSRF token and Origin",
            )));
        }
    }
    Ok(Some(Caller { addr, identity }))
}

/// Paths served without a login: the login page itself and the static files.
fn is_public(path: &str) -> bool {
    path == "/login" || path.starts_with("/assets/") || path == "/api/v1/openapi.json"
}

fn identify(
    shared: &AppState,
    addr: SocketAddr,
    headers: &HeaderMap,
    path: &str,
) -> Result<Identity, Box<Response>> {
    if let Some(given) = bearer(headers) {
        if shared.auth.is_locked_out(addr.ip()) {
            return Err(Box::new(locked_out(shared, addr, path)));
        }
        if shared.auth.token_matches(given) {
            return Ok(Identity::Bearer);
        }
        let failures = shared.auth.record_failure(addr.ip());
        shared.audit.record(
            addr,
            "authenticate",
            path,
            false,
            &format!("wrong bearer token (failure {failures} of {FAILURES_ALLOWED} a minute)"),
        );
        return Err(Box::new(error(StatusCode::UNAUTHORIZED, "wrong token")));
    }
    if let Some(identity) = cookie(headers, SESSION_COOKIE).and_then(|id| shared.auth.session(id)) {
        return Ok(identity);
    }
    if path.starts_with("/api/") {
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "authentication required: send Authorization: Bearer TOKEN (the token file is \
             named by [controller] token_file)",
        )))
    } else if headers.contains_key("hx-request") {
        // An HTMX request after the session lapsed: the whole page goes to the login.
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        response
            .headers_mut()
            .insert("hx-redirect", HeaderValue::from_static("/login"));
        Err(Box::new(response))
    } else {
        Err(Box::new(Redirect::to("/login").into_response()))
    }
}

/// Counts one more attempt from a locked-out client; said once per lockout.
pub fn locked_out(shared: &AppState, addr: SocketAddr, path: &str) -> Response {
    let failures = shared.auth.record_failure(addr.ip());
    if failures == FAILURES_ALLOWED + 1 {
        shared.audit.record(
            addr,
            "authenticate",
            path,
            false,
            "too many failed attempts: locked out for a minute",
        );
    }
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed attempts from this address; wait a minute",
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The Host header names this controller: an address literal, `localhost`, this machine's
/// name, or a host of `allowed_origins`. (A rebound DNS name is refused.)
fn host_allowed(shared: &AppState, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        // HTTP/1.0 without Host, or HTTP/2 (the authority is checked by the origin check).
        return true;
    };
    let name = host_name(host);
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || name.eq_ignore_ascii_case(&shared.host)
        || shared
            .settings
            .allowed_origins
            .iter()
            .any(|origin| host_name(origin_authority(origin)).eq_ignore_ascii_case(name))
}

/// `host:port` → `host`; `[::1]:80` → `::1`.
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// `https://host:port/...` → `host:port`.
fn origin_authority(origin: &str) -> &str {
    let rest = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// The request's Origin (or, failing that, its Referer's) is this controller (scheme and
/// Host) or one of `allowed_origins`. Absent: allowed unless `required` (API clients send
/// none; a browser always sends one on a state change).
fn origin_allowed(shared: &AppState, headers: &HeaderMap, required: bool) -> bool {
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(origin) = origin else {
        return !required;
    };
    let scheme_and_authority = match origin.split_once("://") {
        Some((scheme, rest)) => (scheme, rest.split('/').next().unwrap_or(rest)),
        None => return false,
    };
    let own_host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let own = own_host.is_some_and(|host| {
        scheme_and_authority
            .0
            .eq_ignore_ascii_case(shared.settings.scheme())
            && scheme_and_authority.1.eq_ignore_ascii_case(host)
    });
    own || shared.settings.allowed_origins.iter().any(|allowed| {
        let allowed = allowed.trim_end_matches('/');
        let (scheme, authority) = scheme_and_authority;
        allowed.eq_ignore_ascii_case(&format!("{scheme}://{authority}"))
    })
}

/// A refusal: JSON for API clients (`{"error": "..."}`); browsers read the same text.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

fn with_headers(mut response: Response, shared: &AppState) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, "content-security-policy", CONTENT_SECURITY_POLICY);
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    // Not `no-referrer`: under it a browser sends `Origin: null` with every form post and
    // HTMX request, which the origin check refuses (the dashboard could not log in).
    // `same-origin` still sends nothing to other sites.
    set(headers, "referrer-policy", "same-origin");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(headers, "cross-origin-resource-policy", "same-origin");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
    if shared.settings.tls.is_some() {
        set(headers, "strict-transport-security", "max-age=31536000");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_cut_from_authorities() {
        assert_eq!(host_name("127.0.0.1:9988"), "127.0.0.1");
        assert_eq!(host_name("[::1]:9988"), "::1");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(
            origin_authority("https://a.example:9988/x"),
            "a.example:9988"
        );
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; secmon_session=abc; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
