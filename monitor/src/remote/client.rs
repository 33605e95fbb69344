//! The remote controller's JSON API (`/api/v1/status`, `/probes`, `/rules`, `/denies`,
//! `/history`), blocking, over ureq: the bearer token on every request, certificates verified
//! (the `--ca-file` roots or Mozilla's), no proxy from the environment and no redirects (the
//! token goes to the URL given and nowhere else), a timeout on every call and a bound on every
//! answer's size. Errors are [`RemoteError`]s whose text is safe to show once escaped.
use std::{io::Read, path::Path, sync::Arc, time::Duration};

use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{RemoteError, RemoteUrl};

/// The longest a JSON call may take, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read (a history page of 500 events is a few MB at most).
pub const MAX_ANSWER: u64 = 32 * 1024 * 1024;
/// The largest token file read (a token is 64 hex digits).
const MAX_TOKEN_FILE: u64 = 4096;
/// The largest CA file read.
const MAX_CA_FILE: u64 = 1024 * 1024;

/// The access token, read from its file; never printed (its `Debug` says so).
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// Reads the token from `path`: refused when other users could read or change the file
    /// (as the controller refuses its own), when it is empty, or when it holds anything but
    /// the printable characters a header can carry.
    pub fn read(path: &Path) -> Result<Token, RemoteError> {
        let shown = path.display().to_string();
        let bad = |why: String| RemoteError::TokenFile(format!("{shown}: {why}"));
        let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(bad(
                    "other users can read or change it: chmod 600 it".to_string()
                ));
            }
        }
        let mut text = String::new();
        file.take(MAX_TOKEN_FILE + 1)
            .read_to_string(&mut text)
            .map_err(|e| bad(format!("not readable text: {e}")))?;
        if text.len() as u64 > MAX_TOKEN_FILE {
            return Err(bad("too long for a token".to_string()));
        }
        let token = text.trim();
        if token.is_empty() {
            return Err(bad("empty".to_string()));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "a token is one line of printable characters (64 hex digits)".to_string(),
            ));
        }
        Ok(Token(token.to_string()))
    }

    /// `Bearer …`.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    #[cfg(test)]
    pub fn for_test(token: &str) -> Token {
        Token(token.to_string())
    }
}

/// The certificates an https controller must chain to: those of `--ca-file`, or (`None`)
/// Mozilla's roots.
#[derive(Clone, Debug, Default)]
pub struct Roots {
    pub ca: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl Roots {
    /// Reads the PEM certificates of `path` (at least one).
    pub fn from_pem_file(path: &Path) -> Result<Roots, RemoteError> {
        use rustls::pki_types::pem::PemObject;
        let shown = path.display().to_string();
        let bad = |why: String| RemoteError::CaFile(format!("{shown}: {why}"));
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CA_FILE + 1).read_to_end(&mut bytes))
            .map_err(|e| bad(e.to_string()))?;
        if bytes.len() as u64 > MAX_CA_FILE {
            return Err(bad("too large for a PEM certificate file".to_string()));
        }
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(bad(
                "no certificate in it (PEM, BEGIN CERTIFICATE)".to_string()
            ));
        }
        Ok(Roots {
            ca: Some(Arc::new(certs)),
        })
    }

    fn ureq_roots(&self) -> ureq::tls::RootCerts {
        match &self.ca {
            Some(certs) => certs
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                .into(),
            None => ureq::tls::RootCerts::WebPki,
        }
    }

    /// The rustls configuration of the event stream (the `ring` provider).
    pub fn rustls_config(&self) -> Result<rustls::ClientConfig, RemoteError> {
        let mut store = rustls::RootCertStore::empty();
        match &self.ca {
            Some(certs) => {
                for cert in certs.iter() {
                    store
                        .add(cert.clone())
                        .map_err(|e| RemoteError::CaFile(e.to_string()))?;
                }
            }
            None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RemoteError::Tls(e.to_string()))?
            .with_root_certificates(store)
            .with_no_client_auth())
    }
}

