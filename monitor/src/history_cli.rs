//! `secmon-tui history`: query the event history (docs/history.md). Filters become a
//! [`Filter`]; the result is an aligned table (the default on a terminal; every string passes
//! through [`sanitize::for_terminal`]) or JSON lines (`--json`, the `--json` event schema), or
//! with `--stats` counts per hour or day by type, label and rule.
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use chrono::{DateTime, Offset, TimeZone, Utc};
use clap::{Args, Parser};

use crate::event::{Event, EventType, Family};
use crate::output::event_json::write_event;
use crate::sanitize;
use crate::storage::timespec;
use crate::storage::{
    Bucket, Dimension, Filter, History, HistoryEvent, StatsRow, StorageError, TextMatch,
};

/// Query the event history.
#[derive(Clone, Debug, Default, Args)]
#[command(
    after_help = "Times: RFC 3339 (2026-05-01T14:00:00Z, 2026-05-01T16:00:00+02:00) or local \
    time \"YYYY-MM-DD HH:MM[:SS]\" or YYYY-MM-DD. Durations: 30m, 2h, 7d, 2w, 3mo, 1y.\n\
    Text filters match exactly; * is a wildcard (--process 'python*'); a --path ending in / \
    matches everything under it.\n\n\
    Examples:\n  \
    sudo secmon-tui history --last 2h --min-risk 0.6\n  \
    sudo secmon-tui history --since \"2026-05-01 14:00\" --until \"2026-05-01 15:00\" --type network\n  \
    sudo secmon-tui history --path /etc/shadow --last 7d --json | jq .process\n  \
    sudo secmon-tui history --stats day --last 1mo"
)]
pub struct HistoryArgs {
    /// Only the last DURATION (30m, 2h, 7d, 2w, 3mo, 1y).
    #[arg(long, value_name = "DURATION", conflicts_with = "since")]
    pub last: Option<String>,
    /// From this time on (inclusive).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Before this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Event types (process_exec, file_open, ...) or families (process, file, network,
    /// kernel); comma-separated or repeated.
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
    pub types: Vec<String>,
    /// Process name (the kernel's comm, at most 15 characters).
    #[arg(long, value_name = "NAME")]
    pub process: Option<String>,
    /// Process id.
    #[arg(long)]
    pub pid: Option<u32>,
    /// File path (the file acted on, or a rename/link target).
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Network address, remote or local (IPv4 or IPv6).
    #[arg(long, value_name = "ADDRESS")]
    pub ip: Option<String>,
    /// Only events the rules scored at least this (0 to 1).
    #[arg(long, value_name = "SCORE", allow_hyphen_values = true)]
    pub min_risk: Option<f64>,
    /// The analysis label, in any case (e.g. "Credential File Read", '*shell*').
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
    /// Only events this rule matched.
    #[arg(long, value_name = "NAME")]
    pub rule: Option<String>,
    /// At most this many events, the most recent (0: all).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub limit: usize,
    /// JSON lines (the `--json` event schema) instead of a table.
    #[arg(long, conflicts_with = "table")]
    pub json: bool,
    /// An aligned table even when stdout is not a terminal.
    #[arg(long)]
    pub table: bool,
    /// Counts per hour or day (default: hours for up to two days, else days) by event type,
    /// label and rule, instead of the events.
    #[arg(
        long,
        value_name = "hour|day",
        num_args = 0..=1,
        default_missing_value = "auto",
        value_parser = ["hour", "day", "auto"]
    )]
    pub stats: Option<String>,
}

/// Why `history` failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A malformed option value (exit status 2).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Where and how to print.
#[derive(Clone, Debug)]
pub struct Output<Tz: TimeZone> {
    /// "Now", for `--last`.
    pub now: DateTime<Utc>,
    /// The local time zone: `--since`/`--until` without an offset, and how times are shown.
    pub tz: Tz,
    /// A table (else JSON lines).
    pub table: bool,
    /// The terminal's width, to fit the DETAIL column.
    pub width: Option<usize>,
}

fn usage(message: String) -> HistoryError {
    HistoryError::Usage(message)
}

