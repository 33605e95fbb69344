//! The web controller's API end to end (issue 14): the real `secmon-tui serve`, on loopback,
//! driven over real HTTP and WebSocket connections.
//!
//! Each test starts its own monitor ([`Served`]) with a private token file, audit log and a
//! free port (`Instance`'s config, or one the test writes with the same private paths): no
//! test reads the machine's token, writes its audit log or listens on 9988. Tests that need
//! no kernel serve a recording (`--replay`); those about probes, the history, enforcement and
//! a slow client watch the live kernel and act on it with files and programs of their own,
//! in temporary directories.
//!
//! Several client addresses: the controller counts failed logins per address, and every
//! address of 127.0.0.0/8 reaches a loopback listener, so a test that wants wrong tokens
//! refused (401) rather than locked out (429) sends each from an address of its own
//! ([`raw_request`], [`connect_from`]).
use std::{
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Condvar, Mutex, PoisonError},
    thread,
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        client::IntoClientRequest,
        http::{HeaderName, HeaderValue},
    },
};

use crate::common::{
    BIN, DEFAULT_TIMEOUT, Instance, READY_TIMEOUT, STOP_TIMEOUT, TestDir, copy_executable, marker,
    path_str, require_root, status_of, test_pid, workspace,
};

/// The recording served by tests that need no kernel.
pub(crate) const RECORDING: &str = "tests/fixtures/recordings/attack-story.jsonl";
/// The line a controller prints once it accepts connections.
pub(crate) const SERVING: &str = "secmon: controller: serving ";
/// A rule the shipped pack has (switched in the replay tests).
pub(crate) const SHIPPED_RULE: &str = "shadow_file_read";
/// How long a test waits for something the monitor does on its own time (a stored event).
const STORE_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// A served monitor and its clients

/// A `secmon-tui serve` of the test's own and a blocking HTTP client for it.
pub(crate) struct Served {
    pub(crate) monitor: Instance,
    /// Where to connect (loopback, also when it listens on 0.0.0.0).
    pub(crate) addr: SocketAddr,
    /// `http://127.0.0.1:PORT` (or https).
    pub(crate) base: String,
    pub(crate) token: String,
    agent: ureq::Agent,
    /// Its audit log (in the instance's directory unless the test's config says otherwise).
    pub(crate) audit_log: PathBuf,
    /// Directories that go with the monitor (dropped after it).
    pub(crate) _dirs: Vec<TestDir>,
}

/// An answer: status, headers and body text.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: ureq::http::HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.body))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `error` of a JSON error answer.
    #[track_caller]
    pub(crate) fn error(&self) -> String {
        let json = self.json();
        json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error text, status {}: {json}", self.status))
            .to_string()
    }
}

impl Served {
    /// `secmon-tui serve ARGS`: a replay when ARGS has `--replay`, else the live kernel (root).
    #[track_caller]
    pub(crate) fn start(args: &[&str]) -> Served {
        Served::start_with(args, None)
    }

    /// As [`Served::start`]; `tls_root` is the certificate an https client trusts.
    #[track_caller]
    pub(crate) fn start_with(args: &[&str], tls_root: Option<&Path>) -> Served {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let mut monitor = Instance::start(&all);
        if !args.contains(&"--replay") {
            monitor.wait_ready();
        }
        let line = monitor.wait_for_stderr_within("the controller's address", READY_TIMEOUT, |l| {
            l.starts_with(SERVING)
        });
        let (url, token_file) = parse_serving(&line);
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let port: u16 = rest
            .trim_end_matches('/')
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let token = fs::read_to_string(&token_file)
            .unwrap_or_else(|e| panic!("read the token file {}: {e}", token_file.display()))
            .trim()
            .to_string();
        Served {
            addr,
            base: format!("{scheme}://{addr}"),
            token,
            agent: agent(tls_root),
            audit_log: monitor.home().join("controller-audit.log"),
            monitor,
            _dirs: Vec::new(),
        }
    }

    /// A client for `monitor`, which serves `url` with the token in `token_file` (a server
    /// that prints its own serving line: `secmon-tui hub`).
    pub(crate) fn attach(monitor: Instance, url: &str, token_file: &Path) -> Served {
        let port: u16 = url
            .trim_end_matches('/')
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let token = fs::read_to_string(token_file)
            .unwrap_or_else(|e| panic!("read the token file {}: {e}", token_file.display()))
            .trim()
            .to_string();
        Served {
            addr,
            base: format!("http://{addr}"),
            token,
            agent: agent(None),
            audit_log: monitor.home().join("controller-audit.log"),
            monitor,
            _dirs: Vec::new(),
        }
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// METHOD `path` with `headers` and an optional body, nothing else.
    #[track_caller]
    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let result = match body {
            Some(body) => self
                .agent
                .run(builder.body(body.to_vec()).expect("request")),
            None => self.agent.run(builder.body(()).expect("request")),
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {}{path}: {e}", self.base));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body: {e}"));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// METHOD `path` with the token (and `body` as JSON).
    #[track_caller]
    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let bearer = self.bearer();
        let text = body.map(|b| b.to_string());
        let mut headers = vec![("authorization", bearer.as_str())];
        if text.is_some() {
            headers.push(("content-type", "application/json"));
        }
        self.request(method, path, &headers, text.as_deref().map(str::as_bytes))
    }

    /// GET `path` with the token; panics unless 200.
    #[track_caller]
    pub(crate) fn get_ok(&self, path: &str) -> Value {
        let reply = self.call("GET", path, None);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.json()
    }

    /// The audit log's lines.
    pub(crate) fn audit(&self) -> Vec<Value> {
        audit_lines(&self.audit_log)
    }

    /// A WebSocket to `/api/v1/events{query}` with the token (and `headers`), from `source`
    /// (default 127.0.0.1), with a receive buffer of `rcvbuf` bytes if given.
    async fn events_socket(
        &self,
        query: &str,
        headers: &[(&str, &str)],
        source: Option<Ipv4Addr>,
        rcvbuf: Option<u32>,
    ) -> Result<WebSocketStream<tokio::net::TcpStream>, tungstenite::Error> {
        let mut request = format!("ws://{}/api/v1/events{query}", self.addr)
            .into_client_request()
            .expect("a WebSocket request");
        let bearer = self.bearer();
        let mut all = vec![("authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        for (name, value) in all {
            request.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(bytes) = rcvbuf {
            socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        }
        socket
            .bind(SocketAddr::from((source.unwrap_or(Ipv4Addr::LOCALHOST), 0)))
            .expect("bind the client's address");
        let stream = socket.connect(self.addr).await.expect("connect");
        tokio_tungstenite::client_async(request, stream)
            .await
            .map(|(ws, _)| ws)
    }

    /// Stops the monitor (SIGTERM); asserts a clean exit and returns its stderr.
    #[track_caller]
    pub(crate) fn stop(self) -> Vec<String> {
        self.monitor.signal(libc::SIGTERM);
        let (status, _, stderr) = self.monitor.finish(STOP_TIMEOUT);
        assert!(status.success(), "monitor: {status}\n{}", stderr.join("\n"));
        stderr
    }
}

/// `http://ADDR/` and the token file of a serving line.
fn parse_serving(line: &str) -> (String, PathBuf) {
    let rest = line.strip_prefix(SERVING).expect("a serving line");
    let (url, rest) = rest.split_once(' ').expect("URL, then the token file");
    let file = rest
        .split_once("token in ")
        .and_then(|(_, rest)| rest.strip_suffix(", root only)"))
        .unwrap_or_else(|| panic!("no token file in {line:?}"));
    (url.to_string(), PathBuf::from(file))
}

/// A client that returns every status as an answer and follows no redirect; over https it
/// trusts `tls_root` only.
fn agent(tls_root: Option<&Path>) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)));
    if let Some(root) = tls_root {
        let pem = fs::read(root).expect("read the certificate");
        let cert = ureq::tls::Certificate::from_pem(&pem).expect("a PEM certificate");
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
                .build(),
        );
    }
    config.build().into()
}

pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A TCP connection to `to` from `source` (any 127.x.y.z address reaches loopback).
fn connect_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((source, 0)))
            .expect("bind the client's address");
        socket.connect(to).await.expect("connect")
    });
    let stream = stream.into_std().expect("a std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    stream
}

