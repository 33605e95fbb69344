//! The controller's audit log: every state change a client made (probe and rule switches,
//! reloads, blocks and unblocks, logins that failed), one JSON object per line, with the
//! client's address. Also said as a notice, so the operator at the terminal sees it.
//!
//! Refusals of requests nobody authenticated (another web origin) come from whoever can reach
//! the port, as fast as they like: [`AuditLog::record_refusal`] writes at most
//! [`REFUSALS_LOGGED`] a minute per client address and [`ALL_REFUSALS_LOGGED`] in all, so
//! that they fill neither the disk nor the operator's terminal.
use std::{
    fs,
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use chrono::Utc;
use serde_json::json;

use super::window::{PerClient, Window};
use crate::secure_fs;

/// Refusals written per client address and [`REFUSAL_WINDOW`]; past them, one line says the
/// rest go unwritten.
pub const REFUSALS_LOGGED: u32 = 20;
/// Refusals written per [`REFUSAL_WINDOW`] from all addresses together (many addresses are
/// easy to have: all of 127.0.0.0/8 reaches a loopback listener).
pub const ALL_REFUSALS_LOGGED: u32 = 200;
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(60);

pub struct AuditLog {
    path: PathBuf,
    file: Mutex<Option<fs::File>>,
    refusals: Mutex<Refusals>,
}

impl AuditLog {
    /// Opens (creates `0600`, appends to) the log; its directory is created `0700`.
    pub fn open(path: &Path) -> Result<AuditLog, String> {
        secure_fs::create_private_parent(path)
            .map_err(|e| format!("{}: cannot create its directory: {e}", path.display()))?;
        // Written as root where the config says: no symbolic link, FIFO or hard link followed.
        let file = secure_fs::open_for_writing(path, 0o600, secure_fs::Existing::Append)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(Some(file)),
            refusals: Mutex::new(Refusals::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `action` by `client`: `outcome` is what happened (or why it was refused).
    pub fn record(&self, client: SocketAddr, action: &str, target: &str, ok: bool, outcome: &str) {
        self.record_as(&client.to_string(), action, target, ok, outcome);
    }

    /// [`AuditLog::record`] for a client named otherwise than by an address (a NATS control
    /// request: `nats:<subject>`).
    pub fn record_as(&self, client: &str, action: &str, target: &str, ok: bool, outcome: &str) {
        let line = json!({
            "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "client": client,
            "action": action,
            "target": target,
            "ok": ok,
            "outcome": outcome,
        });
        // Targets come from clients (a rule name, a path to block): no escape sequence of
        // theirs reaches the terminal. (The JSON line escapes them.)
        let said = crate::sanitize::for_terminal(&format!(
            "controller: {client} {action} {target}: {}{outcome}",
            if ok { "" } else { "refused: " }
        ))
        .into_owned();
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

    /// Records a refused request, unless `client`'s address had [`REFUSALS_LOGGED`] written in
    /// the current window already, or all addresses together [`ALL_REFUSALS_LOGGED`] (the
    /// last line written says so).
    pub fn record_refusal(&self, client: SocketAddr, action: &str, target: &str, outcome: &str) {
        let (mine, all) = {
            let mut refusals = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
            let mine = refusals.by_client.bump(client.ip());
            // A refusal one address may not write does not use up everyone's.
            let all = if mine <= REFUSALS_LOGGED {
                refusals.all.bump(REFUSAL_WINDOW)
            } else {
                refusals.all.current(REFUSAL_WINDOW)
            };
            (mine, all)
        };
        if mine > REFUSALS_LOGGED || all > ALL_REFUSALS_LOGGED {
            return;
        }
        let outcome = if all == ALL_REFUSALS_LOGGED {
            format!("{outcome} (further refusals go unwritten for the rest of the minute)")
        } else if mine == REFUSALS_LOGGED {
            format!(
                "{outcome} (further refusals from {} go unwritten for the rest of the minute)",
                client.ip()
            )
        } else {
            outcome.to_string()
        };
        self.record(client, action, target, false, &outcome);
    }
}

/// Refusals counted per client address and from all addresses together.
struct Refusals {
    all: Window,
    by_client: PerClient,
}

impl Refusals {
    fn new() -> Refusals {
        Refusals {
            all: Window::new(),
            by_client: PerClient::new(REFUSAL_WINDOW),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_written_up_to_a_bound_per_address() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("logs/audit.log");
        let log = AuditLog::open(&path)?;
        let (noisy, other): (SocketAddr, SocketAddr) =
            ("127.0.0.5:4000".parse()?, "127.0.0.6:4000".parse()?);
        for _ in 0..REFUSALS_LOGGED + 30 {
            log.record_refusal(noisy, "request", "/api/v1/rules/reload", "cross-origin");
        }
        log.record_refusal(other, "request", "/x", "cross-origin");
        log.record(noisy, "reload rules", "", true, "46 rules");
        let text = fs::read_to_string(&path)?;
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let from = |ip: &str| {
            lines
                .iter()
                .filter(|l| l["client"].as_str().is_some_and(|c| c.starts_with(ip)))
                .count()
        };
        assert_eq!(from("127.0.0.5:"), REFUSALS_LOGGED as usize + 1, "{text}");
        assert_eq!(from("127.0.0.6:"), 1, "{text}");
        assert!(text.contains("go unwritten"), "{text}");

        // Many addresses: the total is bounded too.
        for n in 0..2 * ALL_REFUSALS_LOGGED {
            let [_, _, a, b] = (0x7f00_0000u32 + 0x100 + n).to_be_bytes();
            let client = SocketAddr::from(([127, 1, a, b], 4000));
            log.record_refusal(client, "request", "/x", "cross-origin");
        }
        let written = fs::read_to_string(&path)?.lines().count();
        assert!(
            written <= ALL_REFUSALS_LOGGED as usize + 2,
            "{written} lines written"
        );
        Ok(())
    }

    #[test]
    fn notices_and_lines_keep_escape_sequences_harmless() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path)?;
        let mut notices = crate::notice::subscribe(1024, crate::notice::Terminal::Shared);
        let target = "exec /tmp/audit-escape-test\x1b]0;owned\x07\x1b[2J\n";
        log.record("127.0.0.1:1".parse()?, "block", target, false, "no");
        let text = fs::read_to_string(&path)?;
        assert_eq!(text.lines().count(), 1, "one line: {text:?}");
        assert!(!text.contains('\x1b'), "{text:?}");
        let said = std::iter::from_fn(|| notices.try_recv())
            .map(|n| n.to_string())
            .find(|n| n.contains("audit-escape-test"))
            .ok_or("no notice")?;
        assert!(!said.chars().any(char::is_control), "{said:?}");
        Ok(())
    }
}
