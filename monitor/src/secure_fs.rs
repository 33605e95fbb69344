//! Opening the files the monitor writes (recordings, the alert and event logs, the history
//! database) so that, running as root, it never writes where someone else chose.
//!
//! A path like `/tmp/rec.jsonl` or a log directory another user can write to lets that user
//! plant a symbolic link (root would then truncate or append to `/etc/shadow`), a hard link (the
//! same, through a second name), or a FIFO (the monitor would block forever in `open`). So
//! [`open_for_writing`]:
//! - opens with `O_NOFOLLOW` (the last component may not be a symbolic link) and `O_NONBLOCK`
//!   (opening a FIFO returns at once instead of waiting for a reader);
//! - checks the *open* file (`fstat`): a regular file with one link, else it is refused;
//! - sets the mode on the open file (`fchmod`), so an existing file with looser permissions is
//!   tightened, and truncates only after all of that.
//!
//! Every refusal is an [`io::Error`] whose message says what the path is and what to do; the
//! caller adds the path.
//!
//! The other direction: files that decide what the monitor does (rule files and their
//! directories, the config file, which may hold the webhook's secret) are, when running as root,
//! only used if root owns them and neither group nor others can write to them, nor to any
//! directory above them ([`check_trusted`], [`check_trusted_ancestors`]), as sshd's
//! `StrictModes` does for `authorized_keys`. Otherwise any user who can edit a rule could
//! switch detections off or make the monitor deny programs for everyone.
use std::{
    fs::{File, Metadata, OpenOptions},
    io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use crate::enrich::UserNames;

/// What happens to what an existing file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Writes go to the end (logs, the database).
    Append,
    /// The file is emptied once it passed the checks (recordings).
    Truncate,
}

/// Creates the directory of `path` (and any missing parents) with mode `0700` if it is
/// missing: where the monitor keeps a private file (a log, the database, a socket, a token).
pub fn create_private_parent(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir),
        _ => Ok(()),
    }
}

/// Opens (creating if needed) `path` for writing, refusing symbolic links, FIFOs and other
/// non-regular files and hard-linked files, with its permission bits set to `mode` on the open
/// file. See the module documentation.
pub fn open_for_writing(path: &Path, mode: u32, existing: Existing) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .append(existing == Existing::Append)
        .create(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| explain_open_error(path, e))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(describe_type(&meta.file_type())));
    }
    if meta.nlink() > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "has {} hard links: refusing to write to it (another name of the same file may \
                 be one secmon must not overwrite); remove it or name another file",
                meta.nlink()
            ),
        ));
    }
    clear_nonblocking(&file)?;
    if meta.permissions().mode() & 0o7777 != mode {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    if existing == Existing::Truncate {
        file.set_len(0)?;
    }
    Ok(file)
}

/// `open` failed: ELOOP means the last component is a symbolic link (O_NOFOLLOW), ENXIO a FIFO
/// with no reader (O_NONBLOCK); say so instead of "too many levels of symbolic links".
fn explain_open_error(path: &Path, error: io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(libc::ELOOP) if is_symlink(path) => io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a symbolic link: secmon does not write through symbolic links (whoever made \
             the link would choose the file it writes); remove the link or name the real file",
        ),
        Some(libc::ENXIO) => not_regular("a FIFO or socket"),
        _ => error,
    }
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

fn not_regular(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "is {what}, not a regular file: refusing to write to it; remove it or name another file"
        ),
    )
}

