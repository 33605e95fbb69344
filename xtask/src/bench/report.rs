//! The benchmark's results: machine description, tables (Markdown, printed and written into
//! `docs/benchmarks.md` between two markers), and parsing criterion's output.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};

use super::loadgen::LoadResult;
use super::tracer::{MemoryParts, Stopped};
use super::{LoopSpec, THROUGHPUT_TARGET};
use crate::util;

pub const BEGIN_MARKER: &str = "<!-- cargo xtask bench: generated results begin -->";
pub const END_MARKER: &str = "<!-- cargo xtask bench: generated results end -->";

/// A throughput step passes only if the generator really issued (nearly) the rate asked for.
const RATE_TOLERANCE: f64 = 0.97;

#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub date: String,
    pub rustc: String,
    pub bpftrace: String,
    pub commit: String,
    pub load_average: String,
}

fn first_line(cmd: &mut Command) -> String {
    util::output(cmd)
        .ok()
        .flatten()
        .and_then(|o| o.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "unknown".to_string())
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".to_string());
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".to_string())
        };
        let git = |args: &[&str]| {
            let mut cmd = Command::new("git");
            cmd.current_dir(util::repo_root()).args(args);
            cmd
        };
        let head = first_line(&mut git(&["rev-parse", "--short", "HEAD"]));
        let dirty = util::output(&mut git(&["status", "--porcelain"]))
            .ok()
            .flatten()
            .is_some_and(|s| !s.trim().is_empty());
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            memory,
            kernel: read("/proc/sys/kernel/osrelease"),
            date: first_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
            rustc: first_line(Command::new("rustc").arg("--version")),
            bpftrace: first_line(Command::new("bpftrace").arg("--version")),
            commit: if dirty {
                format!("{head} + uncommitted changes")
            } else {
                head
            },
            load_average: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// One timed run of a loop.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub secs: f64,
    /// secmon's end-of-run counters (secmon runs only).
    pub stopped: Option<Stopped>,
    /// CPU seconds the tracer used from the start of the loop until it had handled the loop's
    /// events (it went idle).
    pub tracer_cpu: Option<f64>,
    /// Another tracer or a compiler was running just before or after this run.
    pub disturbed: bool,
    /// The tracer's peak resident memory (VmHWM, KiB) once ready and settled, before the loop.
    pub idle_rss_kib: Option<u64>,
    /// ... and once it had handled the loop's events.
    pub peak_rss_kib: Option<u64>,
    /// The ring buffer's and the anonymous part of the resident memory when `idle_rss_kib`
    /// was read, and when `peak_rss_kib` was.
    pub idle_parts: Option<MemoryParts>,
    pub peak_parts: Option<MemoryParts>,
}

fn median_of(samples: &[Sample], f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
    median(&samples.iter().filter_map(f).collect::<Vec<_>>())
}

/// Times of one loop under each setup, one entry per round.
#[derive(Debug, Clone)]
pub struct LoopResult {
    pub spec: LoopSpec,
    pub baseline: Vec<Sample>,
    /// The shipped defaults (history on, rules on).
    pub secmon: Vec<Sample>,
    /// The same with the history off.
    pub secmon_no_history: Vec<Sample>,
    pub bpftrace: Vec<Sample>,
}

impl LoopResult {
    pub fn new(spec: LoopSpec) -> LoopResult {
        LoopResult {
            spec,
            baseline: Vec::new(),
            secmon: Vec::new(),
            secmon_no_history: Vec::new(),
            bpftrace: Vec::new(),
        }
    }

    fn secs(samples: &[Sample]) -> Option<f64> {
        median_of(samples, |s| Some(s.secs))
    }

    /// The fastest run: on a shared machine, where noise only ever adds time, the fastest
    /// traced run over the fastest baseline run is the estimate least affected by other work.
    fn fastest(samples: &[Sample]) -> Option<f64> {
        samples.iter().map(|s| s.secs).min_by(f64::total_cmp)
    }
}

pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// One step of the throughput search.
#[derive(Debug, Clone)]
pub struct RateStep {
    pub rate: u64,
    pub threads: u32,
    pub load: LoadResult,
    pub stopped: Stopped,
    pub tracer_cpu: Option<f64>,
    pub disturbed: bool,
}

impl RateStep {
    /// Opens per second the generator really issued.
    pub fn achieved(&self) -> f64 {
        self.load.ops as f64 / self.load.secs.max(1e-9)
    }

    /// The generator could not issue the rate asked for: the step still tells whether secmon
    /// kept up with what was issued, but a higher rate cannot be tried with these threads.
    pub fn generator_saturated(&self) -> bool {
        self.achieved() < self.rate as f64 * RATE_TOLERANCE
    }

    /// secmon wrote an event for every open and dropped nothing.
    pub fn passed(&self) -> bool {
        self.stopped.dropped == 0
            && self.stopped.undecodable == 0
            && self.stopped.events >= self.load.ops
    }

