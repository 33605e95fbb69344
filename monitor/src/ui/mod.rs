//! Drawing the [`App`]: one file per pane, each with its own `render`, in the colours of a
//! [`Theme`] (or none: the severity markers carry the meaning).
//!
//! [`draw`] lays the screen out (header, the three event panes or the rules pane, the alerts
//! strip, the footer, and the detail/help overlays on top) for whatever size the terminal has:
//! from 20×5 (the focused pane only) through 80×24 (the focused pane gets the most rows) to
//! large screens. Nothing here mutates the state except each pane's remembered height.
//!
//! Every untrusted string (process names, paths, arguments, rule texts, error messages) goes
//! through [`clean`] ([`crate::sanitize::for_terminal`]) before it reaches a cell.
pub mod alerts;
pub mod blocks;
pub mod detail;
pub mod file;
pub mod footer;
pub mod header;
pub mod help;
pub mod history;
pub mod incident;
pub mod narration;
pub mod network;
pub mod process;
pub mod rules;
#[doc(hidden)]
pub mod sample;
pub mod theme;

pub use theme::{PRESENTER_MARKER_WIDTH, Theme, presenter_marker, severity_marker};

use std::borrow::Cow;

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Row, Table},
};

use crate::{
    app::{App, Entry, PaneId, View},
    event::{Event, Severity},
    sanitize,
};

/// Makes untrusted text safe for a terminal cell (control, escape, bidi and invisible
/// characters shown escaped).
pub fn clean(text: &str) -> Cow<'_, str> {
    sanitize::for_terminal(text)
}

