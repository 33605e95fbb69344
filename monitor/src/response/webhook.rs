//! The alert webhook: alerts are POSTed as JSON, in batches, by one worker thread, so capture
//! never waits for the network. The pipeline hands each alert (already serialised) to a bounded
//! queue with `try_send`; when the queue is full the alert is dropped and counted (the count
//! travels in the next payload and in the stop summary). The worker retries a failed batch with
//! exponential back-off, then gives up on it (counted as failed).
//!
//! Payload (`Content-Type: application/json`):
//! `{"source": "secmon", "host": "<hostname>", "alerts": [<event>, …], "dropped": <n>}`, where
//! each event is the `--json` object (analysis and response included) and `dropped` counts the
//! alerts lost to a full queue since the previous payload.
//!
//! Client: `ureq` (blocking, small; rustls for https://), no proxy from the environment, no
//! redirects, a timeout on every request.
//!
//! Secrets: the receiving end's secret belongs in a header (`webhook_header`, or the file
//! `webhook_header_file`), not in the URL. Whatever the URL holds, it is only ever printed
//! through [`redact_url`] (user and password, query values), and the header's value never.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use std::{io::Read, path::Path};

use crate::secrets::{SecretHeader, parse_header, redact_url};
use crate::{config, secure_fs};

/// Tuning; [`WebhookOptions::default`] is what secmon uses.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// Alerts waiting to be sent; beyond that they are dropped and counted.
    pub queue: usize,
    /// Alerts per POST at most.
    pub batch: usize,
    /// How long the worker waits for more alerts to fill a batch.
    pub linger: Duration,
    /// Whole-request timeout (connect, send, answer).
    pub timeout: Duration,
    /// Tries per batch (the first one included).
    pub attempts: u32,
    /// Back-off after the first failure; doubled after each further one, up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// A header sent with every POST (the secret).
    pub header: Option<SecretHeader>,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            queue: 1024,
            batch: 64,
            linger: Duration::from_millis(200),
            timeout: Duration::from_secs(5),
            attempts: 4,
            backoff: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            header: None,
        }
    }
}

/// Counters, readable while the worker runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Alerts delivered (a 2xx answer).
    pub sent: AtomicU64,
    /// Alerts given up on after every attempt failed (or a 4xx answer).
    pub failed: AtomicU64,
    /// Alerts dropped because the queue was full.
    pub dropped: AtomicU64,
    /// POST requests made, retries included.
    pub requests: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookStats {
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub requests: u64,
}

impl Counters {
    pub fn snapshot(&self) -> WebhookStats {
        WebhookStats {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

/// The most a header file may hold.
const MAX_HEADER_FILE: u64 = 8192;

/// Reads the header line from `path` (its first non-empty line). With `strict` (as root), the
/// file must be root's, and neither written nor read by group or others: it is a secret.
pub fn header_from_file(path: &Path, strict: bool) -> Result<SecretHeader, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{shown}: cannot read: {e}"))?;
    if strict {
        secure_fs::check_trusted(path, &meta, "webhook header file").map_err(|e| e.to_string())?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{shown}: refusing to use this webhook header file as root: its mode {mode:04o} \
                 lets others read the secret; fix: sudo chmod 600 {shown}"
            ));
        }
    }
    let mut text = String::new();
    file.take(MAX_HEADER_FILE)
        .read_to_string(&mut text)
        .map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| format!("{shown}: the file is empty; expected one line, \"Name: value\""))?;
    parse_header(line).map_err(|e| format!("{shown}: {e}"))
}

/// The header `[response]` configures (`webhook_header` or `webhook_header_file`), if any.
pub fn configured_header(response: &config::Response) -> Result<Option<SecretHeader>, String> {
    if let Some(line) = &response.webhook_header {
        return parse_header(line)
            .map(Some)
            .map_err(|e| format!("webhook_header: {e}"));
    }
    match &response.webhook_header_file {
        Some(path) => header_from_file(path, secure_fs::strict_modes())
            .map(Some)
            .map_err(|e| format!("webhook_header_file: {e}")),
        None => Ok(None),
    }
}