    pub fn verdict(&self) -> &'static str {
        if self.stopped.dropped > 0 {
            "drops"
        } else if !self.passed() {
            "events missing"
        } else if self.generator_saturated() {
            "pass (generator limit)"
        } else {
            "pass"
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Throughput {
    pub steps: Vec<RateStep>,
}

impl Throughput {
    /// The fastest step that passed.
    pub fn best(&self) -> Option<&RateStep> {
        self.steps
            .iter()
            .filter(|s| s.passed())
            .max_by(|a, b| a.achieved().total_cmp(&b.achieved()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CriterionResult {
    pub name: String,
    /// Criterion's point estimate, e.g. `1.3224 ms`.
    pub time: String,
    /// e.g. `756.20 Kelem/s`.
    pub throughput: String,
}

impl CriterionResult {
    /// Elements (events) per second as a number.
    pub fn per_second(&self) -> Option<f64> {
        let mut words = self.throughput.split_whitespace();
        let value: f64 = words.next()?.parse().ok()?;
        let scale = match words.next()? {
            "elem/s" => 1.0,
            "Kelem/s" => 1e3,
            "Melem/s" => 1e6,
            "Gelem/s" => 1e9,
            _ => return None,
        };
        Some(value * scale)
    }
}

impl CriterionResult {
    /// The time per iteration in seconds.
    pub fn seconds(&self) -> Option<f64> {
        let mut words = self.time.split_whitespace();
        let value: f64 = words.next()?.parse().ok()?;
        let scale = match words.next()? {
            "ps" => 1e-12,
            "ns" => 1e-9,
            "µs" | "us" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            _ => return None,
        };
        Some(value * scale)
    }
}

/// The middle of criterion's `[low estimate high]` triple: `[1.2 ms 1.3 ms 1.4 ms]` → `1.3 ms`.
fn middle(bracketed: &str) -> Option<String> {
    let inner = bracketed.trim().strip_prefix('[')?.strip_suffix(']')?;
    let words: Vec<&str> = inner.split_whitespace().collect();
    (words.len() == 6).then(|| format!("{} {}", words[2], words[3]))
}

/// Collects `name time: [...]` (and `thrpt: [...]`, when the benchmark has one) from
/// criterion's default output.
pub fn parse_criterion(text: &str) -> Vec<CriterionResult> {
    let mut results = Vec::new();
    let mut name: Option<String> = None;
    let mut time: Option<String> = None;
    // A benchmark without throughput ends at the next one's name or at the end.
    let flush = |name: &mut Option<String>, time: &mut Option<String>, out: &mut Vec<_>| {
        if let (Some(n), Some(t)) = (name.take(), time.take()) {
            out.push(CriterionResult {
                name: n,
                time: t,
                throughput: String::new(),
            });
        }
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some((before, after)) = trimmed.split_once("time:") {
            if !before.trim().is_empty() {
                if time.is_some() {
                    flush(&mut name, &mut time, &mut results);
                }
                name = Some(before.trim().to_string());
            }
            time = middle(after);
        } else if let Some(after) = trimmed.strip_prefix("thrpt:") {
            if let (Some(n), Some(t), Some(thrpt)) = (name.take(), time.take(), middle(after)) {
                results.push(CriterionResult {
                    name: n,
                    time: t,
                    throughput: thrpt,
                });
            }
        } else if !line.starts_with(char::is_whitespace)
            && !trimmed.is_empty()
            && !trimmed.starts_with("Benchmarking")
            && !trimmed.starts_with("Found ")
            && !trimmed.contains(' ')
        {
            // A long benchmark name gets a line of its own.
            if time.is_some() {
                flush(&mut name, &mut time, &mut results);
            }
            name = Some(trimmed.to_string());
        }
    }
    flush(&mut name, &mut time, &mut results);
    results
}

#[derive(Debug, Clone, Default)]
pub struct Results {
    pub machine: Machine,
    pub command: String,
    pub quick: bool,
    pub rounds: u32,
    pub rate_secs: f64,
    pub loops: Vec<LoopResult>,
    pub throughput: Option<Throughput>,
    pub criterion: Vec<CriterionResult>,
    /// `monitor/benches/storage.rs`: the history's insert rate and query time.
    pub storage: Vec<CriterionResult>,
    /// `monitor/benches/rules.rs`: the rule engine with the shipped pack.
    pub rules: Vec<CriterionResult>,
    /// `monitor/benches/render.rs`: the terminal UI's frames.
    pub render: Vec<CriterionResult>,
    pub tui: Option<TuiResult>,
    pub web: Option<WebResult>,
    pub latency: Option<LatencyResult>,
    pub nats: Option<NatsResult>,
    pub hub: Option<HubResult>,
    pub notes: Vec<String>,
    pub elapsed_secs: f64,
}

/// The terminal UI under a flood, beside `--json` in the same run (`bench/tui.rs`).
#[derive(Debug, Clone, Default)]
pub struct TuiResult {
    pub rate: u64,
    pub secs: u64,
    /// Opens the generator made, and in how many seconds: the UI alone (latency), then
    /// beside `--json` (CPU).
    pub generated: u64,
    pub load_secs: f64,
    pub side_by_side_generated: u64,
    pub side_by_side_secs: f64,
    pub latencies_ms: Vec<f64>,
    pub ui_cpu_secs: f64,
    pub json_cpu_secs: f64,
    pub ui_events: u64,
    pub ui_drops: u64,
    pub json_events: u64,
    pub json_drops: u64,
    /// The UI's and `--json`'s peak resident memory over the run (VmHWM, KiB).
    pub ui_peak_rss_kib: Option<u64>,
    pub json_peak_rss_kib: Option<u64>,
}

/// Peak RSS target of issue 19 for the terminal UI with full panes (KiB).
pub const UI_PEAK_RSS_TARGET_KIB: u64 = 96 * 1024;

/// One phase of the web controller's measurement.
#[derive(Debug, Clone, Default)]
pub struct WebPhase {
    pub clients: usize,
    pub generated: u64,
    pub load_secs: f64,
    /// The monitor's CPU over the load.
    pub cpu_secs: f64,
    /// Resident memory before the load, and the peak over the phase (KiB).
    pub rss_before_kib: u64,
    pub peak_kib: u64,
    /// From the stop line: events analysed, kernel drops.
    pub events: u64,
    pub drops: u64,
    /// Per client: events received, events reported lost.
    pub delivered: Vec<u64>,
    pub lost: Vec<u64>,
}

/// `secmon-tui serve` under a flood, without and with WebSocket clients.
#[derive(Debug, Clone, Default)]
pub struct WebResult {
    pub rate: u64,
    pub secs: u64,
    pub alone: WebPhase,
    pub with_clients: WebPhase,
}

/// Detection latency, syscall to alert line (`bench/latency.rs`): idle, then under a flood.
#[derive(Debug, Clone, Default)]
pub struct LatencyResult {
    pub idle: LatencyPhase,
    pub loaded: LatencyPhase,
    /// Kernel drops over both phases.
    pub drops: u64,
}

/// One phase of [`LatencyResult`].
#[derive(Debug, Clone, Default)]
pub struct LatencyPhase {
    /// The flood's target rate (0: idle).
    pub rate: u64,
    /// Opens the generator made, and in how many seconds (0 when idle).
    pub generated: u64,
    pub load_secs: f64,
    pub latencies_ms: Vec<f64>,
    /// Triggers whose alert did not arrive in time.
    pub missed: u32,
}

impl LatencyPhase {
    /// The value below which `q` (0–1) of the samples lie (nearest rank).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
        sorted.get(rank - 1).copied()
    }
}

/// One phase of the NATS measurement (`bench/nats.rs`): `--json` alone, or with the exporter.
#[derive(Debug, Clone, Default)]
pub struct NatsPhase {
    pub exporting: bool,
    pub generated: u64,
    pub load_secs: f64,
    /// The monitor's CPU over the load.
    pub cpu_secs: f64,
    /// nats-server's CPU over the load.
    pub server_cpu_secs: f64,
    /// From the stop line: events analysed, kernel drops.
    pub events: u64,
    pub drops: u64,
    /// From the exporter's stop line: messages JetStream acknowledged, events it lost.
    pub published: u64,
    pub lost: u64,
    /// Messages the subscriber received, and their delay from capture (ms).
    pub received: u64,
    pub delay_p50_ms: f64,
    pub delay_p99_ms: f64,
    pub delay_max_ms: f64,
}

/// `secmon-tui --json` under a flood, without and with `[export.nats]`.
#[derive(Debug, Clone, Default)]
pub struct NatsResult {
    pub rate: u64,
    pub secs: u64,
    pub alone: NatsPhase,
    pub exporting: NatsPhase,
}

/// The hub's delay (`bench/hub.rs`): syscall on a publishing monitor → its event on the live
/// stream of `secmon-tui hub`, idle and under a flood.
#[derive(Debug, Clone, Default)]
pub struct HubResult {
    pub rate: u64,
    pub idle: LatencyPhase,
    pub loaded: LatencyPhase,
    /// Opens the generator made.
    pub generated: u64,
    /// The publisher's stop lines: events analysed, kernel drops, events acknowledged,
    /// events the exporter lost.
    pub events: u64,
    pub drops: u64,
    pub published: u64,
    pub lost: u64,
    /// The hub's CPU over the flooded phase.
    pub hub_cpu_secs: f64,
    /// Events the hub's live stream said it could not send to the client.
    pub stream_lost: u64,
}

/// Events per second one monitor should publish to a local nats-server (issue 15).
pub const NATS_TARGET: f64 = 200_000.0;

/// The history's insert-rate target (issue 19; issue 7's was 100,000), events per second
/// through the real writer with every index: `storage/insert` (a busy host's mix, nothing to
/// coalesce) and `storage/insert_flood` (one loop opening one file, coalesced).
pub const INSERT_TARGET: f64 = 500_000.0;

/// A criterion table with a target column: `target(result)` gives the target's text and the
/// verdict for one benchmark.
fn render_with_targets(
    s: &mut String,
    heading: &str,
    results: &[CriterionResult],
    target: impl Fn(&CriterionResult) -> (String, &'static str),
) {
    let _ = writeln!(s, "\n#### {heading}\n");
    let _ = writeln!(
        s,
        "| benchmark | time per iteration | events/s | target | result |"
    );
    let _ = writeln!(s, "|---|---:|---:|---|---|");
    for c in results {
        let (target, result) = target(c);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {target} | {result} |",
            c.name,
            c.time,
            opt(c.per_second(), |v| thousands(v.round() as u64)),
        );
    }
}

fn verdict(rate: f64, target: f64) -> &'static str {
    if rate >= target { "pass" } else { "**MISS**" }
}

fn render_storage(s: &mut String, results: &[CriterionResult]) {
    // The history curve (`history/…`) has a table of its own.
    let results: Vec<CriterionResult> = results
        .iter()
        .filter(|c| !c.name.starts_with("history/"))
        .cloned()
        .collect();
    let results = &results[..];
    render_with_targets(
        s,
        "History (SQLite): `monitor/benches/storage.rs` (criterion; the databases queried are \
         built once and kept in `target/bench-data/`)",
        results,
        |c| match c.per_second() {
            Some(rate) => (
                format!("≥ {} events/s", thousands(INSERT_TARGET as u64)),
                verdict(rate, INSERT_TARGET),
            ),
            None => ("< 200 ms (over 10M events)".to_string(), "see time"),
        },
    );
}

/// The rule engine's target (issue 4): events per second on one core through the shipped pack,
/// on the realistic mix (`rules/mix`).
pub const RULES_TARGET: f64 = 2_000_000.0;

fn render_rules(s: &mut String, results: &[CriterionResult]) {
    render_with_targets(
        s,
        "Rule engine: `monitor/benches/rules.rs` (criterion, the shipped pack, one thread)",
        results,
        |c| match (c.name.as_str(), c.per_second()) {
            ("rules/mix", Some(rate)) => (
                format!("≥ {} events/s/core", thousands(RULES_TARGET as u64)),
                verdict(rate, RULES_TARGET),
            ),
            _ => ("–".to_string(), "–"),
        },
    );
}

/// The rule engine's target with 5,000 rules (issue 19), events per second on one core.
pub const RULES_5000_TARGET: f64 = 1_000_000.0;
/// History query time target over 10M stored events (issues 7 and 19), in seconds.
pub const HISTORY_TARGET_SECS: f64 = 0.2;
/// Frame time target of the terminal UI at 160×48, in seconds.
pub const FRAME_TARGET_SECS: f64 = 0.002;

fn find<'a>(results: &'a [CriterionResult], name: &str) -> Option<&'a CriterionResult> {
    results.iter().find(|c| c.name == name)
}

fn ms(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else {
        format!("{:.2} ms", secs * 1e3)
    }
}

/// `rules/mix`, `rules/generated_500`, `rules/generated_5000`: events/s as the rules grow.
fn render_rules_curve(s: &mut String, rules: &[CriterionResult]) {
    let points = [
        ("the shipped pack", "rules/mix"),
        ("pack + 500 generated", "rules/generated_500"),
        ("pack + 5,000 generated", "rules/generated_5000"),
    ];
    if !points.iter().any(|(_, name)| find(rules, name).is_some()) {
        return;
    }
    let _ = writeln!(
        s,
        "\n##### Rule engine as the rules grow (`rules/mix` and `rules/generated_*`, one thread)\n"
    );
    let _ = writeln!(s, "| rules | benchmark | events/s/core | target | result |");
    let _ = writeln!(s, "|---|---|---:|---|---|");
    for (rules_label, name) in points {
        let Some(c) = find(rules, name) else {
            continue;
        };
        let (target, result) = match (name, c.per_second()) {
            ("rules/generated_5000", Some(rate)) => (
                format!("≥ {}", thousands(RULES_5000_TARGET as u64)),
                verdict(rate, RULES_5000_TARGET),
            ),
            ("rules/mix", Some(rate)) => (
                format!("≥ {}", thousands(RULES_TARGET as u64)),
                verdict(rate, RULES_TARGET),
            ),
            _ => ("–".to_string(), "–"),
        };
        let _ = writeln!(
            s,
            "| {rules_label} | {name} | {} | {target} | {result} |",
            opt(c.per_second(), |v| thousands(v.round() as u64)),
        );
    }
}

/// `enrich/procs_*`: events/s as the live processes grow.
fn render_enrich_curve(s: &mut String, pipeline: &[CriterionResult]) {
    let points: Vec<&CriterionResult> = pipeline
        .iter()
        .filter(|c| c.name.starts_with("enrich/procs_"))
        .collect();
    if points.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n##### Enrichment as the live processes grow (`enrich/procs_*`: decode + enrich, one thread)\n"
    );
    let _ = writeln!(
        s,
        "| live processes | benchmark | time per 10,000 records | events/s |"
    );
    let _ = writeln!(s, "|---:|---|---:|---:|");
    for c in points {
        let procs = c
            .name
            .trim_start_matches("enrich/procs_")
            .parse::<u64>()
            .map_or_else(|_| "?".to_string(), thousands);
        let _ = writeln!(
            s,
            "| {procs} | {} | {} | {} |",
            c.name,
            c.time,
            opt(c.per_second(), |v| thousands(v.round() as u64)),
        );
    }
}

/// `history/<query>/<size>`: query time as the stored events grow.
fn render_history_curve(s: &mut String, storage: &[CriterionResult]) {
    let mut sizes: Vec<&str> = Vec::new();
    for c in storage {
        if let Some(size) = c
            .name
            .strip_prefix("history/")
            .and_then(|r| r.split('/').nth(1))
            && !sizes.contains(&size)
        {
            sizes.push(size);
        }
    }
    if sizes.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n##### History queries as the stored events grow (`history/*` in `monitor/benches/storage.rs`; median of the runs)\n"
    );
    let _ = writeln!(
        s,
        "| events stored | `--last 24h --min-risk 0.6` | `--stats day` | target | result |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---|---|");
    for size in sizes {
        let time = |query: &str| find(storage, &format!("history/{query}/{size}"));
        let (query, stats) = (time("last24h_min_risk"), time("stats_day"));
        let (target, result) = if size == "10M" {
            let verdict = |c: Option<&CriterionResult>| match c.and_then(|c| c.seconds()) {
                Some(t) if t < HISTORY_TARGET_SECS => "pass",
                Some(_) => "**MISS**",
                None => "–",
            };
            (
                format!("< {:.0} ms each", HISTORY_TARGET_SECS * 1e3),
                format!("query {}, stats {}", verdict(query), verdict(stats)),
            )
        } else {
            ("–".to_string(), "–".to_string())
        };
        let shown = |c: Option<&CriterionResult>| opt(c.and_then(|c| c.seconds()), ms);
        let _ = writeln!(
            s,
            "| {size} | {} | {} | {target} | {result} |",
            shown(query),
            shown(stats)
        );
    }
}

