//! The incident view (`i`): the process tree of an event's story, one row per process (pid,
//! name, user, its risk and whether rules flagged it, the command line) and under each its
//! events in time order (time, operation, target, the rules that fired and their severity).
//! Flagged processes carry the word `ALERT` and a severity marker, so they stand out without
//! colour. What the tree holds and where its root is: `app::incident`.
use ratatui::{
    Frame,
    layout::Rect,
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph},
};
use unicode_width::UnicodeWidthChar;

use super::{Styles, Theme, clean, clock, file, hint, network, process};
use crate::{
    app::{App, Entry, IncidentRow, PaneId, ProcessNode},
    event::{Event, Severity},
};

/// Columns each level of the tree is indented by.
const INDENT: usize = 2;
/// Levels drawn indented at most (deeper ones stay at this indentation).
const MAX_INDENT_LEVELS: usize = 12;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let styles = Styles::new(theme);
    let view = &app.incident;
    let tree = &view.tree;
    let title = match tree.root() {
        Some(root) => format!(
            " ▶ Incident: pid {} {} ({} processes) ",
            root.key.pid,
            clean(&root.name),
            tree.nodes.len()
        ),
        None => " ▶ Incident ".to_string(),
    };
    let mut spans = vec![Span::styled(title, styles.title(true))];
    if !tree.why_root.is_empty() {
        spans.push(Span::styled(
            format!(" root here: {} ", clean(&tree.why_root)),
            styles.dim(),
        ));
    }
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Line::from(spans))
        .border_style(styles.bold());
    // The view's keys are the footer's.
    let rows_area = block.inner(area);
    frame.render_widget(block, area);
    if tree.rows.is_empty() {
        let text = match view.anchor {
            Some(anchor) => format!(
                "  no events of pid {} are held (yet): the tree fills in as they arrive",
                anchor_pid(anchor)
            ),
            None => "  no incident open".to_string(),
        };
        hint(frame, area, &text, &styles);
        return;
    }
    let height = usize::from(rows_area.height);
    let top = window_top(view.top.get(), view.selected, height, tree.rows.len());
    view.top.set(top);
    let width = usize::from(rows_area.width);
    let lines: Vec<Line> = tree
        .rows
        .iter()
        .enumerate()
        .skip(top)
        .take(height)
        .map(|(i, row)| {
            let line = match *row {
                IncidentRow::Process(node) => process_line(app, &tree.nodes[node], &styles, width),
                IncidentRow::Event { node, seq } => {
                    let depth = tree.nodes[node].depth + 1;
                    match view.entry(seq) {
                        Some(entry) => event_line(app, entry, depth, &styles, width),
                        None => Line::styled(
                            fit(&format!("{}(no longer held)", indent(depth)), width),
                            styles.dim(),
                        ),
                    }
                }
            };
            if i == view.selected {
                line.patch_style(styles.selected(true))
            } else {
                line
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), rows_area);
}

fn anchor_pid(anchor: crate::app::Anchor) -> u32 {
    match anchor {
        crate::app::Anchor::Event { pid, .. } | crate::app::Anchor::Root { pid } => pid,
    }
}

/// The first row in view: `top` as it was, moved as little as keeps `selected` in view; on
/// the first draw (`usize::MAX`), the selection a third of the way up from the bottom, so
/// the processes above it (its parents) are in view too.
fn window_top(top: usize, selected: usize, height: usize, rows: usize) -> usize {
    let height = height.max(1);
    let top = if top == usize::MAX {
        selected.saturating_sub(height * 2 / 3)
    } else if selected < top {
        selected
    } else if selected >= top + height {
        selected + 1 - height
    } else {
        top
    };
    top.min(rows.saturating_sub(height))
}

fn indent(depth: usize) -> String {
    " ".repeat(depth.min(MAX_INDENT_LEVELS) * INDENT)
}

