//! The alerts strip: suspicious and malicious events, newest first, with the rule that fired
//! and its recommendation. It takes the focus like the event panes (`Tab`): then its selected
//! alert is what `Enter` explains and `e` follows to its process's events.
use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Row, Table},
};

use super::{PRESENTER_MARKER_WIDTH, Styles, Theme, block_tag, clean, clock};
use crate::app::{App, PaneId, View};

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let styles = Styles::new(theme);
    // A view over the panes (rules, incident...) has the keys, not the strip.
    let focused = app.focus == PaneId::Alerts && app.view == View::Live;
    let state = app.pane(PaneId::Alerts);
    let data_rows = usize::from(area.height.saturating_sub(1));
    state.height.set(data_rows);
    let (start, shown) = state.window(app.paused_at, data_rows);

    let mut title = vec![Span::styled(
        format!(
            " {}Alerts ({}) ",
            if focused { "▶ " } else { "" },
            state.entries.len()
        ),
        styles.title(focused),
    )];
    if state.selected.is_some() && start > 0 {
        title.push(Span::styled(format!(" {start} newer above "), styles.dim()));
    }
    if focused {
        title.push(Span::styled(
            " Enter: why it fired  e: its process's events  i: its incident ",
            styles.dim(),
        ));
    }
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Line::from(title))
        .border_style(if focused { styles.bold() } else { styles.dim() });
    let wide = area.width >= 70;
    let presenter = styles.presenter();
    let rows = shown.into_iter().map(|entry| {
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
        let mut style = styles.row(analysis.severity);
        if state.selected == Some(entry.seq) {
            style = style.patch(styles.selected(focused));
        }
        let marker =
            Cell::from(styles.marker(analysis.severity)).style(styles.severity(analysis.severity));
        let pid = Cell::from(Line::from(event.pid.to_string()).right_aligned());
        let process = Cell::from(clean(&event.process).into_owned());
        let cells = if presenter {
            // Fewer, bigger columns: the badge, the time, the process, the rule (and the
            // advice on a wide screen).
            let mut cells = vec![
                marker,
                Cell::from(clock(app, event.timestamp)),
                process,
                Cell::from(rule),
            ];
            if area.width >= 120 {
                cells.push(Cell::from(advice));
            }
            cells
        } else if wide {
            vec![
                marker,
                Cell::from(clock(app, event.timestamp)),
                pid,
                process,
                Cell::from(format!("{:.2}", analysis.risk_score))
                    .style(styles.severity(analysis.severity)),
                Cell::from(rule),
                Cell::from(advice),
            ]
        } else {
            vec![marker, pid, process, Cell::from(rule)]
        };
        Row::new(cells).style(style)
    });
    let presenter_widths = [
        Constraint::Length(PRESENTER_MARKER_WIDTH),
        Constraint::Length(8),
        Constraint::Length(15),
        if area.width >= 120 {
            Constraint::Length(28)
        } else {
            Constraint::Fill(1)
        },
        Constraint::Fill(1),
    ];
    let widths: &[Constraint] = if presenter {
        &presenter_widths[..if area.width >= 120 { 5 } else { 4 }]
    } else if wide {
        &[
            Constraint::Length(2),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(15),
            Constraint::Length(4),
            Constraint::Length(if area.width >= 120 { 28 } else { 18 }),
            Constraint::Fill(1),
        ]
    } else {
        // As the event panes below 70 columns: the rule instead of time, score and advice.
        &[
            Constraint::Length(2),
            Constraint::Length(6),
            Constraint::Length(10),
            Constraint::Fill(1),
        ]
    };
    let table = Table::new(rows, widths.iter().copied())
        .block(block)
        .column_spacing(1);
    frame.render_widget(table, area);
}
