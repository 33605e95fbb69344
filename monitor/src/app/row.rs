//! Compact pane rows (issue 19): what a pane keeps of an ordinary event.
//!
//! An [`Event`] is ~750 bytes inline, most of them optional fields that only a few event types
//! fill in (an exec's arguments, an exit's code, a privilege change's ids, a verdict's rules):
//! three panes of 10,000 file opens held ~30 MB of mostly `None`. A [`Row`] keeps the process
//! context, the verdict's scores and the fields of file and network events (~300 bytes), and
//! in a box of its own those of execs, exits and network closes and failures; it is lossless
//! by construction: [`Row::of`] refuses an event that has anything else (a flagged verdict, a
//! privilege change, a ptrace, a BPF or module load, a response, a hub's host: that event
//! stays whole), and [`Row::event`] gives the event back exactly.
//!
//! Every field of [`Event`] and [`Analysis`] is named when a row is made (no `..`), so a field
//! added to either fails the build here until it is either kept in the row or counted as one
//! that keeps an event whole.
use std::net::IpAddr;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};

use crate::event::{Analysis, Event, EventType, Severity, SharedStr};

/// An ordinary event, compact (see the module doc).
#[derive(Clone, Debug)]
pub struct Row {
    timestamp: DateTime<Utc>,
    event_type: EventType,
    severity: Severity,
    blocked: bool,
    truncated: bool,
    pid: u32,
    tid: u32,
    ppid: u32,
    uid: u32,
    cgroup_id: u64,
    user: SharedStr,
    process: SharedStr,
    exe: SharedStr,
    cmdline: SharedStr,
    parent_process: SharedStr,
    ancestors: Box<[SharedStr]>,
    risk_score: f64,
    process_risk: f64,
    file_path: Option<Box<str>>,
    new_path: Option<Box<str>>,
    flags: Option<SharedStr>,
    syscall: Option<SharedStr>,
    mode: Option<u32>,
    protocol: Option<Box<str>>,
    source_ip: Option<IpAddr>,
    source_port: Option<u16>,
    target_ip: Option<IpAddr>,
    target_port: Option<u16>,
    /// An exec's arguments, an exit's status, a closed connection's counts, a failed one's
    /// error: boxed, as most events have none of them.
    more: Option<Box<More>>,
}

/// The fields of execs, exits and network closes and failures (see [`Row::more`]).
#[derive(Clone, Debug)]
struct More {
    argv: Option<Box<[Box<str>]>>,
    exit_code: Option<i32>,
    exit_signal: Option<u32>,
    target_pid: Option<u32>,
    bytes_sent: Option<u64>,
    bytes_received: Option<u64>,
    duration_ms: Option<f64>,
    error: Option<Box<str>>,
    attempts: Option<u64>,
}

/// The verdict of an event nothing flagged, to compare with.
static PLAIN: LazyLock<Analysis> = LazyLock::new(Analysis::default);

