//! The `?` overlay: every key.
use ratatui::{
    Frame,
    layout::Rect,
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph, Wrap},
};

use super::{Styles, Theme, detail::hang};

/// Every key and what it does (also in docs/tui.md).
pub const KEYS: &[(&str, &str)] = &[
    (
        "Tab / Shift-Tab",
        "focus the next / previous pane (alerts too)",
    ),
    ("↑ ↓  k j", "select a newer / older event (scrolls)"),
    ("PgUp PgDn", "move ten rows"),
    ("g Home / G End", "follow the newest / go to the oldest"),
    (
        "Enter",
        "detail: fields, ancestry, why it fired (matched rules)",
    ),
    ("e", "its process's events (filter pid:N); Esc clears"),
    (
        "i",
        "incident: its process tree with each process's events and rules; ←→ fold",
    ),
    (
        "1 2 3 4",
        "switch process / file / network / kernel probes on or off",
    ),
    ("p then 1-4", "the same, with a prompt"),
    ("r", "reload rules from disk (errors keep the old rules)"),
    ("R", "rules pane: Space enables/disables the selected rule"),
    ("b", "simulate blocking the selected process or connection"),
    (
        "B",
        "block it in the kernel: its program or destination (asks y/N; [response] enforce)",
    ),
    (
        "D",
        "deny entries in the kernel: u removes the selected one",
    ),
    (
        "h",
        "stored history: / edits the query (--last 2h --min-risk 0.6), r reruns",
    ),
    (
        "/",
        "filter by process name, path, IP or pid:N; Enter keeps, Esc clears",
    ),
    ("Esc", "clear the filter / close the open view"),
    ("f", "show only suspicious and malicious events"),
    (
        "Space",
        "pause the display (capture goes on; +N counts arrivals)",
    ),
    ("c", "clear the panes and alerts"),
    (
        "Z",
        "presenter layout (projector): fewer columns, bigger markers",
    ),
    ("?", "this help"),
    ("q  Ctrl-C", "quit"),
];

/// The demo's keys (`secmon-tui demo`), listed first there; they take over `n`, `p`, `a`,
/// `Space`, `b` and `N` in the live view.
pub const DEMO_KEYS: &[(&str, &str)] = &[
    ("n", "demo: run the next step"),
    (
        "p",
        "demo: run the previous step again (not the probe prompt)",
    ),
    ("a", "demo: auto-play, a step every few seconds"),
    ("Space", "demo: pause or resume auto-play"),
    ("b", "demo: simulate blocking the step's offender"),
    (
        "Enter",
        "demo: explain the selected event (rules matched, risk)",
    ),
    ("N", "demo: the narration instead of (or beside) the panes"),
];

pub fn render(frame: &mut Frame, area: Rect, theme: Theme, demo: bool) {
    let styles = Styles::new(theme);
    // Inside the borders; what wraps continues under the text column, as in the detail view.
    let width = usize::from(area.width.saturating_sub(2));
    let demo_keys = if demo { DEMO_KEYS } else { &[] };
    let mut lines: Vec<Line> = demo_keys
        .iter()
        .chain(KEYS)
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(format!(" {key:<16} "), styles.key()),
                Span::raw(*what),
            ])
        })
        .flat_map(|line| hang(line, width))
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::raw(" Risk markers: "),
        Span::styled("!!", styles.severity(crate::event::Severity::Malicious)),
        Span::raw(" malicious, "),
        Span::styled("! ", styles.severity(crate::event::Severity::Suspicious)),
        Span::raw(" suspicious, blank benign. "),
        Span::styled("[would block]", styles.blocked()),
        Span::raw(" a simulated block, "),
        Span::styled("[stopped]", styles.blocked()),
        Span::raw(" what the kernel stopped."),
    ]));
    let block = Block::new()
        .borders(Borders::ALL)
        .title(Span::styled(" Keys — any key closes ", styles.title(true)));
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}