/// `render/160x48` and `render/frame_100k`: a frame as the events received grow.
fn render_frame_curve(s: &mut String, render: &[CriterionResult]) {
    let points = [
        ("30,000", "render/160x48"),
        ("100,002", "render/frame_100k"),
    ];
    if !points.iter().any(|(_, name)| find(render, name).is_some()) {
        return;
    }
    let _ = writeln!(
        s,
        "\n##### Terminal UI frame as the events received grow (`monitor/benches/render.rs`, 160×48; the panes hold the newest 10,000 each)\n"
    );
    let _ = writeln!(
        s,
        "| events received | benchmark | time per frame | target | result |"
    );
    let _ = writeln!(s, "|---:|---|---:|---|---|");
    for (received, name) in points {
        let Some(c) = find(render, name) else {
            continue;
        };
        let result = match c.seconds() {
            Some(t) if t < FRAME_TARGET_SECS => "pass",
            Some(_) => "**MISS**",
            None => "–",
        };
        let _ = writeln!(
            s,
            "| {received} | {name} | {} | < {:.0} ms | {result} |",
            c.time,
            FRAME_TARGET_SECS * 1e3
        );
    }
}

/// The issue-19 curves: how each stage's cost grows with its work.
fn render_curves(s: &mut String, r: &Results) {
    let mut curves = String::new();
    render_rules_curve(&mut curves, &r.rules);
    render_enrich_curve(&mut curves, &r.criterion);
    render_history_curve(&mut curves, &r.storage);
    render_frame_curve(&mut curves, &r.render);
    if !curves.is_empty() {
        let _ = writeln!(s, "\n#### Cost as work grows (issue 19)\n");
        let _ = writeln!(
            s,
            "Points picked out of the benchmarks above: each stage with more of what it works on."
        );
        s.push_str(&curves);
    }
}

