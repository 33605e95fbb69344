//! The processes pane: exec (executable and arguments), fork, exit, ptrace, privilege
//! changes, BPF program and kernel module loads.
use ratatui::{Frame, layout::Rect};

use super::{Theme, clean, render_event_pane};
use crate::{
    app::{App, PaneId},
    event::{Event, EventType},
};

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    render_event_pane(frame, area, app, theme, PaneId::Process, facts);
}

/// The operation and the key facts of a process event (sanitised).
pub fn facts(event: &Event) -> (&'static str, String) {
    match event.event_type {
        EventType::ProcessExec => ("exec", command(event)),
        EventType::ProcessFork => (
            "fork",
            format!("child of {} ({})", clean(&event.parent_process), event.ppid),
        ),
        EventType::ProcessExit => {
            let how = match (event.exit_signal, event.exit_code) {
                (Some(signal), _) => format!("killed by signal {signal}"),
                (None, Some(code)) => format!("code {code}"),
                (None, None) => "exited".to_string(),
            };
            ("exit", format!("{how}  {}", clean(&event.exe)))
        }
        EventType::Ptrace => (
            "ptrace",
            format!(
                "{} → pid {}",
                clean(event.ptrace_request.as_deref().unwrap_or("?")),
                event.target_pid.unwrap_or(0)
            ),
        ),
        EventType::PrivilegeChange => ("priv", privilege(event)),
        EventType::BpfLoad => (
            "bpf",
            format!(
                "load program {} (type {})",
                clean(event.bpf_prog_name.as_deref().unwrap_or("")),
                event.bpf_prog_type.unwrap_or(0)
            ),
        ),
        EventType::ModuleLoad => (
            "module",
            format!(
                "{} {}",
                clean(event.file_path.as_deref().unwrap_or("(from memory)")),
                clean(event.module_params.as_deref().unwrap_or(""))
            )
            .trim_end()
            .to_string(),
        ),
        other => (other.as_str(), clean(&event.cmdline).into_owned()),
    }
}

/// The executable and its arguments (argv without argv[0]); the command line when the
/// executable is unknown.
fn command(event: &Event) -> String {
    if event.exe.is_empty() {
        return clean(&event.cmdline).into_owned();
    }
    let mut text = clean(&event.exe).into_owned();
    let args: Vec<&str> = match &event.argv {
        Some(argv) => argv.iter().skip(1).map(String::as_str).collect(),
        None => event.cmdline.split(' ').skip(1).collect(),
    };
    for arg in args {
        text.push(' ');
        text.push_str(&clean(arg));
    }
    text
}

fn privilege(event: &Event) -> String {
    let mut parts = vec![clean(event.syscall.as_deref().unwrap_or("")).into_owned()];
    if let (Some(old), Some(new)) = (event.old_uid, event.new_uid) {
        parts.push(format!("uid {old}→{new}"));
    } else if let Some(new) = event.new_uid {
        parts.push(format!("uid →{new}"));
    }
    if let (Some(old), Some(new)) = (event.old_gid, event.new_gid) {
        parts.push(format!("gid {old}→{new}"));
    } else if let Some(new) = event.new_gid {
        parts.push(format!("gid →{new}"));
    }
    if let Some([effective, permitted, inheritable]) = event.capabilities {
        parts.push(format!(
            "caps eff {effective:#x} prm {permitted:#x} inh {inheritable:#x}"
        ));
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}
