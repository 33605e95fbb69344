//! The network pane: connects, accepts, listens, UDP sends and closes, with addresses, ports
//! and protocol.
use std::net::IpAddr;

use ratatui::{Frame, layout::Rect};

use super::{Theme, clean, render_event_pane};
use crate::{
    app::{App, PaneId, endpoint},
    event::{Event, EventType},
};

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    render_event_pane(frame, area, app, theme, PaneId::Network, facts);
}

fn side(ip: Option<IpAddr>, port: Option<u16>) -> String {
    match (ip, port) {
        (Some(ip), Some(port)) => endpoint(ip, port),
        (Some(ip), None) => ip.to_string(),
        (None, Some(port)) => format!("?:{port}"),
        (None, None) => "?".to_string(),
    }
}

/// The operation and the key facts of a network event (sanitised). The remote end comes
/// first, so it survives truncation on narrow screens.
pub fn facts(event: &Event) -> (&'static str, String) {
    let proto = clean(event.protocol.as_deref().unwrap_or("?"));
    let local = side(event.source_ip, event.source_port);
    let remote = side(event.target_ip, event.target_port);
    match event.event_type {
        EventType::NetConnect => ("connect", format!("{proto} → {remote}  from {local}")),
        EventType::NetAccept => ("accept", format!("{proto} ← {remote}  on {local}")),
        EventType::NetListen => ("listen", format!("{proto} {local}")),
        EventType::NetUdp => ("udp", format!("{proto} → {remote}  from {local}")),
        EventType::NetClose => {
            let mut text = format!("{proto} → {remote}");
            if let (Some(sent), Some(received)) = (event.bytes_sent, event.bytes_received) {
                text.push_str(&format!("  {sent} B out, {received} B in"));
            }
            if let Some(ms) = event.duration_ms {
                text.push_str(&format!(", {ms:.1} ms"));
            }
            text.push_str(&format!("  from {local}"));
            ("close", text)
        }
        EventType::NetConnectFailed => {
            let mut text = format!("{proto} → {remote}  failed");
            if let Some(error) = &event.error {
                text.push_str(&format!(": {}", clean(error)));
            }
            if let Some(n) = event.attempts.filter(|&n| n > 1) {
                text.push_str(&format!(" ×{n}"));
            }
            ("fail", text)
        }
        other => (other.as_str(), format!("{proto} → {remote}  from {local}")),
    }
}