/// Key-to-screen latency target of the terminal UI, in milliseconds.
pub const KEY_LATENCY_TARGET_MS: f64 = 100.0;

fn render_web(s: &mut String, w: &WebResult) {
    let _ = writeln!(
        s,
        "\n#### Web controller under {} opens/s for {} s (`secmon-tui serve`, WebSocket clients on `/api/v1/events` reading everything)\n",
        thousands(w.rate),
        w.secs
    );
    let _ = writeln!(
        s,
        "| clients | opens made | monitor CPU over the load | kernel drops | events analysed | peak RSS | events per client (min–max) | lost per client (max) |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    for p in [&w.alone, &w.with_clients] {
        let min = p.delivered.iter().min().copied().unwrap_or(0);
        let max = p.delivered.iter().max().copied().unwrap_or(0);
        let lost = p.lost.iter().max().copied().unwrap_or(0);
        let _ = writeln!(
            s,
            "| {} | {} in {:.1} s | {:.2} s | {} | {} | {:.1} MiB ({:.1} MiB) | {} | {} |",
            p.clients,
            thousands(p.generated),
            p.load_secs,
            p.cpu_secs,
            thousands(p.drops),
            thousands(p.events),
            p.peak_kib as f64 / 1024.0,
            p.rss_before_kib as f64 / 1024.0,
            if p.clients == 0 {
                "–".to_string()
            } else {
                format!("{}–{}", thousands(min), thousands(max))
            },
            if p.clients == 0 {
                "–".to_string()
            } else {
                thousands(lost)
            },
        );
    }
    let (a, c) = (&w.alone, &w.with_clients);
    if a.cpu_secs > 0.0 && c.clients > 0 {
        let extra_kib = c.peak_kib.saturating_sub(a.peak_kib);
        let _ = writeln!(
            s,
            "\nWith {} clients: CPU **{:.2}×** the monitor alone, kernel drops {} → {}, peak memory +{:.1} MiB (**{:.0} KiB per client**; the clients share one ring of 8 batches, so this does not grow with their number).",
            c.clients,
            c.cpu_secs / a.cpu_secs,
            thousands(a.drops),
            thousands(c.drops),
            extra_kib as f64 / 1024.0,
            extra_kib as f64 / c.clients as f64
        );
    }
}

fn render_latency(s: &mut String, l: &LatencyResult) {
    let _ = writeln!(
        s,
        "\n#### Detection latency: syscall to alert line (`secmon-tui --json`, shipped defaults: history and rules on)\n"
    );
    let _ = writeln!(
        s,
        "The trigger reads `/etc/shadow` (rule `shadow_file_read`, suspicious); the clock runs from just before the `open` to the moment the alert line is read from the monitor's standard output.\n"
    );
    let _ = writeln!(
        s,
        "| load | alerts | median | 99th percentile | worst | missed (> 5 s) |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- |");
    for p in [&l.idle, &l.loaded] {
        let load = if p.rate == 0 {
            "idle".to_string()
        } else if p.load_secs > 0.0 {
            format!(
                "{} opens/s asked, {} made",
                thousands(p.rate),
                thousands((p.generated as f64 / p.load_secs) as u64)
            )
        } else {
            format!("{} opens/s", thousands(p.rate))
        };
        let ms = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2} ms"));
        let _ = writeln!(
            s,
            "| {load} | {} | {} | {} | {} | {} |",
            p.latencies_ms.len(),
            ms(p.quantile(0.5)),
            ms(p.quantile(0.99)),
            ms(p.quantile(1.0)),
            p.missed
        );
    }
    let _ = writeln!(
        s,
        "\nKernel drops over both phases: {}.",
        thousands(l.drops)
    );
}

