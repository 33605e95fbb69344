//! Terminal UI cost: one full frame, and storing a batch of events.
//!
//! `cargo bench -p monitor --bench render`. Target: a 160×48 frame with 10,000 buffered events
//! per pane under 2 ms (the UI redraws at most ~30 times a second, so that is ≤ 6 % of a core
//! at the maximum frame rate). Frames are drawn into ratatui's `TestBackend`: widget layout,
//! sanitising and formatting the visible rows, and the diff against the previous frame; the
//! escape codes a real terminal receives are not included.
//!
//! Benchmarks:
//! - `render/160x48`: the three panes following the newest events, alerts strip, header.
//! - `render/160x48_browsing_filtered`: a filter that hides most events and a selection deep
//!   in the history (the rows shown are found by scanning the buffers).
//! - `render/80x24` and `render/160x48_detail`: a small screen; the detail overlay.
//! - `render/frame_100k` (issue 19: frame time as the events held grow): `render/160x48` after
//!   100,002 events went through [`App::ingest`] instead of 30,000. The panes keep the newest
//!   [`PANE_CAPACITY`] each (30,000 in all) and hand the rest back for freeing, so this should
//!   equal `render/160x48`: what it checks is that nothing else the app keeps (counters, the
//!   alerts strip, evicted events waiting to be handed back) grows with the count.
//! - `ingest/4096`: storing one reader batch (4096 analysed events) into full panes.
//! - `incident/rebuild_30k` and `render/160x48_incident`: the incident view (`i`) at its
//!   worst: a root whose 5,000 children made all 30,000 events held, so its tree holds them
//!   all. The rebuild runs at most once a second, and only when the tree's processes have new
//!   events (target: under 50 ms, 5 % of a core); the frame draws only the rows in view.
/// The binary's allocator (src/main.rs), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::{Terminal, backend::TestBackend};
use secmon::{
    app::{App, Event, PANE_CAPACITY},
    ui::{self, Theme, sample},
};

fn full_app() -> App {
    sample::app(sample::flood(PANE_CAPACITY))
}

fn press(app: &mut App, code: KeyCode) {
    app.handle(Event::Input(TermEvent::Key(KeyEvent::new(
        code,
        KeyModifiers::NONE,
    ))));
}

fn frame(c: &mut Criterion, name: &str, app: &App, width: u16, height: u16) {
    let mut terminal = match Terminal::new(TestBackend::new(width, height)) {
        Ok(t) => t,
        Err(e) => match e {},
    };
    c.bench_function(name, |b| {
        b.iter(|| {
            let _ = terminal.draw(|f| {
                ui::draw(
                    f,
                    black_box(app),
                    Theme {
                        color: true,
                        presenter: false,
                    },
                )
            });
        })
    });
}

fn render(c: &mut Criterion) {
    let app = full_app();
    for pane in app.panes.iter() {
        assert_eq!(pane.entries.len(), PANE_CAPACITY);
    }
    frame(c, "render/160x48", &app, 160, 48);
    frame(c, "render/80x24", &app, 80, 24);

    // "1/state" matches one file path in ten and nothing in the other panes.
    let mut browsing = full_app();
    for c in "/1/state".chars() {
        press(&mut browsing, KeyCode::Char(c));
    }
    press(&mut browsing, KeyCode::Enter);
    press(&mut browsing, KeyCode::Tab);
    for _ in 0..30 {
        press(&mut browsing, KeyCode::PageDown);
    }
    frame(c, "render/160x48_browsing_filtered", &browsing, 160, 48);

    let mut detail = full_app();
    press(&mut detail, KeyCode::Enter);
    frame(c, "render/160x48_detail", &detail, 160, 48);

    let mut many = sample::app(sample::flood(100_000 / 3 + 1));
    // What the pipeline does with the events the panes dropped (they are freed elsewhere).
    many.take_evicted(&mut Vec::new());
    assert_eq!(many.received, 100_002);
    for pane in many.panes.iter() {
        assert_eq!(pane.entries.len(), PANE_CAPACITY);
    }
    frame(c, "render/frame_100k", &many, 160, 48);
}

fn ingest(c: &mut Criterion) {
    let mut app = full_app();
    let batch = sample::flood(4096 / 3 + 1);
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("4096", |b| {
        b.iter_batched(
            || batch.clone(),
            |events| app.ingest(black_box(events)),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// Full panes and the incident of the flood's parent (pid 1000, every worker's parent).
fn incident_app() -> App {
    let mut app = full_app();
    let mut parent = sample::flood(1).remove(0);
    parent.pid = 1000;
    parent.ppid = 1;
    app.ingest([parent]);
    app.open_incident_at(1000);
    app
}

fn incident(c: &mut Criterion) {
    let mut app = incident_app();
    assert!(app.incident.tree.nodes.len() > 5_000);
    c.bench_function("incident/rebuild_30k", |b| {
        // Setting the labels rebuilds the open tree (what a tick does when it is stale).
        b.iter(|| app.set_incident_labels(black_box(None)))
    });
    frame(c, "render/160x48_incident", &app, 160, 48);
}

criterion_group!(benches, render, ingest, incident);
criterion_main!(benches);
