//! The control socket: a Unix stream socket (default `/run/secmon/control.sock`, mode 0600 in
//! a 0700 directory, and every peer's credentials checked: root or the monitor's own user only)
//! through which `secmon-tui block list|add|remove` manage the running monitor's deny entries.
//! Opened only while `[response] enforce = true`.
//!
//! Protocol: line-delimited JSON, one reply line per request line.
//!
//! ```text
//! → {"op":"list"}
//! ← {"ok":true,"denies":[{"id":1,"kind":"exec_path","value":"/tmp/x",…}]}
//! → {"op":"add","target":{"exec":"/tmp/x"},"ttl_secs":600,"reason":"dropper"}
//! ← {"ok":true,"deny":{"id":2,…}}
//! → {"op":"remove","id":2}
//! ← {"ok":true,"deny":{"id":2,…}}
//! ← {"ok":false,"error":"no deny entry with id 9"}
//! ```
//!
//! `target` is `{"exec": PATH_OR_NAME}` (a `/` makes it a path) or `{"connect": ADDR}` with
//! `ADDR` one of `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80` (no port: every port).
use std::{
    fs,
    io::{self, BufRead, BufReader, Read, Write},
    net::{IpAddr, SocketAddr},
    os::unix::{
        fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
        net::UnixStream as StdUnixStream,
    },
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader},
    net::{UnixListener, UnixStream},
    task::JoinHandle,
};

use super::enforce::{DenyRecord, Enforcer, Origin};
use crate::capture::enforce::DenyTarget;

/// Longest request line accepted.
const MAX_LINE: usize = 16 * 1024;
/// A client idle for this long is disconnected.
const IDLE: Duration = Duration::from_secs(30);

/// A request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    List,
    Add {
        target: TargetSpec,
        /// Seconds until it lapses; absent: the config's `deny_ttl_secs`; 0: never.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_secs: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Remove {
        id: u32,
    },
}

/// What to deny, as written on the command line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetSpec {
    /// A program: a path (contains `/`) or a name.
    Exec(String),
    /// A destination: `ADDR`, `ADDR:PORT` or `[V6]:PORT`.
    Connect(String),
}

