//! [`SharedStr`]: an immutable, reference-counted string for the text every event repeats.
//!
//! An event carries its process's context (user, name, executable, command line, parent,
//! ancestry). That text changes only at exec, fork, setuid or a rename, yet it used to be
//! copied into fresh `String`s for every event — about ten allocations per event, and the
//! same again for each copy the history, the UI's panes and the web controller kept. The
//! process table and the user cache now hold each text once as a `SharedStr`; an event takes
//! a reference (an atomic increment), and a copy of the event costs no text at all.
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An immutable string shared by reference count. Reads like a `&str` (it derefs to one);
/// clones are cheap; equality, order and hashing are those of the text.
#[derive(Clone)]
pub struct SharedStr(Arc<str>);

/// One empty string for every default, so a new event allocates nothing for its empty fields.
static EMPTY: LazyLock<SharedStr> = LazyLock::new(|| SharedStr(Arc::from("")));

impl SharedStr {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `self` and `other` are the same allocation (not only the same text): a cheap
    /// test for "unchanged since last time".
    pub fn ptr_eq(&self, other: &SharedStr) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Default for SharedStr {
    fn default() -> Self {
        EMPTY.clone()
    }
}

impl Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<String> for SharedStr {
    fn from(text: String) -> Self {
        if text.is_empty() {
            return SharedStr::default();
        }
        SharedStr(Arc::from(text))
    }
}

impl From<&str> for SharedStr {
    fn from(text: &str) -> Self {
        if text.is_empty() {
            return SharedStr::default();
        }
        SharedStr(Arc::from(text))
    }
}

impl From<&String> for SharedStr {
    fn from(text: &String) -> Self {
        SharedStr::from(text.as_str())
    }
}

impl From<SharedStr> for String {
    fn from(text: SharedStr) -> Self {
        text.as_str().to_string()
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl Eq for SharedStr {}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for SharedStr {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<SharedStr> for str {
    fn eq(&self, other: &SharedStr) -> bool {
        self == &*other.0
    }
}

impl PartialEq<SharedStr> for &str {
    fn eq(&self, other: &SharedStr) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<SharedStr> for String {
    fn eq(&self, other: &SharedStr) -> bool {
        **self == *other.0
    }
}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl Hash for SharedStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for SharedStr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SharedStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SharedStr::from)
    }
}

/// Stored as SQLite text (the history).
impl rusqlite::ToSql for SharedStr {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.as_str().to_sql()
    }
}

impl rusqlite::types::FromSql for SharedStr {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        value.as_str().map(SharedStr::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_compares_and_serialises_as_its_text() {
        let exe = SharedStr::from("/usr/bin/bash");
        assert_eq!(exe, "/usr/bin/bash");
        assert_eq!("/usr/bin/bash", exe);
        assert_eq!(exe, "/usr/bin/bash".to_string());
        assert!(exe.ends_with("bash"));
        assert_eq!(exe.to_string(), "/usr/bin/bash");
        assert_eq!(format!("{exe:?}"), "\"/usr/bin/bash\"");
        let json = serde_json::to_string(&exe).expect("json");
        assert_eq!(json, "\"/usr/bin/bash\"");
        let back: SharedStr = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, exe);
        assert!(!back.ptr_eq(&exe));
    }

    #[test]
    fn clones_share_and_empty_strings_share_one_allocation() {
        let name = SharedStr::from(String::from("sshd"));
        assert!(name.clone().ptr_eq(&name));
        assert!(SharedStr::from("").ptr_eq(&SharedStr::default()));
        assert!(SharedStr::from(String::new()).ptr_eq(&SharedStr::default()));
        assert!(SharedStr::default().is_empty());
    }

    #[test]
    fn orders_and_hashes_like_str() {
        use std::collections::HashSet;
        let mut names = [SharedStr::from("b"), SharedStr::from("a")];
        names.sort();
        assert_eq!(names[0], "a");
        let set: HashSet<SharedStr> = names.iter().cloned().collect();
        assert!(set.contains("a"));
    }
}
