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

/// `demo --enforce`: real blocking (`B`), limited to the demo's own processes — those whose
/// environment carries the sandbox's `DEMO_DIR` (every step process does). Anything else is
/// refused before a deny entry is planned; `b`, the list and removal are the inner
/// response's.
pub struct DemoScopedResponse {
    inner: Box<dyn crate::app::Response>,
    mark: String,
}

impl DemoScopedResponse {
    pub fn new(inner: Box<dyn crate::app::Response>, sandbox: &std::path::Path) -> Self {
        DemoScopedResponse {
            inner,
            mark: format!("DEMO_DIR={}", sandbox.display()),
        }
    }

    /// Whether `pid` is one of the demo's processes (still running).
    fn in_demo(&self, pid: u32) -> bool {
        std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
            env.split(|b| *b == 0)
                .any(|var| var == self.mark.as_bytes())
        })
    }
}

impl crate::app::Response for DemoScopedResponse {
    fn simulate_block(
        &mut self,
        target: &crate::app::BlockTarget,
        event: &crate::event::Event,
    ) -> String {
        self.inner.simulate_block(target, event)
    }

    fn plan_enforce(
        &self,
        target: &crate::app::BlockTarget,
        event: &crate::event::Event,
    ) -> Result<crate::app::EnforcePlan, String> {
        if !self.in_demo(event.pid) {
            return Err(format!(
                "demo --enforce blocks only the demo's own running processes: pid {} is not \
                 one (or has exited); b simulates",
                event.pid
            ));
        }
        self.inner.plan_enforce(target, event)
    }

    fn enforce(&mut self, plan: &crate::app::EnforcePlan) -> Result<String, String> {
        self.inner.enforce(plan)
    }

    fn denies(&self) -> Result<Vec<crate::app::DenyRow>, String> {
        self.inner.denies()
    }

    fn unblock(&mut self, id: u32) -> Result<String, String> {
        self.inner.unblock(id)
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;
    use crate::app::{BlockTarget, EnforcePlan, Response};
    use crate::event::{Event, EventType};

    /// Plans every block it is asked for.
    struct Planner;

    impl Response for Planner {
        fn simulate_block(&mut self, _: &BlockTarget, _: &Event) -> String {
            "simulated".to_string()
        }
        fn plan_enforce(&self, target: &BlockTarget, _: &Event) -> Result<EnforcePlan, String> {
            Ok(EnforcePlan {
                target: target.clone(),
                deny: crate::capture::enforce::DenyTarget::ExecPath("/x".into()),
                question: "deny".to_string(),
                by: String::new(),
                reason: String::new(),
            })
        }
        fn enforce(&mut self, _: &EnforcePlan) -> Result<String, String> {
            Ok("done".to_string())
        }
        fn denies(&self) -> Result<Vec<crate::app::DenyRow>, String> {
            Ok(Vec::new())
        }
        fn unblock(&mut self, _: u32) -> Result<String, String> {
            Ok(String::new())
        }
    }

    fn exec_of(pid: u32) -> Event {
        let mut e = Event::new(EventType::ProcessExec, chrono::Utc::now());
        e.pid = pid;
        e
    }

    /// A shell with `DEMO_DIR` set, returned once it has run and while it waits. `spawn` returns as soon as the
    /// kernel releases the parent during exec, before the new program's environment is set up,
    /// and `/proc/PID/environ` reads empty until then: waiting for the shell's first line
    /// waits that out.
    fn started_shell(demo_dir: &std::path::Path) -> std::process::Child {
        let mut child = Command::new("sh")
            // `read` keeps the shell itself waiting (on the stdin the child holds) rather than
            // exec'ing another program, which would open the same window again.
            .args(["-c", "echo started; read -r _"])
            .env("DEMO_DIR", demo_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a shell");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("read the shell's first line");
        assert_eq!(line, "started\n");
        child
    }

    #[test]
    fn only_the_demos_running_processes_can_be_blocked() {
        let sandbox = std::path::Path::new("/run/secmon-demo.test");
        let scoped = DemoScopedResponse::new(Box::new(Planner), sandbox);
        let mut step = started_shell(sandbox);
        let mut other = started_shell(std::path::Path::new("/run/secmon-demo.other"));
        let target = |pid| BlockTarget::Process(pid);
        let ok = scoped.plan_enforce(&target(step.id()), &exec_of(step.id()));
        let mine = scoped.plan_enforce(&target(std::process::id()), &exec_of(std::process::id()));
        let theirs = scoped.plan_enforce(&target(other.id()), &exec_of(other.id()));
        for child in [&mut step, &mut other] {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(ok.is_ok(), "{ok:?}");
        assert!(mine.is_err_and(|e| e.contains("only the demo's own")));
        assert!(theirs.is_err());
    }
}
