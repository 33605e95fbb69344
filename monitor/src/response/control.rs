//! The control socket: a Unix stream socket (default `/run/secmon/control.sock`, mode 0600 in
//! a 0700 directory, and every peer's credentials checked with `SO_PEERCRED`: root only)
//! through which `secmon-tui block list|add|remove` manage the running monitor's deny entries.
//! Opened only while `[response] enforce = true`. A request line is at most [`MAX_LINE`] bytes
//! (a longer one gets an error and the connection is closed), a client silent for [`IDLE`] is
//! disconnected, and at most [`MAX_CLIENTS`] are served at once.
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
        fs::{FileTypeExt, PermissionsExt},
        net::UnixStream as StdUnixStream,
    },
    path::{Path, PathBuf},
    sync::Arc,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{
        AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
        BufReader as AsyncBufReader,
    },
    net::{UnixListener, UnixStream},
    sync::Semaphore,
    task::JoinHandle,
};

use super::enforce::{DenyRecord, Enforcer, Origin, ttl_from_secs};
use crate::capture::enforce::DenyTarget;

/// Longest request line accepted, in bytes.
pub const MAX_LINE: usize = 16 * 1024;
/// A client that sends nothing (or reads no reply) for this long is disconnected.
pub const IDLE: Duration = Duration::from_secs(10);
/// Clients served at once; more are closed at once.
pub const MAX_CLIENTS: usize = 16;
/// Refused peers reported on stderr (then only counted).
const REPORTED_REFUSALS: u64 = 5;

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
    match serde_json::from_str(line) {
        Ok(request) => handle(enforcer, request, peer),
        Err(e) => Reply::error(format!("bad request: {e}")),
    }
}

/// Answers one request (the control socket's, or the web controller's): the enforcer's own
/// checks (protected set, allowlist, limits) apply whoever asks.
pub fn handle(enforcer: &Enforcer, request: Request, peer: &str) -> Reply {
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
            let ttl = match ttl_secs.map(ttl_from_secs) {
                None => enforcer.default_ttl(),
                Some(Ok(ttl)) => ttl,
                Some(Err(e)) => return Reply::error(e.to_string()),
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
        crate::secure_fs::create_private_parent(path)
            .map_err(|e| setup(format!("cannot create its directory: {e}")))?;
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
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let refused = AtomicU64::new(0);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // EMFILE and the like: back off a little instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let peer = match peer_of(&stream) {
            Ok(peer) => peer,
            Err(why) => {
                if refused.fetch_add(1, Ordering::Relaxed) < REPORTED_REFUSALS {
                    crate::notice::warn(format!("control socket: refused a client: {why}"));
                }
                // One line saying why, then the connection is closed; nothing it sent is read.
                tokio::spawn(refuse(stream, why));
                continue;
            }
        };
        // Dropping the stream closes it: a client over the limit gets EOF.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let enforcer = enforcer.clone();
        tokio::spawn(async move {
            client(stream, &enforcer, &peer).await;
            drop(slot);
        });
    }
}

/// `control socket (pid P, uid 0)` for a peer that may use the socket (root only: its
/// credentials come from the kernel, `SO_PEERCRED`), or why not.
fn peer_of(stream: &UnixStream) -> Result<String, String> {
    let cred = stream
        .peer_cred()
        .map_err(|e| format!("cannot read its credentials: {e}"))?;
    let uid = cred.uid();
    if !peer_allowed(uid) {
        return Err(format!("uid {uid} (root only)"));
    }
    Ok(match cred.pid() {
        Some(pid) => format!("control socket (pid {pid}, uid {uid})"),
        None => format!("control socket (uid {uid})"),
    })
}

async fn refuse(mut stream: UnixStream, why: String) {
    let reply = Reply::error(format!(
        "permission denied: the control socket is root-only ({why})"
    ));
    if let Ok(mut text) = serde_json::to_string(&reply) {
        text.push('\n');
        let _ = tokio::time::timeout(IDLE, stream.write_all(text.as_bytes())).await;
    }
}

/// Only root may change what the kernel denies.
pub fn peer_allowed(uid: u32) -> bool {
    uid == 0
}

