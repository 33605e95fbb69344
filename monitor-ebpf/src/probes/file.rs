//! File family: open/openat/openat2, unlink/unlinkat/rmdir, rename*, chmod*, link*/symlink*.
//! Everything is reported at `sys_exit` when the call succeeded; paths are read from the
//! caller's memory then and resolved to absolute paths in userspace.
use monitor_common::{
    AT_FDCWD, FILE_PATH_OFFSET, FileEvent, FilePairEvent, PendingSyscall, SYMLINK_TARGET_DIRFD,
    family, kind, ops,
};

use super::{count_drop, fill_header, read_user, read_user_str, reserve, submit, wakeup_flags};
use crate::maps::{SM_EVENTS, SM_FILE_SCRATCH};

const AT_REMOVEDIR: u64 = 0x200;
/// O_WRONLY | O_TRUNC: the flags a truncation to length 0 is reported with.
const O_WRONLY_TRUNC: u64 = 0o1 | 0o1000;

/// One path, the directory it is relative to, flags and mode.
struct FileCall {
    kind: u32,
    dirfd: i32,
    path: u64,
    flags: u64,
    mode: u64,
}

/// `sys_exit` of every file syscall.
#[inline(always)]
pub fn on_sys_exit(pending: &PendingSyscall, ret: i64) -> Option<()> {
    if ret < 0 {
        return None;
    }
    let a = pending.args;
    let call = |kind, dirfd: u64, path, flags, mode| FileCall {
        kind,
        dirfd: dirfd as i32,
        path,
        flags,
        mode,
    };
    let cwd = AT_FDCWD as u64;
    let single = match pending.op {
        ops::OPEN => call(kind::FILE_OPEN, cwd, a[0], a[1], a[2]),
        ops::OPENAT => call(kind::FILE_OPEN, a[0], a[1], a[2], a[3]),
        // openat2(dfd, filename, struct open_how *how, size): how = { flags, mode, resolve }.
        ops::OPENAT2 => call(
            kind::FILE_OPEN,
            a[0],
            a[1],
            read_user::<u64>(a[2]).unwrap_or(0),
            read_user::<u64>(a[2] + 8).unwrap_or(0),
        ),
        ops::UNLINK => call(kind::FILE_DELETE, cwd, a[0], 0, 0),
        ops::UNLINKAT => call(kind::FILE_DELETE, a[0], a[1], a[2], 0),
        ops::RMDIR => call(kind::FILE_DELETE, cwd, a[0], AT_REMOVEDIR, 0),
        ops::CHMOD => call(kind::FILE_CHMOD, cwd, a[0], 0, a[1]),
        // fchmod(fd, mode): no path; userspace names the file from the fd.
        ops::FCHMOD => call(kind::FILE_CHMOD, a[0], 0, 0, a[1]),
        ops::FCHMODAT => call(kind::FILE_CHMOD, a[0], a[1], 0, a[2]),
        ops::FCHMODAT2 => call(kind::FILE_CHMOD, a[0], a[1], a[3], a[2]),
        // truncate(path, 0) / ftruncate(fd, 0): reported as a write that truncates.
        ops::TRUNCATE => call(kind::FILE_OPEN, cwd, a[0], O_WRONLY_TRUNC, 0),
        ops::FTRUNCATE => call(kind::FILE_OPEN, a[0], 0, O_WRONLY_TRUNC, 0),
        // dup(old) / dup2(old, new) / dup3(old, new, flags) / fcntl(old, F_DUPFD*): the new
        // fd is the return value.
        ops::DUP | ops::DUP2 | ops::DUP3 | ops::FCNTL => call(kind::FD_DUP, a[0], 0, 0, 0),
        _ => return report_pair(pending.op, a),
    };
    report_single(pending.op, &single, ret)
}

