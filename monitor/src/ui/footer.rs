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
    ("h", "history"),
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
        let text = format!(" {}", clean(&status.text));
        let text = if status.kind == StatusKind::Prompt {
            // The end of a question says which keys answer it: keep it in view.
            keep_tail(&text, usize::from(area.width))
        } else {
            text
        };
        Line::from(Span::styled(text, style))
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

/// `text`, or `…` and as much of its end as fits in `width` columns.
fn keep_tail(text: &str, width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= width || width < 2 {
        return text.to_string();
    }
    let tail: String = chars[chars.len() - (width - 1)..].iter().collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::keep_tail;

    #[test]
    fn prompts_keep_their_answer_keys_in_view() {
        assert_eq!(keep_tail("really? [y/N]", 20), "really? [y/N]");
        assert_eq!(keep_tail("really deny this? [y/N]", 10), "…is? [y/N]");
    }
}
