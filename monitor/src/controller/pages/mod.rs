//! The dashboard: HTML pages rendered here (maud, escaped), made live by HTMX. A page load
//! gets the whole page, an HTMX request only the fragment it swaps in. Actions post to
//! `/ui/...` and call the same functions as the JSON API ([`super::api`]).
//!
//! Files: [`layout`] (the page shell, event rows, markers), [`live_page`] (the live page and
//! its WebSocket updates), `demo` (a running demo's narration panel), `process` (the process view), `manage` (rules, probes, deny
//! entries), `history` (search, paging, the chart) and `status`. No markup is built from
//! input without escaping: there is no `PreEscaped` here.
use axum::{
    Extension, Form, Router,
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

mod demo;
mod history;
pub mod layout;
pub mod live_page;
mod manage;
mod process;
mod status;

use layout::message;

use super::{
    AppState, api,
    security::{self, Caller, SESSION_COOKIE},
};
use crate::response::control::TargetSpec;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/", get(live_page::live_page))
        .route("/ui/live", get(live_page::live_socket))
        .route("/ui/demo", get(demo::fragment))
        .route("/process/{pid}", get(process::process_page))
        .route("/ui/simulate", post(simulate))
        .route("/ui/block", post(block))
        .route("/history", get(history::history_page))
        .route("/status", get(status::status_page))
        .merge(manage::routes())
        .merge(super::machines::pages::routes())
}

// ---- login --------------------------------------------------------------------------------

fn login_markup(problem: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "secmon · log in" }
                link rel="stylesheet" href="/assets/app.css";
            }
            body.login {
                main {
                    h1 { "secmon" }
                    p { "Paste the controller's access token. It is in the file named by "
                        code { "[controller] token_file" } " (by default "
                        code { (crate::config::DEFAULT_CONTROLLER_TOKEN) } "), readable by root only:" }
                    pre { "sudo cat " (crate::config::DEFAULT_CONTROLLER_TOKEN) }
                    @if let Some(problem) = problem { p.msg.err role="alert" { (problem) } }
                    form method="post" action="/login" {
                        label for="token" { "Access token" }
                        input #token type="password" name="token" autocomplete="off" required autofocus;
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

async fn login_page() -> Html<String> {
    Html(login_markup(None).into_string())
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(shared): State<AppState>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    if shared.auth.is_locked_out(addr.ip()) {
        return security::locked_out(&shared, addr, "/login");
    }
    if !shared.auth.token_matches(form.token.trim()) {
        let failures = shared.auth.record_failure(addr.ip());
        shared.audit.record(
            addr,
            "log in",
            "/login",
            false,
            &format!(
                "wrong token (failure {failures} of {} a minute)",
                super::auth::FAILURES_ALLOWED
            ),
        );
        let body = login_markup(Some("That is not the token."));
        return (StatusCode::UNAUTHORIZED, Html(body.into_string())).into_response();
    }
    let (id, _csrf) = match shared.auth.open_session() {
        Ok(session) => session,
        Err(e) => return security::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    shared
        .audit
        .record(addr, "log in", "/login", true, "browser session opened");
    let secure = if shared.settings.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{secure}");
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn logout(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = security::cookie(&headers, SESSION_COOKIE) {
        shared.auth.close_session(id);
    }
    // HTMX follows `HX-Redirect`; anything else the 303.
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert("hx-redirect", HeaderValue::from_static("/login"));
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("secmon_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    // The machine shown goes with the session: the next one starts on this machine.
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("secmon_machine=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

// ---- actions ------------------------------------------------------------------------------

/// `exec=PATH_OR_NAME` or `connect=ADDR` (a form, or HTMX `hx-vals`).
#[derive(Deserialize)]
pub struct TargetForm {
    exec: Option<String>,
    connect: Option<String>,
    #[serde(default)]
    ttl_secs: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    /// `denies` from the deny entries page: its lists are redone too.
    #[serde(default)]
    view: Option<String>,
}

impl TargetForm {
    fn target(&self) -> Result<TargetSpec, String> {
        match (
            self.exec.as_deref().map(str::trim),
            self.connect.as_deref().map(str::trim),
        ) {
            (Some(exec), _) if !exec.is_empty() => Ok(TargetSpec::Exec(exec.to_string())),
            (_, Some(addr)) if !addr.is_empty() => Ok(TargetSpec::Connect(addr.to_string())),
            _ => Err("give a program (path or name) or a destination address".to_string()),
        }
    }
}

async fn simulate(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<TargetForm>,
) -> Response {
    let result = form
        .target()
        .map_err(|e| (StatusCode::BAD_REQUEST, e))
        .and_then(|target| api::simulate_deny(&shared, &caller, &target));
    let markup = html! {
        @match result {
            Ok(block) => (message(true, &block.outcome)),
            Err((_, why)) => (message(false, &why)),
        }
        @if form.view.as_deref() == Some("denies") { (manage::denies_lists(&shared, true)) }
    };
    Html(markup.into_string()).into_response()
}

async fn block(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<TargetForm>,
) -> Response {
    let request = form.target().map(|target| api::DenyRequest {
        target,
        ttl_secs: form.ttl_secs.as_deref().and_then(|t| t.trim().parse().ok()),
        reason: form.reason.clone().filter(|r| !r.trim().is_empty()),
    });
    let markup = match request
        .map_err(|e| (StatusCode::BAD_REQUEST, e))
        .and_then(|r| api::add_deny(&shared, &caller, r))
    {
        Ok(value) => message(
            true,
            &format!(
                "denied: {}",
                value["deny"]["target"].as_str().unwrap_or("(entry added)")
            ),
        ),
        Err((_, why)) => message(false, &why),
    };
    let markup = html! {
        (markup)
        @if form.view.as_deref() == Some("denies") { (manage::denies_lists(&shared, true)) }
    };
    Html(markup.into_string()).into_response()
}