/// Builds the record in the per-CPU scratch and copies into the ring only its used part: up
/// to the path's NUL (see `monitor_common::FILE_PATH_OFFSET`).
#[inline(always)]
fn report_single(op: u32, call: &FileCall, ret: i64) -> Option<()> {
    // SAFETY: a successful lookup of this CPU's only slot, alive as long as the map; only this
    // function uses it, at `sys_exit` in task context, so no other program touches it while we
    // do. The record is integers and byte arrays only: any bytes form a valid value.
    let event = unsafe { &mut *SM_FILE_SCRATCH.get_ptr_mut(0)? };
    fill_header(&mut event.header, call.kind);
    let data = &mut event.data;
    data.op = op;
    data.dirfd = call.dirfd;
    data.flags = call.flags;
    data.mode = call.mode as u32;
    data.ret = ret as i32;
    let (path_len, cut) = read_user_str_len(call.path, &mut data.path);
    if cut {
        event.header.truncated = 1;
    }
    // Bounded for the verifier: never past the scratch record.
    let mut len = FILE_PATH_OFFSET + path_len;
    if len > core::mem::size_of::<FileEvent>() {
        len = core::mem::size_of::<FileEvent>();
    }
    // SAFETY: `len` is at most the record's size, so the slice stays within the scratch
    // record, which outlives this call; it is only read (copied into the ring).
    let bytes =
        unsafe { core::slice::from_raw_parts((event as *const FileEvent).cast::<u8>(), len) };
    if SM_EVENTS.output::<[u8]>(bytes, wakeup_flags(len)).is_err() {
        count_drop(family::FILE);
    }
    Some(())
}

/// [`read_user_str`], also giving the bytes written (the NUL included; 1 for an empty or
/// unreadable string).
#[inline(always)]
fn read_user_str_len(src: u64, dest: &mut [u8]) -> (usize, bool) {
    if src == 0 {
        dest[0] = 0;
        return (1, false);
    }
    let capacity = dest.len();
    // SAFETY: the helper copies with fault handling (a bad `src` gives an error, never a
    // fault) and writes at most `dest.len()` bytes into the borrowed buffer.
    match unsafe { aya_ebpf::helpers::bpf_probe_read_user_str_bytes(src as *const u8, dest) } {
        Ok(bytes) => {
            let written = bytes.len() + 1;
            (written.min(capacity), written >= capacity)
        }
        Err(_) => {
            dest[0] = 0;
            (1, false)
        }
    }
}

/// rename*, link* and symlink*: two paths.
#[inline(always)]
fn report_pair(op: u32, a: [u64; 6]) -> Option<()> {
    let cwd = AT_FDCWD as u64;
    let target = SYMLINK_TARGET_DIRFD as u64;
    // (kind, old dirfd, old path, new dirfd, new path, flags)
    let (kind, old_dirfd, old_path, new_dirfd, new_path, flags) = match op {
        ops::RENAME => (kind::FILE_RENAME, cwd, a[0], cwd, a[1], 0),
        ops::RENAMEAT => (kind::FILE_RENAME, a[0], a[1], a[2], a[3], 0),
        ops::RENAMEAT2 => (kind::FILE_RENAME, a[0], a[1], a[2], a[3], a[4]),
        ops::LINK => (kind::FILE_LINK, cwd, a[0], cwd, a[1], 0),
        ops::LINKAT => (kind::FILE_LINK, a[0], a[1], a[2], a[3], a[4]),
        ops::SYMLINK => (kind::FILE_LINK, target, a[0], cwd, a[1], 0),
        ops::SYMLINKAT => (kind::FILE_LINK, target, a[0], a[1], a[2], 0),
        _ => return None,
    };
    let mut entry = reserve::<FilePairEvent>(family::FILE)?;
    // SAFETY: `entry` is a fresh ring-buffer reservation, sized and aligned for the record,
    // that nothing else touches until `submit`; the record is integers and byte arrays only,
    // so whatever bytes the ring held there already form a valid value.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut event.header, kind);
    let data = &mut event.data;
    data.op = op;
    data._pad = 0;
    data.old_dirfd = old_dirfd as i32;
    data.new_dirfd = new_dirfd as i32;
    data.flags = flags;
    let cut_old = read_user_str(old_path, &mut data.old_path);
    let cut_new = read_user_str(new_path, &mut data.new_path);
    if cut_old || cut_new {
        event.header.truncated = 1;
    }
    submit(entry);
    Some(())
}