fn describe_type(file_type: &std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

/// Writes to a regular file never block anyway; the flag was only for `open`.
fn clear_nonblocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Refuses `path` when it is a symbolic link (for files opened by another library, such as
/// SQLite, which is also told not to follow one).
pub fn refuse_symlink(path: &Path) -> io::Result<()> {
    if is_symlink(path) {
        return Err(explain_open_error(
            path,
            io::Error::from_raw_os_error(libc::ELOOP),
        ));
    }
    Ok(())
}

/// Whether [`check_trusted`] applies: when running as root (only root's monitor can be
/// turned against other users by the files it reads).
pub fn strict_modes() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A file or directory root should not trust: `path: reason`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct Untrusted {
    pub path: PathBuf,
    /// What is wrong and how to fix it (one line).
    pub reason: String,
}

/// Refuses `path` (whose metadata is `meta`, taken from the open file where there is one)
/// unless a trusted user owns it (root, or the owner of secmon's own executable: whoever can
/// replace the program can change what it reads anyway, so a developer's `sudo` run from their
/// own checkout works while an installed, root-owned secmon trusts root alone) and neither its
/// group nor others may write to it. A directory with the sticky bit (`/tmp`) may be writable
/// by all: nobody can then rename or remove what root put in it. `what` names it in the message
/// ("rule file", "config file", …).
pub fn check_trusted(path: &Path, meta: &Metadata, what: &str) -> Result<(), Untrusted> {
    check_trusted_by(path, meta, what, trusted_owners())
}

/// Root and the owner of the running executable.
fn trusted_owners() -> &'static [u32] {
    static OWNERS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    OWNERS.get_or_init(|| {
        let mut owners = vec![0];
        if let Some(uid) = std::env::current_exe()
            .and_then(std::fs::metadata)
            .ok()
            .map(|m| m.uid())
            .filter(|uid| *uid != 0)
        {
            owners.push(uid);
        }
        owners
    })
}

/// [`check_trusted`] with the trusted owners given.
fn check_trusted_by(
    path: &Path,
    meta: &Metadata,
    what: &str,
    trusted: &[u32],
) -> Result<(), Untrusted> {
    let mode = meta.permissions().mode() & 0o7777;
    let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
    let quoted = shell_quote(path);
    let owner = || {
        let name = UserNames::system().name(meta.uid());
        format!("{name} (uid {})", meta.uid())
    };
    if !trusted.contains(&meta.uid()) {
        return Err(Untrusted {
            path: path.to_path_buf(),
            reason: format!(
                "refusing to use this {what} as root: it is owned by {}, not root (mode \
                 {mode:04o}), so that user decides what the monitor does; fix: sudo chown \
                 root:root {quoted} && sudo chmod go-w {quoted}",
                owner()
            ),
        });
    }
    let writers = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and all users",
        (true, false) => "its group",
        (false, true) => "all users",
        (false, false) => return Ok(()),
    };
    if sticky_dir {
        return Ok(());
    }
    Err(Untrusted {
        path: path.to_path_buf(),
        reason: format!(
            "refusing to use this {what} as root: its mode {mode:04o} lets {writers} change it \
             (owner {}); fix: sudo chmod go-w {quoted}",
            owner()
        ),
    })
}

/// [`check_trusted`] for every directory above `path` (resolved, so a symbolic link on the way
/// is judged by where it leads), up to `/`.
pub fn check_trusted_ancestors(path: &Path, what: &str) -> Result<(), Untrusted> {
    let Ok(resolved) = path.canonicalize() else {
        // A missing path is reported by whoever opens it.
        return Ok(());
    };
    let holder = format!("directory holding the {what}");
    for dir in resolved.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        check_trusted(dir, &meta, &holder)?;
    }
    Ok(())
}