/// Event types for a `--type` value: a type name or a family name.
fn parse_types(text: &str) -> Result<Vec<EventType>, HistoryError> {
    let t = text.trim().to_ascii_lowercase();
    if let Some(family) = Family::from_name(&t) {
        return Ok(EventType::ALL
            .into_iter()
            .filter(|e| e.family() == family)
            .collect());
    }
    if let Some(e) = EventType::from_name(&t) {
        return Ok(vec![e]);
    }
    Err(usage(format!(
        "--type: unknown event type `{}`; expected one of {}, or a family: process, file, \
         network, kernel",
        sanitize::for_terminal(text),
        EventType::NAMES.join(", ")
    )))
}

/// The filter the arguments describe.
pub fn build_filter<Tz: TimeZone>(
    args: &HistoryArgs,
    now: DateTime<Utc>,
    tz: &Tz,
) -> Result<Filter, HistoryError> {
    let mut filter = Filter::default();
    if let Some(last) = &args.last {
        let span = timespec::parse_span(last).map_err(|e| usage(format!("--last: {e}")))?;
        filter.since = Some(
            span.before(now)
                .ok_or_else(|| usage(format!("--last: `{last}` reaches too far back")))?,
        );
    }
    if let Some(since) = &args.since {
        filter.since =
            Some(timespec::parse_time(since, tz).map_err(|e| usage(format!("--since: {e}")))?);
    }
    if let Some(until) = &args.until {
        filter.until =
            Some(timespec::parse_time(until, tz).map_err(|e| usage(format!("--until: {e}")))?);
    }
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since >= until
    {
        return Err(usage(format!(
            "--since ({}) is not before --until ({})",
            since.to_rfc3339(),
            until.to_rfc3339()
        )));
    }
    for text in &args.types {
        for t in parse_types(text)? {
            if !filter.types.contains(&t) {
                filter.types.push(t);
            }
        }
    }
    filter.process = args.process.as_deref().map(TextMatch::parse);
    filter.pid = args.pid;
    if let Some(path) = &args.path {
        if path.is_empty() {
            return Err(usage("--path: the path is empty".to_string()));
        }
        filter.path = Some(TextMatch::parse_path(path));
    }
    if let Some(ip) = &args.ip {
        let addr: IpAddr = ip.trim().parse().map_err(|_| {
            usage(format!(
                "--ip: `{}` is not an IPv4 or IPv6 address",
                sanitize::for_terminal(ip)
            ))
        })?;
        filter.ip = Some(addr.to_string());
    }
    if let Some(risk) = args.min_risk {
        if !(0.0..=1.0).contains(&risk) {
            return Err(usage(format!(
                "--min-risk: {risk} is outside 0 to 1 (risk scores are between 0 and 1)"
            )));
        }
        filter.min_risk = Some(risk);
    }
    filter.label = args.label.as_deref().map(TextMatch::parse);
    filter.rule.clone_from(&args.rule);
    filter.limit = (args.limit > 0).then_some(args.limit);
    Ok(filter)
}

/// The options of `secmon-tui history`, parsed from the history view's query line.
#[derive(Debug, Parser)]
#[command(name = "history", no_binary_name = true, disable_help_flag = true)]
struct QueryLine {
    #[command(flatten)]
    args: HistoryArgs,
}

/// The query line's options, or the first problem in one line.
pub fn parse_query(query: &str) -> Result<HistoryArgs, String> {
    let words = shlex::split(query).ok_or_else(|| "unbalanced quotes in the query".to_string())?;
    let line = QueryLine::try_parse_from(words).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("bad query").trim();
        first.strip_prefix("error: ").unwrap_or(first).to_string()
    })?;
    if line.args.stats.is_some() {
        return Err("--stats is not shown here: use secmon-tui history --stats".to_string());
    }
    Ok(line.args)
}

/// The filter of the history view's query line (`--last 2h --min-risk 0.6`), with `--last`
/// counted back from `now`; or the first problem in one line.
pub fn query_filter(query: &str, now: DateTime<Utc>) -> Result<Filter, String> {
    let args = parse_query(query)?;
    build_filter(&args, now, &chrono::Local).map_err(|e| e.to_string())
}