/// The remote controller's status (`GET /api/v1/status`), the fields this client uses.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct RemoteStatus {
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub probes: Vec<ProbeRow>,
    #[serde(default)]
    pub losses: serde_json::Map<String, Value>,
    #[serde(default)]
    pub rules: usize,
    #[serde(default)]
    pub enforcement: String,
    #[serde(default)]
    pub history: Option<String>,
}

/// One probe family as the controller reports it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct ProbeRow {
    pub family: String,
    pub state: String,
    #[serde(default)]
    pub why_unavailable: Option<String>,
}

/// One rule as `GET /api/v1/rules` lists it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct RuleRow {
    pub name: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub score: f64,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub hits: u64,
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub line: usize,
    #[serde(default)]
    pub event_types: Vec<String>,
}

/// One deny entry of `GET /api/v1/denies`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct DenyEntry {
    pub id: u32,
    #[serde(default)]
    pub target: String,
    pub created: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub reason: String,
}

/// `GET /api/v1/denies`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Denies {
    #[serde(default)]
    pub enforcement: String,
    #[serde(default)]
    pub denies: Vec<DenyEntry>,
}

/// A page of `GET /api/v1/history`: the events as JSON (read one by one by the caller, as
/// untrusted) and the next page's cursor.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryPage {
    #[serde(default)]
    pub events: Vec<Value>,
    #[serde(default)]
    pub next: Option<String>,
}

