//! How the screen looks whatever the terminal: colour or not, the presenter layout or not
//! ([`Theme`]), and the severity markers that carry the meaning without colour.
//!
//! No information is carried by colour alone, in either layout: severities have their
//! markers (`!`/`!!`, or in the presenter layout words with symbols), the focused pane a `▶`
//! in its title, the selected row reversed video (an attribute monochrome terminals have),
//! probe and rule states the words `on`/`off`/`n/a`, blocks `[stopped]`/`[would block]`,
//! flagged processes in the incident view the word `ALERT`, and error status lines a `✗`.
use crate::event::Severity;

/// Colours or not (NO_COLOR, TERM=vt100/dumb); severity markers are text either way. The
/// presenter layout (`--presenter`, `Z`: the app's `presenter`) is drawn with fewer columns,
/// bigger markers and a high-contrast palette.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
    pub presenter: bool,
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
            presenter: false,
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

/// The presenter layout's markers: a symbol and a word, readable from the back of a room.
pub fn presenter_marker(severity: Severity) -> &'static str {
    match severity {
        Severity::Benign => "",
        Severity::Suspicious => "▲ SUSPICIOUS",
        Severity::Malicious => "!! MALICIOUS",
    }
}

/// Columns of the presenter layout's marker column (the longest marker).
pub const PRESENTER_MARKER_WIDTH: u16 = 12;

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

    /// Every severity has its own text in both layouts (colour is never the only signal),
    /// and the presenter's markers fit their column.
    #[test]
    fn every_severity_has_a_distinct_textual_marker() {
        let all = [Severity::Benign, Severity::Suspicious, Severity::Malicious];
        for marker in [severity_marker, presenter_marker] {
            let texts: std::collections::HashSet<&str> =
                all.iter().map(|&s| marker(s).trim()).collect();
            assert_eq!(texts.len(), all.len(), "{:?}", texts);
        }
        for severity in all {
            let width = unicode_width::UnicodeWidthStr::width(presenter_marker(severity));
            assert!(width <= usize::from(PRESENTER_MARKER_WIDTH), "{severity:?}");
        }
        assert!(presenter_marker(Severity::Malicious).contains("MALICIOUS"));
        assert!(presenter_marker(Severity::Suspicious).contains("SUSPICIOUS"));
    }
}
