//! Many machines in one dashboard: the controllers registered here ([`registry`], tokens kept
//! server-side), their health polled in the background ([`health`]), the machine a browser
//! session shows and acts on ([`proxy`]: the browser only ever talks to this controller, which
//! forwards to the active machine with that machine's token), the Machines and All machines
//! pages ([`pages`]) and their API ([`api`]). [`client`] is the one way out to a remote.
//! In hub mode the machines are also the hosts that publish on NATS ([`hosts`]: what the
//! fleet's hub gives the controller; their pages and API in [`nats_pages`]).
//!
//! ```text
//! browser ──session, CSRF, origin (security layer)──► proxy layer ──local machine──► pages, api
//!                                                          └──remote: HTTPS + its token──► remote controller
//! health poller ──every 2 s──► each remote's /api/v1/status, /alerts, /alerts/counts
//! ```
use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::Semaphore;

pub mod api;
pub mod client;
pub mod health;
pub mod hosts;
pub mod nats_pages;
pub mod pages;
pub mod proxy;
pub mod registry;
pub mod sanitize;

pub use registry::{LOCAL, Machine, MachineInfo, NewMachine, Registry, RegistryError};

use health::{Health, Polled};

/// WebSocket streams proxied to remotes at once (each holds a connection to a remote).
pub const MAX_PROXIED_SOCKETS: usize = 64;

/// The registered machines, their health, and the proxied streams' places.
pub struct Machines {
    registry: Mutex<Registry>,
    health: Mutex<HashMap<String, Health>>,
    pub sockets: Arc<Semaphore>,
    /// Wakes the poller at once (a machine was added: its state is wanted now).
    poll_now: tokio::sync::Notify,
    /// Hub mode: the hosts that publish on NATS (set once, at start).
    pub nats: std::sync::OnceLock<Arc<dyn hosts::HostSource>>,
}

impl Machines {
    /// The machines of `path` (see [`Registry::load`]).
    pub fn load(path: &Path) -> Result<Machines, RegistryError> {
        Ok(Machines {
            registry: Mutex::new(Registry::load(path)?),
            health: Mutex::new(HashMap::new()),
            sockets: Arc::new(Semaphore::new(MAX_PROXIED_SOCKETS)),
            poll_now: tokio::sync::Notify::new(),
            nats: std::sync::OnceLock::new(),
        })
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the machines are kept.
    pub fn registry_path(&self) -> String {
        self.registry().path().display().to_string()
    }

    /// The registered machines, in the order they were added.
    pub fn list(&self) -> Vec<Machine> {
        self.registry().machines().to_vec()
    }

    pub fn find(&self, name: &str) -> Option<Machine> {
        self.registry().find(name).cloned()
    }

    pub fn add(&self, new: NewMachine) -> Result<MachineInfo, RegistryError> {
        let added = self.registry().add(new)?;
        self.poll_now.notify_one();
        Ok(added)
    }

    /// Until a machine is added.
    async fn added(&self) {
        self.poll_now.notified().await;
    }

    pub fn remove(&self, name: &str) -> Result<MachineInfo, RegistryError> {
        let removed = self.registry().remove(name)?;
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        Ok(removed)
    }

    /// The machine's last known health (`unknown` before the first poll).
    pub fn health(&self, name: &str) -> Health {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// The machine's last known state (without copying its alerts).
    pub fn state(&self, name: &str) -> health::Reach {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map_or(health::Reach::Unknown, |h| h.state)
    }

    /// Takes in a poll of machine `name` (ignored if it was removed meanwhile).
    fn record(&self, name: &str, result: Result<Polled, client::RemoteError>) {
        if self.find(name).is_none() {
            return;
        }
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_string())
            .or_default()
            .update(result);
    }

    /// Drops the health of machines no longer registered.
    fn forget_unregistered(&self, machines: &[Machine]) {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| machines.iter().any(|m| &m.name == name));
    }
}
