//! The alerts strip: suspicious and malicious events, newest first, with the rule that fired
//! and its recommendation.
use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Row, Table},
};

use super::{Styles, Theme, block_tag, clean, clock, severity_marker};
use crate::app::App;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let styles = Styles::new(theme);
    let title = Line::from(vec![Span::styled(
        format!(" Alerts ({}) ", app.alerts.len()),
        styles.bold(),
    )]);
    let block = Block::new()
        .borders(Borders::TOP)
        .title(title)
        .border_style(styles.dim());
    let rows_wanted = usize::from(area.height.saturating_sub(1));
    let rows = app
        .alerts
        .iter()
        .rev()
        .filter(|e| e.visible && app.paused_at.is_none_or(|p| e.seq <= p))
        .take(rows_wanted)
        .map(|entry| {
            let event = &entry.event;
            let analysis = &event.analysis;
            let rule = analysis
                .rules
                .first()
                .map(|r| clean(r).into_owned())
                .unwrap_or_else(|| clean(&analysis.detection_method).into_owned());
            let advice = if analysis.recommendation.is_empty() {
                &analysis.label
            } else {
                &analysis.recommendation
            };
            let mut advice = Line::from(clean(advice).into_owned());
            if let Some(tag) = block_tag(app, entry) {
                advice.spans.insert(0, Span::styled(tag, styles.blocked()));
            }
            Row::new(vec![
                Cell::from(severity_marker(analysis.severity))
                    .style(styles.severity(analysis.severity)),
                Cell::from(clock(app, event.timestamp)),
                Cell::from(Line::from(event.pid.to_string()).right_aligned()),
                Cell::from(clean(&event.process).into_owned()),
                Cell::from(format!("{:.2}", analysis.risk_score))
                    .style(styles.severity(analysis.severity)),
                Cell::from(rule),
                Cell::from(advice),
            ])
            .style(styles.row(analysis.severity))
        });
    let widths = [
        Constraint::Length(2),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(15),
        Constraint::Length(4),
        Constraint::Length(if area.width >= 120 { 28 } else { 18 }),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths).block(block).column_spacing(1);
    frame.render_widget(table, area);
}