fn render_nats(s: &mut String, n: &NatsResult) {
    let _ = writeln!(
        s,
        "\n#### NATS export under {} opens/s for {} s (`secmon-tui --json`, history off, a local `nats-server -js`, a subscriber on the host's `file_open` subject)\n",
        thousands(n.rate),
        n.secs
    );
    let _ = writeln!(
        s,
        "| exporter | opens made | monitor CPU over the load | kernel drops | events analysed | published (acked) | published/s | lost (nats_*) | received by the subscriber | delay capture → subscriber p50 / p99 / max |"
    );
    let _ = writeln!(
        s,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for p in [&n.alone, &n.exporting] {
        let rate = if p.load_secs > 0.0 {
            p.published as f64 / p.load_secs
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "| {} | {} in {:.1} s | {:.2} s | {} | {} | {} | {} | {} | {} | {} |",
            if p.exporting { "on" } else { "off" },
            thousands(p.generated),
            p.load_secs,
            p.cpu_secs,
            thousands(p.drops),
            thousands(p.events),
            if p.exporting {
                thousands(p.published)
            } else {
                "–".to_string()
            },
            if p.exporting {
                thousands(rate as u64)
            } else {
                "–".to_string()
            },
            if p.exporting {
                thousands(p.lost)
            } else {
                "–".to_string()
            },
            if p.exporting {
                thousands(p.received)
            } else {
                "–".to_string()
            },
            if p.exporting {
                format!(
                    "{:.1} / {:.1} / {:.1} ms",
                    p.delay_p50_ms, p.delay_p99_ms, p.delay_max_ms
                )
            } else {
                "–".to_string()
            },
        );
    }
    let e = &n.exporting;
    if e.load_secs > 0.0 {
        let rate = e.published as f64 / e.load_secs;
        let verdict = if rate >= NATS_TARGET && e.lost == 0 {
            "ok"
        } else if e.lost == 0 && e.events < (NATS_TARGET * e.load_secs) as u64 {
            "not reached: fewer events than the target came (the load, not the exporter)"
        } else {
            "MISS"
        };
        let _ = writeln!(
            s,
            "\nPublished **{} events/s** (target ≥ {}: {verdict}); kernel drops {} → {} with the exporter on.",
            thousands(rate as u64),
            thousands(NATS_TARGET as u64),
            thousands(n.alone.drops),
            thousands(e.drops)
        );
        if e.published > 0 {
            let per_message = e.server_cpu_secs / e.published as f64;
            let _ = writeln!(
                s,
                "\nnats-server: {:.2} s of CPU over the load, {:.1} µs per event acknowledged (several per message with `events_per_message`): {} events/s would take {:.1} cores of it alone.",
                e.server_cpu_secs,
                per_message * 1e6,
                thousands(NATS_TARGET as u64),
                per_message * NATS_TARGET,
            );
        }
    }
}

fn render_hub(s: &mut String, h: &HubResult) {
    let _ = writeln!(
        s,
        "\n#### Hub: syscall → shown on `secmon-tui hub`'s live stream (`/api/v1/events`), idle and under {} opens/s\n",
        thousands(h.rate)
    );
    let _ = writeln!(
        s,
        "A monitor exports to a local `nats-server -js`; the hub subscribes; a WebSocket client of \
         the hub asks for this run's marks (`?text=MARK`); the bench opens a marked file every 20 ms \
         and times it until the client reads it.\n"
    );
    let _ = writeln!(s, "| phase | marks | arrived | median | p99 | worst |");
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- |");
    for (name, p) in [("idle", &h.idle), ("under the flood", &h.loaded)] {
        let ms = |q: f64| {
            p.quantile(q)
                .map_or("–".to_string(), |v| format!("{v:.1} ms"))
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} |",
            p.latencies_ms.len() as u32 + p.missed,
            p.latencies_ms.len(),
            ms(0.5),
            ms(0.99),
            ms(1.0),
        );
    }
    let published_rate = if h.loaded.load_secs > 0.0 {
        format!(
            " ({} opens in {:.1} s)",
            thousands(h.generated),
            h.loaded.load_secs
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "\nThe publisher over the whole step{published_rate}: {} events analysed, {} kernel drops, {} events acknowledged, {} lost to the exporter (nats_*). The hub: {:.2} s of CPU over the flooded phase, {} events its live stream could not send to the client.",
        thousands(h.events),
        thousands(h.drops),
        thousands(h.published),
        thousands(h.lost),
        h.hub_cpu_secs,
        thousands(h.stream_lost),
    );
}

fn render_tui(s: &mut String, t: &TuiResult) {
    let mut sorted = t.latencies_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let max = sorted.last().copied().unwrap_or(0.0);
    let verdict = if max < KEY_LATENCY_TARGET_MS {
        "ok"
    } else {
        "MISS"
    };
    let _ = writeln!(
        s,
        "\n#### Terminal UI under {} opens/s for {} s (`secmon-tui` in 160×48 tmux)\n",
        thousands(t.rate),
        t.secs
    );
    let _ = writeln!(
        s,
        "The UI alone (the generator made {} opens in {:.1} s): key-to-screen latency (`?` \
         pressed {} times, `capture-pane` polled every 10 ms) median **{median:.0} ms**, max \
         **{max:.0} ms** (target < {KEY_LATENCY_TARGET_MS:.0} ms: **{verdict}**).\n",
        thousands(t.generated),
        t.load_secs,
        t.latencies_ms.len()
    );
    let each: Vec<String> = t.latencies_ms.iter().map(|ms| format!("{ms:.0}")).collect();
    let _ = writeln!(s, "Each press, in order (ms): {}.\n", each.join(", "));
    let _ = writeln!(
        s,
        "Then the same load again ({} opens in {:.1} s) with `secmon-tui --json > /dev/null` \
         beside the UI; CPU over that load, events and drops over the whole run (the UI's \
         include the first load):\n",
        thousands(t.side_by_side_generated),
        t.side_by_side_secs
    );
    let _ = writeln!(
        s,
        "| process | CPU (user + system) | events | kernel drops | peak RSS |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- |");
    let peak = |kib: Option<u64>| opt(kib.map(|k| k as f64), mib);
    let _ = writeln!(
        s,
        "| `secmon-tui` (UI) | {:.2} s | {} | {} | {} |",
        t.ui_cpu_secs,
        thousands(t.ui_events),
        thousands(t.ui_drops),
        peak(t.ui_peak_rss_kib),
    );
    let _ = writeln!(
        s,
        "| `secmon-tui --json > /dev/null` | {:.2} s | {} | {} | {} |",
        t.json_cpu_secs,
        thousands(t.json_events),
        thousands(t.json_drops),
        peak(t.json_peak_rss_kib),
    );
    if let Some(ui) = t.ui_peak_rss_kib {
        let verdict = if ui <= UI_PEAK_RSS_TARGET_KIB {
            "pass"
        } else {
            "**MISS**"
        };
        let _ = writeln!(
            s,
            "\nThe UI's peak RSS with full panes: **{}** (target ≤ {}: {verdict}).",
            mib(ui as f64),
            mib(UI_PEAK_RSS_TARGET_KIB as f64)
        );
    }
    if t.json_cpu_secs > 0.0 {
        let _ = writeln!(
            s,
            "\nUI CPU / `--json` CPU: **{:.2}×**.",
            t.ui_cpu_secs / t.json_cpu_secs
        );
    }
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_string(), f)
}

fn secs3(v: f64) -> String {
    format!("{v:.3}")
}

fn secs2(v: f64) -> String {
    format!("{v:.2}")
}