/// Runs the query and prints it to `out`. Returns notes for stderr (e.g. that more events
/// match than were shown).
pub fn run<W: Write, Tz: TimeZone>(
    args: &HistoryArgs,
    history: &History,
    output: &Output<Tz>,
    out: &mut W,
) -> Result<Vec<String>, HistoryError>
where
    Tz::Offset: std::fmt::Display,
{
    let mut filter = build_filter(args, output.now, &output.tz)?;
    if let Some(per) = &args.stats {
        let bucket = match per.as_str() {
            "hour" => Bucket::Hour,
            "day" => Bucket::Day,
            _ => auto_bucket(args, &filter, output.now),
        };
        let offset = output
            .tz
            .offset_from_utc_datetime(&output.now.naive_utc())
            .fix()
            .local_minus_utc();
        let rows = history.stats(&filter, bucket, offset)?;
        if output.table {
            write_stats_table(out, &rows, bucket, &output.tz)?;
        } else {
            write_stats_json(out, &rows, bucket, &output.tz)?;
        }
        out.flush()?;
        return Ok(if rows.is_empty() {
            vec!["history: no events match".to_string()]
        } else {
            Vec::new()
        });
    }
    // One more than asked tells whether there are more.
    let limit = filter.limit;
    filter.limit = limit.map(|n| n.saturating_add(1));
    let mut events = history.query(&filter)?;
    let mut notes = Vec::new();
    if let Some(n) = limit
        && events.len() > n
    {
        events.remove(0);
        notes.push(format!(
            "history: showing the {n} most recent matching events; there are more (--limit 0 \
             shows all; --since/--until narrow the range)"
        ));
    }
    if events.is_empty() {
        notes.push("history: no events match".to_string());
    }
    if output.table {
        write_table(out, &events, &output.tz, output.width)?;
    } else {
        write_json(out, &events)?;
    }
    out.flush()?;
    Ok(notes)
}

fn auto_bucket(args: &HistoryArgs, filter: &Filter, now: DateTime<Utc>) -> Bucket {
    let two_days = chrono::Duration::days(2);
    if let Some(last) = &args.last
        && let Ok(span) = timespec::parse_span(last)
    {
        return if span.approx() <= two_days {
            Bucket::Hour
        } else {
            Bucket::Day
        };
    }
    match filter.since {
        Some(since) if filter.until.unwrap_or(now) - since <= two_days => Bucket::Hour,
        _ => Bucket::Day,
    }
}

/// `--json`: one event per line, as `--json` monitoring prints it; a coalesced row adds
/// `"count"` and `"last_timestamp"` (docs/json-schema.md).
pub fn write_json<W: Write>(out: &mut W, events: &[HistoryEvent]) -> io::Result<()> {
    let mut line = Vec::with_capacity(1024);
    for e in events {
        line.clear();
        write_event(&mut line, &e.event);
        if e.count > 1 && line.last() == Some(&b'}') {
            // The event's object, then the row's own fields (as a flattened struct would).
            line.pop();
            line.extend_from_slice(format!(",\"count\":{}", e.count).as_bytes());
            if let Some(last) = e.last_timestamp {
                line.extend_from_slice(b",\"last_timestamp\":");
                serde_json::to_writer(&mut line, &last).map_err(io::Error::other)?;
            }
            line.push(b'}');
        }
        line.push(b'\n');
        out.write_all(&line)?;
    }
    Ok(())
}

