//! The controller's audit log: every state change a client made (probe and rule switches,
//! reloads, blocks and unblocks, logins that failed), one JSON object per line, with the
//! client's address. Also said as a notice, so the operator at the terminal sees it.
use std::{
    fs,
    io::Write,
    net::SocketAddr,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
};

use chrono::Utc;
use serde_json::json;

pub struct AuditLog {
    path: PathBuf,
    file: Mutex<Option<fs::File>>,
}

impl AuditLog {
    /// Opens (creates `0600`, appends to) the log; its directory is created `0700`.
    pub fn open(path: &Path) -> Result<AuditLog, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("{}: cannot create its directory: {e}", path.display()))?;
        }
        let file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(Some(file)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `action` by `client`: `outcome` is what happened (or why it was refused).
    pub fn record(&self, client: SocketAddr, action: &str, target: &str, ok: bool, outcome: &str) {
        let line = json!({
            "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "client": client.to_string(),
            "action": action,
            "target": target,
            "ok": ok,
            "outcome": outcome,
        });
        let said = format!(
            "controller: {client} {action} {target}: {}{outcome}",
            if ok { "" } else { "refused: " }
        );
        if ok {
            crate::notice::info(said);
        } else {
            crate::notice::warn(said);
        }
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = file.as_mut()
            && writeln!(f, "{line}").is_err()
        {
            crate::notice::warn(format!(
                "controller: cannot write the audit log {}; audit lines go only to the notices \
                 from now on",
                self.path.display()
            ));
            *file = None;
        }
    }
}