/// `0.712, 0.698*, 0.731` (`*`: disturbed).
fn list(samples: &[Sample]) -> String {
    samples
        .iter()
        .map(|s| format!("{:.3}{}", s.secs, if s.disturbed { "*" } else { "" }))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Peak RSS targets of issue 19 for `--json` (KiB): after start, and under load.
pub const IDLE_RSS_TARGET_KIB: u64 = 32 * 1024;
pub const PEAK_RSS_TARGET_KIB: u64 = 64 * 1024;

fn mib(kib: f64) -> String {
    format!("{:.0} MiB", kib / 1024.0)
}

/// One configuration's row of the overhead table.
fn overhead_row(s: &mut String, l: &LoopResult, name: &str, samples: &[Sample], headline: bool) {
    let ratio =
        |samples: &[Sample]| Some(LoopResult::secs(samples)? / LoopResult::secs(&l.baseline)?);
    let fastest = |samples: &[Sample]| {
        Some(LoopResult::fastest(samples)? / LoopResult::fastest(&l.baseline)?)
    };
    let result = match ratio(samples) {
        Some(r) if r <= l.spec.target => "pass",
        Some(_) => "**MISS**",
        None => "–",
    };
    let dropped: Option<u64> = samples.iter().map(|x| x.stopped.map(|st| st.dropped)).sum();
    let events = median_of(samples, |x| x.stopped.map(|st| st.events as f64));
    let ratio_text = opt(ratio(samples), |v| format!("{v:.2}×"));
    let ratio_text = if headline {
        format!("**{ratio_text}**")
    } else {
        ratio_text
    };
    let _ = writeln!(
        s,
        "| {} | {} | {name} | {} | {ratio_text} ({}) | ≤ {:.2}× | {result} | {} | {} / {} | {} | {} |",
        l.spec.name,
        thousands(l.spec.ops),
        opt(LoopResult::secs(samples), secs3),
        opt(fastest(samples), |v| format!("{v:.2}×")),
        l.spec.target,
        opt(median_of(samples, |x| x.tracer_cpu), secs2),
        opt(events, |v| thousands(v.round() as u64)),
        dropped.map_or_else(|| "–".to_string(), thousands),
        idle_memory_cell(samples),
        peak_memory_cell(samples),
    );
}

/// Median VmHWM after start, with the median ring and anonymous parts: `62 MiB (ring 16,
/// anon 30)`.
fn idle_memory_cell(samples: &[Sample]) -> String {
    let rss = opt(
        median_of(samples, |x| x.idle_rss_kib.map(|k| k as f64)),
        mib,
    );
    let ring = median_of(samples, |x| x.idle_parts.map(|p| p.bpf_maps_kib as f64));
    let anon = median_of(samples, |x| x.idle_parts.map(|p| p.anon_kib as f64));
    match (ring, anon) {
        (Some(ring), Some(anon)) => format!(
            "{rss} (ring {:.0}, anon {:.0})",
            ring / 1024.0,
            anon / 1024.0
        ),
        _ => rss,
    }
}

/// Highest VmHWM after a loop, with the highest anonymous part then: `70 MiB (anon 38)`.
fn peak_memory_cell(samples: &[Sample]) -> String {
    let rss = opt(
        samples
            .iter()
            .filter_map(|x| x.peak_rss_kib)
            .max()
            .map(|k| k as f64),
        mib,
    );
    match samples
        .iter()
        .filter_map(|x| x.peak_parts)
        .map(|p| p.anon_kib)
        .max()
    {
        Some(anon) => format!("{rss} (anon {})", anon / 1024),
        None => rss,
    }
}

fn render_overhead(s: &mut String, r: &Results) {
    let _ = writeln!(
        s,
        "\n#### Overhead: loop time traced / untraced (median of {} round{})\n",
        r.rounds,
        plural(r.rounds)
    );
    let _ = writeln!(
        s,
        "The headline rows are `secmon-tui --json > /dev/null` with the **shipped defaults** \
         (history on, rules on, every probe family), what a user runs after installing; the \
         history-off row and the bpftrace peer (`xtask/src/bench/secmon-equivalent.bt`) run \
         beside them, interleaved, in the same rounds.\n"
    );
    let _ = writeln!(
        s,
        "| loop | operations | configuration | time (s) | ratio (fastest runs) | target | result | CPU (s) | events / dropped in the kernel | RSS after start | peak RSS |"
    );
    let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|");
    for l in &r.loops {
        let _ = writeln!(
            s,
            "| {} | {} | no tracer | {} | – | – | – | – | – | – | – |",
            l.spec.name,
            thousands(l.spec.ops),
            opt(LoopResult::secs(&l.baseline), secs3),
        );
        overhead_row(s, l, "**secmon, defaults**", &l.secmon, true);
        if !l.secmon_no_history.is_empty() {
            overhead_row(s, l, "secmon, history off", &l.secmon_no_history, false);
        }
        if !l.bpftrace.is_empty() {
            overhead_row(s, l, "bpftrace peer", &l.bpftrace, false);
        }
    }
    render_memory_verdict(s, r);
    let _ = writeln!(
        s,
        "\nPer-round loop times in seconds (`*`: another tracer or a compiler was running around that run):\n"
    );
    for l in &r.loops {
        let _ = write!(
            s,
            "- {}: baseline {}; secmon defaults {}",
            l.spec.name,
            list(&l.baseline),
            list(&l.secmon)
        );
        if !l.secmon_no_history.is_empty() {
            let _ = write!(s, "; history off {}", list(&l.secmon_no_history));
        }
        if !l.bpftrace.is_empty() {
            let _ = write!(s, "; bpftrace {}", list(&l.bpftrace));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "\nResult: the median ratio against the target. Times are medians; (fastest runs): \
         the fastest traced run over the fastest baseline run, the estimate least affected by \
         other work on a shared machine. CPU: user + system seconds the tracer process used from the start of the loop until it \
         had handled the loop's events (median). Events: events written per run (median), \
         the rest of the machine's activity included; dropped: summed over the rounds. RSS \
         after start: VmHWM once the tracer is ready and settled (median); peak RSS: the \
         highest VmHWM once it has handled a loop. In brackets, in MiB, what part of the \
         resident memory at that moment is the mapped ring buffer (the Rss of the \
         `anon_inode:bpf-map` mappings in smaps; mapped once since issue 19) and what part \
         is private anonymous memory (`RssAnon`: heap, caches, stacks); the rest is mostly \
         the executable's own pages."
    );
}

/// The `--json` memory targets against the defaults' runs.
fn render_memory_verdict(s: &mut String, r: &Results) {
    let defaults = r.loops.iter().flat_map(|l| l.secmon.iter());
    let idle = defaults.clone().filter_map(|x| x.idle_rss_kib).max();
    let peak = defaults.filter_map(|x| x.peak_rss_kib).max();
    let (Some(idle), Some(peak)) = (idle, peak) else {
        return;
    };
    let verdict = |v: u64, target: u64| if v <= target { "pass" } else { "**MISS**" };
    let _ = writeln!(
        s,
        "\nMemory, `--json` with the defaults: after start **{}** (target ≤ {}: {}), peak \
         under the loops **{}** (target ≤ {}: {}).",
        mib(idle as f64),
        mib(IDLE_RSS_TARGET_KIB as f64),
        verdict(idle, IDLE_RSS_TARGET_KIB),
        mib(peak as f64),
        mib(PEAK_RSS_TARGET_KIB as f64),
        verdict(peak, PEAK_RSS_TARGET_KIB),
    );
}

fn render_throughput(s: &mut String, r: &Results, t: &Throughput) {
    let _ = writeln!(
        s,
        "\n#### Throughput: opens at a fixed rate for {} s under secmon\n",
        r.rate_secs
    );
    let _ = writeln!(
        s,
        "| rate asked (opens/s) | generator threads | issued (opens/s) | opens | events written | dropped | secmon CPU (s) | result |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---|");
    for step in &t.steps {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {}{} |",
            thousands(step.rate),
            step.threads,
            thousands(step.achieved().round() as u64),
            thousands(step.load.ops),
            thousands(step.stopped.events),
            thousands(step.stopped.dropped),
            opt(step.tracer_cpu, secs2),
            step.verdict(),
            if step.disturbed { " *" } else { "" }
        );
    }
    match t.best() {
        Some(best) => {
            let rate = best.achieved();
            let limited = best.generator_saturated() && t.steps.iter().all(RateStep::passed);
            let _ = writeln!(
                s,
                "\n**Sustained without a single drop: {} events/s** (target ≥ {}: {}){}",
                thousands(rate.round() as u64),
                thousands(THROUGHPUT_TARGET as u64),
                if rate >= THROUGHPUT_TARGET {
                    "pass"
                } else {
                    "**MISS**"
                },
                if limited {
                    "; this is the most the load generator could issue next to secmon on this \
                     machine, and secmon kept up with all of it: its own limit is higher."
                } else {
                    "."
                }
            );
        }
        None => {
            let _ = writeln!(
                s,
                "\n**No rate passed** (target ≥ {} events/s: **MISS**).",
                thousands(THROUGHPUT_TARGET as u64)
            );
        }
    }
}

fn render_criterion(s: &mut String, r: &Results) {
    let _ = writeln!(
        s,
        "\n#### Criterion: userspace decode + enrich + JSON on one thread (`monitor/benches/pipeline.rs`)\n"
    );
    let _ = writeln!(
        s,
        "| benchmark | time per 1000 records | events/s | µs per event |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|");
    // The enrichment curve (`enrich/…`, 10,000 records per iteration) has a table of its own.
    for c in r
        .criterion
        .iter()
        .filter(|c| !c.name.starts_with("enrich/"))
    {
        let per_sec = c.per_second();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            c.name,
            c.time,
            opt(per_sec, |v| thousands(v.round() as u64)),
            opt(per_sec, |v| format!("{:.3}", 1e6 / v)),
        );
    }
}

/// The results as Markdown (printed, saved to target/bench/last-run.md and put in the doc).
pub fn render(r: &Results) -> String {
    let m = &r.machine;
    let mut s = String::new();
    let _ = writeln!(s, "### Run of {}\n", m.date);
    let _ = writeln!(
        s,
        "- Machine: {} × {}, {} RAM, Linux {} (load average at start: {})",
        m.cpus, m.cpu_model, m.memory, m.kernel, m.load_average
    );
    let _ = writeln!(
        s,
        "- Command: `{}` ({} round{}{}), {:.0} s in all",
        r.command,
        r.rounds,
        plural(r.rounds),
        if r.quick {
            ", quick: loops a fifth of the size"
        } else {
            ""
        },
        r.elapsed_secs
    );
    let _ = writeln!(
        s,
        "- Software: secmon at {}, {}, {}",
        m.commit, m.rustc, m.bpftrace
    );
    if !r.loops.is_empty() {
        render_overhead(&mut s, r);
    }
    if let Some(t) = &r.throughput {
        render_throughput(&mut s, r, t);
    }
    if !r.criterion.is_empty() {
        render_criterion(&mut s, r);
    }
    if !r.storage.is_empty() {
        render_storage(&mut s, &r.storage);
    }
    if !r.rules.is_empty() {
        render_rules(&mut s, &r.rules);
    }
    render_curves(&mut s, r);
    if let Some(t) = &r.tui {
        render_tui(&mut s, t);
    }
    if let Some(w) = &r.web {
        render_web(&mut s, w);
    }
    if let Some(l) = &r.latency {
        render_latency(&mut s, l);
    }
    if let Some(n) = &r.nats {
        render_nats(&mut s, n);
    }
    if let Some(h) = &r.hub {
        render_hub(&mut s, h);
    }
    if !r.notes.is_empty() {
        let _ = writeln!(s, "\nNotes from the run:\n");
        for note in &r.notes {
            let _ = writeln!(s, "- {note}");
        }
    }
    s
}

