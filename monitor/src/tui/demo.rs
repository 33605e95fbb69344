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
