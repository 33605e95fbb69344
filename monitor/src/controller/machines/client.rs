//! The controller's client to the controllers it registered: one connection per request (TCP,
//! then TLS for `https://`, the certificate checked against the machine's `ca_file` or
//! Mozilla's roots), HTTP/1 through hyper's low-level client or a WebSocket through
//! tokio-tungstenite, every step under a timeout. The machine's token goes in the
//! `Authorization` header and nowhere else; no error said here quotes it (the errors are the
//! network's and TLS's own, sanitised before they are shown).
use std::{path::Path, sync::Arc, time::Duration};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, header::HeaderMap};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncRead, AsyncWrite};

use super::registry::Machine;

/// Connecting (TCP and TLS) may take this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A whole answer (headers and body) may take this long.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest answer body read from a remote (a page of history at most).
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// Largest WebSocket message taken from a remote (a live page update is far less).
pub const MAX_REMOTE_MESSAGE: usize = 8 * 1024 * 1024;

/// What went wrong talking to a remote, in words safe to show (no token, control characters
/// escaped).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RemoteError(String);

impl RemoteError {
    pub fn new(what: impl std::fmt::Display) -> RemoteError {
        RemoteError(crate::sanitize::for_terminal(&what.to_string()).into_owned())
    }
}

/// The certificates of a PEM file (at least one).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The TLS settings for `machine`: its CA file's certificates as the only roots, or Mozilla's.
fn tls_config(machine: &Machine) -> Result<Arc<rustls::ClientConfig>, RemoteError> {
    let mut roots = rustls::RootCertStore::empty();
    match &machine.ca_file {
        Some(path) => {
            for cert in read_ca_file(path).map_err(|e| RemoteError::new(format!("ca_file {e}")))? {
                roots
                    .add(cert)
                    .map_err(|e| RemoteError::new(format!("ca_file {}: {e}", path.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(RemoteError::new)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A byte stream to a remote: plain TCP (loopback only) or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where a machine's URL points.
struct Target {
    tls: bool,
    host: String,
    port: u16,
    /// `host:port` as the Host header says it.
    authority: String,
}

fn target(machine: &Machine) -> Result<Target, RemoteError> {
    let uri: hyper::Uri = machine
        .url
        .parse()
        .map_err(|_| RemoteError::new("the machine's URL does not parse"))?;
    let tls = uri.scheme_str() == Some("https");
    let authority = uri
        .authority()
        .ok_or_else(|| RemoteError::new("the machine's URL has no host"))?;
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok(Target {
        tls,
        host: authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        authority: authority.as_str().to_string(),
    })
}

/// A connection to `machine`, TLS checked.
async fn connect(machine: &Machine) -> Result<(Box<dyn Io>, Target), RemoteError> {
    let target = target(machine)?;
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| RemoteError::new(format!("no connection within {CONNECT_TIMEOUT:?}")))?
    .map_err(|e| RemoteError::new(format!("cannot connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    if !target.tls {
        return Ok((Box::new(tcp), target));
    }
    let name = ServerName::try_from(target.host.clone())
        .map_err(|e| RemoteError::new(format!("TLS: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(tls_config(machine)?);
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| RemoteError::new(format!("no TLS handshake within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| RemoteError::new(format!("TLS: {e}")))?;
    Ok((Box::new(tls), target))
}

/// A remote's answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends `method path_and_query` to `machine` with its token, `headers` (already chosen by
/// the caller: nothing of the browser's credentials) and `body`; reads the whole answer.
pub async fn send(
    machine: &Machine,
    method: Method,
    path_and_query: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Answer, RemoteError> {
    tokio::time::timeout(
        ANSWER_TIMEOUT,
        send_untimed(machine, method, path_and_query, headers, body),
    )
    .await
    .map_err(|_| RemoteError::new(format!("no answer within {ANSWER_TIMEOUT:?}")))?
}

async fn send_untimed(
    machine: &Machine,
    method: Method,
    path_and_query: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Answer, RemoteError> {
    let (io, target) = connect(machine).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| RemoteError::new(format!("HTTP: {e}")))?;
    // Drives the connection until the answer is read (then it closes: one request each).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = Request::builder()
        .method(method)
        .uri(path_and_query)
        .body(Full::new(body))
        .map_err(|e| RemoteError::new(format!("request: {e}")))?;
    *request.headers_mut() = headers;
    let set = request.headers_mut();
    set.insert(hyper::header::HOST, header_value(&target.authority)?);
    set.insert(
        hyper::header::AUTHORIZATION,
        header_value(&format!("Bearer {}", machine.token()))?,
    );
    set.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| RemoteError::new(format!("HTTP: {e}")))?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| RemoteError::new(format!("reading the answer: {e}")))?
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A header value from text we made (a token was checked printable when registered).
fn header_value(text: &str) -> Result<hyper::header::HeaderValue, RemoteError> {
    hyper::header::HeaderValue::from_str(text)
        .map_err(|_| RemoteError::new("a header value is not valid"))
}

/// `GET path` as JSON (a 2xx answer only).
pub async fn get_json(machine: &Machine, path: &str) -> Result<serde_json::Value, RemoteError> {
    let answer = send(machine, Method::GET, path, HeaderMap::new(), Bytes::new()).await?;
    if !answer.status.is_success() {
        return Err(RemoteError::new(format!(
            "{path}: HTTP {}{}",
            answer.status.as_u16(),
            match answer.status {
                StatusCode::UNAUTHORIZED => " (the token is not this machine's)",
                StatusCode::TOO_MANY_REQUESTS => " (locked out after wrong tokens; wait a minute)",
                _ => "",
            }
        )));
    }
    serde_json::from_slice(&answer.body)
        .map_err(|e| RemoteError::new(format!("{path}: not JSON: {e}")))
}

/// A remote WebSocket.
pub type RemoteSocket = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// Opens the WebSocket `path_and_query` on `machine` with its token.
pub async fn websocket(
    machine: &Machine,
    path_and_query: &str,
) -> Result<RemoteSocket, RemoteError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (io, target) = connect(machine).await?;
    let scheme = if target.tls { "wss" } else { "ws" };
    let mut request = format!("{scheme}://{}{path_and_query}", target.authority)
        .into_client_request()
        .map_err(|e| RemoteError::new(format!("WebSocket: {e}")))?;
    request.headers_mut().insert(
        hyper::header::AUTHORIZATION,
        header_value(&format!("Bearer {}", machine.token()))?,
    );
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_REMOTE_MESSAGE))
        .max_frame_size(Some(MAX_REMOTE_MESSAGE));
    let (socket, _) = tokio::time::timeout(
        ANSWER_TIMEOUT,
        tokio_tungstenite::client_async_with_config(request, io, Some(config)),
    )
    .await
    .map_err(|_| RemoteError::new(format!("no WebSocket within {ANSWER_TIMEOUT:?}")))?
    .map_err(|e| RemoteError::new(format!("WebSocket: {e}")))?;
    Ok(socket)
}
