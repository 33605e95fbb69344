//! The history view (`h`): stored events, newest first, filtered with the options of
//! `secmon-tui history` (`/` edits them: `--last 2h --min-risk 0.6`), scrolled page by page;
//! `Enter` opens the detail view.
//!
//! Queries never run on the UI's loop: the view sends a [`HistoryRequest`] to its
//! [`HistorySource`] and the page comes back later as [`super::Event::History`]. One page is
//! asked for at a time; a new query gets a new generation, and late pages of an older one are
//! dropped.
use chrono::{DateTime, Utc};

use super::{App, Entry, Stored};
use crate::event::Event as SecEvent;

/// The query the view starts with.
pub const DEFAULT_HISTORY_QUERY: &str = "--last 24h";
/// Events read per page.
pub const HISTORY_PAGE: usize = 500;
/// Rows the view keeps at most; past them it asks for a narrower query.
pub const HISTORY_MAX_ROWS: usize = 50_000;
/// The arrival number of stored events (live events count from 1).
pub const HISTORY_SEQ: u64 = 0;

/// Where a page ends: the view only hands it back to ask for the page after it. (The
/// storage's keyset cursor converts to and from it; the view's own type, so that `app` does
/// not import `storage`, whose history reader imports `app`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryCursor {
    /// The event's time, in nanoseconds since the epoch.
    pub ts_ns: i64,
    /// The event's row id.
    pub id: i64,
}

/// One page to read.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRequest {
    pub generation: u64,
    /// Options of `secmon-tui history`.
    pub query: String,
    /// "Now" for `--last`, the same for every page of a query.
    pub now: DateTime<Utc>,
    /// Older than this (None: from the newest).
    pub before: Option<HistoryCursor>,
    pub limit: usize,
}

/// One page read: newest first, each event with the cursor that pages past it; or the
/// problem in one line (a bad option, a missing database).
#[derive(Debug)]
pub struct HistoryReply {
    pub generation: u64,
    pub result: Result<Vec<(SecEvent, HistoryCursor)>, String>,
}

/// The stored history, as the UI reads it.
pub trait HistorySource {
    /// Starts reading a page. The reply comes back now (returned) or later, through the
    /// event loop, as [`super::Event::History`].
    fn request(&mut self, request: HistoryRequest) -> Option<HistoryReply>;
    /// Where the events come from (the view's title).
    fn describe(&self) -> String;
}

/// No history (storage off, or a replay without `--db`): every request is answered with why.
pub struct NoHistory(pub String);

impl HistorySource for NoHistory {
    fn request(&mut self, request: HistoryRequest) -> Option<HistoryReply> {
        Some(HistoryReply {
            generation: request.generation,
            result: Err(self.0.clone()),
        })
    }

    fn describe(&self) -> String {
        "no history".to_string()
    }
}

/// What the history view shows.
#[derive(Clone, Debug)]
pub struct HistoryView {
    /// The options of the last query run.
    pub query: String,
    /// The query being edited after `/`.
    pub editing: Option<String>,
    pub rows: Vec<Entry>,
    pub selected: usize,
    /// Where the next page starts (None: no more events).
    next: Option<HistoryCursor>,
    /// Why the last page failed.
    pub error: Option<String>,
    /// A page is being read.
    pub loading: bool,
    generation: u64,
    now: DateTime<Utc>,
}

impl Default for HistoryView {
    fn default() -> Self {
        HistoryView {
            query: DEFAULT_HISTORY_QUERY.to_string(),
            editing: None,
            rows: Vec::new(),
            selected: 0,
            next: None,
            error: None,
            loading: false,
            generation: 0,
            now: DateTime::UNIX_EPOCH,
        }
    }
}

impl HistoryView {
    /// Whether older events may follow the ones loaded.
    pub fn has_more(&self) -> bool {
        self.next.is_some()
    }

    /// Whether the view stopped at [`HISTORY_MAX_ROWS`] with more to read.
    pub fn capped(&self) -> bool {
        self.rows.len() >= HISTORY_MAX_ROWS && self.has_more()
    }
}

fn entry(event: SecEvent) -> Entry {
    Entry {
        seq: HISTORY_SEQ,
        event: Stored::whole(event),
        visible: true,
    }
}

impl App {
    /// Runs the view's query from the newest event (on opening the view, `r`, and `Enter`
    /// after editing).
    pub(super) fn run_history_query(&mut self) {
        let view = &mut self.history;
        view.generation += 1;
        view.selected = 0;
        view.rows.clear();
        view.next = None;
        view.error = None;
        view.now = self.now;
        self.request_history_page(None);
    }

    /// Asks for the page after the loaded rows when the selection wants a row past them
    /// (one page at a time; `G` therefore walks page by page, never the whole database).
    pub(super) fn load_more_history(&mut self, wanted: usize) {
        let view = &self.history;
        if wanted < view.rows.len() || view.loading || view.rows.len() >= HISTORY_MAX_ROWS {
            return;
        }
        if let Some(before) = view.next {
            self.request_history_page(Some(before));
        }
    }

    fn request_history_page(&mut self, before: Option<HistoryCursor>) {
        let view = &mut self.history;
        view.loading = true;
        let request = HistoryRequest {
            generation: view.generation,
            query: view.query.clone(),
            now: view.now,
            before,
            limit: HISTORY_PAGE,
        };
        if let Some(reply) = self.controls.history.request(request) {
            self.history_reply(reply);
        }
    }

    /// A page arrived (late pages of an older query are dropped).
    pub(super) fn history_reply(&mut self, reply: HistoryReply) {
        let view = &mut self.history;
        if reply.generation != view.generation {
            return;
        }
        view.loading = false;
        match reply.result {
            Ok(page) => {
                let full = page.len() >= HISTORY_PAGE;
                view.next = None;
                for (event, cursor) in page {
                    view.next = Some(cursor);
                    view.rows.push(entry(event));
                }
                if !full {
                    view.next = None;
                }
            }
            Err(error) => {
                view.error = Some(error);
                view.next = None;
            }
        }
        self.dirty = true;
    }

    pub fn history_title(&self) -> String {
        self.controls.history.describe()
    }
}
