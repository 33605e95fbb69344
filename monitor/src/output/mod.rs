//! Last stage: where analysed events go. JSON lines now; the TUI, alerts and storage are
//! further sinks fed from the same pipeline.
pub mod event_json;
pub mod json;
pub mod stats;
