//! Keys that are gone but still found in files written for older versions. They are taken out
//! of the parse tree before deserialising, so the section structs never know them.
//!
//! `[threat_detection] provider`: it selected nothing (any string was accepted and ignored; the
//! rule engine always runs, and `enable_heuristics` adds the seed heuristic). The shipped
//! config used to spell it out as `provider = "rules"`, so copies of that file still have it:
//! that value is accepted with a warning; any other value is an error, since whoever wrote it
//! expected something that never happened.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, ConfigWarning, Source};

/// What the file said the removed `provider` key should do, and what it should say instead.
const PROVIDER_GONE: &str = "`provider` was removed: rules always analyse events \
                             (`enable_heuristics` adds the seed heuristic)";

/// Removes the deprecated keys from `root`, returning a warning for each.
///
/// # Errors
///
/// A deprecated key with a value that never meant what it says.
pub(super) fn take(
    root: &mut DeTable<'_>,
    source: &Source<'_>,
) -> Result<Vec<ConfigWarning>, ConfigError> {
    let mut warnings = Vec::new();
    let Some(DeValue::Table(section)) = root.get_mut("threat_detection").map(Spanned::get_mut)
    else {
        return Ok(warnings);
    };
    let Some((key, value)) = section.remove_entry("provider") else {
        return Ok(warnings);
    };
    if value.get_ref().as_str() == Some("rules") {
        warnings.push(ConfigWarning {
            at: source.at(key.span()),
            message: format!("{PROVIDER_GONE}; `provider = \"rules\"` is ignored: delete the line"),
        });
        Ok(warnings)
    } else {
        Err(ConfigError::InvalidValue {
            at: source.at(value.span()),
            key: "provider".to_string(),
            reason: format!("{PROVIDER_GONE}; delete the line"),
        })
    }
}
