//! The history pane (`h`): stored events, newest first, with their date, risk marker and key
//! facts; the query line shows the `secmon-tui history` options in use (`/` edits them).
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Row, Table},
};

use super::{Styles, Theme, clean, file, network, process, severity_marker};
use crate::app::{App, HISTORY_MAX_ROWS, Mode};
use crate::event::Family;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let styles = Styles::new(theme);
    let view = &app.history;
    let more = if view.has_more() { "+" } else { "" };
    let mut title = vec![
        Span::styled(
            format!(
                " ▶ {} ({}{more}) ",
                clean(&app.history_title()),
                view.rows.len()
            ),
            styles.title(true),
        ),
        Span::styled(
            " /: query  r: rerun  Enter: detail  Esc: back ",
            styles.dim(),
        ),
    ];
    if view.loading {
        title.push(Span::styled(" reading… ", styles.warn()));
    } else if view.capped() {
        title.push(Span::styled(
            format!(" first {HISTORY_MAX_ROWS} shown: narrow the query "),
            styles.warn(),
        ));
    }
    let title = Line::from(title);
    let block = Block::new()
        .borders(Borders::TOP)
        .title(title)
        .border_style(styles.bold());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [query_area, table_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
    frame.render_widget(query_line(app, &styles), query_area);
    let table_area = match &view.error {
        // A failed later page leaves the rows read before it in view, under the error.
        Some(error) => {
            let [error_area, rest] =
                Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(table_area);
            frame.render_widget(
                Line::styled(format!("  {}", clean(error)), styles.error()),
                error_area,
            );
            rest
        }
        None => table_area,
    };
    if view.rows.is_empty() {
        if view.error.is_none() && !view.loading {
            frame.render_widget(
                Line::styled("  no stored event matches", styles.dim()),
                table_area,
            );
        }
        return;
    }
    render_rows(frame, table_area, app, &styles);
}

/// `query: --last 24h` (with a cursor while editing).
fn query_line<'a>(app: &App, styles: &Styles) -> Line<'a> {
    let view = &app.history;
    let (text, editing) = match (&app.mode, &view.editing) {
        (Mode::HistoryQuery, Some(text)) => (text.as_str(), true),
        _ => (view.query.as_str(), false),
    };
    let mut spans = vec![
        Span::styled(" query: ", styles.dim()),
        Span::styled(clean(text).into_owned(), styles.bold()),
    ];
    if editing {
        spans.push(Span::styled("█", styles.key()));
        spans.push(Span::styled(
            "  Enter: run  Esc: cancel  (options of secmon-tui history)",
            styles.dim(),
        ));
    }
    Line::from(spans)
}

fn render_rows(frame: &mut Frame, area: Rect, app: &App, styles: &Styles) {
    let view = &app.history;
    let data_rows = usize::from(area.height.saturating_sub(1)).max(1);
    let start = view.selected.saturating_sub(data_rows - 1);
    let wide = area.width >= 100;
    let rows = view
        .rows
        .iter()
        .enumerate()
        .skip(start)
        .take(data_rows)
        .map(|(i, entry)| {
            let event = &entry.event;
            let severity = event.analysis.severity;
            let facts = match event.event_type.family() {
                Family::Process | Family::Kernel => process::facts,
                Family::File => file::facts,
                Family::Network => network::facts,
            };
            let (op, details) = facts(event);
            let time = event
                .timestamp
                .with_timezone(&app.offset)
                .format(if wide {
                    "%Y-%m-%d %H:%M:%S"
                } else {
                    "%m-%d %H:%M"
                })
                .to_string();
            let mut row = Row::new(vec![
                Cell::from(severity_marker(severity)).style(styles.severity(severity)),
                Cell::from(time),
                Cell::from(Line::from(event.pid.to_string()).right_aligned()),
                Cell::from(clean(&event.process).into_owned()),
                Cell::from(op),
                Cell::from(details),
                Cell::from(format!("{:.2}", event.analysis.risk_score))
                    .style(styles.severity(severity)),
            ])
            .style(styles.row(severity));
            if i == view.selected {
                row = row.style(styles.row(severity).patch(styles.selected(true)));
            }
            row
        });
    let widths = [
        Constraint::Length(2),
        Constraint::Length(if wide { 19 } else { 11 }),
        Constraint::Length(7),
        Constraint::Length(15),
        Constraint::Length(7),
        Constraint::Fill(1),
        Constraint::Length(4),
    ];
    let header =
        Row::new(["", "time", "pid", "process", "op", "details", "risk"]).style(styles.dim());
    let table = Table::new(rows, widths).header(header).column_spacing(1);
    frame.render_widget(table, area);
}
