//! secmon userspace. The data path, one module per stage:
//!
//! kernel probes (`monitor-ebpf`) → [`capture`] (load, attach, ring buffer reader task)
//! → [`decode`] (bytes → typed record) → [`enrich`] (process table: ppid, exe, cmdline, user,
//! ancestry, cwd) → [`analysis`] (the [`rules`] engine) → [`output`] (JSON lines; TUI, alerts and
//! storage later).
pub mod analysis;
pub mod capture;
pub mod cli;
pub mod config;
pub mod decode;
pub mod enrich;
pub mod event;
pub mod output;
pub mod pipeline;
pub mod rules;
pub mod sanitize;
