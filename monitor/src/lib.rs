//! secmon userspace. The data path, one module per stage:
//!
//! kernel probes (`monitor-ebpf`) → [`capture`] (load, attach, ring buffer reader task)
//! → [`decode`] (bytes → typed record) → [`enrich`] (process table: ppid, exe, cmdline, user,
//! ancestry, cwd) → analysis (the [`rules`] engine's `Evaluator`) → [`response`] → front ends:
//! [`output`] (JSON lines), the terminal UI ([`tui`]: event loop, [`app`]: state, [`ui`]:
//! drawing); beside them [`storage`] (the SQLite event history) and [`record`] (recordings and
//! replays). [`pipeline`] drives all of it, one driver for every front end; [`notice`] carries
//! the operator's messages. [`remote`] is a client of another machine's [`controller`]
//! (`--connect`: the terminal UI over its stream and API).
pub mod app;
pub mod capture;
pub mod cli;
pub mod config;
pub mod controller;
pub mod decode;
pub mod demo;
pub mod enrich;
pub mod event;
pub mod fleet;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod history_cli;
pub mod losses;
pub mod memory;
pub mod notice;
pub mod output;
pub mod paths;
pub mod pipeline;
pub mod priority;
pub mod record;
pub mod remote;
pub mod response;
pub mod rules;
pub mod sanitize;
pub mod secrets;
pub mod secure_fs;
pub mod shared_str;
pub mod shutdown;
pub mod storage;
pub mod tui;
pub mod ui;
