//! The header: probe families (key, on/off/unavailable, events/s, sparkline), losses,
//! rules and the last reload, filter/pause state, and the time. On a remote machine
//! (`--connect`) the bar names its host, and the second line starts with the link's state
//! and the events lost on the link, before the remote's own losses.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::Paragraph,
};

use super::{Styles, Theme, clean, clock, short_count, sparkline};
use crate::app::{App, FAMILY_KEYS, LinkPhase, LinkView, ProbeState};

/// The longest host name the bar shows (a longer one is cut: it is the remote's word).
const HOST_WIDTH: usize = 24;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    if area.height == 0 {
        return;
    }
    let styles = Styles::new(theme);
    let [first, second] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    frame.render_widget(
        Paragraph::new(families_line(app, &styles, area.width)),
        first,
    );
    if second.height == 0 || second.y >= area.bottom() {
        return;
    }
    let time = clock(app, app.now);
    let time_width = if area.width >= 40 { 9 } else { 0 };
    let [status, clock_area] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(time_width)]).areas(second);
    frame.render_widget(Paragraph::new(status_line(app, &styles)), status);
    if time_width > 0 {
        frame.render_widget(
            Paragraph::new(Line::from(time).right_aligned()).style(styles.bold()),
            clock_area,
        );
    }
}

/// ` secmon │ 1 process on 1.2k/s ▁▂▅ │ 2 file off │ 3 network on 3/s │ 4 kernel n/a`
fn families_line<'a>(app: &App, styles: &Styles, width: u16) -> Line<'a> {
    let spark_width = match width {
        0..90 => 0,
        90..110 => 4,
        110..150 => 8,
        _ => 12,
    };
    let short = width < 110;
    let bar = match &app.link {
        Some(link) => format!(" {} ", host_tag(link)),
        None => " secmon ".to_string(),
    };
    let mut spans = vec![Span::styled(bar, styles.header_bar())];
    for (i, family) in FAMILY_KEYS.into_iter().enumerate() {
        spans.push(Span::styled(" │ ", styles.dim()));
        let name = match (short, family.as_str()) {
            (true, "process") => "proc",
            (true, "network") => "net",
            (true, "kernel") => "kern",
            (_, name) => name,
        };
        spans.push(Span::styled(format!("{} ", i + 1), styles.key()));
        spans.push(Span::raw(format!("{name} ")));
        let state = app.probe_states[i];
        let (text, style) = match state {
            ProbeState::On => ("on", styles.ok()),
            ProbeState::Off => ("off", styles.warn()),
            ProbeState::Unavailable => ("n/a", styles.dim()),
            ProbeState::Replay => ("replay", styles.warn()),
        };
        spans.push(Span::styled(text, style));
        if state == ProbeState::Unavailable {
            continue;
        }
        let rate = &app.rates[i];
        spans.push(Span::raw(format!(" {}/s", short_count(rate.per_second()))));
        if spark_width > 0 {
            spans.push(Span::raw(" "));
            spans.push(Span::styled(
                sparkline(rate.history.iter().copied(), spark_width),
                styles.ok(),
            ));
        }
    }
    Line::from(spans)
}

/// ` lost 0 │ rules 12, reload ok 12:00:05 │ filter "x" │ suspicious only │ PAUSED +12`
///
/// `lost` is every loss since start, whatever the reason (the detail view, Enter, gives them
/// by reason).
fn status_line<'a>(app: &App, styles: &Styles) -> Line<'a> {
    let mut spans = Vec::new();
    if let Some(link) = &app.link {
        link_spans(link, styles, &mut spans);
    }
    spans.push(Span::raw(" lost "));
    let lost = app.losses.total();
    spans.push(if lost > 0 {
        Span::styled(short_count(lost), styles.error())
    } else {
        Span::raw("0")
    });
    spans.push(Span::styled(" │ ", styles.dim()));
    spans.push(Span::raw(format!("rules {}", app.rule_count)));
    if let Some(reload) = &app.last_reload {
        let at = clock(app, reload.at);
        if reload.ok {
            spans.push(Span::styled(format!(", reload ok {at}"), styles.ok()));
        } else {
            spans.push(Span::styled(
                format!(", reload FAILED {at}"),
                styles.error(),
            ));
        }
    }
    spans.push(Span::styled(" │ ", styles.dim()));
    spans.push(Span::raw(format!("{} events", short_count(app.received))));
    if !app.filter.is_empty() {
        spans.push(Span::styled(" │ ", styles.dim()));
        spans.push(Span::styled(
            format!("filter \"{}\"", clean(&app.filter)),
            styles.warn(),
        ));
    }
    if app.suspicious_only {
        spans.push(Span::styled(" │ ", styles.dim()));
        spans.push(Span::styled("suspicious only", styles.warn()));
    }
    if app.paused_at.is_some() {
        spans.push(Span::styled(" │ ", styles.dim()));
        spans.push(Span::styled(
            format!("PAUSED +{}", app.arrived_while_paused()),
            styles.header_bar(),
        ));
    }
    for (count, what) in [
        (app.deny_count, "denied"),
        (app.blocked.len(), "would-block"),
    ] {
        if count > 0 {
            spans.push(Span::styled(" │ ", styles.dim()));
            spans.push(Span::styled(format!("{count} {what}"), styles.blocked()));
        }
    }
    Line::from(spans)
}

/// `secmon@web1`: the remote host, escaped and cut to [`HOST_WIDTH`] characters.
fn host_tag(link: &LinkView) -> String {
    let host: String = clean(&link.host).chars().take(HOST_WIDTH).collect();
    format!("secmon@{host}")
}

/// ` link connected │ link lost 0 │` (or reconnecting in Ns, unauthorised).
fn link_spans<'a>(link: &LinkView, styles: &Styles, spans: &mut Vec<Span<'a>>) {
    let (text, style) = match link.phase {
        LinkPhase::Connecting => ("connecting…".to_string(), styles.warn()),
        LinkPhase::Connected => ("connected".to_string(), styles.ok()),
        LinkPhase::Reconnecting { in_secs } => {
            (format!("reconnecting in {in_secs}s"), styles.warn())
        }
        LinkPhase::Unauthorised { in_secs } => (
            format!("UNAUTHORISED (token refused; again in {in_secs}s)"),
            styles.error(),
        ),
    };
    spans.push(Span::raw(" link "));
    spans.push(Span::styled(text, style));
    spans.push(Span::styled(" │ ", styles.dim()));
    spans.push(Span::raw("link lost "));
    spans.push(if link.lost > 0 {
        Span::styled(short_count(link.lost), styles.error())
    } else {
        Span::raw("0")
    });
    spans.push(Span::styled(" │", styles.dim()));
}
