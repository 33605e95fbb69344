//! JSON-lines log files (`log_file`, `alert_log`): created with mode 0600 (an existing file is
//! tightened to 0600 too: lines carry command lines, which may hold secrets), never followed
//! through a symbolic link, and rotated by size: `FILE` → `FILE.1` → … → `FILE.{ROTATED}`, the
//! oldest dropped.
use std::{
    fs::{self, File},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use crate::secure_fs;

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
        secure_fs::create_private_parent(path)?;
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

/// Appends to `path` (created 0600); symbolic links, FIFOs and other non-regular files are
/// refused, and the mode is set on the open file ([`secure_fs::open_for_writing`]).
fn open_file(path: &Path) -> io::Result<File> {
    secure_fs::open_for_writing(path, 0o600, secure_fs::Existing::Append)
}
