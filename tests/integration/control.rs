//! The run-time family switch: turning a probe family off in the kernel (through the control
//! map, without reloading) stops its events at once; turning it on brings them back.
//! Drives the library directly, as the TUI's keys will.
use std::time::{Duration, Instant};

use secmon::{
    capture::{Capture, CaptureOptions, reader},
    decode::Record,
    event::Family,
    sanitize::lossy,
};
use tokio::sync::{mpsc, watch};

use crate::common::{marker, require_root};

/// Collects file records until one names `needle` or `wait` passes.
async fn saw_file_event(
    rx: &mut mpsc::Receiver<reader::RecordBatch>,
    needle: &str,
    wait: Duration,
) -> bool {
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(Some(batch)) = tokio::time::timeout(left, rx.recv()).await else {
            return false;
        };
        let found = batch.records.iter().any(|record| match record {
            Record::File(e) => lossy(&e.data.path).contains(needle),
            _ => false,
        });
        if found {
            return true;
        }
    }
    false
}

/// The capture runs in this process, whose own activity the kernel filters out: another
/// process must do the file work.
fn touch(path: &std::path::Path) {
    let status = std::process::Command::new("touch")
        .arg(path)
        .status()
        .expect("run touch");
    assert!(status.success(), "touch {} failed", path.display());
}

#[test]
fn file_family_switch_takes_effect_in_the_kernel() {
    require_root();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let (mut capture, ring) =
            Capture::start(&CaptureOptions::default()).expect("capture starts");
        let (tx, mut rx) = reader::record_queue();
        let (stop_tx, stop_rx) = watch::channel(false);
        let stats = std::sync::Arc::new(reader::ReaderStats::default());
        let ring_bytes = capture.ring_bytes();
        let task = tokio::spawn(reader::run(ring, ring_bytes, tx, stop_rx, stats));
        let dir = tempfile::tempdir().expect("tempdir");

        capture
            .set_enabled(Family::File, false)
            .expect("switch off");
        assert!(!capture.is_enabled(Family::File));
        let off = marker();
        touch(&dir.path().join(&off));
        assert!(
            !saw_file_event(&mut rx, &off, Duration::from_millis(500)).await,
            "a file event arrived while the file family was off"
        );

        capture.set_enabled(Family::File, true).expect("switch on");
        let on = marker();
        touch(&dir.path().join(&on));
        assert!(
            saw_file_event(&mut rx, &on, Duration::from_secs(5)).await,
            "no file event after switching the file family back on"
        );

        let _ = stop_tx.send(true);
        let _ = task.await;
    });
}