/// Puts `section` between the markers of `doc` (creating the file, or appending the markers,
/// when missing); everything outside the markers is kept as it is.
pub fn update_doc(doc: &Path, section: &str) -> Result<()> {
    let old = match std::fs::read_to_string(doc) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# Benchmarks\n\nRun `cargo xtask bench` (about 10 minutes, as root) or \
             `cargo xtask bench --quick`.\n\n"
                .to_string()
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", doc.display())),
    };
    let new = splice(&old, section);
    if let Some(dir) = doc.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(doc, new).with_context(|| format!("writing {}", doc.display()))
}

fn splice(old: &str, section: &str) -> String {
    let block = format!("{BEGIN_MARKER}\n{}\n{END_MARKER}", section.trim_end());
    match (old.find(BEGIN_MARKER), old.find(END_MARKER)) {
        (Some(begin), Some(end)) if end > begin => {
            format!("{}{block}{}", &old[..begin], &old[end + END_MARKER.len()..])
        }
        _ => format!("{}\n\n{block}\n", old.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_cells_say_what_the_rss_is_made_of() {
        let parts = |ring, anon| {
            Some(MemoryParts {
                bpf_maps_kib: ring,
                anon_kib: anon,
            })
        };
        let samples = [
            Sample {
                idle_rss_kib: Some(50 * 1024),
                idle_parts: parts(16 * 1024, 15 * 1024),
                peak_rss_kib: Some(80 * 1024),
                peak_parts: parts(16 * 1024, 40 * 1024),
                ..Sample::default()
            },
            Sample {
                idle_rss_kib: Some(52 * 1024),
                idle_parts: parts(16 * 1024, 17 * 1024),
                peak_rss_kib: Some(85 * 1024),
                peak_parts: parts(16 * 1024, 37 * 1024),
                ..Sample::default()
            },
        ];
        assert_eq!(idle_memory_cell(&samples), "51 MiB (ring 16, anon 16)");
        assert_eq!(peak_memory_cell(&samples), "85 MiB (anon 40)");
        // bpftrace or an older run: no parts, the RSS alone.
        let bare = [Sample {
            idle_rss_kib: Some(100 * 1024),
            peak_rss_kib: Some(101 * 1024),
            ..Sample::default()
        }];
        assert_eq!(idle_memory_cell(&bare), "100 MiB");
        assert_eq!(peak_memory_cell(&bare), "101 MiB");
    }

    #[test]
    fn parses_criterion_output() {
        let text = "\
Benchmarking decode/mix: Analyzing
decode/mix              time:   [33.499 µs 35.118 µs 36.654 µs]
                        thrpt:  [27.282 Melem/s 28.475 Melem/s 29.852 Melem/s]
Found 18 outliers among 100 measurements (18.00%)
pipeline/a_rather_long_benchmark_name
                        time:   [1.2835 ms 1.3224 ms 1.3659 ms]
                        thrpt:  [732.10 Kelem/s 756.20 Kelem/s 779.13 Kelem/s]
";
        let r = parse_criterion(text);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "decode/mix");
        assert_eq!(r[0].time, "35.118 µs");
        assert_eq!(r[0].per_second(), Some(28.475e6));
        assert_eq!(r[1].name, "pipeline/a_rather_long_benchmark_name");
        assert_eq!(r[1].throughput, "756.20 Kelem/s");
    }

    #[test]
    fn rule_engine_target_applies_to_the_mix_only() {
        let text = "\
rules: 44 rules, 45 of 1000 events matched at least one
rules/mix               time:   [170.96 µs 171.60 µs 172.33 µs]
                        thrpt:  [5.8028 Melem/s 5.8276 Melem/s 5.8493 Melem/s]
rules/process_exec      time:   [703.76 µs 706.79 µs 710.01 µs]
                        thrpt:  [1.4084 Melem/s 1.4149 Melem/s 1.4209 Melem/s]
rules/load_pack         time:   [5.7900 ms 5.8906 ms 6.0448 ms]
";
        let r = parse_criterion(text);
        assert_eq!(r.len(), 3, "{r:?}");
        let mut doc = String::new();
        render_rules(&mut doc, &r);
        assert!(
            doc.contains(
                "| rules/mix | 171.60 µs | 5,827,600 | ≥ 2,000,000 events/s/core | pass |"
            ),
            "{doc}"
        );
        assert!(
            doc.contains("| rules/process_exec | 706.79 µs | 1,414,900 | – | – |"),
            "{doc}"
        );
        assert!(
            doc.contains("| rules/load_pack | 5.8906 ms | – | – | – |"),
            "{doc}"
        );
    }

    #[test]
    fn parses_benchmarks_without_throughput() {
        let text = "\
storage/insert          time:   [700.00 ms 800.00 ms 900.00 ms]
                        thrpt:  [111.11 Kelem/s 125.00 Kelem/s 142.86 Kelem/s]
storage/insert_flood    time:   [19.000 ms 20.000 ms 21.000 ms]
                        thrpt:  [4.7619 Melem/s 5.0000 Melem/s 5.2632 Melem/s]
storage/query_last24h_min_risk
                        time:   [11.000 ms 12.000 ms 13.000 ms]
Found 3 outliers among 100 measurements (3.00%)
storage/other           time:   [1.0000 ms 2.0000 ms 3.0000 ms]
";
        let r = parse_criterion(text);
        let names: Vec<&str> = r.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "storage/insert",
                "storage/insert_flood",
                "storage/query_last24h_min_risk",
                "storage/other"
            ]
        );
        assert_eq!(r[0].per_second(), Some(125_000.0));
        assert_eq!(r[1].per_second(), Some(5_000_000.0));
        assert_eq!(r[2].time, "12.000 ms");
        assert_eq!(r[2].per_second(), None);
        assert_eq!(r[3].time, "2.0000 ms");
        let mut doc = String::new();
        render_storage(&mut doc, &r);
        assert!(
            doc.contains(
                "| storage/insert | 800.00 ms | 125,000 | ≥ 500,000 events/s | **MISS** |"
            ),
            "{doc}"
        );
        assert!(
            doc.contains(
                "| storage/insert_flood | 20.000 ms | 5,000,000 | ≥ 500,000 events/s | pass |"
            ),
            "{doc}"
        );
    }

    #[test]
    fn times_in_seconds() {
        let at = |time: &str| CriterionResult {
            name: "x".into(),
            time: time.into(),
            throughput: String::new(),
        };
        assert_eq!(at("12.5 ms").seconds(), Some(0.0125));
        assert_eq!(at("305.43 µs").seconds(), Some(305.43e-6));
        assert_eq!(at("2.0000 s").seconds(), Some(2.0));
        let ns = at("250 ns").seconds().expect("a time");
        assert!((ns - 250e-9).abs() < 1e-18, "{ns}");
        assert_eq!(at("soon").seconds(), None);
        assert_eq!(at("3 days").seconds(), None);
    }

    #[test]
    fn rules_curve_has_the_target_at_5000() {
        let text = "\
rules/mix               time:   [180.00 µs 183.26 µs 190.00 µs]
                        thrpt:  [5.2632 Melem/s 5.4568 Melem/s 5.5556 Melem/s]
rules/generated_500     time:   [290.00 µs 300.00 µs 310.00 µs]
                        thrpt:  [3.2258 Melem/s 3.3333 Melem/s 3.4483 Melem/s]
rules/generated_5000    time:   [1.1000 ms 1.2500 ms 1.3000 ms]
                        thrpt:  [769.23 Kelem/s 800.00 Kelem/s 909.09 Kelem/s]
rules/load_generated_5000
                        time:   [150.00 ms 160.00 ms 170.00 ms]
";
        let r = parse_criterion(text);
        assert_eq!(r.len(), 4, "{r:?}");
        let mut doc = String::new();
        render_rules_curve(&mut doc, &r);
        assert!(
            doc.contains("| the shipped pack | rules/mix | 5,456,800 | ≥ 2,000,000 | pass |"),
            "{doc}"
        );
        assert!(
            doc.contains("| pack + 500 generated | rules/generated_500 | 3,333,300 | – | – |"),
            "{doc}"
        );
        assert!(
            doc.contains(
                "| pack + 5,000 generated | rules/generated_5000 | 800,000 | ≥ 1,000,000 | **MISS** |"
            ),
            "{doc}"
        );
        // Nothing to show without the points.
        let mut empty = String::new();
        render_rules_curve(&mut empty, &r[3..]);
        assert_eq!(empty, "");
    }

    #[test]
    fn enrichment_curve_by_process_count() {
        let text = "\
pipeline/mix            time:   [1.0000 ms 1.0433 ms 1.1000 ms]
                        thrpt:  [909.09 Kelem/s 958.47 Kelem/s 1.0000 Melem/s]
enrich/procs_1000       time:   [12.000 ms 13.214 ms 14.000 ms]
                        thrpt:  [714.29 Kelem/s 756.76 Kelem/s 833.33 Kelem/s]
enrich/procs_30000      time:   [32.000 ms 33.769 ms 35.000 ms]
                        thrpt:  [285.71 Kelem/s 296.13 Kelem/s 312.50 Kelem/s]
";
        let r = parse_criterion(text);
        let mut doc = String::new();
        render_enrich_curve(&mut doc, &r);
        assert!(
            doc.contains("| 1,000 | enrich/procs_1000 | 13.214 ms | 756,760 |"),
            "{doc}"
        );
        assert!(
            doc.contains("| 30,000 | enrich/procs_30000 | 33.769 ms | 296,130 |"),
            "{doc}"
        );
        assert!(!doc.contains("pipeline/mix"), "{doc}");
        // And the pipeline's own table leaves them out.
        let results = Results {
            criterion: r,
            ..Results::default()
        };
        let mut table = String::new();
        render_criterion(&mut table, &results);
        assert!(table.contains("| pipeline/mix |"), "{table}");
        assert!(!table.contains("enrich/"), "{table}");
    }

    #[test]
    fn history_curve_from_the_storage_benchmark() {
        // As monitor/benches/storage.rs prints it: criterion's format, long names alone.
        let text = "\
storage/insert          time:   [700.00 ms 800.00 ms 900.00 ms]
                        thrpt:  [111.11 Kelem/s 125.00 Kelem/s 142.86 Kelem/s]
history/last24h_min_risk/1M
                        time:   [6.0499 ms 9.6813 ms 27.866 ms]
history/stats_day/1M    time:   [2.2213 s 2.4513 s 3.3144 s]
history/last24h_min_risk/10M
                        time:   [60.000 ms 65.432 ms 70.000 ms]
history/stats_day/10M   time:   [24.000 s 24.500 s 25.000 s]
";
        let r = parse_criterion(text);
        assert_eq!(r.len(), 5, "{r:?}");
        assert_eq!(r[3].name, "history/last24h_min_risk/10M");
        assert_eq!(r[3].time, "65.432 ms");
        let mut doc = String::new();
        render_history_curve(&mut doc, &r);
        assert!(doc.contains("| 1M | 9.68 ms | 2.45 s | – | – |"), "{doc}");
        assert!(
            doc.contains(
                "| 10M | 65.43 ms | 24.50 s | < 200 ms each | query pass, stats **MISS** |"
            ),
            "{doc}"
        );
        assert!(!doc.contains("100M"), "{doc}");
        // The storage table keeps only its own.
        let mut table = String::new();
        render_storage(&mut table, &r);
        assert!(table.contains("storage/insert"), "{table}");
        assert!(!table.contains("| history/"), "{table}");
        // 100M when it was run.
        let more = parse_criterion(
            "history/last24h_min_risk/100M\n                        time:   [1.0 s 1.5 s 2.0 s]\n",
        );
        let mut doc = String::new();
        render_history_curve(&mut doc, &more);
        assert!(doc.contains("| 100M | 1.50 s | – | – | – |"), "{doc}");
    }

    #[test]
    fn frame_curve_and_the_whole_section() {
        let text = "\
render/160x48           time:   [297.97 µs 305.43 µs 313.46 µs]
render/80x24            time:   [140.00 µs 141.00 µs 142.00 µs]
render/frame_100k       time:   [296.22 µs 311.23 µs 330.51 µs]
";
        let render = parse_criterion(text);
        let mut doc = String::new();
        render_frame_curve(&mut doc, &render);
        assert!(
            doc.contains("| 30,000 | render/160x48 | 305.43 µs | < 2 ms | pass |"),
            "{doc}"
        );
        assert!(
            doc.contains("| 100,002 | render/frame_100k | 311.23 µs | < 2 ms | pass |"),
            "{doc}"
        );
        assert!(!doc.contains("80x24"), "{doc}");
        // In the report, under one heading; absent when nothing was measured.
        let results = Results {
            render,
            ..Results::default()
        };
        let text = render_report(&results);
        assert!(
            text.contains("#### Cost as work grows (issue 19)"),
            "{text}"
        );
        assert!(text.contains("##### Terminal UI frame"), "{text}");
        assert!(!render_report(&Results::default()).contains("Cost as work grows"));
    }

    fn render_report(r: &Results) -> String {
        render(r)
    }

    #[test]
    fn medians_and_numbers() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn rate_steps_need_every_event_and_no_drop() {
        let load = LoadResult {
            secs: 1.0,
            ops: 100_000,
        };
        let ok = Stopped {
            events: 100_050,
            records: 100_050,
            dropped: 0,
            undecodable: 0,
        };
        let step = |load, stopped| RateStep {
            rate: 100_000,
            threads: 1,
            load,
            stopped,
            tracer_cpu: None,
            disturbed: false,
        };
        assert_eq!(step(load, ok).verdict(), "pass");
        let dropped = Stopped { dropped: 1, ..ok };
        assert_eq!(step(load, dropped).verdict(), "drops");
        let missing = Stopped {
            events: 99_999,
            ..ok
        };
        assert_eq!(step(load, missing).verdict(), "events missing");
        let slow = LoadResult { secs: 2.0, ..load };
        assert!(step(slow, ok).passed());
        assert_eq!(step(slow, ok).verdict(), "pass (generator limit)");
    }

    #[test]
    fn splices_between_markers_and_keeps_the_rest() {
        let first = splice("# Benchmarks\n\nintro\n", "results 1\n");
        assert!(first.starts_with("# Benchmarks\n\nintro\n\n<!--"));
        let with_notes = format!("{first}\n## Notes\nhand-written\n");
        let second = splice(&with_notes, "results 2");
        assert!(second.contains("results 2") && !second.contains("results 1"));
        assert!(second.contains("intro") && second.ends_with("## Notes\nhand-written\n"));
    }
}
