//! Enrichment: the context the kernel cannot give cheaply, added in userspace.
//!
//! - [`proctable`]: the process table (ppid, exe, argv, uid, cwd, ancestry), rebuilt from
//!   fork/exec/exit events and seeded/filled from `/proc`;
//! - [`users`]: uid → user name from `/etc/passwd`;
//! - [`failed_connects`]: failed connects counted per process and address, so that a scan is
//!   a few events;
//! - [`crate::paths`] (shared with the capture and the response): lexical normalisation of
//!   paths and resolution against a process's cwd.

pub mod failed_connects;
pub mod proctable;
pub mod sockets;
pub mod users;

pub use proctable::{ProcessInfo, ProcessTable};
pub use users::UserNames;

pub mod enricher;

pub use enricher::Enricher;