impl Row {
    /// The row of `event`, or `None` when it has a field a row does not keep (it is then kept
    /// whole). Copies what it keeps: the event itself goes back to the thread that made it.
    pub fn of(event: &Event) -> Option<Row> {
        let Event {
            timestamp,
            event_type,
            pid,
            tid,
            ppid,
            uid,
            user,
            process,
            exe,
            cmdline,
            cgroup_id,
            parent_process,
            ancestors,
            argv,
            exit_code,
            exit_signal,
            ptrace_request,
            target_pid,
            file_path,
            new_path,
            flags,
            mode,
            syscall,
            old_uid,
            new_uid,
            old_gid,
            new_gid,
            capabilities,
            protocol,
            source_ip,
            source_port,
            target_ip,
            target_port,
            bytes_sent,
            bytes_received,
            duration_ms,
            error,
            attempts,
            bpf_prog_type,
            bpf_prog_name,
            module_params,
            blocked,
            truncated,
            analysis,
            response,
            host,
        } = event;
        let rare = ptrace_request.is_some()
            || old_uid.is_some()
            || new_uid.is_some()
            || old_gid.is_some()
            || new_gid.is_some()
            || capabilities.is_some()
            || bpf_prog_type.is_some()
            || bpf_prog_name.is_some()
            || module_params.is_some()
            || !response.is_empty()
            || host.is_some();
        if rare || !plain_verdict(analysis) {
            return None;
        }
        let has_more = argv.is_some()
            || exit_code.is_some()
            || exit_signal.is_some()
            || target_pid.is_some()
            || bytes_sent.is_some()
            || bytes_received.is_some()
            || duration_ms.is_some()
            || error.is_some()
            || attempts.is_some();
        let more = has_more.then(|| {
            Box::new(More {
                argv: argv
                    .as_ref()
                    .map(|args| args.iter().map(|a| Box::from(a.as_str())).collect()),
                exit_code: *exit_code,
                exit_signal: *exit_signal,
                target_pid: *target_pid,
                bytes_sent: *bytes_sent,
                bytes_received: *bytes_received,
                duration_ms: *duration_ms,
                error: error.as_deref().map(Box::from),
                attempts: *attempts,
            })
        });
        Some(Row {
            timestamp: *timestamp,
            event_type: *event_type,
            severity: analysis.severity,
            blocked: *blocked,
            truncated: *truncated,
            pid: *pid,
            tid: *tid,
            ppid: *ppid,
            uid: *uid,
            cgroup_id: *cgroup_id,
            user: user.clone(),
            process: process.clone(),
            exe: exe.clone(),
            cmdline: cmdline.clone(),
            parent_process: parent_process.clone(),
            ancestors: ancestors.as_slice().into(),
            risk_score: analysis.risk_score,
            process_risk: analysis.process_risk,
            file_path: file_path.as_deref().map(Box::from),
            new_path: new_path.as_deref().map(Box::from),
            flags: flags.clone(),
            syscall: syscall.clone(),
            mode: *mode,
            protocol: protocol.as_deref().map(Box::from),
            source_ip: *source_ip,
            source_port: *source_port,
            target_ip: *target_ip,
            target_port: *target_port,
            more,
        })
    }

    /// The event this row was made of, whole.
    pub fn event(&self) -> Event {
        let text = |t: &Option<Box<str>>| t.as_deref().map(str::to_string);
        let mut event = Event::new(self.event_type, self.timestamp);
        event.pid = self.pid;
        event.tid = self.tid;
        event.ppid = self.ppid;
        event.uid = self.uid;
        event.cgroup_id = self.cgroup_id;
        event.user = self.user.clone();
        event.process = self.process.clone();
        event.exe = self.exe.clone();
        event.cmdline = self.cmdline.clone();
        event.parent_process = self.parent_process.clone();
        event.ancestors = self.ancestors.to_vec();
        event.file_path = text(&self.file_path);
        event.new_path = text(&self.new_path);
        event.flags = self.flags.clone();
        event.syscall = self.syscall.clone();
        event.mode = self.mode;
        event.protocol = text(&self.protocol);
        event.source_ip = self.source_ip;
        event.source_port = self.source_port;
        event.target_ip = self.target_ip;
        event.target_port = self.target_port;
        event.blocked = self.blocked;
        event.truncated = self.truncated;
        event.analysis.severity = self.severity;
        event.analysis.risk_score = self.risk_score;
        event.analysis.process_risk = self.process_risk;
        if let Some(more) = &self.more {
            event.argv = more
                .argv
                .as_ref()
                .map(|args| args.iter().map(|a| a.to_string()).collect());
            event.exit_code = more.exit_code;
            event.exit_signal = more.exit_signal;
            event.target_pid = more.target_pid;
            event.bytes_sent = more.bytes_sent;
            event.bytes_received = more.bytes_received;
            event.duration_ms = more.duration_ms;
            event.error = text(&more.error);
            event.attempts = more.attempts;
        }
        event
    }

    /// The event's type, without building it.
    pub fn event_type(&self) -> EventType {
        self.event_type
    }
}

