//! The demo's narration pane (`secmon-tui demo`): the scenario, step N of M, what the attacker
//! does and why, the ATT&CK technique, the expected rules with a marker that turns on when one
//! fires on the step's processes, and the defender's next move.
//!
//! From [`WIDE`] columns on it is beside the event panes; below, it replaces them (`N` swaps
//! in both cases). No information is only in colour: a fired rule is `[x]`, a waiting one `[ ]`.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph, Wrap},
};

use super::{Theme, clean};
use crate::app::{App, DemoState, WIDE};

/// Draws the narration and, depending on the width and `N`, the event panes (`panes`).
pub fn render_with_panes(
    frame: &mut Frame,
    body: Rect,
    app: &App,
    theme: Theme,
    panes: impl FnOnce(&mut Frame, Rect),
) {
    let Some(demo) = &app.demo else {
        panes(frame, body);
        return;
    };
    let wide = body.width >= WIDE;
    match (wide, demo.toggled) {
        (true, false) => {
            let [left, right] =
                Layout::horizontal([Constraint::Fill(3), Constraint::Fill(2)]).areas(body);
            panes(frame, left);
            render(frame, right, demo, theme);
        }
        (false, true) => panes(frame, body),
        _ => render(frame, body, demo, theme),
    }
}

/// The narration in `area`.
pub fn render(frame: &mut Frame, area: Rect, demo: &DemoState, theme: Theme) {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let heading = if theme.color {
        bold.fg(Color::Cyan)
    } else {
        bold
    };
    let fired = if theme.color {
        bold.fg(Color::Green)
    } else {
        bold
    };
    let total = demo.scenario.steps.len();
    let mut title = format!(" {} — {} ", clean(&demo.scenario.title), clean(&demo.how));
    if demo.auto {
        title.push_str("[auto] ");
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title, bold));
    let mut lines: Vec<Line> = Vec::new();
    match demo.current {
        None => {
            lines.push(Line::styled(format!("{total} steps"), heading));
            lines.push(Line::raw(clean(&demo.scenario.summary).into_owned()));
            lines.push(Line::raw(""));
            lines.push(Line::raw(
                "n: run the first step   a: play them all   ?: every key",
            ));
        }
        Some(index) => {
            let step = &demo.scenario.steps[index];
            let state = if demo.running {
                "running"
            } else if demo.complete(index) {
                "done, every expected rule fired"
            } else {
                "done"
            };
            lines.push(Line::from(vec![
                Span::styled(format!("Step {} of {total}", index + 1), heading),
                Span::raw(format!(" · {state}")),
            ]));
            lines.push(Line::styled(clean(&step.title).into_owned(), bold));
            lines.push(Line::styled("Attacker", heading));
            lines.push(Line::raw(clean(&step.narration).replace('\n', " ")));
            lines.push(Line::from(vec![
                Span::styled("Technique ", heading),
                Span::styled(clean(&step.technique.id).into_owned(), bold),
                Span::raw(format!(" {}", clean(&step.technique.name))),
            ]));
            lines.push(Line::styled("Expected rules", heading));
            for rule in &step.expect {
                let seen = demo.fired[index].contains(rule);
                let (marker, style) = if seen {
                    ("[x] fired ", fired)
                } else {
                    ("[ ] waiting ", Style::new())
                };
                lines.push(Line::from(vec![
                    Span::styled(marker, style),
                    Span::styled(clean(rule).into_owned(), style),
                ]));
            }
            lines.push(Line::styled("Defender", heading));
            lines.push(Line::raw(clean(&step.defender).replace('\n', " ")));
        }
    }
    let progress: String = (0..total)
        .map(|i| match demo.current {
            Some(c) if i == c => '>',
            _ if demo.complete(i) => 'x',
            _ => '.',
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::raw(format!(
        "[{progress}]  n next  p previous  a auto  Space pause  b block  Enter explain  N panes"
    )));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}