/// Serves one client until it closes, idles, or sends a line longer than [`MAX_LINE`].
pub async fn client<S: AsyncRead + AsyncWrite>(stream: S, enforcer: &Enforcer, peer: &str) {
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = AsyncBufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        // One byte more than allowed: a line that fills it has no end in sight.
        let mut limited = (&mut reader).take(MAX_LINE as u64 + 1);
        let read = tokio::time::timeout(IDLE, limited.read_until(b'\n', &mut line)).await;
        let too_long = match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => line.len() > MAX_LINE && line.last() != Some(&b'\n'),
        };
        let reply = if too_long {
            Reply::error(format!("request longer than {MAX_LINE} bytes"))
        } else {
            let text = String::from_utf8_lossy(&line);
            if text.trim().is_empty() {
                continue;
            }
            handle_line(enforcer, text.trim_end(), peer)
        };
        let Ok(mut text) = serde_json::to_string(&reply) else {
            return;
        };
        text.push('\n');
        match tokio::time::timeout(IDLE, write.write_all(text.as_bytes())).await {
            Ok(Ok(())) if !too_long => {}
            // A client that sent too much is not read further: the rest of its line would be
            // taken for requests.
            _ => return,
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
    // A monitor that refuses this client answers and closes at once, perhaps before the
    // request is written: its answer is read even when the write failed.
    let written = stream.write_all(text.as_bytes());
    let mut line = String::new();
    let read = BufReader::new(&stream)
        .take(MAX_LINE as u64 * 1024)
        .read_line(&mut line);
    let n = match (read, written) {
        (Ok(n), _) if n > 0 => n,
        (_, Err(e)) => return Err(io_error(e)),
        (read, Ok(())) => read.map_err(io_error)?,
    };
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

    use crate::response::enforce::{EnforcePolicy, testing::FakeTables};
    use crate::response::protect::Protected;
    use crate::response::simulate::Allowlist;

    fn enforcer() -> Enforcer {
        let mut set = Protected::default();
        set.add("/bin/sh", "a login shell (listed in /etc/shells)");
        set.add(
            "/usr/local/bin/secmon-tui",
            "secmon itself (it undoes blocks)",
        );
        let (_fake, tables) = FakeTables::shared();
        Enforcer::with_tables(
            tables,
            Allowlist::with_protected(&[], set),
            EnforcePolicy::default(),
            None,
        )
    }

    fn add(target: TargetSpec, ttl_secs: Option<u64>) -> String {
        serde_json::to_string(&Request::Add {
            target,
            ttl_secs,
            reason: None,
        })
        .expect("json")
    }

    #[test]
    fn protected_programs_and_bad_ttls_are_refused_over_the_socket() {
        let e = enforcer();
        for what in ["/bin/sh", "/bin//sh", "secmon-tui", "sh"] {
            let reply = handle_line(&e, &add(TargetSpec::Exec(what.into()), None), "test");
            assert!(!reply.ok, "{what}");
            assert!(
                reply
                    .error
                    .as_deref()
                    .is_some_and(|m| m.contains("is not blocked")),
                "{what}: {reply:?}"
            );
        }
        let long = add(TargetSpec::Exec("/tmp/x".into()), Some(u64::MAX));
        let reply = handle_line(&e, &long, "test");
        assert!(
            reply
                .error
                .as_deref()
                .is_some_and(|m| m.contains("too long")),
            "{reply:?}"
        );
        let year = add(TargetSpec::Exec("/tmp/x".into()), Some(365 * 24 * 3600));
        assert!(handle_line(&e, &year, "test").ok);
        let reply = handle_line(&e, r#"{"op":"list"}"#, "test");
        assert_eq!(reply.denies.map(|d| d.len()), Some(1), "only the valid one");
    }

    #[test]
    fn only_root_may_use_the_socket() {
        assert!(peer_allowed(0));
        assert!(!peer_allowed(1000));
        assert!(!peer_allowed(65534));
    }

    async fn reply_line(stream: &mut tokio::io::DuplexStream) -> String {
        let mut reader = AsyncBufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.expect("read");
        line
    }

    #[tokio::test]
    async fn an_over_long_request_gets_an_error_and_the_connection_is_closed() {
        let e = enforcer();
        let (mut near, far) = tokio::io::duplex(64 * 1024);
        let server = client(far, &e, "test");
        let talk = async {
            let mut big = vec![b'x'; MAX_LINE + 10];
            big.push(b'\n');
            near.write_all(&big).await.expect("write");
            let line = reply_line(&mut near).await;
            assert!(line.contains("request longer than 16384 bytes"), "{line}");
            let mut rest = Vec::new();
            near.read_to_end(&mut rest).await.expect("eof");
            assert!(rest.is_empty(), "closed after the error");
        };
        tokio::join!(server, talk);
    }

    #[tokio::test]
    async fn a_request_of_the_largest_size_is_answered() {
        let e = enforcer();
        let (mut near, far) = tokio::io::duplex(64 * 1024);
        let server = client(far, &e, "test");
        let talk = async {
            let mut line = br#"{"op":"list"}"#.to_vec();
            line.resize(MAX_LINE, b' ');
            line.push(b'\n');
            near.write_all(&line).await.expect("write");
            let reply = reply_line(&mut near).await;
            assert!(reply.starts_with(r#"{"ok":true"#), "{reply}");
            drop(near);
        };
        tokio::join!(server, talk);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_client_is_disconnected() {
        let e = enforcer();
        let (mut near, far) = tokio::io::duplex(1024);
        let started = tokio::time::Instant::now();
        let server = client(far, &e, "test");
        let talk = async {
            let mut rest = Vec::new();
            near.read_to_end(&mut rest).await.expect("eof");
        };
        tokio::join!(server, talk);
        assert!(started.elapsed() >= IDLE, "{:?}", started.elapsed());
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