/// The most telling field of an event, for the DETAIL column (unsanitised).
pub fn detail(e: &Event) -> String {
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    let endpoint = |ip: &Option<IpAddr>, port: Option<u16>| match (*ip, port) {
        (Some(ip), Some(port)) => SocketAddr::new(ip, port).to_string(),
        (Some(ip), None) => ip.to_string(),
        (None, Some(port)) => format!(":{port}"),
        (None, None) => "?".to_string(),
    };
    let mut d = match e.event_type {
        EventType::ProcessExec => {
            if e.cmdline.is_empty() {
                e.exe.to_string()
            } else {
                e.cmdline.to_string()
            }
        }
        EventType::ProcessFork => format!("child of {} ({})", e.ppid, e.parent_process),
        EventType::ProcessExit => match (e.exit_signal, e.exit_code) {
            (Some(sig), _) => format!("killed by signal {sig}"),
            (None, Some(code)) => format!("exit {code}"),
            (None, None) => "exit".to_string(),
        },
        EventType::Ptrace => format!(
            "{} pid {}",
            opt(&e.ptrace_request),
            e.target_pid
                .map_or_else(|| "?".to_string(), |p| p.to_string())
        ),
        EventType::FileRename | EventType::FileLink => {
            format!("{} -> {}", opt(&e.file_path), opt(&e.new_path))
        }
        EventType::FileChmod => format!(
            "{} {}",
            opt(&e.file_path),
            e.mode.map_or_else(String::new, |m| format!("{m:04o}"))
        ),
        EventType::FileOpen | EventType::FileWrite | EventType::FileDelete => opt(&e.file_path),
        EventType::PrivilegeChange => {
            let mut parts = Vec::new();
            if let (Some(a), Some(b)) = (e.old_uid, e.new_uid) {
                parts.push(format!("uid {a}->{b}"));
            }
            if let (Some(a), Some(b)) = (e.old_gid, e.new_gid) {
                parts.push(format!("gid {a}->{b}"));
            }
            if let Some(c) = e.capabilities {
                parts.push(format!("caps {:#x}/{:#x}/{:#x}", c[0], c[1], c[2]));
            }
            parts.join(" ")
        }
        EventType::ModuleLoad => match (&e.file_path, &e.module_params) {
            (Some(p), Some(m)) if !m.is_empty() => format!("{p} {m}"),
            (Some(p), _) => p.clone(),
            (None, m) => opt(m),
        },
        EventType::BpfLoad => format!(
            "{} (type {})",
            opt(&e.bpf_prog_name),
            e.bpf_prog_type.unwrap_or_default()
        ),
        EventType::NetListen => format!(
            "{} {}",
            opt(&e.protocol),
            endpoint(&e.source_ip, e.source_port)
        ),
        EventType::NetAccept => format!(
            "{} {} <- {}",
            opt(&e.protocol),
            endpoint(&e.source_ip, e.source_port),
            endpoint(&e.target_ip, e.target_port)
        ),
        EventType::NetConnect | EventType::NetUdp | EventType::NetClose => {
            let mut d = format!(
                "{} -> {}",
                opt(&e.protocol),
                endpoint(&e.target_ip, e.target_port)
            );
            if let (Some(sent), Some(received)) = (e.bytes_sent, e.bytes_received) {
                let _ = write!(d, " ({sent} B out, {received} B in)");
            }
            d
        }
        EventType::NetConnectFailed => {
            failed_connect_text(e, &endpoint(&e.target_ip, e.target_port))
        }
    };
    if e.blocked {
        d.push_str(" [blocked]");
    }
    d
}

/// `tcp -> 10.0.0.5:22 failed: ECONNREFUSED (10th attempt)`: a failed connect in one line.
pub fn failed_connect_text(e: &Event, remote: &str) -> String {
    let mut d = format!(
        "{} -> {remote} failed",
        e.protocol.as_deref().unwrap_or("tcp")
    );
    if let Some(error) = &e.error {
        let _ = write!(d, ": {error}");
    }
    if let Some(n) = e.attempts.filter(|&n| n > 1) {
        let _ = write!(d, " ({n} attempts to this address in 10 s)");
    }
    d
}

/// Cuts `s` to `width` characters, marking the cut with `…`.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

const LABEL_WIDTH: usize = 34;