/// Whether a verdict is an unflagged event's but for its scores and severity (which a row
/// keeps): no label, method, confidence, recommendation or rules of its own.
fn plain_verdict(analysis: &Analysis) -> bool {
    let Analysis {
        label,
        severity: _,
        risk_score: _,
        detection_method,
        confidence,
        recommendation,
        rules,
        process_risk: _,
    } = analysis;
    *label == PLAIN.label
        && *detection_method == PLAIN.detection_method
        && confidence.to_bits() == PLAIN.confidence.to_bits()
        && *recommendation == PLAIN.recommendation
        && rules.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ResponseAction, ResponseKind, ResponseResult};

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("a time")
    }

    fn with_context(mut event: Event) -> Event {
        event.pid = 4242;
        event.tid = 4243;
        event.ppid = 1;
        event.uid = 1000;
        event.user = "alice".into();
        event.process = "cat".into();
        event.exe = "/usr/bin/cat".into();
        event.cmdline = "cat /etc/hostname".into();
        event.cgroup_id = 77;
        event.parent_process = "bash".into();
        event.ancestors = vec!["bash".into(), "sshd".into()];
        event.analysis.process_risk = 0.25;
        event
    }

    fn file_open() -> Event {
        let mut event = with_context(Event::new(EventType::FileOpen, at()));
        event.file_path = Some("/etc/hostname".to_string());
        event.flags = Some("O_RDONLY|O_CLOEXEC".into());
        event.syscall = Some("openat".into());
        event.mode = Some(0o644);
        event.truncated = true;
        event
    }

    fn connect() -> Event {
        let mut event = with_context(Event::new(EventType::NetConnect, at()));
        event.protocol = Some("tcp".to_string());
        event.source_ip = Some(IpAddr::from([10, 0, 0, 1]));
        event.source_port = Some(40_000);
        event.target_ip = Some("2001:db8::1".parse().expect("an address"));
        event.target_port = Some(443);
        event.blocked = true;
        event.analysis.risk_score = 0.1;
        event
    }

    #[test]
    fn a_row_gives_its_event_back_exactly() {
        let mut rename = file_open();
        rename.event_type = EventType::FileRename;
        rename.new_path = Some("/tmp/x".to_string());
        let mut exec = with_context(Event::new(EventType::ProcessExec, at()));
        exec.argv = Some(vec!["cat".to_string(), "/etc/hostname".to_string()]);
        let mut no_args = exec.clone();
        no_args.argv = Some(Vec::new());
        let mut exit = with_context(Event::new(EventType::ProcessExit, at()));
        exit.exit_code = Some(0);
        exit.exit_signal = Some(9);
        let mut close = connect();
        close.event_type = EventType::NetClose;
        close.bytes_sent = Some(10);
        close.bytes_received = Some(20);
        close.duration_ms = Some(1.5);
        let mut failed = connect();
        failed.event_type = EventType::NetConnectFailed;
        failed.error = Some("ECONNREFUSED".to_string());
        failed.attempts = Some(3);
        let mut fork = with_context(Event::new(EventType::ProcessFork, at()));
        fork.target_pid = Some(4244);
        for event in [
            file_open(),
            rename,
            connect(),
            exec,
            no_args,
            exit,
            close,
            failed,
            fork,
            Event::new(EventType::ProcessFork, at()),
        ] {
            let row = Row::of(&event).expect("an ordinary event has a row");
            assert_eq!(row.event(), event);
            assert_eq!(row.event_type(), event.event_type);
        }
    }

    #[test]
    fn an_event_with_more_than_a_row_keeps_stays_whole() {
        let mut setuid = with_context(Event::new(EventType::PrivilegeChange, at()));
        setuid.new_uid = Some(0);
        let mut ptrace = with_context(Event::new(EventType::Ptrace, at()));
        ptrace.ptrace_request = Some("PTRACE_ATTACH".to_string());
        let mut bpf = with_context(Event::new(EventType::BpfLoad, at()));
        bpf.bpf_prog_name = Some("x".to_string());
        let mut flagged = file_open();
        flagged.analysis.label = "Shadow Read".to_string();
        let mut ruled = file_open();
        ruled.analysis.rules = vec!["shadow_file_read".to_string()];
        let mut method = file_open();
        method.analysis.detection_method = "heuristic".to_string();
        let mut sure = file_open();
        sure.analysis.confidence = 1.0;
        let mut advised = file_open();
        advised.analysis.recommendation = "look".to_string();
        let mut responded = file_open();
        responded.response.push(ResponseAction {
            action: ResponseKind::Log,
            result: ResponseResult::Done,
            rule: None,
            target: None,
            deny_id: None,
            detail: "logged".to_string(),
        });
        let mut hosted = file_open();
        hosted.host = Some("web-1".into());
        for event in [
            setuid, ptrace, bpf, flagged, ruled, method, sure, advised, responded, hosted,
        ] {
            assert!(Row::of(&event).is_none(), "{event:?}");
        }
    }

    #[test]
    fn a_row_is_a_fraction_of_its_event() {
        assert!(
            std::mem::size_of::<Row>() * 2 < std::mem::size_of::<Event>(),
            "row {} bytes, event {}",
            std::mem::size_of::<Row>(),
            std::mem::size_of::<Event>()
        );
    }
}
