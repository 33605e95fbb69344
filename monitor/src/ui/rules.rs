//! The rules pane (`R`): every rule with its enabled state, score, action and hits; `Space`
//! toggles the selected rule at once.
use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Row, Table},
};

use super::{Styles, Theme, clean, hint};
use crate::app::App;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let styles = Styles::new(theme);
    let title = Line::from(vec![
        Span::styled(
            format!(" ▶ Rules ({}) ", app.rules.len()),
            styles.title(true),
        ),
        Span::styled(
            " Space: enable/disable  r: reload  Esc: back ",
            styles.dim(),
        ),
    ]);
    let block = Block::new()
        .borders(Borders::TOP)
        .title(title)
        .border_style(styles.bold());
    let data_rows = usize::from(area.height.saturating_sub(2)).max(1);
    let start = app.rule_selected.saturating_sub(data_rows - 1);
    let rows = app
        .rules
        .iter()
        .enumerate()
        .skip(start)
        .take(data_rows)
        .map(|(i, rule)| {
            let enabled = if rule.enabled {
                Span::styled("on", styles.ok())
            } else {
                Span::styled("off", styles.warn())
            };
            let mut row = Row::new(vec![
                Cell::from(enabled),
                Cell::from(clean(&rule.name).into_owned()),
                Cell::from(Line::from(format!("{:.2}", rule.score)).right_aligned()),
                Cell::from(rule.action.as_str()),
                Cell::from(Line::from(rule.hits.to_string()).right_aligned()),
                Cell::from(format!(
                    "{}:{}",
                    clean(&rule.file.display().to_string()),
                    rule.line
                )),
            ]);
            if i == app.rule_selected {
                row = row.style(styles.selected(true));
            } else if !rule.enabled {
                row = row.style(styles.dim());
            }
            row
        });
    let widths = [
        Constraint::Length(3),
        Constraint::Length(if area.width >= 120 { 36 } else { 26 }),
        Constraint::Length(5),
        Constraint::Length(14),
        Constraint::Length(8),
        Constraint::Fill(1),
    ];
    let header = Row::new(["on", "rule", "score", "action", "hits", "file"]).style(styles.dim());
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(1);
    frame.render_widget(table, area);
    if app.rules.is_empty() {
        hint(
            frame,
            area,
            "  no rules loaded (see --rules DIR and docs/rules.md)",
            &styles,
        );
    }
}
