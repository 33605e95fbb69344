//! The fields a condition can read, how each maps onto [`Event`], and on which event types
//! each can be present (used to narrow the event types a rule is indexed under).

use std::net::IpAddr;

use crate::event::{Event, EventType};

/// A set of event types as bits, bit `t as usize` for each [`EventType`] `t`.
pub type TypeMask = u32;

pub const ALL_TYPES: TypeMask = (1 << EventType::ALL.len()) - 1;

pub fn type_bit(t: EventType) -> TypeMask {
    1 << (t as u32)
}

#[cfg(test)]
pub fn mask_of(types: &[EventType]) -> TypeMask {
    types.iter().fold(0, |m, &t| m | type_bit(t))
}

pub fn types_in(mask: TypeMask) -> impl Iterator<Item = EventType> {
    EventType::ALL
        .into_iter()
        .filter(move |&t| mask & type_bit(t) != 0)
}

/// Text fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StrField {
    ProcessName,
    ProcessPath,
    Cmdline,
    User,
    ParentName,
    /// The parent's executable, from the engine's own process map (exec events).
    ParentPath,
    FilePath,
    FileNewPath,
    FileFlags,
    NetProtocol,
    NetError,
    PtraceRequest,
    BpfProgName,
    Syscall,
    ModuleParams,
    EventType,
}

/// Address fields: compared as addresses (`==`, `in [...]`, `in cidr(...)`), and as their text
/// (`127.0.0.1`, `::1`, as the JSON output spells them) by the text methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpField {
    NetDstIp,
    NetSrcIp,
}

/// A field read as text, for comparing two fields: a text field, or an address's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextField {
    Str(StrField),
    Ip(IpField),
}

/// Integer fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntField {
    Pid,
    Tid,
    Ppid,
    Uid,
    FileMode,
    NetDstPort,
    NetSrcPort,
    NetBytesSent,
    NetBytesReceived,
    NetAttempts,
    PtraceTargetPid,
    Cgroup,
    ExitCode,
    ExitSignal,
    PrivOldUid,
    PrivNewUid,
    PrivOldGid,
    PrivNewGid,
    BpfProgType,
}

/// Lists of text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListField {
    Args,
    Ancestors,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Str(StrField),
    /// `net.dst_ip` / `net.src_ip`.
    Ip(IpField),
    Int(IntField),
    List(ListField),
    /// `process.risk`: the process's accumulated risk (engine state).
    Risk,
}

impl Field {
    pub fn kind(self) -> &'static str {
        match self {
            Field::Str(StrField::EventType) => "event type",
            Field::Str(_) => "text",
            Field::Ip(_) => "IP address",
            Field::Int(_) | Field::Risk => "number",
            Field::List(_) => "list",
        }
    }
}

const FILE: TypeMask = (1 << EventType::FileOpen as u32)
    | (1 << EventType::FileWrite as u32)
    | (1 << EventType::FileDelete as u32)
    | (1 << EventType::FileRename as u32)
    | (1 << EventType::FileChmod as u32)
    | (1 << EventType::FileLink as u32);
const NET: TypeMask = (1 << EventType::NetConnect as u32)
    | (1 << EventType::NetAccept as u32)
    | (1 << EventType::NetListen as u32)
    | (1 << EventType::NetUdp as u32)
    | (1 << EventType::NetClose as u32)
    | (1 << EventType::NetConnectFailed as u32);
const NET_FAILED: TypeMask = 1 << EventType::NetConnectFailed as u32;
const EXEC: TypeMask = 1 << EventType::ProcessExec as u32;
const EXIT: TypeMask = 1 << EventType::ProcessExit as u32;
const PTRACE: TypeMask = 1 << EventType::Ptrace as u32;
const PRIV: TypeMask = 1 << EventType::PrivilegeChange as u32;
const BPF: TypeMask = 1 << EventType::BpfLoad as u32;
const MODULE: TypeMask = 1 << EventType::ModuleLoad as u32;

