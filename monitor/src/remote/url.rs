//! The remote controller's address (`--connect URL`), checked before anything is sent: `https://`
//! anywhere, plain `http://` only to a loopback address (the token would otherwise cross the
//! network in clear), no user name or password in it (the token comes from a file), no query.
use std::net::IpAddr;

use super::RemoteError;

/// A checked controller address: where the API and the event stream are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteUrl {
    tls: bool,
    /// The host as written (`web1.example.org`, `127.0.0.1`, `[::1]`).
    host: String,
    port: u16,
    /// A path prefix (a reverse proxy's), without the trailing `/`: `` or `/secmon`.
    prefix: String,
}

impl RemoteUrl {
    /// Parses and checks `text` (`https://web1:9988`, `http://127.0.0.1:9988/`).
    pub fn parse(text: &str) -> Result<RemoteUrl, RemoteError> {
        let bad = |why: &str| RemoteError::BadUrl(format!("{text:?}: {why}"));
        let uri: ureq::http::Uri = text
            .trim()
            .parse()
            .map_err(|e: ureq::http::uri::InvalidUri| bad(&e.to_string()))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(other) => return Err(bad(&format!("{other}:// is not http:// or https://"))),
            None => return Err(bad("no scheme: write https://HOST:PORT")),
        };
        let Some(authority) = uri.authority() else {
            return Err(bad("no host"));
        };
        if authority.as_str().contains('@') {
            return Err(bad(
                "a user or password in the URL: the token comes from --token-file",
            ));
        }
        if uri.query().is_some() {
            return Err(bad("a query string: give the controller's base address"));
        }
        let host = authority.host().to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        // The port as written (`Authority::port` is silent about one that does not parse).
        let text = authority.as_str();
        let after_host = text.rsplit_once(']').map_or(text, |(_, rest)| rest);
        let port = match after_host.rsplit_once(':').map(|(_, port)| port) {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
            None if tls => 443,
            None => 80,
        };
        if !tls && !is_loopback(&host) {
            return Err(bad(
                "plain http:// is only for a loopback address (127.0.0.1, ::1, localhost): \
                 the token and the events would cross the network in clear; use https://",
            ));
        }
        let prefix = uri.path().trim_end_matches('/').to_string();
        Ok(RemoteUrl {
            tls,
            host,
            port,
            prefix,
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The host as written in the URL (brackets kept around an IPv6 address).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host to resolve and to name in TLS (no brackets).
    pub fn host_name(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://web1:9988` (with the prefix): what the UI and errors show.
    pub fn base(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}{}", self.host, self.port, self.prefix)
    }

    /// The URL of `/api/v1{path}` (`path` starts with `/`).
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base())
    }

    /// The event stream's URL (`wss://…/api/v1/events`).
    pub fn events(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!(
            "{scheme}://{}:{}{}/api/v1/events",
            self.host, self.port, self.prefix
        )
    }
}

/// `localhost`, or a loopback address (`127.0.0.0/8`, `::1`).
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ipv4_mapped_loopback(ip))
}

fn ipv4_mapped_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> RemoteUrl {
        RemoteUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn refused(text: &str) -> String {
        match RemoteUrl::parse(text) {
            Ok(url) => panic!("{text} was accepted: {url:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn https_is_accepted_anywhere_with_its_default_port() {
        let url = ok("https://web1.example.org");
        assert!(url.is_tls());
        assert_eq!(url.port(), 443);
        assert_eq!(
            url.api("/status"),
            "https://web1.example.org:443/api/v1/status"
        );
        assert_eq!(url.events(), "wss://web1.example.org:443/api/v1/events");
        let url = ok("https://10.0.0.7:9988/");
        assert_eq!(url.base(), "https://10.0.0.7:9988");
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for text in [
            "http://127.0.0.1:9988",
            "http://127.1.2.3:9988/",
            "http://localhost:9988",
            "http://LOCALHOST:1",
            "http://[::1]:9988",
            "http://[::ffff:127.0.0.1]:9988",
        ] {
            let url = ok(text);
            assert!(!url.is_tls(), "{text}");
        }
        assert_eq!(ok("http://[::1]:9988").host_name(), "::1");
        assert_eq!(
            ok("http://[::1]:9988").events(),
            "ws://[::1]:9988/api/v1/events"
        );
        for text in [
            "http://10.0.0.7:9988",
            "http://web1:9988",
            "http://localhost.example.org:9988",
            "http://[::ffff:10.0.0.1]:9988",
            "http://0.0.0.0:9988",
        ] {
            assert!(refused(text).contains("loopback"), "{text}");
        }
    }

    #[test]
    fn other_schemes_credentials_queries_and_garbage_are_refused() {
        for (text, expected) in [
            ("ftp://127.0.0.1:21", "is not http"),
            ("ws://127.0.0.1:9988", "is not http"),
            ("127.0.0.1:9988", "scheme"),
            ("https://user:pw@web1:9988", "user or password"),
            ("https://web1:9988/?token=x", "query"),
            ("https://web1:99999", "port"),
            ("https://web1:0", "port"),
            ("https://", ""),
            ("", ""),
            ("https://we b1", ""),
            ("\u{1b}[31mhttps://x", ""),
        ] {
            let e = refused(text);
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn a_path_prefix_is_kept_for_a_reverse_proxy() {
        let url = ok("https://proxy.example.org/secmon/");
        assert_eq!(
            url.api("/rules"),
            "https://proxy.example.org:443/secmon/api/v1/rules"
        );
        assert_eq!(
            url.events(),
            "wss://proxy.example.org:443/secmon/api/v1/events"
        );
    }
}