/// `path` as a shell word, for the fix in a message.
fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use std::{
        ffi::CString,
        io::Write,
        os::unix::{ffi::OsStrExt, fs::symlink},
    };

    use super::*;

    fn mkfifo(path: &Path) {
        let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL");
        // SAFETY: `c` is a NUL-terminated string that outlives the call; mkfifo only reads it.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).expect("meta").permissions().mode() & 0o7777
    }

    #[test]
    fn creates_appends_and_truncates_with_the_mode_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, "old\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let mut f = open_for_writing(&path, 0o600, Existing::Append).expect("open");
        f.write_all(b"new\n").expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "old\nnew\n");
        assert_eq!(mode_of(&path), 0o600, "tightened on the open file");
        drop(open_for_writing(&path, 0o640, Existing::Truncate).expect("open"));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "");
        assert_eq!(mode_of(&path), 0o640);
        let fresh = dir.path().join("fresh");
        drop(open_for_writing(&fresh, 0o600, Existing::Truncate).expect("create"));
        assert_eq!(mode_of(&fresh), 0o600);
    }

    #[test]
    fn a_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        std::fs::write(&target, "precious\n").expect("write");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let link = dir.path().join("link");
        symlink(&target, &link).expect("symlink");
        for existing in [Existing::Append, Existing::Truncate] {
            let e = open_for_writing(&link, 0o600, existing).expect_err("a symlink");
            assert!(e.to_string().starts_with("is a symbolic link"), "{e}");
        }
        assert_eq!(
            std::fs::read_to_string(&target).expect("read"),
            "precious\n"
        );
        assert_eq!(mode_of(&target), 0o644);
        // A dangling link is not followed to create its target either.
        let dangling = dir.path().join("dangling");
        symlink(dir.path().join("nowhere"), &dangling).expect("symlink");
        assert!(open_for_writing(&dangling, 0o600, Existing::Truncate).is_err());
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let e = open_for_writing(&fifo, 0o600, Existing::Append).expect_err("no reader");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // With a reader present the open succeeds, and fstat refuses it.
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("reader");
        let e = open_for_writing(&fifo, 0o600, Existing::Truncate).expect_err("a FIFO");
        assert!(
            e.to_string().starts_with("is a FIFO, not a regular file"),
            "{e}"
        );
    }

    #[test]
    fn directories_devices_and_hard_links_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(open_for_writing(dir.path(), 0o600, Existing::Append).is_err());
        let e = open_for_writing(Path::new("/dev/null"), 0o600, Existing::Append)
            .expect_err("a device");
        assert!(e.to_string().contains("character device"), "{e}");
        let original = dir.path().join("original");
        std::fs::write(&original, "keep\n").expect("write");
        let second = dir.path().join("second");
        std::fs::hard_link(&original, &second).expect("link");
        let e = open_for_writing(&second, 0o600, Existing::Truncate).expect_err("hard link");
        assert!(e.to_string().contains("2 hard links"), "{e}");
        assert_eq!(std::fs::read_to_string(&original).expect("read"), "keep\n");
    }

    /// A file under a fresh directory, owned by root with mode 0644 (the directory 0755).
    fn root_file(dir: &Path) -> PathBuf {
        let file = dir.join("rules.json");
        std::fs::write(&file, "[]").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        file
    }

    fn check(path: &Path) -> Result<(), Untrusted> {
        check_trusted(path, &std::fs::metadata(path).expect("meta"), "rule file")
    }

    #[test]
    fn group_or_other_writable_files_are_untrusted() {
        if !strict_modes() {
            return; // the files below are not root's
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = root_file(dir.path());
        check(&file).expect("root, 0644");
        for (mode, writers) in [
            (0o664, "its group change it"),
            (0o646, "all users change it"),
            (0o666, "its group and all users"),
        ] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let e = check(&file).expect_err("writable");
            let text = e.to_string();
            assert!(text.starts_with(&format!("{}: refusing to use this rule file as root: its mode {mode:04o} lets {writers}", file.display())), "{text}");
            assert!(text.contains("(owner root (uid 0))"), "{text}");
            assert!(
                text.ends_with(&format!("fix: sudo chmod go-w {}", file.display())),
                "{text}"
            );
        }
    }

    #[test]
    fn files_not_owned_by_root_are_untrusted() {
        if !strict_modes() {
            return; // chown needs root
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = root_file(dir.path());
        std::os::unix::fs::chown(&file, Some(65534), Some(65534)).expect("chown");
        let e = check(&file).expect_err("nobody's");
        let text = e.to_string();
        assert!(
            text.contains("it is owned by nobody (uid 65534), not root (mode 0644)"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "fix: sudo chown root:root {0} && sudo chmod go-w {0}",
                file.display()
            )),
            "{text}"
        );
    }

    #[test]
    fn the_executables_owner_is_trusted_like_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("rules.json");
        std::fs::write(&file, b"[]").expect("write");
        let meta = std::fs::metadata(&file).expect("metadata");
        let owner = meta.uid();
        // Owned by the program's owner: trusted; by anyone else: not.
        check_trusted_by(&file, &meta, "rule file", &[0, owner]).expect("the owner is trusted");
        let other = owner.wrapping_add(1);
        let refused = check_trusted_by(&file, &meta, "rule file", &[other])
            .expect_err("another owner is not");
        assert!(refused.reason.contains("it is owned by"), "{refused}");
    }

    #[test]
    fn ancestors_are_checked_and_sticky_directories_allowed() {
        if !strict_modes() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = root_file(dir.path());
        // Under /tmp (sticky, world-writable): fine.
        check_trusted_ancestors(&file, "rule file").expect("a root 0755 dir under /tmp");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let e = check_trusted_ancestors(&file, "rule file").expect_err("world-writable parent");
        assert!(
            e.to_string().contains("directory holding the rule file"),
            "{e}"
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777))
            .expect("chmod");
        check_trusted_ancestors(&file, "rule file").expect("sticky, like /tmp");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o775))
            .expect("chmod");
        assert!(
            check_trusted_ancestors(&file, "rule file").is_err(),
            "group-writable"
        );
    }

    #[test]
    fn fixes_quote_odd_paths() {
        assert_eq!(
            shell_quote(Path::new("/etc/secmon/a.json")),
            "/etc/secmon/a.json"
        );
        assert_eq!(shell_quote(Path::new("/tmp/a b'c")), "'/tmp/a b'\\''c'");
    }
}
