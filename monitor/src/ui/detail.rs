//! The detail view (`Enter`): every field of the selected event, its process ancestry, the
//! rules it matched with their scores, and the recommendation.
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
    let lines = lines(app, entry, &styles);
    detail.lines.set(lines.len());
    let scroll = detail.scroll.min(lines.len().saturating_sub(1));
    let block = Block::new().borders(Borders::ALL).title(Span::styled(
        " Event detail — ↑↓ scroll · b block · Esc closes ",
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
    let text = |v: &Option<String>| v.as_deref().map(|s| clean(s).into_owned());
    let number = |v: Option<u64>| v.map(|n| n.to_string());
    let candidates: Vec<(&'static str, Option<String>)> = vec![
        ("exit code", e.exit_code.map(|c| c.to_string())),
        ("exit signal", e.exit_signal.map(|s| s.to_string())),
        ("ptrace request", text(&e.ptrace_request)),
        ("target pid", e.target_pid.map(|p| p.to_string())),
        ("file", text(&e.file_path)),
        ("new path", text(&e.new_path)),
        ("flags", text(&e.flags)),
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
        ("protocol", text(&e.protocol)),
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
        ("bpf program", text(&e.bpf_prog_name)),
        ("bpf type", e.bpf_prog_type.map(|t| t.to_string())),
        ("module params", text(&e.module_params)),
    ];
    candidates
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
}