impl TargetSpec {
    pub fn resolve(&self) -> Result<DenyTarget, String> {
        match self {
            TargetSpec::Exec(what) if what.is_empty() => Err("empty program".to_string()),
            TargetSpec::Exec(what) if what.contains('/') => {
                if what.starts_with('/') {
                    DenyTarget::exec_path(what).map_err(|e| e.to_string())
                } else {
                    Err(format!(
                        "{what}: give an absolute path (the kernel compares normalised absolute \
                         paths) or a bare program name"
                    ))
                }
            }
            TargetSpec::Exec(name) => Ok(DenyTarget::ExecName(name.clone())),
            TargetSpec::Connect(addr) => parse_destination(addr)
                .map(|(ip, port)| DenyTarget::Connect(ip, port))
                .ok_or_else(|| {
                    format!("{addr:?} is not an address (1.2.3.4, 1.2.3.4:80, ::1 or [::1]:80)")
                }),
        }
    }
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80` → address and port (0: every port).
pub fn parse_destination(text: &str) -> Option<(IpAddr, u16)> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some((ip, 0));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some((addr.ip(), addr.port()));
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(|ip| (ip, 0))
}

/// A reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `list`: the live entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denies: Option<Vec<DenyRecord>>,
    /// `add` and `remove`: the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<DenyRecord>,
}

impl Reply {
    fn error(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(message.into()),
            ..Reply::default()
        }
    }
}

/// Answers one request line (`peer` describes the client for the log).
pub fn handle_line(enforcer: &Enforcer, line: &str, peer: &str) -> Reply {
    let request: Request = match serde_json::from_str(line) {
        Ok(request) => request,
        Err(e) => return Reply::error(format!("bad request: {e}")),
    };
    match request {
        Request::List => Reply {
            ok: true,
            denies: Some(enforcer.list()),
            ..Reply::default()
        },
        Request::Add {
            target,
            ttl_secs,
            reason,
        } => {
            let target = match target.resolve() {
                Ok(target) => target,
                Err(e) => return Reply::error(e),
            };
            let ttl = match ttl_secs {
                None => enforcer.default_ttl(),
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
            };
            let origin = Origin {
                by: peer.to_string(),
                rule: None,
                reason: reason
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| "added by hand".to_string()),
            };
            match enforcer.block(target, ttl, origin) {
                Ok(record) => Reply {
                    ok: true,
                    deny: Some(record),
                    ..Reply::default()
                },
                Err(e) => Reply::error(e.to_string()),
            }
        }
        Request::Remove { id } => match enforcer.unblock(id, peer) {
            Ok(record) => Reply {
                ok: true,
                deny: Some(record),
                ..Reply::default()
            },
            Err(e) => Reply::error(e.to_string()),
        },
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{}: {message}", path.display())]
    Setup { path: PathBuf, message: String },
    #[error(
        "{}: no monitor is listening (is secmon running with [response] enforce = true? \
         see --socket and the config's control_socket): {error}",
        path.display()
    )]
    NotRunning { path: PathBuf, error: io::Error },
    #[error("{}: permission denied: the control socket is root-only (try sudo)", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("the monitor's answer is not valid: {0}")]
    BadReply(String),
}

/// The listening socket; dropping it (or [`ControlServer::stop`]) closes and removes it.
pub struct ControlServer {
    path: PathBuf,
    task: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` and serves requests on the current tokio runtime. A stale socket file is
    /// replaced; a live one (another monitor) or a file that is not a socket is an error.
    pub fn start(path: &Path, enforcer: Arc<Enforcer>) -> Result<ControlServer, ControlError> {
        let setup = |message: String| ControlError::Setup {
            path: path.to_path_buf(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| setup(format!("cannot create its directory: {e}")))?;
        }
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if StdUnixStream::connect(path).is_ok() {
                    return Err(setup(
                        "another monitor is listening there (stop it, or give this one another \
                         control_socket)"
                            .to_string(),
                    ));
                }
                fs::remove_file(path)
                    .map_err(|e| setup(format!("removing a stale socket: {e}")))?;
            }
            Ok(_) => return Err(setup("exists and is not a socket".to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(setup(e.to_string())),
        }
        let listener = UnixListener::bind(path).map_err(|e| setup(format!("bind: {e}")))?;
        // Peers are checked one by one as well, so the moment before the chmod does not matter.
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| setup(format!("chmod 0600: {e}")))?;
        let task = tokio::spawn(serve(listener, enforcer));
        Ok(ControlServer {
            path: path.to_path_buf(),
            task: Some(task),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops serving and removes the socket file.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn serve(listener: UnixListener, enforcer: Arc<Enforcer>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // EMFILE and the like: back off a little instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Some(peer) = allowed_peer(&stream) else {
            continue;
        };
        tokio::spawn(client(stream, enforcer.clone(), peer));
    }
}

/// `control socket (pid P, uid U)` for a peer that may use the socket: root or the monitor's
/// own effective user.
fn allowed_peer(stream: &UnixStream) -> Option<String> {
    let cred = stream.peer_cred().ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let uid = cred.uid();
    if uid != 0 && uid != me {
        return None;
    }
    Some(match cred.pid() {
        Some(pid) => format!("control socket (pid {pid}, uid {uid})"),
        None => format!("control socket (uid {uid})"),
    })
}

async fn client(stream: UnixStream, enforcer: Arc<Enforcer>, peer: String) {
    let (read, mut write) = stream.into_split();
    let mut lines = AsyncBufReader::new(read.take(MAX_LINE as u64 * 64)).lines();
    loop {
        let line = match tokio::time::timeout(IDLE, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            _ => return,
        };
        if line.trim().is_empty() {
            continue;
        }
        let reply = if line.len() > MAX_LINE {
            Reply::error(format!("request longer than {MAX_LINE} bytes"))
        } else {
            handle_line(&enforcer, &line, &peer)
        };
        let Ok(mut text) = serde_json::to_string(&reply) else {
            return;
        };
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Sends one request to the monitor listening on `path` and returns its reply (the CLI side).
pub fn request(path: &Path, request: &Request) -> Result<Reply, ControlError> {
    let io_error = |error: io::Error| ControlError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut stream = StdUnixStream::connect(path).map_err(|error| match error.kind() {
        io::ErrorKind::PermissionDenied => ControlError::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => ControlError::NotRunning {
            path: path.to_path_buf(),
            error,
        },
    })?;
    let timeout = Some(Duration::from_secs(10));
    stream.set_read_timeout(timeout).map_err(io_error)?;
    stream.set_write_timeout(timeout).map_err(io_error)?;
    let mut text =
        serde_json::to_string(request).map_err(|e| ControlError::BadReply(e.to_string()))?;
    text.push('\n');
    stream.write_all(text.as_bytes()).map_err(io_error)?;
    let mut line = String::new();
    let n = BufReader::new(&stream)
        .take(MAX_LINE as u64 * 1024)
        .read_line(&mut line)
        .map_err(io_error)?;
    if n == 0 {
        return Err(ControlError::BadReply(
            "the monitor closed the connection (is this user allowed? root only)".to_string(),
        ));
    }
    serde_json::from_str(&line).map_err(|e| ControlError::BadReply(e.to_string()))
}

/// Writes `block list` output: one entry per line.
pub fn write_list(out: &mut impl Write, denies: &[DenyRecord]) -> io::Result<()> {
    if denies.is_empty() {
        return writeln!(out, "no deny entries");
    }
    writeln!(
        out,
        "{:>4}  {:<40}  {:<20}  {:<30}  WHY",
        "ID", "TARGET", "EXPIRES", "BY"
    )?;
    for d in denies {
        let expires = d.expires.map_or_else(
            || "never".to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        );
        let why = match &d.rule {
            Some(rule) => format!("rule {rule}: {}", d.reason),
            None => d.reason.clone(),
        };
        writeln!(
            out,
            "{:>4}  {:<40}  {:<20}  {:<30}  {}",
            d.id,
            crate::sanitize::for_terminal(&d.target),
            expires,
            crate::sanitize::for_terminal(&d.by),
            crate::sanitize::for_terminal(&why)
        )?;
    }
    Ok(())
}

/// One line describing an entry (for `block add` and `remove`).
pub fn describe(d: &DenyRecord) -> String {
    let expires = d.expires.map_or_else(
        || "never expires".to_string(),
        |t| format!("expires {}", t.format("%Y-%m-%d %H:%M:%SZ")),
    );
    crate::sanitize::for_terminal(&format!("#{} {} ({expires})", d.id, d.target)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_json_form() {
        let add = Request::Add {
            target: TargetSpec::Connect("127.0.0.1:8080".to_string()),
            ttl_secs: Some(60),
            reason: None,
        };
        let text = serde_json::to_string(&add).expect("json");
        assert_eq!(
            text,
            r#"{"op":"add","target":{"connect":"127.0.0.1:8080"},"ttl_secs":60}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).expect("parse"), add);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"list"}"#).expect("list"),
            Request::List
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"remove","id":3}"#).expect("remove"),
            Request::Remove { id: 3 }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"flush"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"remove","id":3,"x":1}"#).is_err());
    }

    #[test]
    fn targets_resolve() {
        let exec = |s: &str| TargetSpec::Exec(s.to_string()).resolve();
        let connect = |s: &str| TargetSpec::Connect(s.to_string()).resolve();
        assert_eq!(
            exec("/tmp/x"),
            Ok(DenyTarget::ExecPath("/tmp/x".to_string()))
        );
        assert_eq!(exec("nc"), Ok(DenyTarget::ExecName("nc".to_string())));
        assert!(exec("./x").is_err());
        assert!(exec("").is_err());
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        let lo6: IpAddr = "::1".parse().expect("ip");
        assert_eq!(connect("127.0.0.1:80"), Ok(DenyTarget::Connect(lo, 80)));
        assert_eq!(connect("127.0.0.1"), Ok(DenyTarget::Connect(lo, 0)));
        assert_eq!(connect("[::1]:443"), Ok(DenyTarget::Connect(lo6, 443)));
        assert_eq!(connect("::1"), Ok(DenyTarget::Connect(lo6, 0)));
        assert_eq!(connect("[::1]"), Ok(DenyTarget::Connect(lo6, 0)));
        assert!(connect("localhost:80").is_err());
        assert!(connect("127.0.0.1:99999").is_err());
    }

    #[test]
    fn list_output() {
        let mut out = Vec::new();
        write_list(&mut out, &[]).expect("write");
        assert_eq!(String::from_utf8_lossy(&out), "no deny entries\n");
        let record = DenyRecord {
            id: 7,
            kind: "exec_path".to_string(),
            value: "/tmp/x".to_string(),
            target: "exec path /tmp/x".to_string(),
            created: chrono::DateTime::UNIX_EPOCH,
            expires: None,
            by: "pid 1 uid 0 (/tmp/x)".to_string(),
            rule: Some("r".to_string()),
            reason: "Bad\u{1b}[31m".to_string(),
        };
        let mut out = Vec::new();
        write_list(&mut out, std::slice::from_ref(&record)).expect("write");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("exec path /tmp/x"), "{text}");
        assert!(text.contains("rule r: Bad"), "{text}");
        assert!(!text.contains('\u{1b}'), "escapes are neutralised: {text}");
        assert_eq!(describe(&record), "#7 exec path /tmp/x (never expires)");
    }
}
