//! End-to-end tests of `secmon-tui --json`: perform real actions, expect the matching events.
//!
//! One test binary (one link step), root only: run with `cargo xtask test` or as root with
//! `cargo test -p monitor --test integration`. Most tests share one monitor started on first use
//! (see `common`); `safety` and `cli` start their own instances as well.

// Test code through and through: a failed `expect` is a test failure with its message. The
// workspace denies unwrap/expect outside tests, and clippy's `allow-*-in-tests` only covers
// `#[test]` functions, not the helpers they share (`common`) or call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod common;
mod control;
mod controller_api;
mod demo;
mod enforce;
mod file;
mod fleet;
mod hostile_files;
mod hub;
mod kernel;
mod losses;
mod machines;
mod network;
mod privilege;
mod process;
mod properties;
mod remote;
mod replay;
mod response;
mod rules_e2e;
mod safety;
mod slow_front_end;
mod storage;
mod tui;
mod web;
