//! Who may use the controller: one access token (256 random bits, in a root-only file), sent
//! by API clients as `Authorization: Bearer`, and exchanged once by a browser for a session
//! cookie (`HttpOnly`, `SameSite=Strict`) that carries a CSRF token of its own. Comparisons are
//! constant-time; failed attempts are counted per client address and, past
//! [`FAILURES_ALLOWED`] a minute, refused before the token is even looked at.
use std::{
    collections::HashMap,
    fs,
    io::{self, Write},
    net::IpAddr,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use subtle::ConstantTimeEq;

use super::window::PerClient;

/// Bytes of randomness in the access token and in each session id.
const TOKEN_BYTES: usize = 32;
/// Failed attempts a client address may make per [`FAILURE_WINDOW`].
pub const FAILURES_ALLOWED: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// A browser session lasts this long after its last use.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once (the oldest goes first): a bound, not a feature.
const MAX_SESSIONS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("cannot read random bytes for a token: {0}")]
    Random(String),
}

/// New random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String, TokenError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The token in `path`, or a new one written there (`0600`, its directory `0700` if created).
/// Returns the token and whether it was created. A file readable by others is refused: anyone
/// who can read it can stop programs on this machine.
pub fn load_or_create_token(path: &Path) -> Result<(String, bool), TokenError> {
    let fail = |message: String| TokenError::File {
        path: path.to_path_buf(),
        message,
    };
    match fs::metadata(path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(fail(format!(
                    "the token file is readable or writable by other users (mode {:o}); \
                     chmod 600 it, or delete it to have a new token made",
                    meta.permissions().mode() & 0o777
                )));
            }
            let text = fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
            let token = text.trim().to_string();
            if token.len() < 32 || !token.chars().all(|c| c.is_ascii_graphic()) {
                return Err(fail(
                    "does not hold a token (at least 32 printable characters on one line); \
                     delete it to have a new one made"
                        .to_string(),
                ));
            }
            Ok((token, false))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            crate::secure_fs::create_private_parent(path)
                .map_err(|e| fail(format!("cannot create its directory: {e}")))?;
            let token = random_hex(TOKEN_BYTES)?;
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| fail(format!("cannot create it: {e}")))?;
            writeln!(file, "{token}").map_err(|e| fail(e.to_string()))?;
            Ok((token, true))
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// A browser's session.
struct Session {
    csrf: String,
    last_used: Instant,
}

/// What a credential check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `Authorization: Bearer` with the token (an API client).
    Bearer,
    /// A browser session; its CSRF token must come with every state change.
    Session { csrf: String },
}

pub struct Auth {
    token: String,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<PerClient>,
}

impl Auth {
    pub fn new(token: String) -> Auth {
        Auth {
            token,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(PerClient::new(FAILURE_WINDOW)),
        }
    }

    /// Whether `given` is the token (constant-time in the token's content).
    pub fn token_matches(&self, given: &str) -> bool {
        let (a, b) = (given.as_bytes(), self.token.as_bytes());
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }

    /// The session `id` names, if live (its idle clock restarts).
    pub fn session(&self, id: &str) -> Option<Identity> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        sessions.retain(|_, s| now.duration_since(s.last_used) < SESSION_IDLE);
        // Looked up by iterating with a constant-time comparison: the id is a secret too.
        let session = sessions
            .iter_mut()
            .find(|(key, _)| {
                key.len() == id.len() && bool::from(key.as_bytes().ct_eq(id.as_bytes()))
            })
            .map(|(_, s)| s)?;
        session.last_used = now;
        Some(Identity::Session {
            csrf: session.csrf.clone(),
        })
    }

    /// A new session: its id (the cookie) and its CSRF token.
    pub fn open_session(&self) -> Result<(String, String), TokenError> {
        let id = random_hex(TOKEN_BYTES)?;
        let csrf = random_hex(TOKEN_BYTES)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                last_used: Instant::now(),
            },
        );
        Ok((id, csrf))
    }

    pub fn close_session(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// Whether `client` has used up its failed attempts for now.
    pub fn is_locked_out(&self, client: IpAddr) -> bool {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.current(client) >= FAILURES_ALLOWED
    }

    /// Counts a failed attempt; returns how many `client` made in the current window.
    pub fn record_failure(&self, client: IpAddr) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bump(client)
    }
}

/// Whether `given` is the session's CSRF token (constant-time).
pub fn csrf_matches(expected: &str, given: &str) -> bool {
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::window::MAX_TRACKED_CLIENTS;
    use super::*;

    #[test]
    fn a_token_is_made_once_root_only_and_then_reused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sub/controller.token");
        let (token, created) = load_or_create_token(&path)?;
        assert!(created);
        assert_eq!(token.len(), 64);
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        let (again, created) = load_or_create_token(&path)?;
        assert!(!created);
        assert_eq!(token, again);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        let refused = load_or_create_token(&path);
        assert!(
            matches!(&refused, Err(e) if e.to_string().contains("readable or writable by other")),
            "{refused:?}"
        );
        Ok(())
    }

    #[test]
    fn failures_lock_a_client_out_for_the_window() {
        let auth = Auth::new("x".repeat(64));
        let client: IpAddr = [127, 0, 0, 9].into();
        for _ in 0..FAILURES_ALLOWED - 1 {
            auth.record_failure(client);
        }
        assert!(!auth.is_locked_out(client));
        auth.record_failure(client);
        assert!(auth.is_locked_out(client));
        assert!(!auth.is_locked_out([127, 0, 0, 10].into()));
    }

    #[test]
    fn failures_from_many_addresses_stay_bounded() {
        let auth = Auth::new("x".repeat(64));
        for n in 0..MAX_TRACKED_CLIENTS as u32 + 100 {
            auth.record_failure(std::net::Ipv4Addr::from(0x7f00_0000 + n).into());
        }
        let tracked = auth
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tracked();
        assert!(tracked <= MAX_TRACKED_CLIENTS, "{tracked}");
    }

    #[test]
    fn sessions_are_found_by_id_and_closed() -> Result<(), TokenError> {
        let auth = Auth::new("t".repeat(64));
        let (id, csrf) = auth.open_session()?;
        assert_eq!(auth.session(&id), Some(Identity::Session { csrf }));
        assert_eq!(auth.session("nope"), None);
        auth.close_session(&id);
        assert_eq!(auth.session(&id), None);
        assert!(auth.token_matches(&"t".repeat(64)));
        assert!(!auth.token_matches(&"t".repeat(63)));
        Ok(())
    }
}