/// The aligned table: TIME TYPE PID PROCESS RISK LABEL [RESPONSE] [COUNT] DETAIL. COUNT
/// (`×N`) is there when a row stands for several identical consecutive events (TIME is the
/// first one's).
pub fn write_table<W: Write, Tz: TimeZone>(
    out: &mut W,
    events: &[HistoryEvent],
    tz: &Tz,
    width: Option<usize>,
) -> io::Result<()>
where
    Tz::Offset: std::fmt::Display,
{
    let with_response = events.iter().any(|e| !e.event.response.is_empty());
    let with_count = events.iter().any(|e| e.count > 1);
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(events.len() + 1);
    let mut header = vec!["TIME", "TYPE", "PID", "PROCESS", "RISK", "LABEL"];
    if with_response {
        header.push("RESPONSE");
    }
    if with_count {
        header.push("COUNT");
    }
    header.push("DETAIL");
    rows.push(header.iter().map(ToString::to_string).collect());
    for h in events {
        let e = &h.event;
        let mut row = vec![
            e.timestamp
                .with_timezone(tz)
                .format("%Y-%m-%d %H:%M:%S%.3f")
                .to_string(),
            e.event_type.as_str().to_string(),
            e.pid.to_string(),
            sanitize::for_terminal(&e.process).into_owned(),
            if e.analysis.risk_score > 0.0 {
                format!("{:.2}", e.analysis.risk_score)
            } else {
                "-".to_string()
            },
            fit(&sanitize::for_terminal(&e.analysis.label), LABEL_WIDTH),
        ];
        if with_response {
            let actions: Vec<&str> = e.response.iter().map(|r| r.action.as_str()).collect();
            row.push(if actions.is_empty() {
                "-".to_string()
            } else {
                actions.join(",")
            });
        }
        if with_count {
            row.push(if h.count > 1 {
                format!("×{}", h.count)
            } else {
                String::new()
            });
        }
        row.push(sanitize::for_terminal(&detail(e)).into_owned());
        rows.push(row);
    }
    let columns = rows[0].len();
    let mut widths = vec![0usize; columns];
    for row in &rows {
        for (i, cell) in row.iter().enumerate().take(columns - 1) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    // The last column takes what is left of the terminal's width (at least 20).
    let used: usize = widths[..columns - 1].iter().map(|w| w + 2).sum();
    let detail_width = width.map(|w| w.saturating_sub(used).max(20));
    let mut line = String::new();
    for row in &rows {
        line.clear();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == columns {
                match detail_width {
                    Some(w) => line.push_str(&fit(cell, w)),
                    None => line.push_str(cell),
                }
            } else {
                let pad = widths[i] - cell.chars().count();
                // Numbers align right.
                if matches!(rows[0][i].as_str(), "PID" | "RISK" | "COUNT") {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                line.push_str("  ");
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn bucket_label<Tz: TimeZone>(start: DateTime<Utc>, bucket: Bucket, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let local = start.with_timezone(tz);
    match bucket {
        Bucket::Hour => local.format("%Y-%m-%d %H:00").to_string(),
        Bucket::Day => local.format("%Y-%m-%d").to_string(),
    }
}

/// `--stats` as tables: one per dimension.
pub fn write_stats_table<W: Write, Tz: TimeZone>(
    out: &mut W,
    rows: &[StatsRow],
    bucket: Bucket,
    tz: &Tz,
) -> io::Result<()>
where
    Tz::Offset: std::fmt::Display,
{
    let when = match bucket {
        Bucket::Hour => "HOUR",
        Bucket::Day => "DAY",
    };
    for (n, by) in Dimension::ALL.into_iter().enumerate() {
        if n > 0 {
            writeln!(out)?;
        }
        let cells: Vec<(String, String, String)> = rows
            .iter()
            .filter(|r| r.by == by)
            .map(|r| {
                (
                    bucket_label(r.start, bucket, tz),
                    sanitize::for_terminal(&r.key).into_owned(),
                    r.count.to_string(),
                )
            })
            .collect();
        let name = by.as_str().to_ascii_uppercase();
        let total: u64 = rows.iter().filter(|r| r.by == by).map(|r| r.count).sum();
        let w0 = cells
            .iter()
            .map(|c| c.0.len())
            .max()
            .unwrap_or(0)
            .max(when.len());
        let w1 = cells
            .iter()
            .map(|c| c.1.chars().count())
            .max()
            .unwrap_or(0)
            .max(name.len());
        let w2 = cells.iter().map(|c| c.2.len()).max().unwrap_or(0).max(5);
        writeln!(out, "{when:<w0$}  {name:<w1$}  {:>w2$}", "COUNT")?;
        if cells.is_empty() {
            let none = match by {
                Dimension::Rule => "(no rule matched)",
                _ => "(no events)",
            };
            writeln!(out, "{none}")?;
            continue;
        }
        for (b, k, c) in &cells {
            let pad = w1 - k.chars().count();
            writeln!(out, "{b:<w0$}  {k}{:pad$}  {c:>w2$}", "")?;
        }
        writeln!(out, "{:<w0$}  {:<w1$}  {total:>w2$}", "", "total")?;
    }
    Ok(())
}

/// `--stats --json`: one object per count.
pub fn write_stats_json<W: Write, Tz: TimeZone>(
    out: &mut W,
    rows: &[StatsRow],
    bucket: Bucket,
    tz: &Tz,
) -> io::Result<()> {
    for r in rows {
        let line = serde_json::json!({
            "per": bucket.as_str(),
            "start": r.start.with_timezone(tz).fixed_offset().to_rfc3339(),
            "by": r.by.as_str(),
            "key": r.key,
            "count": r.count,
        });
        serde_json::to_writer(&mut *out, &line).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The `history` subcommand from `main`: opens `db`, prints to stdout, notes to stderr.
/// Returns the exit status: 0, 1 (the database cannot be read) or 2 (bad arguments).
pub fn main(args: &HistoryArgs, db: &Path) -> u8 {
    use std::io::IsTerminal;
    let stdout = io::stdout();
    let terminal = stdout.is_terminal();
    let output = Output {
        now: Utc::now(),
        tz: chrono::Local,
        table: args.table || (terminal && !args.json),
        width: if terminal {
            crossterm::terminal::size()
                .ok()
                .map(|(w, _)| usize::from(w))
        } else {
            None
        },
    };
    // Check the arguments before touching the database.
    if let Err(e) = build_filter(args, output.now, &output.tz) {
        eprintln!("secmon: error: {e}");
        return 2;
    }
    let history = match History::open(db) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("secmon: error: {e}");
            return 1;
        }
    };
    let mut out = stdout.lock();
    match run(args, &history, &output, &mut out) {
        Ok(notes) => {
            for note in notes {
                eprintln!("secmon: {note}");
            }
            0
        }
        Err(HistoryError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e @ HistoryError::Usage(_)) => {
            eprintln!("secmon: error: {e}");
            2
        }
        Err(e) => {
            eprintln!("secmon: error: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::FixedOffset;

    use super::*;
    use crate::event::{ResponseAction, ResponseKind, ResponseResult};
    use crate::storage::{Store, WriterOptions};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
            .single()
            .expect("valid")
    }

    fn args() -> HistoryArgs {
        HistoryArgs {
            limit: 1000,
            ..HistoryArgs::default()
        }
    }

    #[test]
    fn query_lines_parse_or_say_why() {
        let error = query_filter("--last soon", now()).expect_err("bad duration");
        assert!(error.starts_with("--last: "), "{error}");
        assert_eq!(
            parse_query("--label 'Credential File Read' --min-risk 0.6")
                .map(|a| a.label)
                .ok()
                .flatten()
                .as_deref(),
            Some("Credential File Read")
        );
        assert!(parse_query("--stats").is_err());
        assert!(parse_query("--label 'open").is_err());
    }

    #[test]
    fn arguments_become_a_filter() {
        let tz = FixedOffset::east_opt(3600).expect("offset");
        let f = build_filter(
            &HistoryArgs {
                last: Some("2h".into()),
                types: vec!["network".into(), "net_udp".into(), "file_open".into()],
                ip: Some("::0001".into()),
                process: Some("python*".into()),
                path: Some("/etc/".into()),
                min_risk: Some(0.6),
                limit: 0,
                ..HistoryArgs::default()
            },
            now(),
            &tz,
        )
        .expect("valid");
        assert_eq!(f.since, Some(now() - chrono::Duration::hours(2)));
        assert_eq!(
            f.types.len(),
            7,
            "six network types, net_udp once, file_open"
        );
        assert_eq!(f.ip.as_deref(), Some("::1"));
        assert_eq!(f.process, Some(TextMatch::Wildcard("python*".into())));
        assert_eq!(f.path, Some(TextMatch::Prefix("/etc/".into())));
        assert_eq!(f.limit, None);
        let f = build_filter(
            &HistoryArgs {
                since: Some("2026-05-01 10:00".into()),
                until: Some("2026-05-01T10:30:00Z".into()),
                ..args()
            },
            now(),
            &tz,
        )
        .expect("valid");
        assert_eq!(
            f.since.map(|t| t.to_rfc3339()),
            Some("2026-05-01T09:00:00+00:00".into())
        );
        assert_eq!(f.limit, Some(1000));
        for (bad, wanted) in [
            (
                HistoryArgs {
                    min_risk: Some(1.5),
                    ..args()
                },
                "--min-risk: 1.5 is outside 0 to 1",
            ),
            (
                HistoryArgs {
                    min_risk: Some(f64::NAN),
                    ..args()
                },
                "--min-risk: NaN is outside 0 to 1",
            ),
            (
                HistoryArgs {
                    min_risk: Some(f64::NEG_INFINITY),
                    ..args()
                },
                "--min-risk: -inf is outside 0 to 1",
            ),
            (
                HistoryArgs {
                    since: Some("2026-05-01 11:00".into()),
                    until: Some("2026-05-01 10:00".into()),
                    ..args()
                },
                "is not before --until",
            ),
            (
                HistoryArgs {
                    types: vec!["proces".into()],
                    ..args()
                },
                "unknown event type `proces`",
            ),
            (
                HistoryArgs {
                    path: Some(String::new()),
                    ..args()
                },
                "--path: the path is empty",
            ),
        ] {
            let e = build_filter(&bad, now(), &tz)
                .expect_err(wanted)
                .to_string();
            assert!(e.contains(wanted), "{e}");
        }
    }

    fn event(t: EventType, pid: u32, process: &str) -> Event {
        let mut e = Event::new(t, now());
        e.pid = pid;
        e.process = process.into();
        e
    }

    #[test]
    fn table_is_aligned_sanitised_and_fits_the_width() {
        let mut exec = event(EventType::ProcessExec, 7, "bash");
        exec.cmdline = "bash -c 'echo \u{1b}[2J'".into();
        let mut connect = event(EventType::NetConnect, 12345, "curl\u{7}");
        connect.protocol = Some("tcp".into());
        connect.target_ip = Some("::1".parse().expect("an address"));
        connect.target_port = Some(443);
        connect.analysis.risk_score = 0.8;
        connect.analysis.label = "Shell With Network Connection".into();
        connect.response = vec![ResponseAction {
            action: ResponseKind::SimulateBlock,
            result: ResponseResult::Simulated,
            rule: None,
            target: None,
            deny_id: None,
            detail: String::new(),
        }];
        let mut open = event(EventType::FileOpen, 9, "cat");
        open.file_path = Some(format!("/data/{}", "x".repeat(200)));
        let rows: Vec<HistoryEvent> = [exec, connect, open]
            .into_iter()
            .enumerate()
            .map(|(i, event)| HistoryEvent {
                id: i as i64 + 1,
                event,
                count: 1,
                last_timestamp: None,
            })
            .collect();
        let mut out = Vec::new();
        write_table(&mut out, &rows, &Utc, Some(140)).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("TIME "), "{text}");
        for column in [
            "TYPE", "PID", "PROCESS", "RISK", "LABEL", "RESPONSE", "DETAIL",
        ] {
            assert!(lines[0].contains(column), "{column}: {text}");
        }
        let detail_at = lines[0].find("DETAIL").expect("detail");
        assert!(
            lines[1][detail_at..].starts_with("bash -c 'echo \\x1b[2J'"),
            "{text}"
        );
        assert!(
            lines[2][detail_at..].starts_with("tcp -> [::1]:443"),
            "{text}"
        );
        assert!(
            lines[2].contains("curl\\x07") && lines[2].contains(" 0.80 "),
            "{text}"
        );
        assert!(lines[2].contains("simulate_block"), "{text}");
        assert!(lines[1].contains(" - "), "benign risk shows as -: {text}");
        assert!(lines.iter().all(|l| l.chars().count() <= 140), "{text}");
        assert!(lines[3].ends_with('…'), "{text}");
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'));
        assert!(
            lines[1].starts_with("2026-05-01 12:00:00.000  process_exec"),
            "{text}"
        );
        // Without responses there is no RESPONSE column.
        let mut out = Vec::new();
        write_table(&mut out, &rows[..1], &Utc, None).expect("write");
        assert!(!String::from_utf8(out).expect("utf8").contains("RESPONSE"));
    }

    #[test]
    fn coalesced_rows_show_their_count() {
        let mut open = event(EventType::FileOpen, 9, "cat");
        open.file_path = Some("/etc/hosts".into());
        let rows = vec![
            HistoryEvent {
                id: 1,
                event: open.clone(),
                count: 300_000,
                last_timestamp: Some(now() + chrono::Duration::milliseconds(999)),
            },
            HistoryEvent {
                id: 2,
                event: open.clone(),
                count: 1,
                last_timestamp: None,
            },
        ];
        let mut out = Vec::new();
        write_table(&mut out, &rows, &Utc, None).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains(" COUNT "), "{text}");
        assert!(lines[1].contains(" ×300000 "), "{text}");
        assert!(!lines[2].contains('×'), "{text}");
        // Without a coalesced row there is no COUNT column.
        let mut out = Vec::new();
        write_table(&mut out, &rows[1..], &Utc, None).expect("write");
        assert!(!String::from_utf8(out).expect("utf8").contains("COUNT"));

        let mut out = Vec::new();
        write_json(&mut out, &rows).expect("write");
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines[0]["count"], 300_000);
        assert_eq!(lines[0]["last_timestamp"], "2026-05-01T12:00:00.999Z");
        // Otherwise exactly the event as `--json` prints it.
        let mut first = lines[0].clone();
        let fields = first.as_object_mut().expect("object");
        fields.remove("count");
        fields.remove("last_timestamp");
        let plain = serde_json::to_value(&open).expect("json");
        assert_eq!(first, plain);
        assert_eq!(lines[1], plain);
    }

    #[test]
    fn run_prints_events_stats_and_notes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.db");
        let store = Store::open(&path, WriterOptions::default()).expect("open");
        let mut events = Vec::new();
        for i in 0..5u32 {
            let mut e = event(EventType::FileOpen, 100 + i, "cat");
            e.timestamp = now() - chrono::Duration::minutes(i64::from(90 - i * 20));
            e.file_path = Some(format!("/f{i}"));
            if i == 3 {
                e.analysis.risk_score = 0.7;
                e.analysis.label = "Password Hash File Read".into();
                e.analysis.rules = vec!["shadow_file_read".into()];
            }
            events.push(e);
        }
        assert!(store.submit(events));
        store.close();
        let history = History::open(&path).expect("open");
        let output = Output {
            now: now(),
            tz: Utc,
            table: false,
            width: None,
        };
        let mut out = Vec::new();
        let notes = run(
            &HistoryArgs {
                last: Some("1h".into()),
                limit: 2,
                ..HistoryArgs::default()
            },
            &history,
            &output,
            &mut out,
        )
        .expect("run");
        let lines: Vec<Event> = String::from_utf8(out)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("event json"))
            .collect();
        // Within the hour: i = 2, 3, 4; the two most recent, oldest first.
        assert_eq!(
            lines.iter().map(|e| e.pid).collect::<Vec<_>>(),
            vec![103, 104]
        );
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("showing the 2 most recent"), "{notes:?}");

        let mut out = Vec::new();
        let stats_args = HistoryArgs {
            stats: Some("auto".into()),
            last: Some("1d".into()),
            ..args()
        };
        run(&stats_args, &history, &output, &mut out).expect("stats");
        let rows: Vec<serde_json::Value> = String::from_utf8(out)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert!(rows.iter().all(|r| r["per"] == "hour"), "{rows:?}");
        assert!(rows.iter().any(|r| r["by"] == "rule"
            && r["key"] == "shadow_file_read"
            && r["start"] == "2026-05-01T11:00:00+00:00"
            && r["count"] == 1));
        let mut out = Vec::new();
        let table = Output {
            table: true,
            ..output
        };
        run(&stats_args, &history, &table, &mut out).expect("stats table");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("HOUR "), "{text}");
        assert!(text.contains("2026-05-01 10:00  file_open"), "{text}");
    }
}
