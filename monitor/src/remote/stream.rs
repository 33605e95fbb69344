//! The remote controller's live stream (`/api/v1/events`, a WebSocket) as a [`Link`]: one task
//! that connects (TLS verified as for the JSON calls), reads messages, hands the events to a
//! bounded queue and reconnects with [`Backoff`] when the link drops.
//!
//! The queue never makes the socket wait: a batch that does not fit (a terminal slower than
//! the stream) is dropped and its events counted as lost on the link, as are the remote's own
//! `lost` messages (this client fell behind the remote's ring) and events that do not parse.
//! A link that stays silent is checked with pings; one that does not answer is dropped and
//! made again.
use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::mpsc,
    task::JoinHandle,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        client::IntoClientRequest,
        http::{HeaderValue, header::AUTHORIZATION},
        protocol::WebSocketConfig,
    },
};

use super::{
    RemoteError, RemoteUrl, Roots, Token,
    backoff::{self, Backoff},
    client::CALL_TIMEOUT,
    message,
};
use crate::event::Event;

/// Messages (batches of events) waiting for the UI; more are dropped and counted.
pub const LINK_QUEUE: usize = 64;
/// The largest message read from the controller (it sends at most 256 events in one).
const MAX_MESSAGE: usize = 32 * 1024 * 1024;
/// A silent link is pinged this often…
const PING_EVERY: Duration = Duration::from_secs(10);
/// …and dropped when nothing at all came for this long.
const SILENCE_LIMIT: Duration = Duration::from_secs(25);

/// The link's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// The first attempt, or an attempt after a wait.
    Connecting,
    Connected,
    /// Waiting until `retry_at` before the next attempt.
    Reconnecting {
        retry_at: Instant,
    },
    /// The controller refused the token; tried again after `backoff::UNAUTHORISED`.
    Unauthorised {
        retry_at: Instant,
    },
}

/// What the link is doing and has lost, read by the UI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    pub state: LinkState,
    /// Why the last attempt or connection ended (one line, not escaped: the UI escapes it).
    pub why: Option<String>,
    /// Events the remote said this client lost (`lost` messages).
    pub lost_remotely: u64,
    /// Events dropped here: the UI's queue was full, or they did not parse.
    pub lost_locally: u64,
    /// Connections made since start.
    pub connections: u64,
}

/// The state shared between the link's task and its readers.
#[derive(Debug)]
pub struct LinkShared {
    state: Mutex<(LinkState, Option<String>)>,
    lost_remotely: AtomicU64,
    lost_locally: AtomicU64,
    connections: AtomicU64,
}

impl Default for LinkShared {
    fn default() -> Self {
        LinkShared {
            state: Mutex::new((LinkState::Connecting, None)),
            lost_remotely: AtomicU64::new(0),
            lost_locally: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        }
    }
}

impl LinkShared {
    pub fn status(&self) -> LinkStatus {
        let (state, why) = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        LinkStatus {
            state,
            why,
            lost_remotely: self.lost_remotely.load(Ordering::Relaxed),
            lost_locally: self.lost_locally.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
        }
    }

    pub(super) fn set(&self, state: LinkState, why: Option<String>) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = (state, why);
    }

    /// Counts `events` dropped here (a full queue, unreadable events).
    pub fn count_local_loss(&self, events: u64) {
        self.lost_locally.fetch_add(events, Ordering::Relaxed);
    }
}

/// The running stream: stops when dropped.
pub struct Link {
    shared: Arc<LinkShared>,
    task: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    /// Starts the stream's task on the current runtime; events go to `events`.
    pub fn start(
        url: RemoteUrl,
        token: Token,
        roots: &Roots,
        events: mpsc::Sender<Vec<Event>>,
    ) -> Result<Link, RemoteError> {
        let tls = if url.is_tls() {
            Some(tokio_rustls::TlsConnector::from(Arc::new(
                roots.rustls_config()?,
            )))
        } else {
            None
        };
        let shared = Arc::new(LinkShared::default());
        let stream = Stream {
            url,
            token,
            tls,
            shared: shared.clone(),
            events,
        };
        let task = tokio::spawn(stream.run());
        Ok(Link { shared, task })
    }

    pub fn shared(&self) -> Arc<LinkShared> {
        self.shared.clone()
    }
}

/// A byte stream the WebSocket runs over: plain TCP (loopback) or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Stream {
    url: RemoteUrl,
    token: Token,
    tls: Option<tokio_rustls::TlsConnector>,
    shared: Arc<LinkShared>,
    events: mpsc::Sender<Vec<Event>>,
}

/// Why a connection attempt or a connection ended.
enum Ended {
    /// The controller refused the token.
    Unauthorised(String),
    /// Anything else: try again after the backoff.
    Dropped(String),
    /// The UI is gone: stop.
    Closed,
}

