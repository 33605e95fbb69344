//! Hub mode's seam: the hosts a hub shows come from a [`HostSource`] (the fleet's NATS
//! consumer, `fleet/hub.rs`), so the controller's pages and API show them without knowing
//! where they come from, and the controller does not depend on the fleet (the fleet, which
//! answers control requests through the controller's actions, depends on it).
use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;

use super::health::Health;
use crate::{
    controller::{
        actions::{Action, ControlReply},
        hub::Hub,
    },
    event::Event,
};

/// Events a history read returns at most.
pub const MAX_HISTORY: usize = 1000;

/// A host as the pages and the API show it.
#[derive(Clone, Debug, Serialize)]
pub struct HostRow {
    pub host: String,
    #[serde(flatten)]
    pub health: Health,
    /// Probe family → state, as the host last said.
    pub probes: BTreeMap<String, String>,
    /// Whether the host answers control requests.
    pub control: bool,
    /// Whether this hub has the host's control token.
    pub token_here: bool,
    pub spool_bytes: u64,
    pub nats_connected: bool,
}

/// The hosts a hub shows, and how to reach each one.
pub trait HostSource: Send + Sync {
    /// The subjects' prefix (for the pages' explanations).
    fn prefix(&self) -> &str;
    /// Every host seen, by name.
    fn rows(&self) -> Vec<HostRow>;
    /// Host `host`, if seen.
    fn row_of(&self, host: &str) -> Option<HostRow>;
    /// Host `host`'s own hub (its recent events and alerts).
    fn hub(&self, host: &str) -> Option<Arc<Hub>>;
    /// What the feed counted (events, duplicates, ...), as JSON.
    fn feed_counts(&self) -> serde_json::Value;
    /// Sends `action` to `host` only; its reply, or why there is none.
    fn control<'a>(
        &'a self,
        host: &'a str,
        action: Action,
    ) -> BoxFuture<'a, Result<ControlReply, String>>;
    /// Host `host`'s stored events of kind `what` since `since`, oldest first.
    fn history<'a>(
        &'a self,
        host: &'a str,
        what: &'a str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Event>, String>>;
}

/// What hub mode gives the controller: its hosts, and the task that feeds them (run on the
/// controller's runtime).
pub struct HubFeed {
    pub hosts: Arc<dyn HostSource>,
    pub feed: BoxFuture<'static, ()>,
}
