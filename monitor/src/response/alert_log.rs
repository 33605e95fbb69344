//! JSON-lines log files (`log_file`, `alert_log`): created with mode 0600 (an existing file is
//! tightened to 0600 too: lines carry command lines, which may hold secrets), never followed
//! through a symbolic link, and rotated by size: `FILE` → `FILE.1` → … → `FILE.{ROTATED}`, the
//! oldest dropped.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

/// How many rotated files are kept next to the live one.
pub const ROTATED: usize = 3;
/// Buffered bytes before a write reaches the file (flushed after every batch anyway).
const BUFFER: usize = 64 * 1024;

/// One JSON-lines file with size-based rotation.
pub struct JsonLog {
    path: PathBuf,
    file: BufWriter<File>,
    /// Bytes in the file, including what is still buffered.
    size: u64,
    /// Rotate before a line would take the file past this (0: never).
    max_bytes: u64,
    /// Lines that could not be written (reported once per burst by the caller).
    pub errors: u64,
}

/// A log shared by the response layer and the enforcement audit (the alert log).
pub type SharedLog = Arc<Mutex<JsonLog>>;

impl JsonLog {
    /// Opens (creating, mode 0600) `path` for appending; its directory is created (0700) if
    /// missing. `max_mb` 0 turns rotation off.
    pub fn open(path: &Path, max_mb: u64) -> io::Result<JsonLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let file = open_file(path)?;
        let size = file.metadata()?.len();
        Ok(JsonLog {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(BUFFER, file),
            size,
            max_bytes: max_mb.saturating_mul(1024 * 1024),
            errors: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line (a newline is added), rotating first when it would not fit.
    pub fn append(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.max_bytes > 0 && self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    /// Appends a line and writes it through at once (enforcement records).
    pub fn append_now(&mut self, line: &str) -> io::Result<()> {
        self.append(line)?;
        self.flush()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// `FILE.{n-1}` → `FILE.{n}` …, `FILE` → `FILE.1`, then a fresh `FILE`.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        for n in (1..ROTATED).rev() {
            let from = rotated_name(&self.path, n);
            if from.exists() {
                fs::rename(&from, rotated_name(&self.path, n + 1))?;
            }
        }
        fs::rename(&self.path, rotated_name(&self.path, 1))?;
        self.file = BufWriter::with_capacity(BUFFER, open_file(&self.path)?);
        self.size = 0;
        Ok(())
    }

    /// Wraps the log for sharing.
    pub fn shared(self) -> SharedLog {
        Arc::new(Mutex::new(self))
    }
}

impl Drop for JsonLog {
    fn drop(&mut self) {
        let _ = self.file.flush();
    }
}

/// Locks a shared log (a panic elsewhere never disables logging).
pub fn lock(log: &SharedLog) -> std::sync::MutexGuard<'_, JsonLog> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `FILE.n`.
pub fn rotated_name(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn open_file(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if meta.permissions().mode() & 0o777 != 0o600 {
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_0600_and_appends_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/alerts.jsonl");
        let mut log = JsonLog::open(&path, 1).expect("open");
        log.append(r#"{"a":1}"#).expect("append");
        log.append_now(r#"{"a":2}"#).expect("append");
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(dir.path().join("sub"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        drop(log);
        // Reopening appends, and tightens a file someone loosened.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut log = JsonLog::open(&path, 1).expect("reopen");
        log.append_now("{}").expect("append");
        assert_eq!(fs::read_to_string(&path).expect("read").lines().count(), 3);
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn rotates_by_size_and_keeps_three() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.jsonl");
        let mut log = JsonLog::open(&path, 1).expect("open");
        let line = "x".repeat(300 * 1024);
        for _ in 0..6 {
            log.append(&line).expect("append");
        }
        log.flush().expect("flush");
        // 3 lines of 300 KiB fit in 1 MiB: 6 lines make FILE (3) + FILE.1 (3).
        assert_eq!(fs::read_to_string(&path).expect("read").lines().count(), 3);
        assert!(rotated_name(&path, 1).exists());
        assert!(!rotated_name(&path, 2).exists());
        for _ in 0..12 {
            log.append(&line).expect("append");
        }
        log.flush().expect("flush");
        assert!(rotated_name(&path, 3).exists());
        assert!(
            !rotated_name(&path, 4).exists(),
            "only {ROTATED} rotations kept"
        );
        for n in 1..=ROTATED {
            let mode = fs::metadata(rotated_name(&path, n))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn zero_means_no_rotation_and_symlinks_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.jsonl");
        let mut log = JsonLog::open(&path, 0).expect("open");
        let line = "y".repeat(1024 * 1024);
        for _ in 0..3 {
            log.append(&line).expect("append");
        }
        log.flush().expect("flush");
        assert!(!rotated_name(&path, 1).exists());

        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        assert!(
            JsonLog::open(&link, 1).is_err(),
            "a symlink is not followed"
        );
    }
}
