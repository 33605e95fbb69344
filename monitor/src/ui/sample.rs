//! Fixed events, rules and an [`App`] built from them: for the snapshot tests and the render
//! benchmark (`benches/render.rs`). Not part of the monitor's behaviour.
use chrono::{DateTime, Offset, TimeDelta, Utc};

use crate::{
    app::{
        App, BlockTarget, Controls, DenyRow, EnforcePlan, HistoryCursor, HistoryReply,
        HistoryRequest, HistorySource, ProbeState, Response, StaticProbes,
    },
    event::{Analysis, Event, EventType, Severity},
    losses::{Loss, Losses},
    response::enforce::{DenyRecord, Origin},
    response::ui_adapter::{SimulatedResponse, deny_target},
    rules::{RuleEngine, RuleSet},
};

/// 2023-11-14 22:13:20 UTC: every sample time is an offset from this.
pub fn base_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
}

/// A small rule pack (its hits stay 0: the sample analyses are set by hand).
pub const RULES_JSON: &str = r#"[
  {"name": "exec_from_tmp", "condition": "event.type == 'process_exec' and process.path.startswith('/tmp/')", "risk_score": 0.7, "action": "alert", "label": "Execution from /tmp", "recommendation": "Check who dropped this binary in /tmp and what it does."},
  {"name": "shadow_read", "condition": "file.path == '/etc/shadow'", "risk_score": 0.6, "action": "alert", "label": "Password hashes read", "recommendation": "Only login services should read /etc/shadow."},
  {"name": "reverse_shell_port", "condition": "event.type == 'net_connect' and net.dst_port == 4444", "risk_score": 0.9, "action": "simulate_block", "label": "Connection to a reverse-shell port", "recommendation": "Kill the process and inspect its parent."},
  {"name": "ptrace_attach", "condition": "event.type == 'ptrace'", "risk_score": 0.5, "action": "log", "enabled": false, "label": "Process tracing"}
]"#;

/// An engine over [`RULES_JSON`].
pub fn engine() -> RuleEngine {
    match RuleSet::from_json("rules/sample.json", RULES_JSON) {
        Ok(set) => RuleEngine::with_set(set, Vec::new()),
        Err(_) => RuleEngine::empty(),
    }
}

fn at(ms: i64) -> DateTime<Utc> {
    base_time() + TimeDelta::milliseconds(ms)
}

fn base(event_type: EventType, ms: i64, pid: u32, process: &str, exe: &str) -> Event {
    let mut e = Event::new(event_type, at(ms));
    e.pid = pid;
    e.tid = pid;
    e.ppid = 1000;
    e.uid = 1000;
    e.user = "alice".into();
    e.process = process.into();
    e.exe = exe.into();
    e.cmdline = process.into();
    e.cgroup_id = 4242;
    e.parent_process = "bash".into();
    e.ancestors = vec!["bash".into(), "sshd".into(), "systemd".into()];
    e
}

fn flag(e: &mut Event, severity: Severity, score: f64, rule: &str, label: &str, advice: &str) {
    e.analysis = Analysis {
        label: label.to_string(),
        severity,
        risk_score: score,
        detection_method: "rule_based".to_string(),
        confidence: 1.0,
        recommendation: advice.to_string(),
        rules: vec![rule.to_string()],
        process_risk: score,
    };
}

fn net(
    event_type: EventType,
    ms: i64,
    pid: u32,
    process: &str,
    local: (&str, u16),
    remote: (&str, u16),
) -> Event {
    let mut e = base(event_type, ms, pid, process, &format!("/usr/bin/{process}"));
    e.protocol = Some("tcp".to_string());
    e.source_ip = local.0.parse().ok();
    e.source_port = Some(local.1);
    e.target_ip = remote.0.parse().ok();
    e.target_port = Some(remote.1);
    e
}

