//! The deny-entries view (`D`): what the kernel blocks right now, who asked and why, and `u`
//! to remove the selected entry.
use chrono::{DateTime, Utc};

use super::{App, StatusKind};

/// One live deny entry as the view lists it: what is blocked, since and until when, who
/// asked and why. The view's own type (the response layer's record converts into it), so that
/// `app` does not import `response`, whose adapters import `app`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenyRow {
    pub id: u32,
    /// As people read it: `exec path /tmp/x`, `connect 10.0.0.1:443`.
    pub target: String,
    pub created: DateTime<Utc>,
    /// When it lapses (`None`: until removed or the monitor exits).
    pub expires: Option<DateTime<Utc>>,
    pub by: String,
    /// The rule that asked for it.
    pub rule: Option<String>,
    pub reason: String,
}

/// The deny entries as last read, or why there are none (enforcement off, a replay).
#[derive(Clone, Debug)]
pub struct BlocksView {
    pub denies: Result<Vec<DenyRow>, String>,
    pub selected: usize,
}

impl Default for BlocksView {
    fn default() -> Self {
        BlocksView {
            denies: Ok(Vec::new()),
            selected: 0,
        }
    }
}

impl BlocksView {
    pub fn len(&self) -> usize {
        self.denies.as_ref().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn selected_record(&self) -> Option<&DenyRow> {
        self.denies.as_ref().ok()?.get(self.selected)
    }
}

impl App {
    /// Re-reads the deny entries (on opening the view and once a second while it is open).
    pub(super) fn refresh_denies(&mut self) {
        // Keep the selection on the same entry (by id) when others expire around it.
        let selected_id = self.blocks.selected_record().map(|r| r.id);
        self.blocks.denies = self.controls.response.denies();
        self.deny_count = self.blocks.len();
        if let (Some(id), Ok(records)) = (selected_id, &self.blocks.denies)
            && let Some(index) = records.iter().position(|r| r.id == id)
        {
            self.blocks.selected = index;
        }
        self.blocks.selected = self
            .blocks
            .selected
            .min(self.blocks.len().saturating_sub(1));
    }

    pub(super) fn unblock_selected(&mut self) {
        let Some(id) = self.blocks.selected_record().map(|r| r.id) else {
            let text = match &self.blocks.denies {
                Err(why) => why.clone(),
                Ok(_) => "nothing is blocked".to_string(),
            };
            self.set_status(text, StatusKind::Info);
            return;
        };
        let result = self.controls.response.unblock(id);
        self.refresh_denies();
        match result {
            Ok(text) => self.set_status(text, StatusKind::Info),
            Err(text) => self.set_status(text, StatusKind::Error),
        }
    }
}
