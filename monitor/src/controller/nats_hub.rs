//! `secmon-tui hub --nats URL`: the controller's web server, pages, API and live stream with no
//! pipeline behind them; their data comes from the hosts that publish on NATS
//! ([`super::machines::nats`]). No probes, no root: nothing is captured or enforced here, and
//! the hub's own [`Controls`] have nothing to switch (acting on a host is a control request to
//! it, answered by its own checks).
use std::{path::PathBuf, sync::Arc, time::Duration};

use super::{
    ControllerError, Controls, Settings, hub::Hub, machines::nats::NatsHosts, start_serving,
    wait_for_stop,
};
use crate::{
    config,
    fleet::{Connection, FleetError, consumer::Fleet},
    losses::Losses,
    pipeline::front::Recycler,
    response::simulate::Allowlist,
    rules::RuleEngine,
};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("hub: {0}")]
    Fleet(#[from] FleetError),
}

/// Where the hosts publish and how the hub acts on them.
#[derive(Clone, Debug)]
pub struct HubOptions {
    pub connection: Connection,
    pub prefix: String,
    pub stream: String,
    /// `<dir>/<host>.token`: each host's controller token, for control requests.
    pub host_tokens: Option<PathBuf>,
    pub duration: Option<Duration>,
}

/// Nothing to switch: the hub runs no probes and no rules of its own.
fn hub_controls() -> Controls {
    Controls {
        capture: None,
        rules: RuleEngine::empty(),
        enforcer: None,
        allowlist: Allowlist::system(&[]),
        losses: Arc::new(Losses::new()),
        history: None,
        enforce_mode: "hub (nothing is captured or enforced here)",
        simulated: std::sync::Mutex::new(Default::default()),
        reloads: std::sync::Mutex::new(Default::default()),
    }
}

/// Connects to NATS, serves until SIGINT, SIGTERM or `--duration`.
pub async fn run(
    settings: Settings,
    controller: &config::Controller,
    options: HubOptions,
) -> Result<(), HubError> {
    settings.check(controller)?;
    let fleet = Fleet::connect(&options.connection, &options.prefix, &options.stream).await?;
    // Events are freed here (no pipeline thread to give them back to).
    let (recycler, _) = Recycler::new();
    let merged = Arc::new(Hub::new(recycler.clone()));
    let hosts = Arc::new(NatsHosts::new(
        fleet,
        &options.prefix,
        options.host_tokens.clone(),
        merged.clone(),
        recycler,
    ));
    let subscriptions = hosts.subscribe().await?;
    // No pipeline: the hub's queue is closed from the start; the hosts feed the hub directly.
    let (_, batches) = tokio::sync::mpsc::channel(1);
    let token_file = settings.token_file.clone();
    let running = start_serving(
        settings,
        controller,
        hub_controls(),
        merged,
        batches,
        Some((hosts, subscriptions)),
    )
    .await?;
    let url = running.shared.settings.url_for(running.local_addr());
    crate::notice::info(format!(
        "hub: serving {url} for the hosts on {} (subjects {}.<host>.*; log in with the token \
         in {})",
        crate::secrets::redact_url(&options.connection.url),
        options.prefix,
        token_file.display()
    ));
    wait_for_stop(options.duration).await;
    running.stop();
    Ok(())
}
