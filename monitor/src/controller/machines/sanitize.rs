//! What a registered machine's controller sends back as HTML (a page body shown inside this
//! controller's shell, an HTMX fragment, a live-stream fragment) is made harmless before it
//! reaches the browser. The remote is another secmon, whose markup maud escaped; but a remote
//! that was taken over must not act on *this* controller through the browser's session. HTMX
//! attributes are instructions: `hx-post="/ui/machines/add" hx-trigger="load"` in a remote's
//! page would register a machine here, with this session's CSRF header. So:
//!
//! - the tags of elements that load or run anything (`script`, `iframe`, `object`, `embed`,
//!   `meta`, `base`, `link`, `style`, `template`) are shown as text, escaped;
//! - event handlers (`on*`, `hx-on*`) and `hx-headers`, `hx-select`, `hx-select-oob`,
//!   `hx-include`, `hx-ext` other than `ws` are dropped;
//! - a URL (`href`, `src`, `action`, `formaction`, `hx-get|post|put|delete|patch`,
//!   `ws-connect`) stays only if it is a path of this server that is forwarded to the remote
//!   (not one of this controller's own, [`super::proxy::is_local_only`]), or a `#fragment`;
//! - a target (`hx-target`) stays only as `#id`, and no element may take, target or swap out of
//!   band an id of this controller's shell (its header says which machine is shown).
//!
//! Made for the remote's own pages: their links, forms and buttons all go to forwarded paths,
//! so they work as before.
use std::{borrow::Cow, sync::LazyLock};

use regex::{Captures, Regex};

/// Ids of this controller's shell, which a remote's markup may not take or target.
const SHELL_IDS: &[&str] = &["main", "shown-machine", "machine-select"];

/// Elements whose tags are removed.
const DROPPED_ELEMENTS: &[&str] = &[
    "script", "iframe", "frame", "object", "embed", "meta", "base", "link", "style", "template",
];

/// Attributes that carry a URL.
const URL_ATTRIBUTES: &[&str] = &[
    "href",
    "src",
    "action",
    "formaction",
    "hx-get",
    "hx-post",
    "hx-put",
    "hx-delete",
    "hx-patch",
    "ws-connect",
    "sse-connect",
    "xlink:href",
];

/// Attributes removed whatever their value.
const DROPPED_ATTRIBUTES: &[&str] = &[
    "hx-headers",
    "hx-select",
    "hx-select-oob",
    "hx-include",
    "hx-boost",
    "hx-push-url",
    "hx-replace-url",
    "hx-history",
    "hx-history-elt",
    "hx-disinherit",
    "hx-inherit",
    "srcdoc",
    "style",
];

static TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)((?:[^>\x22']|\x22[^\x22]*\x22|'[^']*')*)>")
        .unwrap_or_else(|e| unreachable!("a fixed pattern: {e}"))
});

static ATTRIBUTE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?"#)
        .unwrap_or_else(|e| unreachable!("a fixed pattern: {e}"))
});

/// `html` from a remote, made harmless (see the module's documentation).
pub fn remote_html(html: &str) -> String {
    TAG.replace_all(html, |caps: &Captures| tag(caps))
        .into_owned()
}

fn tag(caps: &Captures) -> String {
    let closing = &caps[1];
    let name = caps[2].to_ascii_lowercase();
    if DROPPED_ELEMENTS.contains(&name.as_str()) {
        // Escaped, not removed: removing could join the text around it into a new tag
        // (`<<script>script>`).
        return caps[0]
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
    }
    if !closing.is_empty() {
        return format!("</{name}>");
    }
    let rest = &caps[3];
    let self_closing = rest.trim_end().ends_with('/');
    let mut out = format!("<{name}");
    for attribute in ATTRIBUTE.captures_iter(rest) {
        let key = attribute[1].to_ascii_lowercase();
        let value = attribute
            .get(2)
            .or_else(|| attribute.get(3))
            .or_else(|| attribute.get(4))
            .map(|m| m.as_str());
        if let Some(value) = value {
            if keep(&key, &decode(value)) {
                out.push_str(&format!(" {key}=\"{}\"", requote(value)));
            }
        } else if keep(&key, "") {
            out.push(' ');
            out.push_str(&key);
        }
    }
    if self_closing {
        out.push_str(" /");
    }
    out.push('>');
    out
}

/// Whether attribute `key` with (entity-decoded) `value` may stay.
fn keep(key: &str, value: &str) -> bool {
    if key.starts_with("on") || key.starts_with("hx-on") || key.starts_with("data-hx-") {
        return false;
    }
    if DROPPED_ATTRIBUTES.contains(&key) {
        return false;
    }
    if URL_ATTRIBUTES.contains(&key) {
        return forwarded_url(value);
    }
    match key {
        "id" => !SHELL_IDS.contains(&value.trim()),
        "hx-target" => value
            .strip_prefix('#')
            .is_some_and(|id| is_plain_id(id) && !SHELL_IDS.contains(&id)),
        // `true` (the element's own id, checked above) or a swap style, never a selector.
        "hx-swap-oob" => !value.contains([':', '#', '.', ',']),
        "hx-ext" => value.trim() == "ws",
        _ => true,
    }
}

fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A `#fragment`, or a path of this server that is forwarded to the remote.
fn forwarded_url(value: &str) -> bool {
    let value = value.trim();
    if value.starts_with('#') {
        return true;
    }
    let path = value.split(['?', '#']).next().unwrap_or_default();
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.split('/').any(|segment| segment == "..")
        && !super::proxy::is_local_only(path)
}

/// The few entities maud writes, decoded, so that a value is judged as the browser reads it
/// (`&#47;ui&#47;machines` is `/ui/machines`); any other `&#` makes the value unreadable here,
/// hence refused by [`forwarded_url`] and [`keep`]'s checks.
fn decode(value: &str) -> Cow<'_, str> {
    if !value.contains('&') {
        return Cow::Borrowed(value);
    }
    let decoded = value
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    if decoded.contains("&#") {
        // Numeric references maud never writes: treat as hostile.
        return Cow::Owned("\\".to_string());
    }
    Cow::Owned(decoded)
}

/// A value as it was, written back between double quotes (quotes inside it escaped).
fn requote(value: &str) -> Cow<'_, str> {
    if value.contains('"') {
        Cow::Owned(value.replace('"', "&quot;"))
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remotes_own_markup_is_kept() {
        let html = r##"<div id="rules-table" hx-swap-oob="true"><button class="small" type="button" hx-post="/ui/probes/file" hx-vals="{&quot;enabled&quot;:false}" hx-target="#probe-result" hx-confirm="Sure?">off</button><a href="/process/12">bash</a><input type="text" name="q" required><div class="live" hx-ext="ws" ws-connect="/ui/live"></div></div>"##;
        let clean = remote_html(html);
        for kept in [
            r#"hx-post="/ui/probes/file""#,
            r#"hx-vals="{&quot;enabled&quot;:false}""#,
            r##"hx-target="#probe-result""##,
            r#"href="/process/12""#,
            r#"ws-connect="/ui/live""#,
            r#"hx-swap-oob="true""#,
            r#"id="rules-table""#,
            " required",
            "off</button>",
        ] {
            assert!(clean.contains(kept), "{kept} lost: {clean}");
        }
    }

    #[test]
    fn what_would_act_on_this_controller_is_removed() {
        let html = r##"<div hx-post="/ui/machines/add" hx-trigger="load" hx-vals='{"name":"evil"}'>x</div><a href="https://evil.example/">y</a><a href="//evil.example/">z</a><form action="/logout"></form><img src="/x" onerror="alert(1)"><span id="shown-machine" hx-swap-oob="true">spoof</span><div hx-target="body" hx-get="/probes"></div><div hx-swap-oob="outerHTML:#shown-machine"></div><script>alert(1)</script><SCRIPT src="/assets/app.js"></SCRIPT><iframe src="/"></iframe><meta http-equiv="refresh" content="0;url=https://evil.example"><div hx-headers='{"X-CSRF-Token":"x"}' hx-on:click="alert(1)"></div><a href="/ui/machines/select">s</a><a href="/api/v1/machines">m</a><a href="&#47;machines">e</a><a href="/../machines">d</a>"##;
        let clean = remote_html(html);
        for gone in [
            "/ui/machines/add",
            r#"href="https://evil"#,
            r#"href="//evil"#,
            "<meta",
            "/logout",
            "onerror",
            "shown-machine",
            r#"hx-target="body""#,
            "<script",
            "<iframe",
            "<meta",
            "hx-headers",
            "hx-on",
            "/ui/machines/select",
            "/api/v1/machines",
            "&#47;machines",
            "/../machines",
        ] {
            assert!(!clean.to_lowercase().contains(gone), "{gone} kept: {clean}");
        }
        // The text stays, as text; a dropped tag is shown escaped.
        assert!(clean.contains("spoof") && clean.contains("alert(1)"));
        assert!(clean.contains("&lt;script&gt;"), "{clean}");
        let joined = remote_html("<<script>script>alert(1)<</script>/script>");
        assert!(!joined.to_lowercase().contains("<script"), "{joined}");
        assert!(clean.contains(r#"hx-get="/probes""#), "{clean}");
    }

    #[test]
    fn quotes_and_odd_tags_do_not_smuggle_attributes() {
        let clean = remote_html(r#"<a title='x" onclick="alert(1)' href="/ok">a</a><b/><br/>"#);
        assert!(!clean.contains(r#" onclick="alert"#), "{clean}");
        assert!(
            clean.contains(r#"title="x&quot; onclick=&quot;alert(1)""#),
            "{clean}"
        );
        assert!(clean.contains("<br />"), "{clean}");
    }
}