/// Rows of the alerts strip (with its title), by screen height; nearly twice as many when it
/// has the focus, as a focused event pane gets more rows (the three panes above keep a title
/// and a row or more each).
fn alerts_height(height: u16, focused: bool) -> u16 {
    let rows: u16 = match height {
        0..20 => 0,
        20..30 => 5,
        30..45 => 7,
        _ => 9,
    };
    if focused {
        (rows * 2).saturating_sub(1)
    } else {
        rows
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App, theme: Theme) {
    let theme = Theme {
        presenter: theme.presenter || app.presenter,
        ..theme
    };
    let area = frame.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    let header_h = match area.height {
        0..3 => area.height,
        3..12 => 1,
        _ => 2,
    };
    let footer_h = u16::from(area.height >= 4);
    let alerts_focused = app.focus == PaneId::Alerts && app.view == View::Live;
    let alerts_h = alerts_height(area.height, alerts_focused);
    let [header_area, body, alerts_area, footer_area] = Layout::vertical([
        Constraint::Length(header_h),
        Constraint::Fill(1),
        Constraint::Length(alerts_h),
        Constraint::Length(footer_h),
    ])
    .areas(area);

    header::render(frame, header_area, app, theme);
    if body.height > 0 {
        match app.view {
            // No room for the strip: a focused alerts pane takes the body.
            View::Live if alerts_focused && alerts_h == 0 => {
                alerts::render(frame, body, app, theme);
            }
            View::Live if app.demo.is_some() => {
                narration::render_with_panes(frame, body, app, theme, |frame, area| {
                    render_panes(frame, area, app, theme)
                })
            }
            View::Live => render_panes(frame, body, app, theme),
            View::Rules => rules::render(frame, body, app, theme),
            View::Blocks => blocks::render(frame, body, app, theme),
            View::History => history::render(frame, body, app, theme),
            View::Incident => incident::render(frame, body, app, theme),
        }
    }
    if alerts_area.height > 0 {
        alerts::render(frame, alerts_area, app, theme);
    }
    if footer_area.height > 0 {
        footer::render(frame, footer_area, app, theme);
    }
    if app.detail.is_some() {
        detail::render(frame, overlay_area(area), app, theme);
    }
    if app.help {
        help::render(frame, overlay_area(area), theme, app.demo.is_some());
    }
}

/// The three event panes stacked; the focused one gets more rows on small screens, and is the
/// only one shown when there is no room for three.
fn render_panes(frame: &mut Frame, body: Rect, app: &App, theme: Theme) {
    if body.height < 9 {
        for pane in PaneId::ALL {
            app.pane(pane).height.set(0);
        }
        if app.focus != PaneId::Alerts {
            render_pane(frame, body, app, theme, app.focus);
            return;
        }
    }
    let weight = |pane: PaneId| {
        if pane == app.focus && body.height < 40 {
            2
        } else {
            1
        }
    };
    let areas: [Rect; 3] =
        Layout::vertical(PaneId::ALL.map(|p| Constraint::Fill(weight(p)))).areas(body);
    for (pane, area) in PaneId::ALL.into_iter().zip(areas) {
        render_pane(frame, area, app, theme, pane);
    }
}

fn render_pane(frame: &mut Frame, area: Rect, app: &App, theme: Theme, pane: PaneId) {
    match pane {
        PaneId::Process => process::render(frame, area, app, theme),
        PaneId::File => file::render(frame, area, app, theme),
        PaneId::Network => network::render(frame, area, app, theme),
        PaneId::Alerts => alerts::render(frame, area, app, theme),
    }
}

/// The area of an overlay: the screen less a margin that grows with it.
fn overlay_area(area: Rect) -> Rect {
    let dx = match area.width {
        0..60 => 0,
        60..120 => 2,
        _ => area.width / 12,
    };
    let dy = match area.height {
        0..16 => 0,
        16..40 => 1,
        _ => area.height / 10,
    };
    Rect {
        x: area.x + dx,
        y: area.y + dy,
        width: area.width.saturating_sub(2 * dx),
        height: area.height.saturating_sub(2 * dy),
    }
}

/// Styles, with and without colour. Without colour only modifiers are used, and the severity
/// marker text (`!`, `!!`) carries the meaning.
pub struct Styles {
    theme: Theme,
}

impl Styles {
    pub fn new(theme: Theme) -> Styles {
        Styles { theme }
    }

    fn fg(&self, color: Color) -> Style {
        if self.theme.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    /// Whether this is the presenter layout (fewer columns, bigger markers, high contrast).
    pub fn presenter(&self) -> bool {
        self.theme.presenter
    }

    /// The severity marker of the layout: `!`/`!!`, or the presenter's words with symbols.
    pub fn marker(&self, severity: Severity) -> &'static str {
        if self.theme.presenter {
            presenter_marker(severity)
        } else {
            severity_marker(severity)
        }
    }

    /// The marker and risk cells: benign dim, suspicious yellow, malicious red and bold. In
    /// the presenter layout: badges, black on yellow and white on red (reversed video without
    /// colour), and no dim text.
    pub fn severity(&self, severity: Severity) -> Style {
        if self.theme.presenter {
            let badge = |fg: Color, bg: Color| {
                let style = Style::new().add_modifier(Modifier::BOLD);
                if self.theme.color {
                    style.fg(fg).bg(bg)
                } else {
                    style.add_modifier(Modifier::REVERSED)
                }
            };
            return match severity {
                Severity::Benign => Style::new(),
                Severity::Suspicious => badge(Color::Black, Color::Yellow),
                Severity::Malicious => badge(Color::White, Color::Red),
            };
        }
        match severity {
            Severity::Benign => Style::new().add_modifier(Modifier::DIM),
            Severity::Suspicious => self.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Severity::Malicious => self.fg(Color::Red).add_modifier(Modifier::BOLD),
        }
    }

    /// A whole row: suspicious and malicious rows are coloured, benign rows are plain (in the
    /// presenter layout the colours are the light, bold ones, readable on a projector).
    pub fn row(&self, severity: Severity) -> Style {
        match (severity, self.theme.presenter) {
            (Severity::Benign, _) => Style::new(),
            (Severity::Suspicious, false) => self.fg(Color::Yellow),
            (Severity::Malicious, false) => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            (Severity::Suspicious, true) => {
                self.fg(Color::LightYellow).add_modifier(Modifier::BOLD)
            }
            (Severity::Malicious, true) => self.fg(Color::LightRed).add_modifier(Modifier::BOLD),
        }
    }

    pub fn selected(&self, focused: bool) -> Style {
        let style = if focused {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new().add_modifier(Modifier::UNDERLINED)
        };
        if self.theme.presenter {
            style.add_modifier(Modifier::BOLD)
        } else {
            style
        }
    }

    pub fn title(&self, focused: bool) -> Style {
        if focused {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }

    /// Secondary text: dim, except in the presenter layout (dim grey is unreadable on a
    /// projector).
    pub fn dim(&self) -> Style {
        if self.theme.presenter {
            Style::new()
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    pub fn bold(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn error(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn ok(&self) -> Style {
        if self.theme.presenter {
            self.fg(Color::LightGreen).add_modifier(Modifier::BOLD)
        } else {
            self.fg(Color::Green)
        }
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn blocked(&self) -> Style {
        self.fg(Color::Magenta).add_modifier(Modifier::BOLD)
    }

    pub fn key(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn header_bar(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }
}

/// `HH:MM:SS` in the app's display offset.
pub fn clock(app: &App, time: chrono::DateTime<chrono::Utc>) -> String {
    time.with_timezone(&app.offset)
        .format("%H:%M:%S")
        .to_string()
}

/// What one pane file supplies: the operation and the key facts of an event.
pub type Facts = fn(&Event) -> (&'static str, String);

/// The table every event pane draws: marker, time, pid, process, operation, key facts, risk.
pub fn render_event_pane(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    theme: Theme,
    pane: PaneId,
    facts: Facts,
) {
    let styles = Styles::new(theme);
    let focused = app.focus == pane;
    let state = app.pane(pane);
    // Title row, then the column header when there is room.
    let with_header = area.height >= 4;
    let data_rows = usize::from(area.height.saturating_sub(1 + u16::from(with_header)));
    state.height.set(data_rows);
    let (start, rows) = state.window(app.paused_at, data_rows);

    let mut title = vec![Span::styled(
        format!(" {}{} ", if focused { "▶ " } else { "" }, pane.title()),
        styles.title(focused),
    )];
    if state.selected.is_some() && start + rows.len() > 0 {
        title.push(Span::styled(
            format!(" browsing, {start} newer above (g: follow) "),
            styles.dim(),
        ));
    }
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Line::from(title))
        .border_style(if focused { styles.bold() } else { styles.dim() });

    if styles.presenter() {
        let selection = (state.selected, focused);
        let mut table = presenter_table(app, &styles, &rows, selection, facts, area.width);
        if with_header {
            table = table.header(presenter_header(&styles, area.width));
        }
        frame.render_widget(table.block(block), area);
        return;
    }
    let wide = area.width >= 70;
    let widths: &[Constraint] = if wide {
        &[
            Constraint::Length(2),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(15),
            Constraint::Length(7),
            Constraint::Fill(1),
            Constraint::Length(4),
        ]
    } else {
        &[
            Constraint::Length(2),
            Constraint::Length(6),
            Constraint::Length(10),
            Constraint::Fill(1),
            Constraint::Length(4),
        ]
    };
    let header = if wide {
        Row::new(["", "time", "pid", "process", "op", "details", "risk"])
    } else {
        Row::new(["", "pid", "process", "details", "risk"])
    }
    .style(styles.dim());

    let selected = state.selected;
    let table_rows = rows.iter().map(|entry| {
        let event = &entry.event;
        let severity = event.analysis.severity;
        let (op, details) = facts(event);
        let details = match block_tag(app, entry) {
            Some(tag) => Line::from(vec![
                Span::styled(tag, styles.blocked()),
                Span::raw(details),
            ]),
            None => Line::from(details),
        };
        let marker = Cell::from(severity_marker(severity)).style(styles.severity(severity));
        let risk = Cell::from(format!("{:.2}", event.analysis.risk_score))
            .style(styles.severity(severity));
        let pid = Cell::from(Line::from(event.pid.to_string()).right_aligned());
        let process = Cell::from(clean(&event.process).into_owned());
        let cells: Vec<Cell> = if wide {
            vec![
                marker,
                Cell::from(clock(app, event.timestamp)),
                pid,
                process,
                Cell::from(op),
                Cell::from(details),
                risk,
            ]
        } else {
            let mut line = details;
            line.spans.insert(0, Span::raw(format!("{op} ")));
            vec![marker, pid, process, Cell::from(line), risk]
        };
        let mut style = styles.row(severity);
        if selected == Some(entry.seq) {
            style = style.patch(styles.selected(focused));
        }
        Row::new(cells).style(style)
    });
    let mut table = Table::new(table_rows, widths.iter().copied())
        .block(block)
        .column_spacing(1);
    if with_header {
        table = table.header(header);
    }
    frame.render_widget(table, area);
}

/// An event pane in the presenter layout: fewer columns (the marker as a badge, the time, the
/// process, what it did), bigger markers; the pid only on wide screens (120 columns).
fn presenter_table<'a>(
    app: &App,
    styles: &Styles,
    rows: &[&Entry],
    (selected, focused): (Option<u64>, bool),
    facts: Facts,
    width: u16,
) -> Table<'a> {
    let wide = width >= 120;
    let table_rows: Vec<Row> = rows
        .iter()
        .map(|entry| {
            let event = &entry.event;
            let severity = event.analysis.severity;
            let (op, details) = facts(event);
            let mut what = Line::from(format!("{op} {details}"));
            if let Some(tag) = block_tag(app, entry) {
                what.spans.insert(0, Span::styled(tag, styles.blocked()));
            }
            let mut cells = vec![
                Cell::from(presenter_marker(severity)).style(styles.severity(severity)),
                Cell::from(clock(app, event.timestamp)),
            ];
            if wide {
                cells.push(Cell::from(
                    Line::from(event.pid.to_string()).right_aligned(),
                ));
            }
            cells.push(Cell::from(clean(&event.process).into_owned()));
            cells.push(Cell::from(what));
            let mut style = styles.row(severity);
            if selected == Some(entry.seq) {
                style = style.patch(styles.selected(focused));
            }
            Row::new(cells).style(style)
        })
        .collect();
    let mut widths = vec![
        Constraint::Length(PRESENTER_MARKER_WIDTH),
        Constraint::Length(8),
    ];
    if wide {
        widths.push(Constraint::Length(7));
    }
    widths.extend([Constraint::Length(15), Constraint::Fill(1)]);
    Table::new(table_rows, widths).column_spacing(1)
}

/// The presenter layout's column header (see [`presenter_table`]).
fn presenter_header(styles: &Styles, width: u16) -> Row<'static> {
    let mut header = vec!["risk", "time"];
    if width >= 120 {
        header.push("pid");
    }
    header.extend(["process", "what"]);
    Row::new(header).style(styles.bold())
}

/// The tag in front of an event the kernel stopped (killed at exec, connect refused) or of a
/// target with a simulated block (`b`).
pub fn block_tag(app: &App, entry: &Entry) -> Option<&'static str> {
    if entry.event.blocked {
        Some("[stopped] ")
    } else {
        app.block_mark(entry).map(|_| "[would block] ")
    }
}

/// One dim line under the title.
pub fn hint(frame: &mut Frame, area: Rect, text: &str, styles: &Styles) {
    if area.height < 3 {
        return;
    }
    let line = Rect {
        y: area.y + 2,
        height: 1,
        ..area
    };
    frame.render_widget(Line::styled(text.to_string(), styles.dim()), line);
}

/// `text`, or `…` and as much of its end as fits in `width` columns (display columns: wide
/// characters count twice).
pub fn keep_tail(text: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    let columns = |c: char| c.width().unwrap_or(0);
    if text.chars().map(columns).sum::<usize>() <= width || width < 2 {
        return text.to_string();
    }
    let mut tail = Vec::new();
    let mut used = 1; // the ellipsis
    for c in text.chars().rev() {
        if used + columns(c) > width {
            break;
        }
        used += columns(c);
        tail.push(c);
    }
    std::iter::once('…').chain(tail.into_iter().rev()).collect()
}

/// `1234`, `12k`, `1.2M`: short counts for the header.
pub fn short_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..10_000 => format!("{:.1}k", n as f64 / 1e3),
        10_000..1_000_000 => format!("{}k", n / 1_000),
        1_000_000..10_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{}M", n / 1_000_000),
    }
}

/// A one-line sparkline of the last `width` values, scaled to their maximum.
pub fn sparkline(
    values: impl DoubleEndedIterator<Item = u64> + ExactSizeIterator,
    width: usize,
) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let len = values.len();
    let tail: Vec<u64> = values.skip(len.saturating_sub(width)).collect();
    let max = tail.iter().copied().max().unwrap_or(0);
    let mut out = String::with_capacity(width * 3);
    for _ in tail.len()..width {
        out.push(' ');
    }
    for v in tail {
        let level = if max == 0 || v == 0 {
            0
        } else {
            // 1..=7 for non-zero values, so any activity shows above the floor.
            1 + (v.saturating_mul(6) / max) as usize
        };
        out.push(BARS[level.min(7)]);
    }
    out
}

#[cfg(test)]
mod tests;