impl Stream {
    async fn run(self) {
        let mut backoff = Backoff::default();
        loop {
            self.shared.set(LinkState::Connecting, None);
            let ended = match self.connect().await {
                Ok(socket) => {
                    self.shared.connections.fetch_add(1, Ordering::Relaxed);
                    self.shared.set(LinkState::Connected, None);
                    backoff.reset();
                    self.read(socket).await
                }
                Err(ended) => ended,
            };
            let (delay, state, why): (Duration, fn(Instant) -> LinkState, String) = match ended {
                Ended::Closed => return,
                Ended::Unauthorised(why) => (
                    backoff::UNAUTHORISED,
                    |at| LinkState::Unauthorised { retry_at: at },
                    why,
                ),
                Ended::Dropped(why) => (
                    backoff::with_jitter(backoff.next_delay(), backoff::random_u32()),
                    |at| LinkState::Reconnecting { retry_at: at },
                    why,
                ),
            };
            let retry_at = Instant::now() + delay;
            self.shared
                .set(state(retry_at), Some(super::one_line(&why)));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.events.closed() => return,
            }
        }
    }

    /// TCP (and TLS), then the WebSocket handshake with the token, all within
    /// [`CALL_TIMEOUT`].
    async fn connect(&self) -> Result<WebSocketStream<Box<dyn Io>>, Ended> {
        match tokio::time::timeout(CALL_TIMEOUT, self.handshake()).await {
            Ok(result) => result,
            Err(_) => Err(Ended::Dropped(format!(
                "no answer within {} seconds",
                CALL_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn handshake(&self) -> Result<WebSocketStream<Box<dyn Io>>, Ended> {
        let tcp = TcpStream::connect((self.url.host_name(), self.url.port()))
            .await
            .map_err(|e| Ended::Dropped(format!("cannot reach {}: {e}", self.url.base())))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            Some(connector) => {
                let name =
                    rustls::pki_types::ServerName::try_from(self.url.host_name().to_string())
                        .map_err(|e| Ended::Dropped(format!("{}: {e}", self.url.host())))?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| Ended::Dropped(format!("TLS with {}: {e}", self.url.base())))?;
                Box::new(tls)
            }
            None => Box::new(tcp),
        };
        let mut request = self
            .url
            .events()
            .into_client_request()
            .map_err(|e| Ended::Dropped(e.to_string()))?;
        let bearer = HeaderValue::from_str(&self.token.bearer())
            .map_err(|_| Ended::Dropped("the token cannot be sent in a header".to_string()))?;
        request.headers_mut().insert(AUTHORIZATION, bearer);
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        match tokio_tungstenite::client_async_with_config(request, io, Some(config)).await {
            Ok((socket, _)) => Ok(socket),
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body: String = response
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).chars().take(300).collect())
                    .unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                    .unwrap_or(body);
                let error = RemoteError::from_status(status, message);
                if error.is_refusal_of_the_token() {
                    Err(Ended::Unauthorised(error.to_string()))
                } else {
                    Err(Ended::Dropped(error.to_string()))
                }
            }
            Err(e) => Err(Ended::Dropped(format!("WebSocket: {e}"))),
        }
    }

    /// Reads until the link drops (or the UI is gone).
    async fn read(&self, mut socket: WebSocketStream<Box<dyn Io>>) -> Ended {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                message = socket.next() => {
                    last_heard = Instant::now();
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            if !self.deliver(message::parse(&text)) {
                                return Ended::Closed;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => {
                            return Ended::Dropped("the controller closed the stream".to_string());
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Ended::Dropped(format!("the stream broke: {e}")),
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() >= SILENCE_LIMIT {
                        return Ended::Dropped(format!(
                            "no answer for {} seconds", SILENCE_LIMIT.as_secs()
                        ));
                    }
                    if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                        return Ended::Dropped("the stream broke".to_string());
                    }
                }
                _ = self.events.closed() => return Ended::Closed,
            }
        }
    }

    /// Queues a message's events for the UI, counting what is lost; false once the UI is gone.
    fn deliver(&self, parsed: message::Parsed) -> bool {
        self.shared
            .lost_remotely
            .fetch_add(parsed.lost_remotely, Ordering::Relaxed);
        self.shared.count_local_loss(parsed.unreadable);
        if parsed.events.is_empty() {
            return true;
        }
        let n = parsed.events.len() as u64;
        match self.events.try_send(parsed.events) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.count_local_loss(n);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::{
        handshake::server::{ErrorResponse, Request, Response},
        http,
    };

    use super::*;

    const TOKEN: &str = "the-token";

    fn event() -> serde_json::Value {
        json!({
            "timestamp": "2026-12-02T12:52:23.460478022Z", "event_type": "process_exec",
            "pid": 7, "tid": 7, "ppid": 1, "uid": 0, "user": "root", "process": "curl",
            "exe": "/usr/bin/curl", "cmdline": "curl", "cgroup_id": 1,
            "analysis": {"label": "x", "severity": "benign", "risk_score": 0.1,
                         "detection_method": "none", "recommendation": "", "rules": []}
        })
    }

    fn events(n: usize) -> Message {
        Message::text(json!({"type": "events", "events": vec![event(); n]}).to_string())
    }

    /// A fake controller's next connection: the token checked as the real one does (401
    /// otherwise), then `messages`, then a close.
    async fn serve_once(listener: &TcpListener, messages: Vec<Message>) {
        let (tcp, _) = listener.accept().await.expect("accept");
        // The callback's type is tungstenite's.
        #[allow(clippy::result_large_err)]
        let check = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
            let bearer = format!("Bearer {TOKEN}");
            if request
                .headers()
                .get("authorization")
                .is_some_and(|v| v.as_bytes() == bearer.as_bytes())
            {
                Ok(response)
            } else {
                Err(http::Response::builder()
                    .status(401)
                    .body(Some(r#"{"error":"wrong bearer token"}"#.to_string()))
                    .expect("a response"))
            }
        };
        if let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(tcp, check).await {
            for message in messages {
                socket.send(message).await.expect("send");
            }
            let _ = socket.close(None).await;
        }
    }

    async fn listener() -> (TcpListener, RemoteUrl) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let url = RemoteUrl::parse(&format!("http://127.0.0.1:{port}")).expect("a URL");
        (listener, url)
    }

    /// Polls `done` (the link works on its own task) until it holds.
    async fn wait_until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..2000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never happened: {what}");
    }

    #[tokio::test]
    async fn hostile_messages_are_counted_and_the_link_comes_back_by_itself() {
        let (listener, url) = listener().await;
        let (tx, mut rx) = mpsc::channel(LINK_QUEUE);
        let link = Link::start(url, Token::for_test(TOKEN), &Roots::default(), tx)
            .expect("the link starts");
        let shared = link.shared();
        let mixed = json!({"type": "events", "events": [event(), {"pid": "x"}]}).to_string();
        serve_once(
            &listener,
            vec![
                events(2),
                Message::text("not JSON \u{1b}[2J"),
                Message::text(r#"{"type":"lost","events":7,"total":7}"#),
                Message::text(mixed),
                Message::binary(vec![0u8; 64]),
            ],
        )
        .await;
        assert_eq!(rx.recv().await.expect("a batch").len(), 2);
        assert_eq!(rx.recv().await.expect("a batch").len(), 1);
        wait_until("the losses counted", || {
            let status = shared.status();
            status.lost_remotely == 7 && status.lost_locally == 1
        })
        .await;
        // The controller closed: the link waits, then connects again without being asked.
        wait_until("the link reconnecting", || {
            matches!(shared.status().state, LinkState::Reconnecting { .. })
        })
        .await;
        serve_once(&listener, vec![events(3)]).await;
        assert_eq!(
            rx.recv().await.expect("a batch after the reconnect").len(),
            3
        );
        assert_eq!(shared.status().connections, 2);
    }

    #[tokio::test]
    async fn a_slow_reader_loses_whole_counted_batches_never_the_link() {
        let (listener, url) = listener().await;
        let (tx, mut rx) = mpsc::channel(2);
        let link = Link::start(url, Token::for_test(TOKEN), &Roots::default(), tx)
            .expect("the link starts");
        let shared = link.shared();
        serve_once(&listener, (0..5).map(|_| events(3)).collect()).await;
        wait_until("the overflow counted", || shared.status().lost_locally == 9).await;
        assert_eq!(rx.recv().await.expect("the first batch").len(), 3);
        assert_eq!(rx.recv().await.expect("the second batch").len(), 3);
        assert!(rx.try_recv().is_err(), "only two batches fitted");
    }

    #[tokio::test]
    async fn a_refused_token_is_reported_not_retried_at_once() {
        let (listener, url) = listener().await;
        let (tx, _rx) = mpsc::channel(LINK_QUEUE);
        let link = Link::start(url, Token::for_test("wrong"), &Roots::default(), tx)
            .expect("the link starts");
        let shared = link.shared();
        serve_once(&listener, Vec::new()).await;
        wait_until("the refusal", || {
            matches!(shared.status().state, LinkState::Unauthorised { .. })
        })
        .await;
        let status = shared.status();
        assert!(
            status.why.as_deref().is_some_and(|w| w.contains("401")),
            "{status:?}"
        );
        let LinkState::Unauthorised { retry_at } = status.state else {
            unreachable!("matched above")
        };
        assert!(
            retry_at > Instant::now() + backoff::FIRST,
            "retried too soon"
        );
        assert_eq!(status.connections, 0);
    }
}
