//! The deny-entries pane (`D`): what the kernel blocks now, since when, until when, who asked
//! and why; `u` removes the selected entry.
use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Row, Table},
};

use super::{Styles, Theme, clean, clock, hint};
use crate::app::App;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let styles = Styles::new(theme);
    let view = &app.blocks;
    let title = Line::from(vec![
        Span::styled(
            format!(" ▶ Blocked in the kernel ({}) ", view.len()),
            styles.title(true),
        ),
        Span::styled(" u: unblock  Esc: back ", styles.dim()),
    ]);
    let block = Block::new()
        .borders(Borders::TOP)
        .title(title)
        .border_style(styles.bold());
    let records = match &view.denies {
        Ok(records) => records.as_slice(),
        Err(why) => {
            frame.render_widget(block, area);
            hint(frame, area, &format!("  {}", clean(why)), &styles);
            return;
        }
    };
    let data_rows = usize::from(area.height.saturating_sub(2)).max(1);
    let start = view.selected.saturating_sub(data_rows - 1);
    let rows = records
        .iter()
        .enumerate()
        .skip(start)
        .take(data_rows)
        .map(|(i, record)| {
            let expires = record
                .expires
                .map_or_else(|| "until removed".to_string(), |at| clock(app, at));
            let why = match &record.rule {
                Some(rule) => format!("rule {rule}: {}", record.reason),
                None => record.reason.clone(),
            };
            let row = Row::new(vec![
                Cell::from(Line::from(format!("#{}", record.id)).right_aligned()),
                Cell::from(clean(&record.target).into_owned()),
                Cell::from(clock(app, record.created)),
                Cell::from(expires),
                Cell::from(clean(&record.by).into_owned()),
                Cell::from(clean(&why).into_owned()),
            ]);
            if i == view.selected {
                row.style(styles.selected(true))
            } else {
                row
            }
        });
    let wide = area.width >= 120;
    let widths = [
        Constraint::Length(5),
        Constraint::Length(if wide { 40 } else { 28 }),
        Constraint::Length(8),
        Constraint::Length(13),
        Constraint::Length(if wide { 36 } else { 16 }),
        Constraint::Fill(1),
    ];
    let header = Row::new(["id", "target", "since", "expires", "by", "why"]).style(styles.dim());
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(1);
    frame.render_widget(table, area);
    if records.is_empty() {
        hint(
            frame,
            area,
            "  nothing is blocked (B on a selected event blocks its program or destination)",
            &styles,
        );
    }
}