/// About twenty events of every kind, oldest first, one of them with a hostile name.
pub fn events() -> Vec<Event> {
    let mut out = Vec::new();

    let mut e = base(EventType::ProcessExec, 0, 2001, "ls", "/usr/bin/ls");
    e.argv = Some(vec!["ls".into(), "-la".into(), "/home/alice".into()]);
    e.cmdline = "ls -la /home/alice".into();
    e.syscall = Some("execve".into());
    out.push(e);

    let mut e = base(EventType::ProcessFork, 100, 2002, "bash", "/usr/bin/bash");
    e.ppid = 1999;
    out.push(e);

    let mut e = base(
        EventType::ProcessExec,
        200,
        2002,
        "dropper",
        "/tmp/.x/dropper",
    );
    e.argv = Some(vec!["./dropper".into(), "--quiet".into()]);
    e.cmdline = "./dropper --quiet".into();
    e.syscall = Some("execve".into());
    flag(
        &mut e,
        Severity::Suspicious,
        0.7,
        "exec_from_tmp",
        "Execution from /tmp",
        "Check who dropped this binary in /tmp and what it does.",
    );
    out.push(e);

    let mut e = base(EventType::FileOpen, 300, 2001, "ls", "/usr/bin/ls");
    e.file_path = Some("/etc/ld.so.cache".into());
    e.flags = Some("O_RDONLY|O_CLOEXEC".into());
    e.syscall = Some("openat".into());
    out.push(e);

    let mut e = base(EventType::FileOpen, 400, 2002, "dropper", "/tmp/.x/dropper");
    e.file_path = Some("/etc/shadow".into());
    e.flags = Some("O_RDONLY".into());
    e.syscall = Some("openat".into());
    flag(
        &mut e,
        Severity::Suspicious,
        0.6,
        "shadow_read",
        "Password hashes read",
        "Only login services should read /etc/shadow.",
    );
    out.push(e);

    let mut e = base(EventType::NetListen, 500, 812, "sshd", "/usr/sbin/sshd");
    e.protocol = Some("tcp".into());
    e.source_ip = "0.0.0.0".parse().ok();
    e.source_port = Some(22);
    out.push(e);

    out.push(net(
        EventType::NetConnect,
        600,
        2003,
        "curl",
        ("10.0.0.5", 51234),
        ("93.184.216.34", 443),
    ));

    let mut e = net(
        EventType::NetConnect,
        700,
        2002,
        "dropper",
        ("10.0.0.5", 40022),
        ("203.0.113.9", 4444),
    );
    e.exe = "/tmp/.x/dropper".into();
    flag(
        &mut e,
        Severity::Malicious,
        0.93,
        "reverse_shell_port",
        "Connection to a reverse-shell port",
        "Kill the process and inspect its parent.",
    );
    out.push(e);

    let mut e = base(EventType::FileRename, 800, 2004, "mv", "/usr/bin/mv");
    e.file_path = Some("/home/alice/a.txt".into());
    e.new_path = Some("/home/alice/b.txt".into());
    e.syscall = Some("renameat2".into());
    out.push(e);

    let mut e = base(EventType::FileChmod, 900, 2005, "chmod", "/usr/bin/chmod");
    e.file_path = Some("/tmp/.x/dropper".into());
    e.mode = Some(0o4755);
    e.syscall = Some("fchmodat".into());
    out.push(e);

    // A hostile file name: escape sequences and a bidi override must show escaped.
    let mut e = base(EventType::FileOpen, 1000, 2006, "evil\x1b[2J", "/tmp/evil");
    e.file_path = Some("/tmp/invoice\u{202e}fdp.exe\x1b]52;c;AAAA\x07".into());
    e.flags = Some("O_WRONLY|O_CREAT|O_TRUNC".into());
    e.mode = Some(0o644);
    out.push(e);

    let mut e = base(EventType::Ptrace, 1100, 2007, "gdb", "/usr/bin/gdb");
    e.ptrace_request = Some("PTRACE_ATTACH".into());
    e.target_pid = Some(2003);
    out.push(e);

    let mut e = base(
        EventType::PrivilegeChange,
        1200,
        2008,
        "sudo",
        "/usr/bin/sudo",
    );
    e.syscall = Some("setresuid".into());
    e.old_uid = Some(1000);
    e.new_uid = Some(0);
    out.push(e);

    let mut e = net(
        EventType::NetAccept,
        1300,
        812,
        "sshd",
        ("0.0.0.0", 22),
        ("192.0.2.77", 50111),
    );
    e.exe = "/usr/sbin/sshd".into();
    out.push(e);

    let mut e = net(
        EventType::NetUdp,
        1400,
        640,
        "systemd-resolve",
        ("127.0.0.53", 36000),
        ("9.9.9.9", 53),
    );
    e.protocol = Some("udp".into());
    out.push(e);

    let mut e = base(
        EventType::FileDelete,
        1500,
        2002,
        "dropper",
        "/tmp/.x/dropper",
    );
    e.file_path = Some("/var/log/auth.log".into());
    e.syscall = Some("unlinkat".into());
    out.push(e);

    let mut e = base(
        EventType::BpfLoad,
        1600,
        1,
        "systemd",
        "/usr/lib/systemd/systemd",
    );
    e.bpf_prog_name = Some("sd_devices".into());
    e.bpf_prog_type = Some(15);
    out.push(e);

    let mut e = net(
        EventType::NetClose,
        1700,
        2003,
        "curl",
        ("10.0.0.5", 51234),
        ("93.184.216.34", 443),
    );
    e.bytes_sent = Some(517);
    e.bytes_received = Some(20480);
    e.duration_ms = Some(231.5);
    out.push(e);

    let mut e = base(EventType::FileLink, 1800, 2009, "ln", "/usr/bin/ln");
    e.file_path = Some("/etc/passwd".into());
    e.new_path = Some("/tmp/p".into());
    e.syscall = Some("symlinkat".into());
    out.push(e);

    let mut e = base(EventType::ProcessExit, 1900, 2001, "ls", "/usr/bin/ls");
    e.exit_code = Some(0);
    out.push(e);

    out
}

