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
use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

/// What happens to what an existing file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Writes go to the end (logs, the database).
    Append,
    /// The file is emptied once it passed the checks (recordings).
    Truncate,
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
        // SAFETY: a valid NUL-terminated path.
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
}
