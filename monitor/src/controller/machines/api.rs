//! `/api/v1/machines` (list with health, register, remove), `/api/v1/all-machines/alerts`
//! (every machine's recent alerts merged, and each one's counts of the last hour),
//! `/api/v1/alerts/counts` (this machine's counts, which the others read) and
//! `/api/v1/machines/{name}/api/...` (an API request forwarded to a registered machine).
//! Registering and removing are written to the audit log; no answer carries a token.
use axum::{
    Extension, Json,
    extract::{Path, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use super::{
    LOCAL, MachineInfo, NewMachine, RegistryError,
    health::{Health, Reach},
    proxy,
};
use crate::{
    controller::{
        AppState, api,
        hub::{AlertCounts, RECENT_ALERTS},
        security::{Caller, error},
    },
    event::Event,
};

/// Alerts the All machines view shows at most.
pub const MERGED_ALERTS: usize = 200;

/// A machine as listed: what it is and how it is.
#[derive(Serialize)]
pub struct MachineRow {
    pub name: String,
    /// This machine (the controller answering).
    pub local: bool,
    /// A host that publishes on NATS (hub mode): its page is `/hosts/{name}`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nats: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(flatten)]
    pub health: Health,
}

/// This machine's row, from its own figures.
fn local_row(shared: &AppState) -> MachineRow {
    let status = api::status_of(shared);
    let now = Utc::now();
    MachineRow {
        name: LOCAL.to_string(),
        local: true,
        nats: false,
        url: None,
        ca_file: None,
        health: Health {
            state: Reach::Reachable,
            error: None,
            checked: Some(now),
            last_seen: Some(now),
            host: Some(crate::sanitize::for_terminal(&status.host).into_owned()),
            version: Some(status.version.to_string()),
            uptime_secs: Some(status.uptime_secs),
            events_per_sec: Some(status.events_per_sec_60s),
            events_total: Some(status.events_total),
            lost_total: Some(status.lost_total),
            alerts_last_hour: Some(shared.hub.alerts_last_hour()),
            alerts: Vec::new(),
        },
    }
}

/// Every machine, this one first.
pub fn rows(shared: &AppState) -> Vec<MachineRow> {
    let mut rows = vec![local_row(shared)];
    for machine in shared.machines.list() {
        let MachineInfo { name, url, ca_file } = machine.info();
        let health = shared.machines.health(&name);
        rows.push(MachineRow {
            name,
            local: false,
            nats: false,
            url: Some(url),
            ca_file,
            health,
        });
    }
    if let Some(nats) = shared.machines.nats.get() {
        rows.extend(nats.rows().into_iter().map(|host| MachineRow {
            url: Some(format!("nats: {}.{}.>", nats.prefix(), host.host)),
            name: host.host,
            local: false,
            nats: true,
            ca_file: None,
            health: host.health,
        }));
    }
    rows
}

pub async fn list(State(shared): State<AppState>) -> Response {
    Json(json!({ "machines": rows(&shared) })).into_response()
}

/// Registers a machine (the body: name, url, token, optional ca_file).
pub fn register(
    shared: &AppState,
    caller: &Caller,
    new: NewMachine,
) -> Result<MachineInfo, (StatusCode, String)> {
    let target = crate::sanitize::for_terminal(new.name.trim()).into_owned();
    let result = shared.machines.add(new);
    match &result {
        Ok(info) => shared.audit.record(
            caller.addr,
            "register machine",
            &target,
            true,
            &format!("registered {} ({})", info.name, info.url),
        ),
        Err(e) => shared.audit.record(
            caller.addr,
            "register machine",
            &target,
            false,
            &e.to_string(),
        ),
    }
    result.map_err(|e| (status_of(&e), e.to_string()))
}

/// Removes machine `name`.
pub fn unregister(
    shared: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<MachineInfo, (StatusCode, String)> {
    let target = crate::sanitize::for_terminal(name).into_owned();
    let result = shared.machines.remove(name);
    match &result {
        Ok(info) => shared.audit.record(
            caller.addr,
            "remove machine",
            &target,
            true,
            &format!("removed {} ({})", info.name, info.url),
        ),
        Err(e) => shared.audit.record(
            caller.addr,
            "remove machine",
            &target,
            false,
            &e.to_string(),
        ),
    }
    result.map_err(|e| (status_of(&e), e.to_string()))
}

fn status_of(error: &RegistryError) -> StatusCode {
    match error {
        RegistryError::Duplicate(_) | RegistryError::Full => StatusCode::CONFLICT,
        RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
        RegistryError::File { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

pub async fn add(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(new): Json<NewMachine>,
) -> Response {
    match register(&shared, &caller, new) {
        Ok(machine) => (
            StatusCode::CREATED,
            Json(json!({ "ok": true, "machine": machine })),
        )
            .into_response(),
        Err((status, why)) => error(status, &why),
    }
}

pub async fn remove(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    match unregister(&shared, &caller, &name) {
        Ok(machine) => Json(json!({ "ok": true, "machine": machine })).into_response(),
        Err((status, why)) => error(status, &why),
    }
}

/// An alert of the All machines view: which machine, and the event.
#[derive(Serialize)]
pub struct HostAlert {
    pub machine: String,
    pub host: String,
    #[serde(flatten)]
    pub event: Event,
}

/// The newest alerts of every machine (this one's live, the others' as of their last poll),
/// newest first, at most [`MERGED_ALERTS`].
pub fn merged_alerts(shared: &AppState) -> Vec<HostAlert> {
    // A hub's own stream is every host's, merged: they are listed under their own names.
    let own = if shared.machines.nats.get().is_some() {
        0
    } else {
        RECENT_ALERTS.min(MERGED_ALERTS)
    };
    let mut alerts: Vec<HostAlert> = shared
        .hub
        .recent_alerts(own)
        .into_iter()
        .map(|event| HostAlert {
            machine: LOCAL.to_string(),
            host: shared.host.clone(),
            event,
        })
        .collect();
    for machine in shared.machines.list() {
        let health = shared.machines.health(&machine.name);
        let host = health.host.clone().unwrap_or_else(|| machine.name.clone());
        alerts.extend(health.alerts.into_iter().map(|event| HostAlert {
            machine: machine.name.clone(),
            host: host.clone(),
            event,
        }));
    }
    if let Some(nats) = shared.machines.nats.get() {
        for host in nats.rows() {
            alerts.extend(host.health.alerts.into_iter().map(|event| HostAlert {
                machine: host.host.clone(),
                host: host.host.clone(),
                event,
            }));
        }
    }
    alerts.sort_by_key(|alert| std::cmp::Reverse(alert.event.timestamp));
    alerts.truncate(MERGED_ALERTS);
    alerts
}

/// Per machine: its state and its alerts of the last hour.
#[derive(Serialize)]
pub struct MachineCounts {
    pub machine: String,
    pub host: Option<String>,
    pub state: Reach,
    pub alerts_last_hour: Option<AlertCounts>,
}

pub fn counts(shared: &AppState) -> Vec<MachineCounts> {
    let hub_mode = shared.machines.nats.get().is_some();
    rows(shared)
        .into_iter()
        .filter(|row| !(hub_mode && row.local))
        .map(|row| MachineCounts {
            machine: row.name,
            host: row.health.host,
            state: row.health.state,
            alerts_last_hour: row.health.alerts_last_hour,
        })
        .collect()
}

pub async fn all_alerts(State(shared): State<AppState>) -> Response {
    Json(json!({
        "alerts": merged_alerts(&shared),
        "counts": counts(&shared),
    }))
    .into_response()
}

/// This machine's alerts of the last hour, by severity.
pub async fn alert_counts(State(shared): State<AppState>) -> Response {
    let counts = shared.hub.alerts_last_hour();
    Json(json!({
        "window_secs": 3600,
        "suspicious": counts.suspicious,
        "malicious": counts.malicious,
    }))
    .into_response()
}

/// `/api/v1/machines/{name}/api/{rest}`: `/api/v1/{rest}` on machine `name`.
pub async fn remote_api(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Some(machine) = shared.machines.find(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            &RegistryError::NotFound(crate::sanitize::for_terminal(&name).into_owned()).to_string(),
        );
    };
    let mut path = format!("/api/v1/{rest}");
    if let Some(query) = request.uri().query() {
        path.push('?');
        path.push_str(query);
    }
    proxy::forward(&shared, &machine, &caller, request, &path).await
}
