//! The history view (`h`): stored events, newest first, filtered with the options of
//! `secmon-tui history` (`/` edits them: `--last 2h --min-risk 0.6`), scrolled page by page
//! (older pages load as the selection reaches the end); `Enter` opens the detail view.
use super::{App, Entry, Stored};
use crate::event::Event as SecEvent;
use crate::storage::Cursor;

/// The query the view starts with.
pub const DEFAULT_HISTORY_QUERY: &str = "--last 24h";
/// Events read per page.
pub const HISTORY_PAGE: usize = 500;
/// The arrival number of stored events (live events count from 1).
pub const HISTORY_SEQ: u64 = 0;

/// The stored history, as the UI reads it.
pub trait HistorySource {
    /// Events matching `query` (options of `secmon-tui history`), newest first, older than
    /// `before`, at most `limit`; each with the cursor that pages past it. The error is one
    /// line (a bad option, a missing database).
    fn query(
        &self,
        query: &str,
        before: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<(SecEvent, Cursor)>, String>;
    /// Where the events come from (the view's title).
    fn describe(&self) -> String;
}

/// No history (storage off, or a replay without `--db`).
pub struct NoHistory(pub String);

impl HistorySource for NoHistory {
    fn query(
        &self,
        _: &str,
        _: Option<Cursor>,
        _: usize,
    ) -> Result<Vec<(SecEvent, Cursor)>, String> {
        Err(self.0.clone())
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
    next: Option<Cursor>,
    /// Why the last query failed.
    pub error: Option<String>,
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
        }
    }
}

impl HistoryView {
    /// Whether older events may follow the ones loaded.
    pub fn has_more(&self) -> bool {
        self.next.is_some()
    }
}

fn entry(event: SecEvent) -> Entry {
    Entry {
        seq: HISTORY_SEQ,
        event: Stored::Owned(event),
        visible: true,
    }
}

impl App {
    /// Runs the view's query from the newest event (on opening the view, `r`, and `Enter`
    /// after editing).
    pub(super) fn run_history_query(&mut self) {
        let view = &mut self.history;
        view.selected = 0;
        view.rows.clear();
        view.next = None;
        match self.controls.history.query(&view.query, None, HISTORY_PAGE) {
            Ok(page) => {
                view.error = None;
                append_page(view, page);
            }
            Err(error) => view.error = Some(error),
        }
    }

    /// Loads pages until row `wanted` exists or the history ends.
    pub(super) fn load_more_history(&mut self, wanted: usize) {
        while self.history.rows.len() <= wanted {
            let Some(before) = self.history.next else {
                return;
            };
            match self
                .controls
                .history
                .query(&self.history.query, Some(before), HISTORY_PAGE)
            {
                Ok(page) => append_page(&mut self.history, page),
                Err(error) => {
                    self.history.error = Some(error);
                    self.history.next = None;
                    return;
                }
            }
        }
    }

    pub fn history_title(&self) -> String {
        self.controls.history.describe()
    }
}

fn append_page(view: &mut HistoryView, page: Vec<(SecEvent, Cursor)>) {
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
