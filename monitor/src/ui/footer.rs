//! The footer: the filter being typed, a status or prompt, or the most useful keys.
use ratatui::{
    Frame,
    layout::Rect,
    text::{Line, Span},
    widgets::Paragraph,
};

use super::{Styles, Theme, clean, keep_tail};
use crate::app::{App, Mode, PaneId, StatusKind, View};

const HINTS: &[(&str, &str)] = &[
    ("q", "quit"),
    ("?", "help"),
    ("Tab", "pane"),
    ("↑↓", "select"),
    ("Enter", "detail"),
    ("1-4", "probes"),
    ("/", "filter"),
    ("f", "suspicious"),
    ("Space", "pause"),
    ("r", "reload"),
    ("R", "rules"),
    ("h", "history"),
    ("b", "block"),
    ("c", "clear"),
];

/// The keys of a demo (`secmon-tui demo`) over the live view.
const DEMO_HINTS: &[(&str, &str)] = &[
    ("n", "next step"),
    ("p", "previous"),
    ("a", "auto"),
    ("Space", "pause"),
    ("b", "block"),
    ("Enter", "explain"),
    ("N", "panes"),
    ("?", "help"),
    ("q", "quit"),
];

/// The keys of the focused alerts strip.
const ALERT_HINTS: &[(&str, &str)] = &[
    ("q", "quit"),
    ("?", "help"),
    ("Tab", "pane"),
    ("↑↓", "select"),
    ("Enter", "why it fired"),
    ("e", "its process's events"),
    ("i", "incident"),
    ("b", "block"),
    ("/", "filter"),
];

/// The keys of the incident view.
const INCIDENT_HINTS: &[(&str, &str)] = &[
    ("Esc", "back"),
    ("↑↓", "select"),
    ("Enter", "detail"),
    ("e", "its process's events"),
    ("←→", "fold"),
    ("b", "block"),
    ("Z", "presenter"),
    ("?", "help"),
];

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let styles = Styles::new(theme);
    let line = if app.mode == Mode::Filter {
        Line::from(vec![
            Span::styled(" filter: ", styles.bold()),
            Span::styled(format!("{}█", clean(&app.filter)), styles.warn()),
            Span::styled(
                "  Enter keeps · Esc clears · matches process, path, IP; pid:N one process",
                styles.dim(),
            ),
        ])
    } else if let Some(question) = pending_question(app) {
        // A question waiting for its answer stays in view, whatever else reports meanwhile.
        let text = keep_tail(&format!(" {}", clean(&question)), usize::from(area.width));
        Line::from(Span::styled(text, styles.header_bar()))
    } else if let Some(status) = &app.status {
        let style = match status.kind {
            StatusKind::Info => styles.bold(),
            StatusKind::Error => styles.error(),
            StatusKind::Prompt => styles.header_bar(),
        };
        // An error says so in a symbol too, not only in red.
        let mark = if status.kind == StatusKind::Error {
            " ✗"
        } else {
            ""
        };
        let text = format!("{mark} {}", clean(&status.text));
        let text = if status.kind == StatusKind::Prompt {
            // The end of a question says which keys answer it: keep it in view.
            keep_tail(&text, usize::from(area.width))
        } else {
            text
        };
        Line::from(Span::styled(text, style))
    } else {
        let hints = if app.view == View::Incident {
            INCIDENT_HINTS
        } else if app.focus == PaneId::Alerts && app.view == View::Live {
            ALERT_HINTS
        } else if app.demo.is_some() && app.view == View::Live {
            DEMO_HINTS
        } else {
            HINTS
        };
        let mut spans = Vec::with_capacity(hints.len() * 2);
        for (key, what) in hints {
            spans.push(Span::styled(format!(" {key}"), styles.key()));
            spans.push(Span::raw(format!(" {what} ")));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The question a mode waits on an answer to, if any.
fn pending_question(app: &App) -> Option<String> {
    match &app.mode {
        Mode::ConfirmEnforce(plan) => Some(format!("really {}? [y/N]", plan.question)),
        Mode::ChooseProbe => Some(
            "toggle probes: 1 process  2 file  3 network  4 kernel  (other key cancels)"
                .to_string(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::ui::keep_tail;

    #[test]
    fn prompts_keep_their_answer_keys_in_view() {
        assert_eq!(keep_tail("really? [y/N]", 20), "really? [y/N]");
        assert_eq!(keep_tail("really deny this? [y/N]", 10), "…is? [y/N]");
        // Wide characters take two columns each.
        assert_eq!(keep_tail("really deny 漢字漢字? [y/N]", 12), "…漢字? [y/N]");
    }
}
