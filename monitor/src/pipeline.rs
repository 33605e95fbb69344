//! Wires the stages together for headless (`--json`) mode:
//! capture → reader task → enrich → analysis → JSON lines, with clean shutdown on a signal or
//! after `--duration`, draining and flushing everything already captured.
use std::{
    io::{self, Write},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    analysis::Analyzer,
    capture::{Capture, CaptureError, CaptureOptions, reader},
    config::Config,
    decode::Record,
    enrich::Enricher,
    output::json::JsonLines,
    rules::{self, RuleEngine},
};

/// Batches in flight between the reader and the pipeline; beyond that the reader waits and
/// the kernel ring buffer absorbs (then counts) the excess.
pub(crate) const CHANNEL_BATCHES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub duration: Option<Duration>,
    pub ring_bytes: Option<u32>,
    /// The loaded rules (`None`: no rules, every event benign). Reloaded on SIGHUP and when
    /// a file in its directories changes.
    pub rules: Option<RuleEngine>,
}

/// What a run did, printed to stderr at the end.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    pub events: u64,
    pub records: u64,
    pub kernel_drops: u64,
    pub decode_errors: u64,
}

/// Starts the capture and prints the start-up report on stderr: unavailable probe groups, the
/// one `secmon: ready` line tests wait for, then what runs.
pub fn start_capture(
    config: &Config,
    options: &RunOptions,
) -> Result<(Capture, aya::maps::RingBuf<aya::maps::MapData>), CaptureError> {
    let mut capture_options = CaptureOptions {
        enabled: config.monitoring.enabled_families(),
        ..CaptureOptions::default()
    };
    if let Some(bytes) = options.ring_bytes {
        capture_options.ring_bytes = bytes;
    }
    let (capture, ring) = Capture::start(&capture_options)?;
    let mut stderr = io::stderr().lock();
    for group in capture.report().unavailable() {
        let _ = writeln!(
            stderr,
            "secmon: probe family {}/{} unavailable: {}",
            group.family,
            group.group,
            group.unavailable.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(stderr, "secmon: ready");
    for line in capture.report().summary_lines() {
        let _ = writeln!(stderr, "secmon: probes {line}");
    }
    Ok((capture, ring))
}

pub async fn run_json<W: Write>(
    config: &Config,
    options: &RunOptions,
    out: W,
) -> Result<RunSummary, PipelineError> {
    // Signal handlers first: a SIGTERM right after `secmon: ready` must stop us cleanly.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let (capture, ring) = start_capture(config, options)?;
    let (batch_tx, mut batch_rx) = mpsc::channel::<Vec<Record>>(CHANNEL_BATCHES);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let stats = Arc::new(reader::ReaderStats::default());
    let reader_task = tokio::spawn(reader::run(ring, batch_tx, shutdown_rx, stats.clone()));

    let mut enricher = Enricher::new();
    let engine = options.rules.clone().unwrap_or_else(RuleEngine::empty);
    let mut analyzer = Analyzer::new(engine.clone(), &config.threat_detection);
    let _rules_watcher = watch_rules(&engine);
    let mut sink = JsonLines::new(out);
    let mut summary = RunSummary::default();
    let deadline = async {
        match options.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut drop_check = tokio::time::interval(Duration::from_secs(1));
    let mut drops_reported = 0;
    let mut stopping = false;
    loop {
        tokio::select! {
            batch = batch_rx.recv() => {
                let Some(batch) = batch else { break };
                match write_batch(&batch, &mut enricher, &mut analyzer, &mut sink) {
                    Ok(n) => summary.events += n,
                    // The reader of our stdout went away (`| head`): stop quietly.
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
                    Err(e) => return Err(e.into()),
                }
            }
            _ = drop_check.tick() => {
                drops_reported = report_new_drops(&capture, drops_reported);
            }
            _ = sigint.recv(), if !stopping => { stopping = true; let _ = shutdown_tx.send(true); }
            _ = sigterm.recv(), if !stopping => { stopping = true; let _ = shutdown_tx.send(true); }
            _ = sighup.recv() => { let _ = rules::reload_and_report(&engine); }
            _ = &mut deadline, if !stopping => { stopping = true; let _ = shutdown_tx.send(true); }
        }
    }
    let _ = shutdown_tx.send(true);
    let _ = reader_task.await;
    match sink.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    summary.records = stats.records.load(Ordering::Relaxed);
    summary.decode_errors = stats.decode_errors.load(Ordering::Relaxed);
    summary.kernel_drops = capture.total_drops();
    drop(capture);
    Ok(summary)
}

/// Reloads the rules when their files change; without a watcher, SIGHUP still reloads.
pub(crate) fn watch_rules(engine: &RuleEngine) -> Option<rules::RulesWatcher> {
    if engine.dirs().is_empty() {
        return None;
    }
    rules::watch(engine.clone())
        .map_err(|e| eprintln!("secmon: warning: {e}; rules reload on SIGHUP only"))
        .ok()
}

/// Overload is visible at once on stderr, not only in the final summary.
fn report_new_drops(capture: &Capture, already_reported: u64) -> u64 {
    let total = capture.total_drops();
    if total > already_reported {
        eprintln!(
            "secmon: warning: {} events dropped in the kernel (ring buffer full; consumer too \
             slow or burst too large, see --ring-buffer-mib)",
            total - already_reported
        );
    }
    total
}

fn write_batch<W: Write>(
    batch: &[Record],
    enricher: &mut Enricher,
    analyzer: &mut Analyzer,
    sink: &mut JsonLines<W>,
) -> io::Result<u64> {
    let mut written = 0;
    for record in batch {
        if let Some(mut event) = enricher.process(record) {
            analyzer.analyze(&mut event);
            sink.write(&event)?;
            written += 1;
        }
    }
    sink.flush()?;
    Ok(written)
}
