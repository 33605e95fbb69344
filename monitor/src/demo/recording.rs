//! The demos' recordings, for `secmon-tui demo` without root: each shipped scenario played
//! live once (`cargo xtask demo-record`, as root) and cut to its steps' process trees. A
//! recording is two files of `monitor/scenarios/recordings/`, built into the binary:
//! `NAME.jsonl.zst` (a `--record` recording: header, then the events, before analysis) and
//! `NAME.steps` (the root pid of each step's process tree, one line per step, in order). The
//! replay splits the events by step with the same trees ([`split_steps`]).
use std::{
    collections::HashSet,
    io::{self, BufReader, Write},
    path::Path,
};

use crate::{
    event::Event,
    record::{self, Header, RecordError, Recording},
};

/// The shipped recordings: (scenario name, events, step roots).
pub const SHIPPED: &[(&str, &[u8], &str)] = &[
    (
        "webapp",
        include_bytes!("../../scenarios/recordings/webapp.jsonl.zst"),
        include_str!("../../scenarios/recordings/webapp.steps"),
    ),
    (
        "cryptominer",
        include_bytes!("../../scenarios/recordings/cryptominer.jsonl.zst"),
        include_str!("../../scenarios/recordings/cryptominer.steps"),
    ),
    (
        "evasion",
        include_bytes!("../../scenarios/recordings/evasion.jsonl.zst"),
        include_str!("../../scenarios/recordings/evasion.steps"),
    ),
];

/// A scenario's recorded steps: each step's root pid and events, in recorded order.
#[derive(Clone, Debug, Default)]
pub struct RecordedSteps {
    pub roots: Vec<u32>,
    pub steps: Vec<Vec<Event>>,
}

/// Why a recording could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error(
        "no recording of the scenario `{0}`: without root only the shipped scenarios play (from their recordings)"
    )]
    Missing(String),
    #[error("the recording of `{name}`: {message}")]
    Bad { name: String, message: String },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("writing {path}: {source}")]
    Write { path: String, source: io::Error },
}

/// The shipped recording of the scenario `name`.
pub fn shipped(name: &str) -> Result<RecordedSteps, RecordingError> {
    let (_, events, roots) = SHIPPED
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| RecordingError::Missing(name.to_string()))?;
    let bad = |message: String| RecordingError::Bad {
        name: name.to_string(),
        message,
    };
    let roots = parse_roots(roots).map_err(bad)?;
    let decoder = zstd::stream::read::Decoder::new(*events).map_err(|e| bad(e.to_string()))?;
    let recording = Recording::from_reader(
        Path::new(&format!("built-in {name}.jsonl.zst")),
        Box::new(BufReader::new(decoder)),
    )?;
    let mut events = Vec::new();
    for event in recording {
        events.push(event?);
    }
    Ok(RecordedSteps {
        steps: split_steps(&events, &roots),
        roots,
    })
}

fn parse_roots(text: &str) -> Result<Vec<u32>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .parse()
                .map_err(|_| format!("`{l}` is not a step's root pid"))
        })
        .collect()
}

/// The events of each step's process tree (the tree of `roots[i]`: the root, and every
/// process whose parent is in the tree when its event arrives), in order. Events of no step
/// are left out.
pub fn split_steps(events: &[Event], roots: &[u32]) -> Vec<Vec<Event>> {
    let mut trees: Vec<HashSet<u32>> = roots.iter().map(|&r| HashSet::from([r])).collect();
    let mut steps = vec![Vec::new(); roots.len()];
    for event in events {
        let step = trees
            .iter()
            .position(|t| t.contains(&event.pid) || t.contains(&event.ppid));
        if let Some(i) = step {
            trees[i].insert(event.pid);
            steps[i].push(event.clone());
        }
    }
    steps
}

/// Cuts the raw recording at `raw` to the steps' trees and writes `NAME.jsonl.zst` and
/// `NAME.steps` into `dir`. Returns the number of events kept.
pub fn write_cut(
    raw: &Path,
    roots: &[u32],
    dir: &Path,
    name: &str,
) -> Result<usize, RecordingError> {
    let (header, events) = record::read_all(raw)?;
    let steps = split_steps(&events, roots);
    let mut kept: Vec<&Event> = steps.iter().flatten().collect();
    kept.sort_by_key(|e| e.timestamp);
    let path = dir.join(format!("{name}.jsonl.zst"));
    let write_error = |source| RecordingError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut text = Vec::new();
    let header = header.unwrap_or_else(|| Header::new(chrono::Utc::now()));
    serde_json::to_writer(&mut text, &header).map_err(|e| write_error(e.into()))?;
    text.push(b'\n');
    for event in &kept {
        serde_json::to_writer(&mut text, event).map_err(|e| write_error(e.into()))?;
        text.push(b'\n');
    }
    let compressed = zstd::encode_all(&text[..], 19).map_err(write_error)?;
    std::fs::write(&path, compressed).map_err(write_error)?;
    let steps_path = dir.join(format!("{name}.steps"));
    let mut file = std::fs::File::create(&steps_path).map_err(|source| RecordingError::Write {
        path: steps_path.display().to_string(),
        source,
    })?;
    for root in roots {
        writeln!(file, "{root}").map_err(|source| RecordingError::Write {
            path: steps_path.display().to_string(),
            source,
        })?;
    }
    Ok(kept.len())
}