/// A blocking client of one remote controller.
#[derive(Clone)]
pub struct Client {
    url: RemoteUrl,
    token: Token,
    roots: Roots,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(url: RemoteUrl, token: Token, roots: &Roots) -> Client {
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(roots.ureq_roots())
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(CALL_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .tls_config(tls)
            .user_agent(concat!("secmon-tui/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            url,
            token,
            roots: roots.clone(),
            agent,
        }
    }

    /// The roots the event stream must chain to (the same as the calls').
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    pub fn url(&self) -> &RemoteUrl {
        &self.url
    }

    pub fn token(&self) -> &Token {
        &self.token
    }

    pub fn status(&self) -> Result<RemoteStatus, RemoteError> {
        self.get("/status")
    }

    pub fn probes(&self) -> Result<Vec<ProbeRow>, RemoteError> {
        #[derive(Deserialize)]
        struct Probes {
            probes: Vec<ProbeRow>,
        }
        self.get::<Probes>("/probes").map(|p| p.probes)
    }

    /// Switches a probe family; the controller's answer (`file probes off`).
    pub fn set_probe(&self, family: &str, on: bool) -> Result<String, RemoteError> {
        let path = format!("/probes/{}", path_segment(family));
        self.done(self.send("PUT", &path, Some(json!({ "enabled": on })))?)
    }

    pub fn rules(&self) -> Result<Vec<RuleRow>, RemoteError> {
        #[derive(Deserialize)]
        struct Rules {
            rules: Vec<RuleRow>,
        }
        self.get::<Rules>("/rules").map(|r| r.rules)
    }

    pub fn set_rule(&self, name: &str, on: bool) -> Result<String, RemoteError> {
        let path = format!("/rules/{}", path_segment(name));
        self.done(self.send("PUT", &path, Some(json!({ "enabled": on })))?)
    }

    /// Reloads the remote's rule files: its summary, or why the previous rules stay.
    pub fn reload_rules(&self) -> Result<String, RemoteError> {
        let answer = self.send("POST", "/rules/reload", None)?;
        Ok(text_field(&answer, "summary"))
    }

    pub fn denies(&self) -> Result<Denies, RemoteError> {
        self.get("/denies")
    }

    /// Adds a deny entry (the remote's protected set and allowlist decide): the entry.
    pub fn add_deny(&self, target: Value, reason: &str) -> Result<DenyEntry, RemoteError> {
        let body = json!({ "target": target, "reason": reason });
        let answer = self.send("POST", "/denies", Some(body))?;
        serde_json::from_value(answer.get("deny").cloned().unwrap_or(Value::Null))
            .map_err(|e| RemoteError::BadAnswer(format!("POST /denies: {e}")))
    }

    /// Simulates a block on the remote: what it would do.
    pub fn simulate_deny(&self, target: Value) -> Result<String, RemoteError> {
        let answer = self.send(
            "POST",
            "/denies/simulate",
            Some(json!({ "target": target })),
        )?;
        Ok(answer
            .get("simulated")
            .map(|s| text_field(s, "outcome"))
            .unwrap_or_default())
    }

    pub fn remove_deny(&self, id: u32) -> Result<String, RemoteError> {
        let answer = self.send("DELETE", &format!("/denies/{id}"), None)?;
        Ok(answer
            .get("deny")
            .map(|d| text_field(d, "target"))
            .unwrap_or_default())
    }

    /// One page of the remote's history; `query` is the query string (already encoded).
    pub fn history(&self, query: &str) -> Result<HistoryPage, RemoteError> {
        self.get(&format!("/history?{query}"))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, RemoteError> {
        let answer = self.send("GET", path, None)?;
        serde_json::from_value(answer)
            .map_err(|e| RemoteError::BadAnswer(format!("GET {}: {e}", strip_query(path))))
    }

    /// The `done` text of a switch's answer.
    fn done(&self, answer: Value) -> Result<String, RemoteError> {
        Ok(text_field(&answer, "done"))
    }

    /// METHOD `/api/v1{path}` with the token (and `body` as JSON): the answer's JSON when the
    /// status is a success, else the error it names.
    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, RemoteError> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(self.url.api(path))
            .header("authorization", self.token.bearer())
            .header("accept", "application/json");
        let result = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                let request = request
                    .body(body.to_string().into_bytes())
                    .map_err(|e| RemoteError::BadUrl(e.to_string()))?;
                self.agent.run(request)
            }
            None => {
                let request = request
                    .body(())
                    .map_err(|e| RemoteError::BadUrl(e.to_string()))?;
                self.agent.run(request)
            }
        };
        let mut response = result.map_err(|e| RemoteError::from_ureq(&self.url, e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| RemoteError::from_ureq(&self.url, e))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        Err(RemoteError::from_status(status, error_text(&value)))
    }
}

/// The `error` of an error answer (cut: it is shown on one line).
fn error_text(answer: &Value) -> String {
    let text = answer
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no reason given");
    text.chars().take(300).collect()
}

fn text_field(answer: &Value, field: &str) -> String {
    answer
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

fn strip_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// `text` as one path segment: everything but unreserved characters percent-encoded (a rule
/// name with `/` or `?` must not change the path).
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("shadow_file_read"), "shadow_file_read");
        assert_eq!(path_segment("a/../b?c"), "a%2F..%2Fb%3Fc");
        assert_eq!(path_segment("é"), "%C3%A9");
    }

    #[test]
    fn token_files_are_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        write("abc123\n", 0o600);
        assert_eq!(Token::read(&path).expect("read").bearer(), "Bearer abc123");
        write("abc123\n", 0o644);
        assert!(
            Token::read(&path)
                .expect_err("readable")
                .to_string()
                .contains("chmod 600")
        );
        for bad in ["", "  \n", "two words", "x\u{1b}[2J", &"a".repeat(5000)] {
            write(bad, 0o600);
            assert!(Token::read(&path).is_err(), "{bad:?}");
        }
        assert!(Token::read(&dir.path().join("missing")).is_err());
        assert_eq!(format!("{:?}", Token::for_test("secret")), "Token(…)");
    }

    #[test]
    fn ca_files_must_hold_a_certificate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        assert!(Roots::from_pem_file(&path).is_err());
        assert!(Roots::from_pem_file(&dir.path().join("missing.pem")).is_err());
    }

    #[test]
    fn mozilla_roots_make_a_config() {
        assert!(Roots::default().rustls_config().is_ok());
    }
}