/// Every field name, its field, and the event types on which it can have a value (see the
/// optional fields of [`Event`] and the enricher that fills them). A leaf test of a field is
/// false on the other types, which is what lets rules be indexed by event type.
pub const FIELDS: &[(&str, Field, TypeMask)] = &[
    ("process.name", Field::Str(StrField::ProcessName), ALL_TYPES),
    ("process.path", Field::Str(StrField::ProcessPath), ALL_TYPES),
    ("process.cmdline", Field::Str(StrField::Cmdline), ALL_TYPES),
    ("process.args", Field::List(ListField::Args), EXEC),
    ("process.pid", Field::Int(IntField::Pid), ALL_TYPES),
    ("process.tid", Field::Int(IntField::Tid), ALL_TYPES),
    ("process.ppid", Field::Int(IntField::Ppid), ALL_TYPES),
    ("process.uid", Field::Int(IntField::Uid), ALL_TYPES),
    ("process.user", Field::Str(StrField::User), ALL_TYPES),
    ("process.risk", Field::Risk, ALL_TYPES),
    ("parent.name", Field::Str(StrField::ParentName), ALL_TYPES),
    ("parent.path", Field::Str(StrField::ParentPath), ALL_TYPES),
    ("parent.pid", Field::Int(IntField::Ppid), ALL_TYPES),
    ("ancestors", Field::List(ListField::Ancestors), ALL_TYPES),
    ("file.path", Field::Str(StrField::FilePath), FILE | MODULE),
    ("file.new_path", Field::Str(StrField::FileNewPath), FILE),
    ("file.flags", Field::Str(StrField::FileFlags), FILE),
    ("file.mode", Field::Int(IntField::FileMode), FILE),
    ("net.dst_ip", Field::Ip(IpField::NetDstIp), NET),
    ("net.dst_port", Field::Int(IntField::NetDstPort), NET),
    ("net.src_ip", Field::Ip(IpField::NetSrcIp), NET),
    ("net.src_port", Field::Int(IntField::NetSrcPort), NET),
    ("net.protocol", Field::Str(StrField::NetProtocol), NET),
    ("net.bytes_sent", Field::Int(IntField::NetBytesSent), NET),
    (
        "net.bytes_received",
        Field::Int(IntField::NetBytesReceived),
        NET,
    ),
    ("net.error", Field::Str(StrField::NetError), NET_FAILED),
    (
        "net.attempts",
        Field::Int(IntField::NetAttempts),
        NET_FAILED,
    ),
    ("event.type", Field::Str(StrField::EventType), ALL_TYPES),
    ("event.syscall", Field::Str(StrField::Syscall), ALL_TYPES),
    (
        "ptrace.request",
        Field::Str(StrField::PtraceRequest),
        PTRACE,
    ),
    (
        "ptrace.target_pid",
        Field::Int(IntField::PtraceTargetPid),
        PTRACE,
    ),
    ("container.id", Field::Int(IntField::Cgroup), ALL_TYPES),
    ("cgroup", Field::Int(IntField::Cgroup), ALL_TYPES),
    ("exit.code", Field::Int(IntField::ExitCode), EXIT),
    ("exit.signal", Field::Int(IntField::ExitSignal), EXIT),
    ("priv.old_uid", Field::Int(IntField::PrivOldUid), PRIV),
    ("priv.new_uid", Field::Int(IntField::PrivNewUid), PRIV),
    ("priv.old_gid", Field::Int(IntField::PrivOldGid), PRIV),
    ("priv.new_gid", Field::Int(IntField::PrivNewGid), PRIV),
    ("bpf.prog_name", Field::Str(StrField::BpfProgName), BPF),
    ("bpf.prog_type", Field::Int(IntField::BpfProgType), BPF),
    ("module.params", Field::Str(StrField::ModuleParams), MODULE),
];

pub fn lookup(name: &str) -> Option<(Field, TypeMask)> {
    FIELDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, field, mask)| (field, mask))
}