/// `per_pane` events for each pane (processes, files, network), interleaved, every tenth
/// suspicious and every hundredth malicious: the benchmark's full buffers.
pub fn flood(per_pane: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(per_pane * 3);
    for i in 0..per_pane {
        let ms = i64::try_from(i).unwrap_or(i64::MAX) * 3;
        let pid = 10_000 + u32::try_from(i % 5000).unwrap_or(0);
        let mut exec = base(EventType::ProcessExec, ms, pid, "worker", "/usr/bin/worker");
        exec.argv = Some(vec![
            "worker".into(),
            "--job".into(),
            format!("{i}"),
            "--queue=/var/spool/jobs/incoming".into(),
        ]);
        let mut open = base(
            EventType::FileOpen,
            ms + 1,
            pid,
            "worker",
            "/usr/bin/worker",
        );
        open.file_path = Some(format!("/var/lib/worker/data/{i:06}/state.json"));
        open.flags = Some("O_RDONLY|O_CLOEXEC".into());
        let mut conn = net(
            EventType::NetConnect,
            ms + 2,
            pid,
            "worker",
            ("10.0.0.5", 40000 + (i % 20000) as u16),
            ("10.0.1.20", 5432),
        );
        for e in [&mut exec, &mut open, &mut conn] {
            if i % 100 == 0 {
                flag(
                    e,
                    Severity::Malicious,
                    0.9,
                    "sample_rule",
                    "Sample",
                    "Investigate.",
                );
            } else if i % 10 == 0 {
                flag(
                    e,
                    Severity::Suspicious,
                    0.7,
                    "sample_rule",
                    "Sample",
                    "Look.",
                );
            }
        }
        out.extend([exec, open, conn]);
    }
    out
}

/// An app with fixed controls (every family on but kernel unavailable, 3 drops), the sample
/// rules, UTC times, the clock at [`base_time`] + 1 s, and `events` ingested.
pub fn app(events: Vec<Event>) -> App {
    let controls = Controls {
        history: Box::new(SampleHistory(events.clone())),
        ..controls()
    };
    app_with(controls, events)
}

