//! Counts per client address over a fixed window (failed logins, written refusals), in a
//! table that stays bounded however many addresses try at once.
use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

/// Client addresses counted at once; past that, expired windows and then the oldest go.
pub const MAX_TRACKED_CLIENTS: usize = 4096;

/// A count in the current window of `length`.
#[derive(Clone, Copy)]
pub struct Window {
    count: u32,
    since: Instant,
}

impl Default for Window {
    fn default() -> Window {
        Window::new()
    }
}

impl Window {
    pub fn new() -> Window {
        Window {
            count: 0,
            since: Instant::now(),
        }
    }

    fn is_over(&self, length: Duration) -> bool {
        self.since.elapsed() >= length
    }

    /// The count in the current window (0 once it is over).
    pub fn current(&self, length: Duration) -> u32 {
        if self.is_over(length) { 0 } else { self.count }
    }

    /// One more; the count in the current window.
    pub fn bump(&mut self, length: Duration) -> u32 {
        if self.is_over(length) {
            *self = Window::new();
        }
        self.count = self.count.saturating_add(1);
        self.count
    }
}

/// A [`Window`] per client address, at most [`MAX_TRACKED_CLIENTS`].
pub struct PerClient {
    length: Duration,
    windows: HashMap<IpAddr, Window>,
}

impl PerClient {
    pub fn new(length: Duration) -> PerClient {
        PerClient {
            length,
            windows: HashMap::new(),
        }
    }

    /// `client`'s count in its current window.
    pub fn current(&self, client: IpAddr) -> u32 {
        self.windows
            .get(&client)
            .map_or(0, |w| w.current(self.length))
    }

    /// One more from `client`; its count in the current window.
    pub fn bump(&mut self, client: IpAddr) -> u32 {
        if !self.windows.contains_key(&client) && self.windows.len() >= MAX_TRACKED_CLIENTS {
            let length = self.length;
            self.windows.retain(|_, w| !w.is_over(length));
            // Still full (many addresses at once): the oldest window goes.
            if self.windows.len() >= MAX_TRACKED_CLIENTS
                && let Some(oldest) = self
                    .windows
                    .iter()
                    .min_by_key(|(_, w)| w.since)
                    .map(|(ip, _)| *ip)
            {
                self.windows.remove(&oldest);
            }
        }
        let length = self.length;
        self.windows.entry(client).or_default().bump(length)
    }

    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.windows.len()
    }
}