/// One HTTP/1.1 request from `source`, written by hand (a `Host` among `headers` replaces the
/// usual one): the status and the body.
fn raw_request(
    to: SocketAddr,
    source: Ipv4Addr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = connect_from(source, to);
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {to}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).expect("send the request");
    stream.write_all(body).expect("send the body");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// 127.0.0.`n`: a client address of its own.
fn client(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// The JSON lines of an audit log.
fn audit_lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read the audit log {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect()
}

/// What a live-event stream received, shared with the task that reads it.
#[derive(Default)]
struct FeedState {
    events: Vec<Value>,
    lost: Vec<Value>,
    /// Why the stream ended, or what it received that it should not have.
    trouble: Option<String>,
}

/// A `/api/v1/events` stream read by a task of its own into [`FeedState`].
struct Feed {
    state: Arc<(Mutex<FeedState>, Condvar)>,
    task: tokio::task::JoinHandle<()>,
}

impl Feed {
    #[track_caller]
    fn open(runtime: &Runtime, served: &Served, query: &str) -> Feed {
        let ws = runtime
            .block_on(served.events_socket(query, &[], None, None))
            .unwrap_or_else(|e| panic!("open /api/v1/events{query}: {e}"));
        let state: Arc<(Mutex<FeedState>, Condvar)> = Arc::default();
        let task = runtime.spawn(read_feed(ws, state.clone()));
        Feed { state, task }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Events received so far (a checkpoint for [`Feed::wait_for`]).
    fn len(&self) -> usize {
        self.lock().events.len()
    }

    fn events_since(&self, from: usize) -> Vec<Value> {
        self.lock().events[from..].to_vec()
    }

    fn lost(&self) -> Vec<Value> {
        self.lock().lost.clone()
    }

    /// The first event after `from` that `pred` accepts, waiting up to `timeout`.
    #[track_caller]
    fn wait_for(
        &self,
        from: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut next = from;
        let mut state = self.lock();
        loop {
            if let Some(found) = state.events[next..].iter().find(|e| pred(e)) {
                return found.clone();
            }
            next = state.events.len();
            if let Some(trouble) = &state.trouble {
                panic!("waiting for {what}: the stream {trouble}");
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "no {what} on /api/v1/events within {timeout:?}"
            );
            state = self
                .state
                .1
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until `count` events after `from` pass `pred` (or the timeout); returns how many.
    fn wait_for_count(
        &self,
        from: usize,
        count: usize,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> usize {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            let seen = state.events[from..].iter().filter(|e| pred(e)).count();
            let now = Instant::now();
            if seen >= count || now >= deadline || state.trouble.is_some() {
                return seen;
            }
            state = self
                .state
                .1
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_feed(
    mut ws: WebSocketStream<tokio::net::TcpStream>,
    state: Arc<(Mutex<FeedState>, Condvar)>,
) {
    let trouble = loop {
        let message = match ws.next().await {
            Some(Ok(message)) => message,
            Some(Err(e)) => break format!("failed: {e}"),
            None => break "ended".to_string(),
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(close) => break format!("was closed: {close:?}"),
            _ => continue,
        };
        let value: Value = match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(e) => break format!("sent a message that is not JSON ({e}): {text}"),
        };
        let mut st = state.0.lock().unwrap_or_else(PoisonError::into_inner);
        match value["type"].as_str() {
            Some("events") => match value["events"].as_array() {
                Some(events) => st.events.extend(events.iter().cloned()),
                None => st.trouble = Some(format!("sent events without a list: {value}")),
            },
            Some("lost") => st.lost.push(value),
            _ => st.trouble = Some(format!("sent an unknown message: {value}")),
        }
        let stop = st.trouble.is_some();
        drop(st);
        state.1.notify_all();
        if stop {
            return;
        }
    };
    state
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .trouble = Some(trouble);
    state.1.notify_all();
}

/// The status of a WebSocket handshake that was refused.
#[track_caller]
fn refused_status(
    result: Result<WebSocketStream<tokio::net::TcpStream>, tungstenite::Error>,
) -> u16 {
    match result {
        Ok(_) => panic!("the WebSocket handshake succeeded"),
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("the handshake failed without an HTTP answer: {e}"),
    }
}

fn is_file_open_of(event: &Value, path: &str) -> bool {
    event["event_type"] == "file_open" && event["file_path"] == path
}

/// Opens `path` read-only (one file_open event of the test's pid).
fn open(path: &Path) {
    drop(fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display())));
}

/// Opens `path` read-only with `extra` flags, and closes it.
fn open_with(path: &Path, extra: i32) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(extra)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    drop(file);
}

/// A copy of /bin/true named `name` in `dir`.
fn program(dir: &TestDir, name: &str) -> PathBuf {
    copy_executable("/bin/true", &dir.join(name))
}

/// The replay server most tests about the API itself use: the shipped rules, the recording
/// stored into a database of the instance's own (so the history has something to show).
fn replay_server() -> Served {
    let recording = workspace(RECORDING);
    let dir = TestDir::new(&marker());
    let db = dir.join("replay.db");
    let mut served = Served::start(&[
        "--replay",
        &recording,
        "--speed",
        "max",
        "--db",
        &path_str(&db),
    ]);
    served._dirs.push(dir);
    served.wait_for_recording_stored(&db);
    served
}

impl Served {
    /// Waits until the replayed recording is in the history.
    fn wait_for_recording_stored(&self, db: &Path) {
        let deadline = Instant::now() + STORE_TIMEOUT;
        loop {
            let reply = self.call("GET", "/api/v1/history?limit=1", None);
            if reply.status == 200
                && !reply.json()["events"]
                    .as_array()
                    .expect("events")
                    .is_empty()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the recording was not stored in {} within {STORE_TIMEOUT:?}: {} {}",
                db.display(),
                reply.status,
                reply.body
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// A rule file that checks: one rule, nothing else.
fn good_rule_file(name: &str) -> String {
    json!({"rules": [{
        "name": name,
        "condition": "event.type == 'file_open' && file.path == '/nonexistent/secmon-test'",
        "event_types": ["file_open"],
        "risk_score": 0.5,
        "action": "alert",
        "label": "A test rule",
    }]})
    .to_string()
}

/// Every endpoint (but the live stream, below) with what a right token gets from a replay:
/// (method, path, JSON body, status).
fn endpoints() -> Vec<(&'static str, String, Option<String>, u16)> {
    let simulate = json!({"target": {"exec": "/tmp/secmon-test-simulated"}}).to_string();
    vec![
        ("GET", "/api/v1/status".into(), None, 200),
        // No demo runs in `serve` (demo.rs has the demo's answers).
        ("GET", "/api/v1/demo".into(), None, 404),
        ("GET", "/api/v1/alerts?limit=3".into(), None, 200),
        ("GET", "/api/v1/history?limit=5".into(), None, 200),
        ("GET", "/api/v1/history/counts?bucket=day".into(), None, 200),
        ("GET", "/api/v1/rules".into(), None, 200),
        ("POST", "/api/v1/rules/reload".into(), None, 200),
        (
            "POST",
            "/api/v1/rules/validate?name=extra.json".into(),
            Some(good_rule_file("extra_rule")),
            200,
        ),
        (
            "PUT",
            format!("/api/v1/rules/{SHIPPED_RULE}"),
            Some(r#"{"enabled":true}"#.into()),
            200,
        ),
        ("GET", "/api/v1/probes".into(), None, 200),
        // A replay has no probes; a monitor without `enforce = true` no deny entries: the
        // request is authenticated and refused for what it asks (the live tests do them).
        (
            "PUT",
            "/api/v1/probes/file".into(),
            Some(r#"{"enabled":true}"#.into()),
            409,
        ),
        ("GET", "/api/v1/denies".into(), None, 200),
        ("POST", "/api/v1/denies".into(), Some(simulate.clone()), 409),
        ("DELETE", "/api/v1/denies/1".into(), None, 409),
        (
            "POST",
            "/api/v1/denies/simulate".into(),
            Some(simulate),
            200,
        ),
        ("GET", "/api/v1/alerts/counts".into(), None, 200),
        // Machines: a registration refused for what it asks (plain http off loopback), and
        // a machine nobody registered.
        ("GET", "/api/v1/machines".into(), None, 200),
        (
            "POST",
            "/api/v1/machines".into(),
            Some(
                json!({"name": "m", "url": "http://192.0.2.1:9988", "token": "0".repeat(64)})
                    .to_string(),
            ),
            400,
        ),
        ("DELETE", "/api/v1/machines/none".into(), None, 404),
        ("GET", "/api/v1/machines/none/api/status".into(), None, 404),
        ("GET", "/api/v1/all-machines/alerts".into(), None, 200),
    ]
}

/// Every endpoint answers the token, and refuses (401, JSON error) a request without one or
/// with a wrong one; refused changes change nothing. The API description is public.
#[test]
fn every_endpoint_needs_the_token() {
    let served = replay_server();
    for (i, (method, path, body, expected)) in endpoints().into_iter().enumerate() {
        let bytes = body.as_deref().map(str::as_bytes);
        let json_type = [("content-type", "application/json")];
        let content: &[(&str, &str)] = if body.is_some() { &json_type } else { &[] };

        let right = served.call(
            method,
            &path,
            body.as_deref().map(|b| b.parse().expect("JSON")),
        );
        assert_eq!(right.status, expected, "{method} {path}: {}", right.body);
        let answer = right.json();
        if expected >= 400 {
            assert!(answer["error"].is_string(), "{method} {path}: {answer}");
        }
        assert_eq!(
            right
                .header("content-security-policy")
                .map(|c| c.contains("default-src 'none'")),
            Some(true),
            "{method} {path}: the security headers"
        );

        let none = served.request(method, &path, content, bytes);
        assert_eq!(
            none.status, 401,
            "{method} {path} without a token: {}",
            none.body
        );
        assert!(none.error().contains("Bearer"), "{}", none.body);

        // Each wrong token from an address of its own: one failure each, no lockout.
        let source = client(20 + u8::try_from(i).expect("few endpoints"));
        let mut headers = vec![("Authorization", "Bearer 0123456789abcdef0123456789abcdef")];
        headers.extend_from_slice(content);
        let (status, text) = raw_request(
            served.addr,
            source,
            method,
            &path,
            &headers,
            bytes.unwrap_or_default(),
        );
        assert_eq!(status, 401, "{method} {path} with a wrong token: {text}");
        assert!(text.contains(r#""error":"wrong token""#), "{text}");
    }

    // Refused switches switched nothing.
    let none = served.request(
        "PUT",
        &format!("/api/v1/rules/{SHIPPED_RULE}"),
        &[("content-type", "application/json")],
        Some(br#"{"enabled":false}"#),
    );
    assert_eq!(none.status, 401);
    let rules = served.get_ok("/api/v1/rules");
    let rule = rules["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["name"] == SHIPPED_RULE)
        .unwrap_or_else(|| panic!("{SHIPPED_RULE} listed: {rules}"))
        .clone();
    assert_eq!(rule["enabled"], true, "{rule}");

    // The live stream: the same three answers.
    let rt = runtime();
    let other_address = connect_from(client(60), served.addr);
    other_address.set_nonblocking(true).expect("non-blocking");
    rt.block_on(async {
        let right = served.events_socket("", &[], None, None).await;
        assert!(right.is_ok(), "{:?}", right.err());
        let mut request = format!("ws://{}/api/v1/events", served.addr)
            .into_client_request()
            .expect("request");
        let stream = tokio::net::TcpStream::connect(served.addr)
            .await
            .expect("connect");
        let none = tokio_tungstenite::client_async(request.clone(), stream).await;
        assert_eq!(refused_status(none.map(|(ws, _)| ws)), 401);
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_static("Bearer 0123456789abcdef0123456789abcdef"),
        );
        let stream = tokio::net::TcpStream::from_std(other_address).expect("a tokio stream");
        let wrong = tokio_tungstenite::client_async(request, stream).await;
        assert_eq!(refused_status(wrong.map(|(ws, _)| ws)), 401);
    });

    // The description is public (a client reads it before it has a token).
    let doc = served.request("GET", "/api/v1/openapi.json", &[], None);
    assert_eq!(doc.status, 200, "{}", doc.body);
    assert_eq!(
        doc.json()["openapi"].as_str().map(|v| v.starts_with("3.1")),
        Some(true)
    );
    assert_eq!(
        doc.body,
        fs::read_to_string(workspace("monitor/assets/web/openapi.json")).expect("the file"),
        "the served description is the file"
    );
    served.stop();
}

/// Five wrong tokens a minute from one address, and the sixth attempt is refused with 429 even
/// with the right token; other addresses are not affected; the audit log says so. The login
/// form counts the same way.
#[test]
fn wrong_tokens_lock_an_address_out() {
    let served = replay_server();
    let (attacker, login_attacker, other) = (client(77), client(78), client(79));
    let status = |source: Ipv4Addr, token: &str| {
        let bearer = format!("Bearer {token}");
        raw_request(
            served.addr,
            source,
            "GET",
            "/api/v1/status",
            &[("Authorization", &bearer)],
            b"",
        )
    };
    for attempt in 1..=5 {
        let (code, text) = status(
            attacker,
            &format!("wrong-{attempt}-0123456789abcdef0123456789"),
        );
        assert_eq!(code, 401, "attempt {attempt}: {text}");
    }
    let (code, text) = status(attacker, &served.token);
    assert_eq!(code, 429, "the right token after five failures: {text}");
    assert!(text.contains("too many failed attempts"), "{text}");
    let (code, text) = status(other, &served.token);
    assert_eq!(code, 200, "another address: {text}");

    for attempt in 1..=5 {
        let form = format!("token=wrong{attempt}");
        let (code, _) = raw_request(
            served.addr,
            login_attacker,
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        );
        assert_eq!(code, 401, "login attempt {attempt}");
    }
    let form = format!("token={}", served.token);
    let (code, text) = raw_request(
        served.addr,
        login_attacker,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    );
    assert_eq!(code, 429, "a login after five failures: {text}");

    let audit = served.audit();
    let of = |source: Ipv4Addr| -> Vec<&Value> {
        audit
            .iter()
            .filter(|l| {
                l["client"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(&format!("{source}:")))
            })
            .collect()
    };
    let lines = of(attacker);
    let failures = lines
        .iter()
        .filter(|l| {
            l["ok"] == false
                && l["outcome"]
                    .as_str()
                    .is_some_and(|o| o.contains("wrong bearer token"))
        })
        .count();
    assert_eq!(failures, 5, "{lines:?}");
    assert!(
        lines.iter().any(|l| l["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("locked out"))),
        "the lockout is in the audit log: {lines:?}"
    );
    let logins = of(login_attacker);
    assert_eq!(
        logins
            .iter()
            .filter(|l| l["action"] == "log in" && l["ok"] == false)
            .count(),
        5,
        "{logins:?}"
    );
    assert!(
        logins.iter().any(|l| l["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("locked out"))),
        "{logins:?}"
    );
    served.stop();
}

/// The session cookie's attributes (`Secure` only over https, checked by the TLS test).
fn session_cookie(reply: &Reply) -> (String, String) {
    let set = reply
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie ({}): {}", reply.status, reply.body))
        .to_string();
    let id = set
        .split(';')
        .next()
        .and_then(|pair| pair.trim().strip_prefix("secmon_session="))
        .unwrap_or_else(|| panic!("no secmon_session in {set}"))
        .to_string();
    (id, set)
}

/// Logs in with the form; the session cookie's id and its whole `Set-Cookie`.
#[track_caller]
pub(crate) fn log_in(served: &Served) -> (String, String) {
    let form = format!("token={}", served.token);
    let reply = served.request(
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form.as_bytes()),
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    session_cookie(&reply)
}

/// The CSRF token a page embeds for its session (`hx-headers` on the body).
#[track_caller]
pub(crate) fn csrf_of(served: &Served, cookie: &str) -> String {
    let page = served.request("GET", "/", &[("cookie", cookie)], None);
    assert_eq!(page.status, 200, "{}", page.body);
    let at = page
        .body
        .find("X-CSRF-Token")
        .unwrap_or_else(|| panic!("no X-CSRF-Token in the page:\n{}", page.body));
    // The first run of 64 hex digits after the header's name (however the page escapes the
    // JSON around it).
    page.body[at + "X-CSRF-Token".len()..]
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|run| run.len() == 64)
        .unwrap_or_else(|| panic!("no 256-bit token after X-CSRF-Token:\n{}", page.body))
        .to_string()
}

/// A browser session (the cookie) may read, but changes state only with the session's CSRF
/// token in `X-CSRF-Token` and an Origin (or Referer) of the controller's own: each missing
/// or wrong is 403 and changes nothing. A request naming another Host (DNS rebinding) is
/// refused; a cross-origin request is refused even with the token. Logging out ends the
/// session.
#[test]
fn browser_sessions_need_the_csrf_token_and_their_origin() {
    let served = replay_server();
    let (id, set_cookie) = log_in(&served);
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");
    let cookie = format!("secmon_session={id}");
    let csrf = csrf_of(&served, &cookie);
    let own = format!("http://{}", served.addr);
    let path = format!("/api/v1/rules/{SHIPPED_RULE}");
    let off = br#"{"enabled":false}"#;
    let enabled = |served: &Served| {
        served.get_ok("/api/v1/rules")["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|r| r["name"] == SHIPPED_RULE)
            .map(|r| r["enabled"].clone())
            .expect("the rule")
    };

    // Reads need only the cookie.
    let read = served.request("GET", "/api/v1/status", &[("cookie", &cookie)], None);
    assert_eq!(read.status, 200, "{}", read.body);

    let attempt = |headers: &[(&str, &str)]| {
        let mut all = vec![
            ("cookie", cookie.as_str()),
            ("content-type", "application/json"),
        ];
        all.extend_from_slice(headers);
        served.request("PUT", &path, &all, Some(off))
    };
    let refusals: [(&str, Vec<(&str, &str)>); 5] = [
        ("no CSRF token", vec![("origin", own.as_str())]),
        (
            "a wrong CSRF token",
            vec![
                ("origin", own.as_str()),
                (
                    "x-csrf-token",
                    "00000000000000000000000000000000000000000000000000000000000000ff",
                ),
            ],
        ),
        (
            "a foreign Origin",
            vec![
                ("origin", "http://evil.example"),
                ("x-csrf-token", csrf.as_str()),
            ],
        ),
        (
            "neither Origin nor Referer",
            vec![("x-csrf-token", csrf.as_str())],
        ),
        (
            "a foreign Referer",
            vec![
                ("referer", "http://evil.example/page"),
                ("x-csrf-token", csrf.as_str()),
            ],
        ),
    ];
    for (what, headers) in &refusals {
        let reply = attempt(headers);
        assert_eq!(reply.status, 403, "{what}: {}", reply.body);
        assert!(reply.json()["error"].is_string(), "{what}: {}", reply.body);
        assert_eq!(enabled(&served), true, "{what} changed nothing");
    }
    let post = served.request(
        "POST",
        "/api/v1/rules/reload",
        &[("cookie", &cookie), ("origin", &own)],
        None,
    );
    assert_eq!(
        post.status, 403,
        "a POST without the CSRF token: {}",
        post.body
    );

    let reply = attempt(&[("origin", own.as_str()), ("x-csrf-token", csrf.as_str())]);
    assert_eq!(reply.status, 200, "both right: {}", reply.body);
    assert_eq!(enabled(&served), false);
    let referer = format!("{own}/rules");
    let on = served.request(
        "PUT",
        &path,
        &[
            ("cookie", &cookie),
            ("content-type", "application/json"),
            ("referer", &referer),
            ("x-csrf-token", &csrf),
        ],
        Some(br#"{"enabled":true}"#),
    );
    assert_eq!(
        on.status, 200,
        "a Referer of its own stands for the Origin: {}",
        on.body
    );
    assert_eq!(enabled(&served), true);

    // A bearer client sends no Origin; a page that makes a browser send the token is refused.
    let bearer = served.bearer();
    let cross = served.request(
        "POST",
        "/api/v1/rules/reload",
        &[
            ("authorization", &bearer),
            ("origin", "http://evil.example"),
        ],
        None,
    );
    assert_eq!(cross.status, 403, "{}", cross.body);

    // DNS rebinding: a name that is not the controller's.
    let (code, text) = raw_request(
        served.addr,
        client(1),
        "GET",
        "/api/v1/status",
        &[("Host", "evil.example"), ("Authorization", &bearer)],
        b"",
    );
    assert_eq!(code, 421, "{text}");

    let refused = served
        .audit()
        .into_iter()
        .filter(|l| l["ok"] == false && l["action"] == "request")
        .count();
    assert!(
        refused >= refusals.len() + 2,
        "refusals are audited: {:?}",
        served.audit()
    );

    let logout = served.request(
        "POST",
        "/logout",
        &[
            ("cookie", &cookie),
            ("origin", &own),
            ("x-csrf-token", &csrf),
        ],
        None,
    );
    assert!(
        logout.status == 303 || logout.status == 200,
        "{}",
        logout.body
    );
    let after = served.request("GET", "/api/v1/status", &[("cookie", &cookie)], None);
    assert_eq!(after.status, 401, "the session ended: {}", after.body);
    served.stop();
}

/// A WebSocket upgrade from another origin is refused (403) before anything else, even with
/// the token: a page elsewhere cannot read the events through the operator's browser. The
/// controller's own origin is accepted; a filter that does not parse is a 400.
#[test]
fn websocket_upgrades_from_other_origins_are_refused() {
    let served = replay_server();
    let own = format!("http://{}", served.addr);
    let rt = runtime();
    rt.block_on(async {
        let foreign = served
            .events_socket("", &[("origin", "http://evil.example")], None, None)
            .await;
        assert_eq!(refused_status(foreign), 403);
        let null = served
            .events_socket("", &[("origin", "null")], None, None)
            .await;
        assert_eq!(refused_status(null), 403);
        let bad = served
            .events_socket("?type=no_such_type", &[], None, None)
            .await;
        assert_eq!(refused_status(bad), 400);
        let ok = served
            .events_socket("", &[("origin", own.as_str())], None, None)
            .await;
        assert!(ok.is_ok(), "its own origin: {:?}", ok.err());
    });
    assert!(
        served.audit().iter().any(|l| l["ok"] == false
            && l["outcome"]
                .as_str()
                .is_some_and(|o| o.contains("cross-origin"))),
        "{:?}",
        served.audit()
    );
    served.stop();
}

// ---------------------------------------------------------------------------------------------
// Limits and errors

/// A body over 256 KiB is refused with 413 (JSON), on every endpoint that takes one; one
/// just under is read (and judged on its content). Errors of every kind are JSON.
#[test]
fn oversize_bodies_are_refused_and_errors_are_json() {
    let served = replay_server();
    let big = vec![b'x'; 256 * 1024 + 1];
    for (method, path) in [
        ("POST", "/api/v1/rules/validate?name=big.json"),
        ("PUT", &*format!("/api/v1/rules/{SHIPPED_RULE}")),
        ("PUT", "/api/v1/probes/file"),
        ("POST", "/api/v1/denies"),
        ("POST", "/api/v1/denies/simulate"),
    ] {
        let bearer = served.bearer();
        let reply = served.request(
            method,
            path,
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            Some(&big),
        );
        assert_eq!(reply.status, 413, "{method} {path}: {}", reply.body);
        assert!(reply.error().contains("256 KiB"), "{}", reply.body);
    }
    let under = vec![b'x'; 255 * 1024];
    let bearer = served.bearer();
    let reply = served.request(
        "POST",
        "/api/v1/rules/validate?name=big.json",
        &[("authorization", &bearer)],
        Some(&under),
    );
    assert_eq!(
        reply.status, 422,
        "read, and not a rule file: {}",
        reply.body
    );
    assert_eq!(reply.json()["ok"], false);

    // What axum itself refuses comes as JSON too.
    let cases: [(&str, &str, Option<&[u8]>, u16); 7] = [
        ("GET", "/api/v1/no-such-thing", None, 404),
        ("DELETE", "/api/v1/status", None, 405),
        ("GET", "/api/v1/history?bogus=1", None, 400),
        ("GET", "/api/v1/history?last=yesterday-ish", None, 400),
        ("GET", "/api/v1/history?last=1h&since=2020-01-01", None, 400),
        ("DELETE", "/api/v1/denies/not-a-number", None, 400),
        (
            "PUT",
            "/api/v1/rules/x",
            Some(b"{\"enabled\": \"yes\"}"),
            422,
        ),
    ];
    for (method, path, body, status) in cases {
        let reply = served.call(
            method,
            path,
            body.map(|b| serde_json::from_slice(b).expect("JSON")),
        );
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
        assert!(!reply.error().is_empty(), "{method} {path}");
    }
    let no_type = served.request(
        "PUT",
        &format!("/api/v1/rules/{SHIPPED_RULE}"),
        &[("authorization", &bearer)],
        Some(br#"{"enabled":true}"#),
    );
    assert_eq!(no_type.status, 415, "{}", no_type.body);
    assert!(
        no_type.error().contains("application/json"),
        "{}",
        no_type.body
    );
    let not_ws = served.call("GET", "/api/v1/events", None);
    assert_eq!(not_ws.status, 400, "{}", not_ws.body);
    assert!(!not_ws.error().is_empty());
    served.stop();
}

/// The rule endpoints over a replay: the list, validation of a file (good, bad, badly named)
/// beside the loaded ones, a reload, a switch of an unknown rule.
#[test]
fn rules_are_listed_validated_and_reloaded() {
    let served = replay_server();
    let rules = served.get_ok("/api/v1/rules");
    let list = rules["rules"].as_array().expect("rules");
    assert!(list.len() > 10, "{rules}");
    let shadow = list
        .iter()
        .find(|r| r["name"] == SHIPPED_RULE)
        .expect("the shipped rule");
    for key in [
        "label",
        "score",
        "action",
        "enabled",
        "hits",
        "file",
        "event_types",
    ] {
        assert!(shadow.get(key).is_some(), "{key} in {shadow}");
    }
    let bearer = served.bearer();
    let good = good_rule_file("api_extra");
    let reply = served.request(
        "POST",
        "/api/v1/rules/validate?name=extra.json",
        &[("authorization", &bearer)],
        Some(good.as_bytes()),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["ok"], true);
    let bad = json!({"rules": [{"name": "half", "event_types": ["file_open"]}]}).to_string();
    let reply = served.request(
        "POST",
        "/api/v1/rules/validate?name=bad.json",
        &[("authorization", &bearer)],
        Some(bad.as_bytes()),
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.error().contains("condition"), "{}", reply.body);
    let named = served.request(
        "POST",
        "/api/v1/rules/validate?name=../x.json",
        &[("authorization", &bearer)],
        Some(good.as_bytes()),
    );
    assert_eq!(named.status, 400, "{}", named.body);
    // Validation loads nothing.
    assert!(
        !served.get_ok("/api/v1/rules")["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| r["name"] == "api_extra")
    );
    let reload = served.call("POST", "/api/v1/rules/reload", None);
    assert_eq!(reload.status, 200, "{}", reload.body);
    assert!(
        reload.json()["summary"]
            .as_str()
            .is_some_and(|s| s.contains("rules"))
    );
    let unknown = served.call(
        "PUT",
        "/api/v1/rules/no_such_rule",
        Some(json!({"enabled": false})),
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let status = served.get_ok("/api/v1/status");
    assert_eq!(
        status["rules"].as_u64(),
        Some(list.len() as u64),
        "{status}"
    );
    let audit = served.audit();
    assert!(
        audit
            .iter()
            .any(|l| l["action"] == "reload rules" && l["ok"] == true),
        "{audit:?}"
    );
    served.stop();
}

/// The description lists every endpoint api.rs serves (the unit test in api.rs checks it
/// against the routes); here: it parses, names both security schemes, and the status object
/// it describes has the fields the server sends.
#[test]
fn the_openapi_description_matches_what_is_served() {
    let served = replay_server();
    let doc = served
        .request("GET", "/api/v1/openapi.json", &[], None)
        .json();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["cookie"]["in"], "cookie", "{schemes}");
    let status = served.get_ok("/api/v1/status");
    let described = doc["components"]["schemas"]["Status"]["properties"]
        .as_object()
        .expect("a Status schema");
    for key in status.as_object().expect("an object").keys() {
        assert!(described.contains_key(key), "status.{key} is not described");
    }
    for key in described.keys() {
        assert!(
            status.get(key).is_some(),
            "status.{key} is described but not sent"
        );
    }
    served.stop();
}

// ---------------------------------------------------------------------------------------------
// Serving safely

/// Plain HTTP off loopback is refused before anything starts, with what to do instead;
/// `--insecure-http` serves it with a warning.
#[test]
fn plain_http_off_loopback_needs_insecure_http() {
    let recording = workspace(RECORDING);
    let refused = Instance::start(&["serve", "--replay", &recording, "--listen", "0.0.0.0:0"]);
    let (status, _, stderr) = refused.finish(STOP_TIMEOUT);
    let text = stderr.join("\n");
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("not a loopback address, without TLS"),
        "{text}"
    );
    assert!(
        text.contains("tls_cert") && text.contains("--insecure-http"),
        "{text}"
    );
    assert!(!text.contains(SERVING), "{text}");

    let served = Served::start(&[
        "--replay",
        &recording,
        "--listen",
        "0.0.0.0:0",
        "--insecure-http",
    ]);
    let status = served.get_ok("/api/v1/status");
    assert!(status["version"].is_string(), "{status}");
    let lines = served.stop();
    let text = lines.join("\n");
    assert!(
        lines.iter().any(
            |l| l.contains("--insecure-http: serving plain HTTP on 0.0.0.0:0")
                && l.contains("unencrypted")
        ),
        "{text}"
    );
    assert!(text.contains("serving http://0.0.0.0:"), "{text}");
}

/// A self-signed certificate for 127.0.0.1 and localhost (and its key), made with openssl.
pub(crate) fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// A config of the test's own with the controller's private paths and `extra` in
/// `[controller]`.
pub(crate) fn controller_config(dir: &TestDir, controller: &str, rest: &str) -> PathBuf {
    let path = dir.join("secmon.toml");
    fs::write(
        &path,
        format!(
            "{rest}\n\n[controller]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n\
             audit_log = {:?}\n{controller}\n",
            path_str(&dir.join("controller.token")),
            path_str(&dir.join("controller-audit.log")),
        ),
    )
    .expect("write the config");
    path
}

/// With tls_cert and tls_key the controller speaks https only: a client that trusts the
/// certificate gets the API (with HSTS), one that does not fails the handshake, plain http
/// gets no answer; the session cookie is `Secure`. Half a TLS setup is refused.
#[test]
fn tls_serves_https_only_with_secure_cookies() {
    let dir = TestDir::new(&marker());
    let (cert, key) = self_signed(dir.path());
    let recording = workspace(RECORDING);
    let tls = format!(
        "tls_cert = {:?}\ntls_key = {:?}",
        path_str(&cert),
        path_str(&key)
    );
    let config = controller_config(&dir, &tls, "[storage]\nenabled = false");
    let config_s = path_str(&config);
    let rules = workspace("rules");
    let args = [
        "--replay", &recording, "--config", &config_s, "--rules", &rules,
    ];
    let served = Served::start_with(&args, Some(&cert));
    assert!(served.base.starts_with("https://"), "{}", served.base);

    let status = served.call("GET", "/api/v1/status", None);
    assert_eq!(status.status, 200, "{}", status.body);
    assert_eq!(
        status.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let (_, set_cookie) = log_in(&served);
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");

    // A client with the usual roots does not trust it: the handshake fails.
    let untrusting = agent(None);
    let result = untrusting
        .get(format!("{}/api/v1/status", served.base))
        .call();
    assert!(result.is_err(), "a certificate nobody signed was accepted");

    // Plain http to the same port gets no HTTP answer.
    let mut stream = connect_from(client(1), served.addr);
    stream
        .write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/"),
        "plain http was served: {}",
        String::from_utf8_lossy(&answer)
    );
    served.stop();

    // Half a setup.
    let half = controller_config(
        &dir,
        &format!("tls_cert = {:?}", path_str(&cert)),
        "[storage]\nenabled = false",
    );
    let half_s = path_str(&half);
    let refused = Instance::start(&[
        "serve", "--replay", &recording, "--config", &half_s, "--rules", &rules,
    ]);
    let (status, _, stderr) = refused.finish(STOP_TIMEOUT);
    let text = stderr.join("\n");
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("tls_cert and tls_key go together: tls_key is missing"),
        "{text}"
    );

    // A key others may read, and a certificate that is no PEM, are refused before anything
    // starts (no `ready`, no probes).
    let readable_key = dir.join("readable-key.pem");
    fs::copy(&key, &readable_key).expect("copy the key");
    fs::set_permissions(&readable_key, fs::Permissions::from_mode(0o644)).expect("chmod");
    let not_pem = dir.join("not-pem.pem");
    fs::write(&not_pem, "hello\n").expect("write");
    for (cert_path, key_path, expected) in [
        (&cert, &readable_key, "readable or writable by other users"),
        (&not_pem, &key, "no PEM certificate"),
    ] {
        let config = controller_config(
            &dir,
            &format!(
                "tls_cert = {:?}\ntls_key = {:?}",
                path_str(cert_path),
                path_str(key_path)
            ),
            "[storage]\nenabled = false",
        );
        let config_s = path_str(&config);
        let refused = Instance::start(&[
            "serve", "--replay", &recording, "--config", &config_s, "--rules", &rules,
        ]);
        let (status, _, stderr) = refused.finish(STOP_TIMEOUT);
        let text = stderr.join("\n");
        assert!(!status.success(), "{text}");
        assert!(text.contains(expected), "{expected}: {text}");
        assert!(
            !text.contains("replaying"),
            "refused only after starting: {text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The live kernel

/// An event the test made a minute ago is in `/api/v1/history?last=1h`, page by page with
/// the `next` cursor, as `secmon-tui history` finds it; the counts have it too.
#[test]
fn history_finds_what_the_test_did() {
    require_root();
    let served = Served::start(&[]);
    let mark = marker();
    let dir = TestDir::new(&mark);
    let target = dir.join("history-target");
    fs::write(&target, b"x").expect("create the file");
    // Three opens that differ (their flags), so the history keeps three rows: identical
    // consecutive ones would be one row with a count (checked at the end).
    for extra in [0, libc::O_NONBLOCK, libc::O_NOCTTY] {
        open_with(&target, extra);
    }
    let target_s = path_str(&target);
    let query = format!(
        "/api/v1/history?last=1h&type=file_open&path={}",
        encode(&target_s)
    );
    let deadline = Instant::now() + STORE_TIMEOUT;
    let events = loop {
        let page = served.get_ok(&query);
        let events = page["events"].as_array().expect("events").clone();
        if events.len() >= 3 {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "the history has {} of the 3 opens after {STORE_TIMEOUT:?}: {page}",
            events.len()
        );
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(events.len(), 3, "{events:?}");
    for event in &events {
        assert!(is_file_open_of(event, &target_s), "{event}");
        assert_eq!(event["pid"], test_pid(), "{event}");
        assert!(event["analysis"]["severity"].is_string(), "{event}");
    }

    let times: Vec<&str> = events
        .iter()
        .filter_map(|e| e["timestamp"].as_str())
        .collect();
    let mut newest_first = times.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, newest_first, "newest first");

    // Two by two: the same three, each once, in the same order.
    let mut paged = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..4 {
        let mut q = format!("{query}&limit=2");
        if let Some(cursor) = &next {
            q.push_str(&format!("&before={cursor}"));
        }
        let page = served.get_ok(&q);
        paged.extend(page["events"].as_array().expect("events").iter().cloned());
        next = page["next"].as_str().map(String::from);
        if next.is_none() {
            break;
        }
    }
    assert_eq!(
        paged, events,
        "paging gives the same events in the same order"
    );

    // `secmon-tui history` reads the same database the same way.
    let db = path_str(&served.monitor.home().join("events.db"));
    let out = crate::common::run(
        Command::new(BIN).args([
            "history",
            "--db",
            &db,
            "--last",
            "1h",
            "--type",
            "file_open",
            "--path",
            &target_s,
            "--json",
        ]),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (cli, bad) = crate::common::parse_json_lines(&out.stdout);
    assert!(bad.is_empty(), "{bad:?}");
    let stamps = |events: &[Value]| -> Vec<Value> {
        events.iter().map(|e| e["timestamp"].clone()).collect()
    };
    let (mut from_cli, mut from_api) = (stamps(&cli), stamps(&events));
    let order = |a: &Value, b: &Value| a.as_str().cmp(&b.as_str());
    from_cli.sort_by(order);
    from_api.sort_by(order);
    assert_eq!(
        from_cli, from_api,
        "the CLI and the API find the same events"
    );

    for bucket in ["hour", "day"] {
        let counts = served.get_ok(&format!(
            "/api/v1/history/counts?bucket={bucket}&last=1h&path={}",
            encode(&target_s)
        ));
        assert_eq!(counts["bucket"], bucket, "{counts}");
        let opens: u64 = counts["counts"]
            .as_array()
            .expect("counts")
            .iter()
            .filter(|c| c["by"] == "type" && c["key"] == "file_open")
            .map(|c| c["count"].as_u64().expect("a count"))
            .sum();
        assert_eq!(opens, 3, "{counts}");
    }
    let week = served.call("GET", "/api/v1/history/counts?bucket=week", None);
    assert_eq!(week.status, 400, "{}", week.body);
    let status = served.get_ok("/api/v1/status");
    assert_eq!(status["history"].as_str(), Some(db.as_str()), "{status}");

    // Identical opens in a row may share one row with a `count` (another thread of this test
    // binary can end a row early): whatever the rows, their counts add up to the opens.
    let repeated = dir.join("repeated");
    fs::write(&repeated, b"x").expect("create the file");
    for _ in 0..3 {
        open(&repeated);
    }
    let query = format!(
        "/api/v1/history?last=1h&type=file_open&path={}",
        encode(&path_str(&repeated))
    );
    let deadline = Instant::now() + STORE_TIMEOUT;
    let (rows, opens) = loop {
        let page = served.get_ok(&query);
        let rows = page["events"].as_array().expect("events").clone();
        let opens: u64 = rows
            .iter()
            .filter(|e| e["flags"] == "O_RDONLY|O_CLOEXEC")
            .map(|e| e["count"].as_u64().unwrap_or(1))
            .sum();
        if opens >= 3 {
            break (rows, opens);
        }
        assert!(
            Instant::now() < deadline,
            "{opens} of 3 opens stored: {page}"
        );
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(opens, 3, "{rows:?}");
    for row in rows.iter().filter(|e| e["count"].is_u64()) {
        assert!(row["count"].as_u64() > Some(1), "{row}");
        assert!(row["last_timestamp"].is_string(), "{row}");
    }
    served.stop();
}

/// Percent-encodes what a query value may not hold as is.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Switching the file probes off through the API stops file events at once (in this
/// monitor's kernel programs only): an open made then never reaches `/api/v1/events`, while
/// an exec made after it does; switched on again, the next open arrives.
#[test]
fn probe_switches_stop_and_restart_a_family() {
    require_root();
    let _no_flood = crate::common::no_machine_flood();
    let served = Served::start(&[]);
    let rt = runtime();
    let mark = marker();
    let dir = TestDir::new(&mark);
    let feed = Feed::open(&rt, &served, &format!("?text={}", encode(&mark)));
    let sync = program(&dir, "sync-exec");
    let sync_s = path_str(&sync);
    let exec_of = |e: &Value, path: &str| e["event_type"] == "process_exec" && e["exe"] == path;

    // On: an open arrives.
    let before = dir.join("before");
    fs::write(&before, b"x").expect("create");
    let from = feed.len();
    open(&before);
    feed.wait_for(from, "the open before the switch", DEFAULT_TIMEOUT, |e| {
        is_file_open_of(e, &path_str(&before))
    });

    let off = served.call(
        "PUT",
        "/api/v1/probes/file",
        Some(json!({"enabled": false})),
    );
    assert_eq!(off.status, 200, "{}", off.body);
    assert!(
        off.json()["done"]
            .as_str()
            .is_some_and(|d| d.contains("file probes off"))
    );
    let probes = served.get_ok("/api/v1/probes");
    let file = probes["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .find(|p| p["family"] == "file")
        .expect("the file family")
        .clone();
    assert_eq!(file["state"], "off", "{probes}");

    let during = dir.join("during");
    fs::write(&during, b"x").expect("create");
    let from = feed.len();
    open(&during);
    assert!(status_of(&mut Command::new(&sync)).success());
    feed.wait_for(from, "the exec after the open", DEFAULT_TIMEOUT, |e| {
        exec_of(e, &sync_s)
    });
    let leaked: Vec<Value> = feed
        .events_since(from)
        .into_iter()
        .filter(|e| {
            e["event_type"]
                .as_str()
                .is_some_and(|t| t.starts_with("file_"))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "file events with the file probes off: {leaked:?}"
    );

    let on = served.call("PUT", "/api/v1/probes/file", Some(json!({"enabled": true})));
    assert_eq!(on.status, 200, "{}", on.body);
    let after = dir.join("after");
    fs::write(&after, b"x").expect("create");
    let from = feed.len();
    open(&after);
    feed.wait_for(from, "the open after switching on", DEFAULT_TIMEOUT, |e| {
        is_file_open_of(e, &path_str(&after))
    });

    let unknown = served.call(
        "PUT",
        "/api/v1/probes/disk",
        Some(json!({"enabled": false})),
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let audit = served.audit();
    for action in ["disable probes", "enable probes"] {
        assert!(
            audit
                .iter()
                .any(|l| l["action"] == action && l["target"] == "file" && l["ok"] == true),
            "{action}: {audit:?}"
        );
    }
    drop(feed);
    served.stop();
}

/// Switching a rule off through the API changes how the next matching event is marked, and
/// on again marks the next one as before; alerts list what it marked.
#[test]
fn rule_switches_change_the_marking_of_the_next_event() {
    require_root();
    let _no_flood = crate::common::no_machine_flood();
    let mark = marker();
    let dir = TestDir::new(&mark);
    let rules = dir.join("rules");
    fs::create_dir(&rules).expect("rules dir");
    let name = "api_marked_open";
    let rule = json!({"rules": [{
        "name": name,
        "condition": format!("event.type == 'file_open' && file.path.contains('{mark}')"),
        "event_types": ["file_open"],
        "risk_score": 0.8,
        "action": "alert",
        "label": "Marked by the API test",
    }]});
    fs::write(rules.join("api.json"), rule.to_string()).expect("rule file");
    let rules_s = path_str(&rules);
    let served = Served::start(&["--rules", &rules_s]);
    let rt = runtime();
    let feed = Feed::open(
        &rt,
        &served,
        &format!("?type=file_open&text={}", encode(&mark)),
    );
    let target = dir.join("target");
    fs::write(&target, b"x").expect("create");
    let target_s = path_str(&target);

    let next_open = || {
        let from = feed.len();
        open(&target);
        feed.wait_for(from, "the open", DEFAULT_TIMEOUT, |e| {
            is_file_open_of(e, &target_s)
        })
    };
    let marked = |e: &Value| {
        e["analysis"]["rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|n| n == name))
            && e["analysis"]["severity"] != "benign"
    };

    let first = next_open();
    assert!(marked(&first), "the rule marks the open: {first}");
    let alerts = served.get_ok("/api/v1/alerts?limit=50");
    assert!(
        alerts["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .any(|a| is_file_open_of(a, &target_s) && marked(a)),
        "{alerts}"
    );

    let off = served.call(
        "PUT",
        &format!("/api/v1/rules/{name}"),
        Some(json!({"enabled": false})),
    );
    assert_eq!(off.status, 200, "{}", off.body);
    let unmarked = next_open();
    assert!(!marked(&unmarked), "switched off: {unmarked}");
    assert_eq!(unmarked["analysis"]["severity"], "benign", "{unmarked}");

    let on = served.call(
        "PUT",
        &format!("/api/v1/rules/{name}"),
        Some(json!({"enabled": true})),
    );
    assert_eq!(on.status, 200, "{}", on.body);
    let again = next_open();
    assert!(marked(&again), "switched on again: {again}");
    let listed = served.get_ok("/api/v1/rules");
    let row = listed["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["name"] == name)
        .expect("the rule")
        .clone();
    assert_eq!(row["enabled"], true, "{row}");
    assert!(row["hits"].as_u64().is_some_and(|h| h >= 2), "{row}");
    drop(feed);
    served.stop();
}

/// With `enforce = true`, a deny entry added through the API kills the test's own program at
/// exec, and removing it lets the program run again; protected programs are refused with the
/// reason; a simulation says what a block would do and does nothing. Nothing but the test's
/// own programs is ever denied (no rules are loaded).
#[test]
fn deny_entries_block_and_unblock_a_program() {
    require_root();
    let dir = TestDir::new(&marker());
    let rules = dir.join("rules");
    fs::create_dir(&rules).expect("rules dir");
    let config = controller_config(
        &dir,
        "",
        &format!(
            "[storage]\nenabled = false\n\n[response]\nenforce = true\ncontrol_socket = {:?}",
            path_str(&dir.join("control.sock"))
        ),
    );
    let config_s = path_str(&config);
    let rules_s = path_str(&rules);
    // Short and unique: not the name of anything else running.
    let name = format!(
        "apd{}x{}",
        std::process::id() % 100_000,
        crate::common::next_id()
    );
    let denied = program(&dir, &name);
    let denied_s = path_str(&denied);
    let mut served = Served::start(&["--config", &config_s, "--rules", &rules_s]);
    served.audit_log = dir.join("controller-audit.log");
    assert!(
        status_of(&mut Command::new(&denied)).success(),
        "runs before"
    );
    assert_eq!(served.get_ok("/api/v1/status")["enforcement"], "enforce");

    let simulated = served.call(
        "POST",
        "/api/v1/denies/simulate",
        Some(json!({"target": {"exec": denied_s}})),
    );
    assert_eq!(simulated.status, 200, "{}", simulated.body);
    let outcome = simulated.json()["simulated"]["outcome"]
        .as_str()
        .expect("an outcome")
        .to_string();
    assert!(
        outcome.contains(&format!("would deny exec path {denied_s}"))
            && outcome.contains("SIGKILL"),
        "{outcome}"
    );
    assert!(
        status_of(&mut Command::new(&denied)).success(),
        "a simulation blocks nothing"
    );
    assert!(
        served.get_ok("/api/v1/denies")["denies"]
            .as_array()
            .expect("denies")
            .is_empty()
    );

    let added = served.call(
        "POST",
        "/api/v1/denies",
        Some(json!({"target": {"exec": denied_s}, "ttl_secs": 300, "reason": "API test"})),
    );
    assert_eq!(added.status, 201, "{}", added.body);
    let deny = added.json()["deny"].clone();
    let id = deny["id"].as_u64().expect("an id");
    assert_eq!(deny["kind"], "exec_path", "{deny}");
    assert_eq!(deny["value"], denied_s.as_str(), "{deny}");
    assert_eq!(deny["reason"], "API test", "{deny}");
    assert!(deny["expires"].is_string(), "a TTL: {deny}");
    let status = status_of(&mut Command::new(&denied));
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "blocked at exec: {status:?}"
    );
    let listed = served.get_ok("/api/v1/denies");
    assert!(
        listed["denies"]
            .as_array()
            .expect("denies")
            .iter()
            .any(|d| d["id"] == id),
        "{listed}"
    );

    let removed = served.call("DELETE", &format!("/api/v1/denies/{id}"), None);
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(
        status_of(&mut Command::new(&denied)).success(),
        "runs once lifted"
    );
    let again = served.call("DELETE", &format!("/api/v1/denies/{id}"), None);
    assert_eq!(again.status, 404, "{}", again.body);

    for (target, why) in [
        ("/bin/bash", "protected"),
        ("/usr/sbin/sshd", "allowlisted"),
    ] {
        let refused = served.call(
            "POST",
            "/api/v1/denies",
            Some(json!({"target": {"exec": target}})),
        );
        assert_eq!(refused.status, 422, "{target}: {}", refused.body);
        let error = refused.error();
        assert!(
            error.contains("not blocked") && error.contains(why),
            "{target}: {error}"
        );
    }
    let bad = served.call(
        "POST",
        "/api/v1/denies",
        Some(json!({"target": {"exec": "rel/x"}})),
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(
        served.get_ok("/api/v1/denies")["denies"]
            .as_array()
            .expect("denies")
            .is_empty(),
        "nothing else reached the kernel"
    );
    let simulated = served.get_ok("/api/v1/denies")["simulated"].clone();
    assert!(
        simulated
            .as_array()
            .expect("simulated")
            .iter()
            .any(|s| s["target"] == format!("exec {denied_s}")),
        "{simulated}"
    );
    let audit = served.audit();
    assert!(
        audit
            .iter()
            .any(|l| l["action"] == "block" && l["ok"] == true),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l["action"] == "unblock" && l["ok"] == true),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l["action"] == "block" && l["ok"] == false && l["target"] == "exec /bin/bash"),
        "{audit:?}"
    );

    // An entry left behind is lifted with the monitor.
    let left = served.call(
        "POST",
        "/api/v1/denies",
        Some(json!({"target": {"exec": denied_s}})),
    );
    assert_eq!(left.status, 201, "{}", left.body);
    served.stop();
    assert!(
        status_of(&mut Command::new(&denied)).success(),
        "runs once the monitor is gone"
    );
}

/// Paced opens, about 4 000 a second: only a stalled consumer could overflow anything (see
/// slow_front_end.rs). Many small rounds make many batches: the server's socket buffer (up to
/// 4 MiB, some 4 500 events) and the slow client's queue (16 batches) fill well before the
/// end, and the flood is over long before the server gives up on the client (10 s).
const FLOOD_ROUNDS: usize = 200;
const FLOOD_OPENS: usize = 50;
const FLOOD_PAUSE: Duration = Duration::from_millis(10);

/// A WebSocket client that stops reading during a flood of real events loses, alone: when it
/// reads again it is told `lost`, and what it heard and was told of cover the flood; a second
/// client kept receiving (every open, unless the machine is so starved of CPU that its own or
/// the controller's queue overflowed, which is then counted too); the kernel dropped nothing.
#[test]
fn a_slow_websocket_client_loses_alone_and_is_told() {
    require_root();
    // Every open must reach the monitor: nobody else floods the machine meanwhile.
    let _no_flood = crate::common::no_machine_flood();
    let served = Served::start(&[]);
    let rt = runtime();
    let mark = marker();
    let dir = TestDir::new(&mark);
    let target = dir.join("flood");
    fs::write(&target, b"x").expect("create the flood's file");
    let target_s = path_str(&target);
    let fast = Feed::open(
        &rt,
        &served,
        &format!("?type=file_open&text={}", encode(&mark)),
    );
    // The slow client takes everything, through a small receive buffer.
    let mut slow = rt
        .block_on(served.events_socket("", &[], None, Some(4096)))
        .expect("the slow client connects");
    // Both are subscribed once each has had one open.
    let from = fast.len();
    open(&target);
    fast.wait_for(from, "the first open", DEFAULT_TIMEOUT, |e| {
        is_file_open_of(e, &target_s)
    });
    rt.block_on(async {
        let deadline = Instant::now() + DEFAULT_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, slow.next())
                .await
                .expect("the slow client hears the first open")
                .expect("open")
                .expect("a message");
            if message.to_text().is_ok_and(|t| t.contains(&target_s)) {
                break;
            }
        }
    });
    let losses_before = served.get_ok("/api/v1/status")["losses"].clone();

    // From here the slow client reads nothing.
    let from = fast.len();
    for _ in 0..FLOOD_ROUNDS {
        for _ in 0..FLOOD_OPENS {
            open(&target);
        }
        thread::sleep(FLOOD_PAUSE);
    }
    let flood = FLOOD_ROUNDS * FLOOD_OPENS;

    // It reads again: what its socket held, then the news, up to a sync point: an open made
    // after the flood (one more every 200 ms, in case its batch is lost as well).
    let sync_prefix = path_str(&dir.join("sync-"));
    let is_sync = |e: &Value| {
        e["event_type"] == "file_open"
            && e["file_path"]
                .as_str()
                .is_some_and(|p| p.starts_with(&sync_prefix))
    };
    let mut syncs = 0;
    let mut sync_open = || {
        syncs += 1;
        let path = dir.join(format!("sync-{syncs}"));
        fs::write(&path, b"x").expect("create a sync file");
        open(&path);
    };
    let (told, heard) = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut told, mut heard) = (Vec::new(), 0usize);
        let mut next_sync = Instant::now();
        loop {
            assert!(
                Instant::now() < deadline,
                "the slow client never heard a sync open ({heard} flood events heard, told \
                 {told:?})"
            );
            if Instant::now() >= next_sync {
                sync_open();
                next_sync = Instant::now() + Duration::from_millis(200);
            }
            let message = match tokio::time::timeout(Duration::from_millis(200), slow.next()).await
            {
                Ok(Some(Ok(message))) => message,
                Ok(other) => panic!("the slow client's stream ended: {other:?}"),
                Err(_) => continue,
            };
            let Ok(text) = message.to_text() else {
                continue;
            };
            let value: Value = serde_json::from_str(text).expect("JSON");
            match value["type"].as_str() {
                Some("lost") => told.push(value),
                Some("events") => {
                    let events = value["events"].as_array().expect("events");
                    heard += events
                        .iter()
                        .filter(|e| is_file_open_of(e, &target_s))
                        .count();
                    if events.iter().any(is_sync) {
                        break (told, heard);
                    }
                }
                _ => panic!("unexpected message: {value}"),
            }
        }
    });
    // The second client's sync point.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fast.wait_for_count(from, 1, Duration::from_millis(500), is_sync) == 0 {
        assert!(
            Instant::now() < deadline,
            "the second client never heard a sync open"
        );
        sync_open();
    }
    let got = fast
        .events_since(from)
        .iter()
        .filter(|e| is_file_open_of(e, &target_s))
        .count();
    let losses_after = served.get_ok("/api/v1/status")["losses"].clone();
    let sum = |messages: &[Value]| -> u64 {
        messages
            .iter()
            .map(|m| m["events"].as_u64().expect("a count"))
            .sum()
    };
    let (slow_told, fast_told) = (sum(&told), sum(&fast.lost()));
    let count = |losses: &Value, reason: &str| losses[reason].as_u64().expect("a count");
    let dropped = count(&losses_after, "web_queue_full") - count(&losses_before, "web_queue_full");
    let seen = format!(
        "{flood} opens: the slow client heard {heard} and was told of {slow_told} lost \
         ({told:?}); the second client got {got}, told of {fast_told} lost; the controller's \
         queue dropped {dropped}; losses before the flood {losses_before}, after {losses_after}"
    );
    let flood = flood as u64;

    // The kernel lost nothing (every open was read and analysed).
    for reason in ["ring_buffer_full", "pending_table_full"] {
        assert_eq!(
            count(&losses_after, reason),
            count(&losses_before, reason),
            "{reason} moved: {seen}"
        );
    }
    // The slow client lost, and was told: what it heard and what it was told of cover the
    // flood (a lost batch is told whole, other events and all).
    assert!(!told.is_empty() && slow_told > 0, "{seen}");
    assert!((heard as u64) < flood, "{seen}");
    assert!(heard as u64 + slow_told + dropped >= flood, "{seen}");
    // The second client kept receiving: far more than the slow one held, and every open it
    // missed is accounted for. (On a machine starved of CPU the controller's own queue, or this
    // client's, may overflow too; on one that is not, it gets every open.)
    assert!(got > heard, "{seen}");
    assert!(got as u64 + fast_told + dropped >= flood, "{seen}");
    if dropped == 0 && fast_told == 0 {
        assert_eq!(got as u64, flood, "{seen}");
    }
    drop(slow);
    drop(fast);
    let stderr = served.stop();
    let stopped = stderr
        .iter()
        .find(|l| l.contains("secmon: stopped: "))
        .expect("a stopped line");
    assert!(stopped.contains(" 0 dropped in the kernel"), "{stopped}");
}

/// A client that opens a connection and never finishes its request's headers is cut off
/// after the header-read timeout (10 s), instead of holding the connection forever.
#[test]
fn a_request_left_unfinished_is_cut_off() {
    let served = replay_server();
    let mut stream = TcpStream::connect(served.addr).expect("connect");
    stream
        .write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("write half a request");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let started = Instant::now();
    let mut answer = Vec::new();
    // EOF (or a 408 and then EOF) when the server gives up; a read timeout error otherwise.
    let read = stream.read_to_end(&mut answer);
    let waited = started.elapsed();
    assert!(read.is_ok(), "still open after {waited:?}: {read:?}");
    assert!(
        waited >= Duration::from_secs(8) && waited < Duration::from_secs(25),
        "closed after {waited:?}"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "answer: {text}"
    );
}
