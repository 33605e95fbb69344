//! The demo's steps run live in the sandbox (`demo::sandbox`), for `app::demo`.
use crate::{
    app::DemoDriver,
    demo::{
        Scenario,
        sandbox::{Sandbox, StepEnd},
    },
};

/// Runs a scenario's steps in its sandbox; the sandbox (and every step's processes) goes when
/// this is dropped with the app.
pub struct LiveSteps {
    sandbox: Sandbox,
    runs: Vec<String>,
}

impl LiveSteps {
    pub fn new(sandbox: Sandbox, scenario: &Scenario) -> LiveSteps {
        LiveSteps {
            sandbox,
            runs: scenario.steps.iter().map(|s| s.run.clone()).collect(),
        }
    }
}

impl DemoDriver for LiveSteps {
    fn start(&mut self, index: usize) -> Result<u32, String> {
        let run = self.runs.get(index).ok_or("no such step")?;
        self.sandbox
            .start(index, run)
            .map_err(|e| format!("starting unshare: {e}"))
    }

    fn finished(&mut self) -> Vec<(usize, Option<String>)> {
        self.sandbox
            .finished()
            .into_iter()
            .map(|(index, _, end)| {
                let failure = match end {
                    StepEnd::Exited(0) => None,
                    // The prelude's own failure: a mount the step needs.
                    StepEnd::Exited(97) => Some("the sandbox's mounts failed".to_string()),
                    StepEnd::Exited(code) => Some(format!("exited with status {code}")),
                    StepEnd::Killed(why) => Some(why),
                };
                (index, failure)
            })
            .collect()
    }

    fn busy(&self) -> bool {
        self.sandbox.busy()
    }
}

/// Replays a scenario's recorded steps (no root): `start` hands the step's recorded events to
/// the pipeline (an [`crate::pipeline::SourceSpec::Events`] source), which analyses them as it
/// would live ones.
pub struct RecordedSteps {
    recorded: crate::demo::recording::RecordedSteps,
    events: tokio::sync::mpsc::Sender<Vec<crate::event::Event>>,
    /// Steps handed over, not yet reported as finished.
    done: Vec<usize>,
}

/// Events a batch of a replayed step holds at most.
const REPLAY_BATCH: usize = 256;

impl RecordedSteps {
    /// The steps, and the source the pipeline reads them from.
    pub fn new(
        recorded: crate::demo::recording::RecordedSteps,
    ) -> (RecordedSteps, crate::pipeline::SourceSpec) {
        let (events, rx) = tokio::sync::mpsc::channel(1024);
        let steps = RecordedSteps {
            recorded,
            events,
            done: Vec::new(),
        };
        (steps, crate::pipeline::SourceSpec::Events(rx))
    }
}

impl DemoDriver for RecordedSteps {
    fn start(&mut self, index: usize) -> Result<u32, String> {
        let (Some(events), Some(&root)) = (
            self.recorded.steps.get(index),
            self.recorded.roots.get(index),
        ) else {
            return Err("the recording has no such step".to_string());
        };
        for batch in events.chunks(REPLAY_BATCH) {
            self.events
                .try_send(batch.to_vec())
                .map_err(|e| format!("replaying the step: {e}"))?;
        }
        self.done.push(index);
        Ok(root)
    }

    fn finished(&mut self) -> Vec<(usize, Option<String>)> {
        self.done.drain(..).map(|i| (i, None)).collect()
    }

    fn busy(&self) -> bool {
        false
    }
}