/// The sample's fixed controls.
pub fn controls() -> Controls {
    Controls {
        probes: Box::new(StaticProbes {
            states: [
                ProbeState::On,
                ProbeState::On,
                ProbeState::On,
                ProbeState::Unavailable,
            ],
            drops: 3,
        }),
        rules: Box::new(engine()),
        response: Box::new(SimulatedResponse::default()),
        history: Box::new(SampleHistory(Vec::new())),
        losses: sample_losses(),
    }
}

/// Losses besides the kernel's 3 drops: the history writer fell behind for 5 events.
fn sample_losses() -> std::sync::Arc<Losses> {
    let losses = Losses::new();
    losses.add(Loss::HistoryQueueFull, 5);
    std::sync::Arc::new(losses)
}

/// [`app`] with other controls.
pub fn app_with(controls: Controls, events: Vec<Event>) -> App {
    let mut app = App::new(controls, Utc.fix(), base_time());
    app.ingest(events);
    // The rates of the last 20 seconds, for the header's sparklines.
    for (i, rate) in app.rates.iter_mut().enumerate() {
        let scale = [40, 300, 12, 0][i];
        let step = 3 + i as u64 * 2;
        rate.history = (0..20u64).map(|s| scale * ((s * step + 3) % 11)).collect();
    }
    app.handle(crate::app::Event::Tick(base_time() + TimeDelta::seconds(1)));
    app
}

/// A history holding `events` (stored oldest first, as they happened).
pub struct SampleHistory(pub Vec<Event>);

impl HistorySource for SampleHistory {
    fn request(&mut self, request: HistoryRequest) -> Option<HistoryReply> {
        let newer_than = request.before.map_or(0, |c| c.id as usize + 1);
        let page = self
            .0
            .iter()
            .rev()
            .enumerate()
            .skip(newer_than)
            .take(request.limit)
            .map(|(i, event)| {
                let cursor = HistoryCursor {
                    ts_ns: crate::storage::to_ns(event.timestamp),
                    id: i as i64,
                };
                (event.clone(), cursor)
            })
            .collect();
        Some(HistoryReply {
            generation: request.generation,
            result: Ok(page),
        })
    }

    fn describe(&self) -> String {
        "History /var/lib/secmon/events.db".to_string()
    }
}

/// Enforcement into a list: the deny entries pane's sample.
#[derive(Default)]
pub struct SampleEnforcer {
    pub denies: Vec<DenyRow>,
}

impl Response for SampleEnforcer {
    fn simulate_block(&mut self, target: &BlockTarget, event: &Event) -> String {
        SimulatedResponse::default().simulate_block(target, event)
    }

    fn plan_enforce(&self, target: &BlockTarget, event: &Event) -> Result<EnforcePlan, String> {
        let deny = deny_target(target, event)?;
        Ok(EnforcePlan {
            target: target.clone(),
            question: format!("deny {deny}"),
            deny,
            by: "terminal UI (user alice via sudo)".to_string(),
            reason: event.analysis.label.clone(),
        })
    }

    fn enforce(&mut self, plan: &EnforcePlan) -> Result<String, String> {
        let id = self.denies.len() as u32 + 7;
        let expires = id
            .is_multiple_of(2)
            .then(|| base_time() + TimeDelta::minutes(10));
        let origin = Origin {
            by: plan.by.clone(),
            rule: None,
            reason: plan.reason.clone(),
        };
        let record = DenyRecord::new(id, &plan.deny, base_time(), expires, origin);
        self.denies.push(record.into());
        Ok(format!("blocked #{id}: {}", plan.deny))
    }

    fn denies(&self) -> Result<Vec<DenyRow>, String> {
        Ok(self.denies.clone())
    }

    fn unblock(&mut self, id: u32) -> Result<String, String> {
        self.denies.retain(|d| d.id != id);
        Ok(format!("unblocked #{id}"))
    }
}
