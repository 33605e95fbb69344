//! The footer: the filter being typed, a status or prompt, or the most useful keys.
use ratatui::{
    Frame,
    layout::Rect,
    text::{Line, Span},
    widgets::Paragraph,
};

use super::{Styles, clean};
use crate::app::{App, Mode, StatusKind};

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
    ("b", "block"),
    ("c", "clear"),
];

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let styles = Styles::new(app.theme);
    let line = if app.mode == Mode::Filter {
        Line::from(vec![
            Span::styled(" filter: ", styles.bold()),
            Span::styled(format!("{}█", clean(&app.filter)), styles.warn()),
            Span::styled(
                "  Enter keeps · Esc clears · matches process, path, IP",
                styles.dim(),
            ),
        ])
    } else if let Some(status) = &app.status {
        let style = match status.kind {
            StatusKind::Info => styles.bold(),
            StatusKind::Error => styles.error(),
            StatusKind::Prompt => styles.header_bar(),
        };
        Line::from(Span::styled(format!(" {}", clean(&status.text)), style))
    } else {
        let mut spans = Vec::with_capacity(HINTS.len() * 2);
        for (key, what) in HINTS {
            spans.push(Span::styled(format!(" {key}"), styles.key()));
            spans.push(Span::raw(format!(" {what} ")));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}
