//! The files pane: opens (path and flags), writes, deletes, renames, chmods and links.
use ratatui::{Frame, layout::Rect};

use super::{Theme, clean, render_event_pane};
use crate::{
    app::{App, PaneId},
    event::{Event, EventType},
};

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    render_event_pane(frame, area, app, theme, PaneId::File, facts);
}

/// The operation and the key facts of a file event (sanitised).
pub fn facts(event: &Event) -> (&'static str, String) {
    let path = clean(event.file_path.as_deref().unwrap_or("?"));
    let new_path = clean(event.new_path.as_deref().unwrap_or("?"));
    let flags = event
        .flags
        .as_deref()
        .map(|f| format!("  {}", clean(f)))
        .unwrap_or_default();
    let mode = event.mode.map(|m| format!("  {m:04o}")).unwrap_or_default();
    match event.event_type {
        EventType::FileOpen => ("open", format!("{path}{flags}{mode}")),
        EventType::FileWrite => ("write", format!("{path}{flags}")),
        EventType::FileDelete => ("delete", format!("{path}{flags}")),
        EventType::FileRename => ("rename", format!("{path} → {new_path}{flags}")),
        EventType::FileChmod => ("chmod", format!("{path}{mode}")),
        EventType::FileLink => {
            let op = match event.syscall.as_deref() {
                Some(s) if s.starts_with("symlink") => "symlink",
                _ => "link",
            };
            (op, format!("{new_path} → {path}{flags}"))
        }
        other => (other.as_str(), format!("{path}{flags}")),
    }
}
