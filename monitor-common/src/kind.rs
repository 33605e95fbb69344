//! Event kind numbers carried in [`crate::EventHeader::kind`].
//!
//! Numbers are grouped per family with gaps (as Kunai does), so a new kind never renumbers
//! another: 1xx process, 2xx file, 3xx network, 4xx kernel.

pub const PROCESS_EXEC: u32 = 100;
pub const PROCESS_FORK: u32 = 101;
pub const PROCESS_EXIT: u32 = 102;
pub const PTRACE: u32 = 103;
pub const CHDIR: u32 = 104;
pub const PRIVILEGE_CHANGE: u32 = 110;

pub const FILE_OPEN: u32 = 200;
pub const FILE_DELETE: u32 = 201;
pub const FILE_RENAME: u32 = 202;
pub const FILE_CHMOD: u32 = 203;
pub const FILE_LINK: u32 = 204;
/// Internal: an fd was duplicated (`FileData.dirfd` → `FileData.ret`); never reported.
pub const FD_DUP: u32 = 205;

pub const NET_CONNECT: u32 = 300;
pub const NET_ACCEPT: u32 = 301;
pub const NET_LISTEN: u32 = 302;
pub const NET_UDP: u32 = 303;
pub const NET_CLOSE: u32 = 304;
/// A TCP connect that never reached ESTABLISHED (refused, timed out, unreachable, aborted).
pub const NET_CONNECT_FAILED: u32 = 305;

pub const MODULE_LOAD: u32 = 400;
pub const BPF_LOAD: u32 = 401;
