//! Stage 4: scoring. Until the rule engine lands (issue 4) every event is benign with no
//! matched rules; the pipeline already calls this stage so the engine slots in here.
use crate::event::{Analysis, Event};

#[derive(Default)]
pub struct Analyzer;

impl Analyzer {
    pub fn analyze(&mut self, event: &mut Event) {
        event.analysis = Analysis::default();
    }
}