/// The field name closest to a misspelt one, if any is close.
pub fn suggest(name: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .map(|(n, _, _)| (edit_distance(name, n), *n))
        .filter(|&(d, n)| d <= 3.max(n.len() / 4))
        .min_by_key(|&(d, _)| d)
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

pub fn str_value(event: &Event, field: StrField) -> Option<&str> {
    Some(match field {
        StrField::ProcessName => &event.process,
        StrField::ProcessPath => &event.exe,
        StrField::Cmdline => &event.cmdline,
        StrField::User => &event.user,
        StrField::ParentName => &event.parent_process,
        // Filled in by the evaluator from its process map.
        StrField::ParentPath => return None,
        StrField::FilePath => event.file_path.as_deref()?,
        StrField::FileNewPath => event.new_path.as_deref()?,
        StrField::FileFlags => event.flags.as_deref()?,
        StrField::NetProtocol => event.protocol.as_deref()?,
        StrField::NetError => event.error.as_deref()?,
        StrField::PtraceRequest => event.ptrace_request.as_deref()?,
        StrField::BpfProgName => event.bpf_prog_name.as_deref()?,
        StrField::Syscall => event.syscall.as_deref()?,
        StrField::ModuleParams => event.module_params.as_deref()?,
        StrField::EventType => event.event_type.as_str(),
    })
}

pub fn ip_value(event: &Event, field: IpField) -> Option<IpAddr> {
    match field {
        IpField::NetDstIp => event.target_ip,
        IpField::NetSrcIp => event.source_ip,
    }
}

pub fn int_value(event: &Event, field: IntField) -> Option<i64> {
    Some(match field {
        IntField::Pid => event.pid.into(),
        IntField::Tid => event.tid.into(),
        IntField::Ppid => event.ppid.into(),
        IntField::Uid => event.uid.into(),
        IntField::FileMode => event.mode?.into(),
        IntField::NetDstPort => event.target_port?.into(),
        IntField::NetSrcPort => event.source_port?.into(),
        IntField::NetBytesSent => i64::try_from(event.bytes_sent?).unwrap_or(i64::MAX),
        IntField::NetBytesReceived => i64::try_from(event.bytes_received?).unwrap_or(i64::MAX),
        IntField::NetAttempts => i64::try_from(event.attempts?).unwrap_or(i64::MAX),
        IntField::PtraceTargetPid => event.target_pid?.into(),
        IntField::Cgroup => i64::try_from(event.cgroup_id).unwrap_or(i64::MAX),
        IntField::ExitCode => event.exit_code?.into(),
        IntField::ExitSignal => event.exit_signal?.into(),
        IntField::PrivOldUid => event.old_uid?.into(),
        IntField::PrivNewUid => event.new_uid?.into(),
        IntField::PrivOldGid => event.old_gid?.into(),
        IntField::PrivNewGid => event.new_gid?.into(),
        IntField::BpfProgType => event.bpf_prog_type?.into(),
    })
}

/// Whether any item of the list `field` passes `test` (`false` when the event has no such list).
pub fn any_list_item(event: &Event, field: ListField, mut test: impl FnMut(&str) -> bool) -> bool {
    match field {
        ListField::Args => event
            .argv
            .as_deref()
            .is_some_and(|items| items.iter().any(|s| test(s))),
        ListField::Ancestors => event.ancestors.iter().any(|s| test(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        for (i, (a, _, _)) in FIELDS.iter().enumerate() {
            assert!(FIELDS[i + 1..].iter().all(|(b, _, _)| a != b), "{a}");
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("process.nam"), Some("process.name"));
        assert_eq!(suggest("proc.name"), Some("process.name"));
        assert_eq!(suggest("fd.name"), None);
        assert_eq!(suggest("file.pth"), Some("file.path"));
    }

    #[test]
    fn type_masks() {
        assert_eq!(ALL_TYPES.count_ones() as usize, EventType::ALL.len());
        assert_eq!(
            types_in(mask_of(&[EventType::NetClose, EventType::ProcessExec])).collect::<Vec<_>>(),
            vec![EventType::ProcessExec, EventType::NetClose]
        );
        assert_eq!(EventType::from_name("file_open"), Some(EventType::FileOpen));
        assert_eq!(EventType::from_name("file"), None);
    }
}
