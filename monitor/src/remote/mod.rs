//! A client of a remote machine's controller (`secmon-tui --connect URL --token-file FILE`),
//! small enough for other front ends to reuse (the web controller's Machines page may):
//!
//! - [`RemoteUrl`] (`url.rs`): the address, checked (https, or http to loopback only);
//! - [`Client`] (`client.rs`): the JSON API, blocking, bearer token, verified TLS, timeouts;
//! - [`Link`] (`stream.rs`): the live event stream over a WebSocket, reconnecting with
//!   [`Backoff`] when it drops, into a bounded queue whose overflow is counted, never waited
//!   for; the link's state and losses for the header;
//! - `message.rs`: the stream's messages, read as untrusted input (bounded, never a panic);
//! - `ui_adapter.rs`: the terminal UI's ports over all of it, so that `p`, `r`, `R`, `b`,
//!   `B`, `D` and `h` act on the remote machine, through its API and its safety checks.
//!
//! Everything received is untrusted: sizes are bounded, every event is cut to what a real
//! capture can produce, and the UI escapes every field it draws.
mod backoff;
mod client;
mod message;
mod stream;
pub mod ui_adapter;
mod url;

pub use backoff::{Backoff, with_jitter};
pub use client::{
    CALL_TIMEOUT, Client, Denies, DenyEntry, HistoryPage, ProbeRow, RemoteStatus, Roots, RuleRow,
    Token, path_segment,
};
pub use message::{MAX_EVENTS_PER_MESSAGE, Parsed, event_from, parse};
pub use stream::{LINK_QUEUE, Link, LinkShared, LinkState, LinkStatus};
pub use url::RemoteUrl;

/// What can go wrong talking to a remote controller. The texts quote the controller's own
/// words: show them through `sanitize`.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("--connect {0}")]
    BadUrl(String),
    #[error("--token-file {0}")]
    TokenFile(String),
    #[error("--ca-file {0}")]
    CaFile(String),
    #[error(
        "the controller refused the token (401 {0}): is --token-file the token of that \
         controller (its [controller] token_file)?"
    )]
    Unauthorised(String),
    #[error("too many failed attempts from this address (429 {0}): wait a minute")]
    LockedOut(String),
    #[error("refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("cannot reach {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error(
        "the certificate of {url} is not trusted ({why}): pass its CA with --ca-file PEM, \
         or check that the URL names the host the certificate was made for"
    )]
    Certificate { url: String, why: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{url} took longer than {secs} seconds to answer", secs = client::CALL_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("an answer that does not parse: {0}")]
    BadAnswer(String),
    /// This side failed (the terminal, a thread).
    #[error("{0}")]
    Local(#[from] std::io::Error),
}

impl RemoteError {
    /// The error an HTTP status stands for (`message`: the answer's `error`).
    pub fn from_status(status: u16, message: String) -> RemoteError {
        match status {
            401 => RemoteError::Unauthorised(message),
            429 => RemoteError::LockedOut(message),
            _ => RemoteError::Refused { status, message },
        }
    }

    fn from_ureq(url: &RemoteUrl, error: ureq::Error) -> RemoteError {
        let url = url.base();
        match error {
            ureq::Error::Timeout(_) => RemoteError::Timeout { url },
            ureq::Error::Tls(why) => RemoteError::Tls(why.to_string()),
            ureq::Error::Rustls(e) => certificate_or_tls(url, e.to_string()),
            ureq::Error::Io(e) => match e.get_ref().map(|inner| inner.to_string()) {
                Some(inner) if inner.contains("certificate") => certificate_or_tls(url, inner),
                _ => RemoteError::Unreachable {
                    url,
                    why: e.to_string(),
                },
            },
            ureq::Error::BodyExceedsLimit(limit) => {
                RemoteError::BadAnswer(format!("an answer of more than {limit} bytes"))
            }
            other => RemoteError::Unreachable {
                url,
                why: other.to_string(),
            },
        }
    }

    /// True when the controller is there but will not have this client (a wrong token, a
    /// lockout): retrying soon will not help.
    pub fn is_refusal_of_the_token(&self) -> bool {
        matches!(
            self,
            RemoteError::Unauthorised(_) | RemoteError::LockedOut(_)
        )
    }

    /// The text for the status line: one line, cut (not escaped: the UI escapes what it
    /// draws).
    pub fn one_line(&self) -> String {
        one_line(&self.to_string())
    }
}

/// The longest line of the remote's words the UI shows.
const MAX_LINE: usize = 300;

/// `text` on one line (line breaks become spaces), at most `MAX_LINE` characters.
pub fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_LINE)
        .collect()
}

fn certificate_or_tls(url: String, why: String) -> RemoteError {
    if why.contains("certificate") || why.contains("Certificate") {
        RemoteError::Certificate { url, why }
    } else {
        RemoteError::Tls(why)
    }
}
