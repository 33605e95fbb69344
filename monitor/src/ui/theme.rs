//! How the screen looks whatever the terminal: colour or not ([`Theme`]) and the severity
//! markers that carry the meaning without colour.
use crate::event::Severity;

/// Colours or not (NO_COLOR, TERM=vt100/dumb); severity markers are text either way.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// From the environment: no colour when `NO_COLOR` is set (non-empty) or the terminal is
    /// monochrome (`TERM` dumb, vt52/vt100/vt102/vt220).
    pub fn from_env() -> Theme {
        Theme::from_vars(
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var("TERM").ok().as_deref(),
        )
    }

    pub fn from_vars(no_color: Option<&std::ffi::OsStr>, term: Option<&str>) -> Theme {
        let no_color = no_color.is_some_and(|v| !v.is_empty());
        let mono_term = term.is_some_and(|t| {
            let t = t.to_ascii_lowercase();
            t == "dumb" || t.starts_with("vt52") || t.starts_with("vt1") || t.starts_with("vt2")
        });
        Theme {
            color: !no_color && !mono_term,
        }
    }
}

/// The severity marker column: readable without colour.
pub fn severity_marker(severity: Severity) -> &'static str {
    match severity {
        Severity::Benign => "  ",
        Severity::Suspicious => "! ",
        Severity::Malicious => "!!",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theme_from_environment() {
        use std::ffi::OsStr;
        assert!(Theme::from_vars(None, Some("xterm-256color")).color);
        assert!(!Theme::from_vars(Some(OsStr::new("1")), Some("xterm")).color);
        assert!(Theme::from_vars(Some(OsStr::new("")), Some("xterm")).color);
        assert!(!Theme::from_vars(None, Some("vt100")).color);
        assert!(!Theme::from_vars(None, Some("dumb")).color);
    }

    #[test]
    fn markers_read_without_colour() {
        assert_eq!(severity_marker(Severity::Benign), "  ");
        assert_eq!(severity_marker(Severity::Suspicious), "! ");
        assert_eq!(severity_marker(Severity::Malicious), "!!");
    }
}