/// `▾ 4242 sh  alice  !! ALERT ×2  risk 0.90  sh -c …`: a process, marked when rules flagged
/// it (the marker and the word, not only a colour).
fn process_line(app: &App, node: &ProcessNode, styles: &Styles, width: usize) -> Line<'static> {
    let folded = app.incident.collapsed.contains(&node.key);
    let mut head = format!(
        "{}{} {} {}  {}",
        indent(node.depth),
        if folded { "▸" } else { "▾" },
        node.key.pid,
        clean(&node.name),
        clean(&node.user),
    );
    let style = if node.alerted() {
        styles.row(node.severity).patch(styles.bold())
    } else {
        styles.bold()
    };
    let mut spans = Vec::new();
    if node.alerted() {
        head.push_str("  ");
        spans.push(Span::styled(head, style));
        spans.push(Span::styled(
            format!(
                "{} ALERT ×{}",
                styles.marker(node.severity).trim_end(),
                node.alerts
            ),
            styles.severity(node.severity),
        ));
    } else {
        spans.push(Span::styled(head, style));
    }
    let mut tail = String::new();
    if node.risk > 0.0 {
        tail.push_str(&format!("  risk {:.2}", node.risk));
    }
    if node.exited {
        tail.push_str("  (exited)");
    }
    tail.push_str("  ");
    tail.push_str(&clean(&node.cmdline));
    let used: usize = spans.iter().map(Span::width).sum();
    spans.push(Span::styled(fit(&tail, width.saturating_sub(used)), style));
    Line::from(spans)
}

/// `!! 22:13:20 open   /etc/shadow  ← shadow_read (malicious)  [step 3]`: one event.
fn event_line(
    app: &App,
    entry: &Entry,
    depth: usize,
    styles: &Styles,
    width: usize,
) -> Line<'static> {
    let event = &entry.event;
    let severity = event.analysis.severity;
    let (op, details) = facts(event);
    // Padded to the layout's widest marker, so the times line up.
    let marker_width = if styles.presenter() {
        usize::from(super::PRESENTER_MARKER_WIDTH)
    } else {
        2
    };
    let marker = format!("{:<marker_width$}", styles.marker(severity));
    let mut spans = vec![
        Span::raw(indent(depth)),
        Span::styled(marker, styles.severity(severity)),
        Span::raw(" "),
        Span::raw(format!("{} {op:<7} ", clock(app, event.timestamp))),
    ];
    let mut after = String::new();
    if !event.analysis.rules.is_empty() {
        let rules: Vec<String> = event
            .analysis
            .rules
            .iter()
            .map(|r| clean(r).into_owned())
            .collect();
        after.push_str(&format!(
            "  ← {} ({})",
            rules.join(", "),
            severity_word(severity)
        ));
    }
    if let Some(label) = app.incident.tree.labels.get(&entry.seq) {
        after.push_str(&format!("  [{}]", clean(label)));
    }
    if let Some(tag) = super::block_tag(app, entry) {
        after.push_str(&format!("  {}", tag.trim_end()));
    }
    let used: usize = spans.iter().map(Span::width).sum();
    // The target gives way to the rules and the label when the row is narrow.
    let room = width.saturating_sub(used + text_width(&after)).max(12);
    let row_style = styles.row(severity);
    spans.push(Span::styled(fit(&details, room), row_style));
    let used: usize = spans.iter().map(Span::width).sum();
    spans.push(Span::styled(
        fit(&after, width.saturating_sub(used)),
        styles.severity(severity),
    ));
    Line::from(spans)
}

/// The operation and the facts of any event, as its pane shows them.
fn facts(event: &Event) -> (&'static str, String) {
    match PaneId::for_event(event.event_type) {
        PaneId::File => file::facts(event),
        PaneId::Network => network::facts(event),
        PaneId::Process | PaneId::Alerts => process::facts(event),
    }
}

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Benign => "benign",
        Severity::Suspicious => "suspicious",
        Severity::Malicious => "malicious",
    }
}

fn text_width(text: &str) -> usize {
    text.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// `text`, cut to `width` columns with `…` at the end when it does not fit.
pub fn fit(text: &str, width: usize) -> String {
    if text_width(text) <= width {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        used += w;
        out.push(c);
    }
    if width > 0 {
        out.push('…');
    }
    out
}
