//! Starting a live capture: the programs loaded and attached, the response layer (with real
//! enforcement, the connect programs and the control socket), then the start-up report with
//! the one `secmon: ready` line that scripts and tests wait for.
use std::sync::{Arc, Mutex};

use super::{PipelineError, RunOptions};
use crate::{
    capture::{Capture, CaptureError, CaptureOptions},
    config::Config,
    notice,
    response::{
        Responder, ResponseError,
        control::ControlServer,
        enforce::{SharedCapture, lock_capture},
    },
};

/// A started monitor: the capture (shared with the response layer, the control socket and the
/// UI's probe switches), its ring buffer, the response layer, and the control socket when
/// `enforce` is on.
pub(super) struct Started {
    pub capture: SharedCapture,
    pub ring: crate::capture::EventRing,
    pub responder: Responder,
    pub control: Option<ControlServer>,
}

/// With `[response] enforce = true` the connect programs are attached and the control socket
/// is listening before `secmon: ready`.
pub(super) fn start_live(config: &Config, options: &RunOptions) -> Result<Started, PipelineError> {
    let (mut capture, ring) = open_capture(config, options)?;
    let enforce = config.response.enforce;
    if enforce {
        capture.enable_enforcement()?;
    }
    let capture = Arc::new(Mutex::new(capture));
    let responder = Responder::new(&config.response, enforce.then(|| capture.clone()))?;
    let control = match responder.enforcer() {
        Some(enforcer) => Some(
            ControlServer::start(&config.response.control_socket, enforcer.clone())
                .map_err(ResponseError::from)?,
        ),
        None => None,
    };
    let mut extra = vec![format!("response: {}", responder.describe())];
    if let Some(control) = &control {
        extra.push(format!("control socket: {}", control.path().display()));
    }
    report_ready(&lock_capture(&capture), &extra);
    Ok(Started {
        capture,
        ring,
        responder,
        control,
    })
}

fn open_capture(
    config: &Config,
    options: &RunOptions,
) -> Result<(Capture, crate::capture::EventRing), CaptureError> {
    let mut capture_options = CaptureOptions {
        enabled: config.monitoring.enabled_families(),
        ..CaptureOptions::default()
    };
    if let Some(bytes) = options.ring_bytes {
        capture_options.ring_bytes = bytes;
    }
    Capture::start(&capture_options)
}

/// Unavailable probe groups, `secmon: ready`, the probe summary, then `extra` lines.
fn report_ready(capture: &Capture, extra: &[String]) {
    // Start-up's temporaries (rule compilation, the first /proc scan) are gone by now.
    crate::memory::release_freed();
    for group in capture.report().unavailable() {
        notice::info(format!(
            "probe family {}/{} unavailable: {}",
            group.family,
            group.group,
            group.unavailable.as_deref().unwrap_or("")
        ));
    }
    if let Some(reason) = &capture.report().raw_entry_fallback {
        notice::info(format!(
            "syscall entries followed on the raw sys_enter tracepoint (every syscall pays for \
             it) because per-syscall tracepoints are unavailable: {reason}"
        ));
    }
    notice::info("ready");
    for line in capture.report().summary_lines() {
        notice::info(format!("probes {line}"));
    }
    for line in extra {
        notice::info(line.as_str());
    }
}