/// The running webhook sender.
pub struct Webhook {
    /// Redacted ([`redact_url`]): the only form that is printed.
    url: String,
    tx: Option<SyncSender<String>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    done: Receiver<()>,
    worker: Option<JoinHandle<()>>,
}

impl Webhook {
    /// Starts the worker thread. Fails when ureq cannot use the URL.
    pub fn start(url: &str, options: WebhookOptions) -> Result<Webhook, String> {
        let redacted = redact_url(url);
        url.parse::<ureq::http::Uri>()
            .map_err(|e| format!("{redacted:?} is not a usable URL: {e}"))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(options.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(concat!("secmon/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let (tx, rx) = mpsc::sync_channel::<String>(options.queue.max(1));
        let (done_tx, done) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            url: url.to_string(),
            redacted: redacted.clone(),
            agent,
            rx,
            options,
            counters: counters.clone(),
            stop: stop.clone(),
            host: hostname(),
            reported_dropped: 0,
            warned: false,
        };
        let handle = thread::Builder::new()
            .name("secmon-webhook".to_string())
            .spawn(move || {
                worker.run();
                let _ = done_tx.send(());
            })
            .map_err(|e| format!("cannot start the webhook thread: {e}"))?;
        Ok(Webhook {
            url: redacted,
            tx: Some(tx),
            counters,
            stop,
            done,
            worker: Some(handle),
        })
    }

    /// The URL, redacted ([`redact_url`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Queues one alert (a JSON object). Never blocks: false when the queue was full (the
    /// alert is dropped and counted).
    pub fn send(&self, alert: String) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(alert) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn stats(&self) -> WebhookStats {
        self.counters.snapshot()
    }

    /// Stops taking alerts, lets the worker send what is queued (one attempt each, no more
    /// back-off), and waits for it at most `grace`; a worker still stuck in a request is left
    /// to finish on its own (the process exit ends it).
    pub fn shutdown(mut self, grace: Duration) -> WebhookStats {
        self.stop_worker(grace);
        self.counters.snapshot()
    }

    fn stop_worker(&mut self, grace: Duration) {
        self.tx = None;
        self.stop.store(true, Ordering::SeqCst);
        if let Some(worker) = self.worker.take() {
            worker.thread().unpark();
            if self.done.recv_timeout(grace).is_ok() {
                let _ = worker.join();
            }
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop_worker(Duration::from_millis(500));
    }
}

struct Worker {
    url: String,
    /// What messages show of `url`.
    redacted: String,
    agent: ureq::Agent,
    rx: Receiver<String>,
    options: WebhookOptions,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    host: String,
    /// `dropped` as of the last payload.
    reported_dropped: u64,
    /// Whether a failure was already reported on stderr (once, then in the summary).
    warned: bool,
}

impl Worker {
    fn run(mut self) {
        // Ends when the sender is gone and the queue is empty.
        while let Ok(first) = self.rx.recv() {
            let mut batch = vec![first];
            let deadline = Instant::now() + self.options.linger;
            while batch.len() < self.options.batch {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.rx.recv_timeout(left) {
                    Ok(alert) => batch.push(alert),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            self.deliver(&batch);
        }
    }

    fn deliver(&mut self, batch: &[String]) {
        let dropped_now = self.counters.dropped.load(Ordering::Relaxed);
        let body = payload(
            &self.host,
            batch,
            dropped_now.saturating_sub(self.reported_dropped),
        );
        let n = batch.len() as u64;
        let mut backoff = self.options.backoff;
        for attempt in 1..=self.options.attempts.max(1) {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let mut request = self
                .agent
                .post(&self.url)
                .header("Content-Type", "application/json");
            if let Some(header) = &self.options.header {
                request = request.header(header.name.as_str(), header.value());
            }
            let outcome = request.send(body.as_bytes());
            let error = match outcome {
                Ok(response) if response.status().is_success() => {
                    self.counters.sent.fetch_add(n, Ordering::Relaxed);
                    self.reported_dropped = dropped_now;
                    return;
                }
                Ok(response) => {
                    let status = response.status();
                    let code = status.as_u16();
                    // A client error will not get better by retrying (except 408 and 429).
                    if status.is_client_error() && code != 408 && code != 429 {
                        self.give_up(n, &format!("HTTP {status}"));
                        return;
                    }
                    format!("HTTP {status}")
                }
                // An error may quote the URL.
                Err(e) => e.to_string().replace(&self.url, &self.redacted),
            };
            if attempt == self.options.attempts.max(1) || self.stop.load(Ordering::SeqCst) {
                self.give_up(n, &error);
                return;
            }
            self.sleep(backoff);
            backoff = (backoff * 2).min(self.options.backoff_max);
        }
    }

    fn give_up(&mut self, n: u64, error: &str) {
        self.counters.failed.fetch_add(n, Ordering::Relaxed);
        if !self.warned {
            self.warned = true;
            crate::notice::warn(format!(
                "webhook {}: {}; {n} alerts not delivered (further \
                 failures are counted in the stop summary)",
                self.redacted,
                crate::sanitize::for_terminal(error)
            ));
        }
    }

    /// Sleeps for the back-off, waking early when the monitor stops.
    fn sleep(&self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while !self.stop.load(Ordering::SeqCst) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            thread::park_timeout(left);
        }
    }
}

/// The JSON body for a batch of serialised alerts.
pub fn payload(host: &str, alerts: &[String], dropped: u64) -> String {
    let host = serde_json::Value::String(host.to_string()).to_string();
    let size = alerts.iter().map(|a| a.len() + 1).sum::<usize>() + host.len() + 64;
    let mut body = String::with_capacity(size);
    body.push_str(r#"{"source":"secmon","host":"#);
    body.push_str(&host);
    body.push_str(r#","alerts":["#);
    for (i, alert) in alerts.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(alert);
    }
    body.push_str(r#"],"dropped":"#);
    body.push_str(&dropped.to_string());
    body.push('}');
    body
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Read, Write},
        net::TcpListener,
        sync::Mutex,
    };

    use super::*;

    #[test]
    fn payload_is_json() {
        let body = payload("h\"x", &[r#"{"a":1}"#.to_string(), "{}".to_string()], 3);
        let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(v["source"], "secmon");
        assert_eq!(v["host"], "h\"x");
        assert_eq!(v["alerts"][0]["a"], 1);
        assert_eq!(v["alerts"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["dropped"], 3);
    }

    /// A one-thread HTTP server on loopback: answers each request with `statuses[i]` (the
    /// last one repeated) and keeps the bodies.
    fn server(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
        let (url, bodies, _) = server_with_heads(statuses);
        (url, bodies)
    }

    type Seen = Arc<Mutex<Vec<String>>>;

    /// [`server`], also keeping each request's header lines (lowercased names).
    fn server_with_heads(statuses: Vec<u16>) -> (String, Seen, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        let seen_heads = heads.clone();
        thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut length = 0;
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    head.push_str(&line);
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                seen_heads.lock().expect("lock").push(head);
                seen.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&body).into_owned());
                let status = statuses[i.min(statuses.len() - 1)];
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        (url, bodies, heads)
    }

    fn fast() -> WebhookOptions {
        WebhookOptions {
            linger: Duration::from_millis(50),
            backoff: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
            ..WebhookOptions::default()
        }
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn batches_and_retries_server_errors() {
        let (url, bodies) = server(vec![500, 200]);
        let hook = Webhook::start(&url, fast()).expect("start");
        assert!(hook.send(r#"{"n":1}"#.to_string()));
        assert!(hook.send(r#"{"n":2}"#.to_string()));
        wait_until("delivery", || hook.stats().sent == 2);
        let stats = hook.shutdown(Duration::from_secs(1));
        assert_eq!(stats.requests, 2, "one failure, one retry");
        let bodies = bodies.lock().expect("lock").clone();
        assert_eq!(bodies.len(), 2);
        let v: serde_json::Value = serde_json::from_str(&bodies[1]).expect("json");
        assert_eq!(v["alerts"][0]["n"], 1);
        assert_eq!(v["alerts"][1]["n"], 2, "both alerts in one batch");
    }

    #[test]
    fn client_errors_are_not_retried() {
        let (url, bodies) = server(vec![404]);
        let hook = Webhook::start(&url, fast()).expect("start");
        hook.send("{}".to_string());
        wait_until("failure", || hook.stats().failed == 1);
        let stats = hook.shutdown(Duration::from_secs(1));
        assert_eq!((stats.requests, stats.sent), (1, 0));
        assert_eq!(bodies.lock().expect("lock").len(), 1);
    }

    #[test]
    fn dead_endpoint_never_blocks_and_overflow_is_counted() {
        // Nothing listens on this port once the listener is dropped.
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let options = WebhookOptions {
            queue: 4,
            batch: 1,
            ..fast()
        };
        let hook = Webhook::start(&format!("http://127.0.0.1:{port}/"), options).expect("start");
        let started = Instant::now();
        let accepted = (0..100).filter(|_| hook.send("{}".to_string())).count();
        // A send that waited for the worker would take its back-off (seconds); 100 sends that
        // never wait take microseconds, so the bound leaves room for a busy CI machine.
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "send never waits"
        );
        assert!(accepted < 100);
        let stats = hook.shutdown(Duration::from_secs(5));
        assert_eq!(stats.dropped, 100 - accepted as u64);
        assert_eq!(stats.sent, 0);
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(Webhook::start("http://exa mple.com/", fast()).is_err());
    }

    #[test]
    fn the_secret_header_is_sent_and_never_shown() {
        let (url, _, heads) = server_with_heads(vec![200]);
        let header = parse_header("Authorization: Bearer s3cr3t-t0ken").expect("header");
        assert_eq!(format!("{header:?}"), "Authorization: ***");
        let options = WebhookOptions {
            header: Some(header),
            ..fast()
        };
        let hook = Webhook::start(&url, options).expect("start");
        hook.send("{}".to_string());
        wait_until("delivery", || hook.stats().sent == 1);
        hook.shutdown(Duration::from_secs(1));
        let heads = heads.lock().expect("lock").clone();
        assert!(
            heads[0].contains("authorization: Bearer s3cr3t-t0ken\r\n")
                || heads[0].contains("Authorization: Bearer s3cr3t-t0ken\r\n"),
            "{heads:?}"
        );
    }

    #[test]
    fn a_header_file_must_be_private_as_root() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hook.secret");
        std::fs::write(&path, "\n  Authorization: Bearer from-file\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let h = header_from_file(&path, true).expect("root's, 0600");
        assert_eq!(
            (h.name.as_str(), h.value()),
            ("Authorization", "Bearer from-file")
        );
        if secure_fs::strict_modes() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let e = header_from_file(&path, true).expect_err("world-readable");
            assert!(e.contains("mode 0644 lets others read the secret"), "{e}");
            assert!(e.contains("fix: sudo chmod 600"), "{e}");
            assert!(!e.contains("from-file"), "{e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            std::os::unix::fs::chown(&path, Some(65534), None).expect("chown");
            let e = header_from_file(&path, true).expect_err("nobody's");
            assert!(e.contains("owned by nobody"), "{e}");
        }
        std::fs::write(&path, "\n\n").expect("write");
        assert!(
            header_from_file(&path, false)
                .expect_err("empty")
                .contains("empty")
        );
        let e = header_from_file(&dir.path().join("missing"), false).expect_err("missing");
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn the_webhook_shows_its_url_redacted() {
        let hook = Webhook::start("http://u:pw@127.0.0.1:9/h?token=s3cret", fast()).expect("start");
        assert_eq!(hook.url(), "http://***@127.0.0.1:9/h?token=***");
        let e = Webhook::start("http://u:pw@exa mple.com/?k=s3cret", fast())
            .err()
            .expect("unusable");
        assert!(!e.contains("pw") && !e.contains("s3cret"), "{e}");
    }
}
