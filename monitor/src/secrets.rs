//! Values that must never be printed as they are: a webhook's header (its value is the
//! receiving end's secret) and the credentials a URL may carry. The config checks them and the
//! webhook sends them; both take them from here, so neither depends on the other.

use std::fmt;

/// An HTTP header whose value is a secret: `Debug` and messages never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHeader {
    pub name: String,
    value: String,
}

impl SecretHeader {
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for SecretHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ***", self.name)
    }
}

/// Parses a header line, `Name: value`. Errors never quote the value.
pub fn parse_header(line: &str) -> Result<SecretHeader, String> {
    let Some((name, value)) = line.split_once(':') else {
        return Err(
            "expected an HTTP header line, \"Name: value\" (e.g. \"Authorization: \
                    Bearer …\"); the value is not shown"
                .to_string(),
        );
    };
    let name = name.trim();
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!(
            "`{}` is not an HTTP header name (letters, digits and -)",
            crate::sanitize::for_terminal(name)
        ));
    }
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("the header {name} has an empty value"));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(format!(
            "the value of the header {name} contains control characters (not shown)"
        ));
    }
    Ok(SecretHeader {
        name: name.to_string(),
        value: value.to_string(),
    })
}

/// `url` as it may be printed: the user and password replaced by `***`, and every query
/// value too (`?token=***&x=***`); scheme, host, port, path and query keys are kept so the
/// operator can tell which hook it is.
pub fn redact_url(url: &str) -> String {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((u, _)) => (u, Some("***")),
        None => (url, None),
    };
    let (base, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_fragment, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = match authority.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => authority.to_string(),
            };
            format!("{scheme}://{host}{path}")
        }
        None => base.to_string(),
    };
    if let Some(query) = query {
        out.push('?');
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) => format!("{key}=***"),
                None if pair.is_empty() => String::new(),
                None => "***".to_string(),
            })
            .collect();
        out.push_str(&redacted.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_are_checked_without_quoting_the_value() {
        let h = parse_header("  X-Hook-Token :  abc def ").expect("parses");
        assert_eq!((h.name.as_str(), h.value()), ("X-Hook-Token", "abc def"));
        for bad in [
            "no colon s3cret",
            ": s3cret",
            "Bad Name: s3cret",
            "X-A:",
            "X-A: s3\rcret",
        ] {
            let e = parse_header(bad).expect_err(bad);
            assert!(
                !e.contains("s3cret") && !e.contains("s3\rcret"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn printed_urls_are_redacted() {
        for (url, shown) in [
            (
                "https://hooks.example.com/secmon",
                "https://hooks.example.com/secmon",
            ),
            (
                "https://user:pa55@hooks.example.com:8443/a/b?token=s3cret&x=1",
                "https://***@hooks.example.com:8443/a/b?token=***&x=***",
            ),
            ("http://tok@[::1]:9/h?sig", "http://***@[::1]:9/h?***"),
            ("http://h/p?a=1&&b=2#frag", "http://h/p?a=***&&b=***#***"),
            ("http://a@b@host/", "http://***@host/"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
