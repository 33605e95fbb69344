//! User names for uids, read from `/etc/passwd`.
//!
//! We parse the file ourselves instead of calling `getpwuid`: NSS modules (LDAP, sssd) would do
//! network I/O and run plugin code inside a root process on the event path. Users that exist only in
//! such directories are shown by number.

use crate::shared_str::SharedStr;
use rustc_hash::FxHashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The passwd file is read again at most this often, and only when an unknown uid is asked for.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Nameless uids kept as text at most (a hostile stream of uids cannot grow the cache).
const MAX_NUMBERS: usize = 4096;

/// Larger passwd files are read only up to this size.
const MAX_PASSWD_BYTES: u64 = 16 << 20;

/// A cache of uid → user name.
#[derive(Debug)]
pub struct UserNames {
    path: PathBuf,
    names: FxHashMap<u32, SharedStr>,
    /// Uids without a name, as text: made once, not for every event of such a user.
    numbers: FxHashMap<u32, SharedStr>,
    /// When the file was last read (successfully or not).
    last_load: Option<Instant>,
}

impl UserNames {
    /// Names from the passwd-format file at `path`, read now. A missing or unreadable file gives an
    /// empty table (every uid shows as a number) and is tried again on later misses.
    pub fn from_path(path: impl Into<PathBuf>) -> UserNames {
        let mut names = UserNames {
            path: path.into(),
            names: FxHashMap::default(),
            numbers: FxHashMap::default(),
            last_load: None,
        };
        names.reload(Instant::now());
        names
    }

    /// Names from `/etc/passwd`.
    pub fn system() -> UserNames {
        UserNames::from_path("/etc/passwd")
    }

    /// The name of `uid`, or the number as text when it has none.
    ///
    /// An unknown uid makes us re-read the file if the last read was at least
    /// [`REFRESH_INTERVAL`] ago, so users created while we run get their names.
    pub fn name(&mut self, uid: u32) -> SharedStr {
        // A hit needs no clock (this runs for every event).
        if let Some(name) = self.names.get(&uid) {
            return name.clone();
        }
        self.name_at(uid, Instant::now())
    }

    fn name_at(&mut self, uid: u32, now: Instant) -> SharedStr {
        if let Some(name) = self.names.get(&uid) {
            return name.clone();
        }
        let due = self
            .last_load
            .is_none_or(|last| now.saturating_duration_since(last) >= REFRESH_INTERVAL);
        if due {
            self.reload(now);
            if let Some(name) = self.names.get(&uid) {
                return name.clone();
            }
        }
        if self.numbers.len() >= MAX_NUMBERS {
            self.numbers.clear();
        }
        self.numbers
            .entry(uid)
            .or_insert_with(|| uid.to_string().into())
            .clone()
    }

    /// How many uids have a name.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Reads the file again. On a read error the names we had are kept.
    fn reload(&mut self, now: Instant) {
        self.last_load = Some(now);
        if let Ok(bytes) = read_bounded(&self.path) {
            self.names = parse_passwd(&String::from_utf8_lossy(&bytes))
                .into_iter()
                .map(|(uid, name)| (uid, SharedStr::from(name)))
                .collect();
        }
    }
}

fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_PASSWD_BYTES)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Parses passwd(5) lines `name:password:uid:gid:gecos:home:shell` into uid → name.
///
/// Only the first and third fields matter. Blank lines, comments, NIS compat entries (`+`/`-`),
/// lines with an empty name and lines whose uid is not a number are skipped. When several names
/// share a uid the first wins, as with `getpwuid`.
pub fn parse_passwd(text: &str) -> FxHashMap<u32, String> {
    let mut names = FxHashMap::default();
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_password), Some(uid)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if name.is_empty() || name.starts_with(['#', '+', '-']) {
            continue;
        }
        let Ok(uid) = uid.trim().parse::<u32>() else {
            continue;
        };
        names.entry(uid).or_insert_with(|| name.to_string());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment:x:5:5::/:/bin/sh

alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
toor:x:0:0:second root:/root:/bin/sh
+nisuser::::::
broken line without colons
bad:x:notanumber:1::/:/bin/sh
neg:x:-1:1::/:/bin/sh
:x:77:77::/:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
";

    #[test]
    fn parses_passwd() {
        let names = parse_passwd(PASSWD);
        assert_eq!(names.get(&0).map(String::as_str), Some("root"));
        assert_eq!(names.get(&1).map(String::as_str), Some("daemon"));
        assert_eq!(names.get(&1000).map(String::as_str), Some("alice"));
        assert_eq!(names.get(&65534).map(String::as_str), Some("nobody"));
        assert!(!names.contains_key(&5), "comment line");
        assert!(!names.contains_key(&77), "empty name");
        assert_eq!(names.len(), 4);
    }

    #[test]
    fn short_lines_are_skipped() {
        assert!(parse_passwd("root:x\nonlyname\n\n").is_empty());
        let names = parse_passwd("a:x:7");
        assert_eq!(names.get(&7).map(String::as_str), Some("a"));
    }

    #[test]
    fn names_from_file_and_numbers_for_unknown() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("passwd");
        fs::write(&path, PASSWD)?;
        let mut users = UserNames::from_path(&path);
        assert_eq!(users.name(0), "root");
        assert_eq!(users.name(1000), "alice");
        assert_eq!(users.name(4242), "4242");
        assert_eq!(users.len(), 4);
        Ok(())
    }

    #[test]
    fn rereads_at_most_every_interval() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("passwd");
        fs::write(&path, "root:x:0:0::/root:/bin/sh\n")?;
        let mut users = UserNames::from_path(&path);
        let t0 = users.last_load.unwrap_or_else(Instant::now);

        fs::write(
            &path,
            "root:x:0:0::/root:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n",
        )?;
        // Too soon: the file is not read again.
        assert_eq!(users.name_at(1001, t0 + Duration::from_secs(1)), "1001");
        assert_eq!(users.name_at(1001, t0 + Duration::from_secs(9)), "1001");
        // Due: the unknown uid triggers a reload.
        assert_eq!(users.name_at(1001, t0 + Duration::from_secs(10)), "bob");

        // Known uids never trigger a reload.
        fs::write(&path, "newroot:x:0:0::/root:/bin/sh\n")?;
        assert_eq!(users.name_at(0, t0 + Duration::from_secs(100)), "root");
        // An unknown uid does, and replaces the table.
        assert_eq!(users.name_at(5, t0 + Duration::from_secs(100)), "5");
        assert_eq!(users.name_at(0, t0 + Duration::from_secs(101)), "newroot");
        assert_eq!(users.name_at(1001, t0 + Duration::from_secs(102)), "1001");
        Ok(())
    }

    #[test]
    fn missing_file_gives_numbers_and_recovers() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("passwd");
        let mut users = UserNames::from_path(&path);
        assert!(users.is_empty());
        let t0 = users.last_load.unwrap_or_else(Instant::now);
        assert_eq!(users.name_at(0, t0), "0");
        fs::write(&path, "root:x:0:0::/root:/bin/sh\n")?;
        assert_eq!(users.name_at(0, t0 + REFRESH_INTERVAL), "root");
        // The file disappearing later keeps the names we had.
        fs::remove_file(&path)?;
        assert_eq!(users.name_at(9, t0 + REFRESH_INTERVAL * 3), "9");
        assert_eq!(users.name_at(0, t0 + REFRESH_INTERVAL * 3), "root");
        Ok(())
    }

    #[test]
    fn invalid_utf8_is_lossy() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("passwd");
        fs::write(&path, b"ev\xffil:x:66:66::/:/bin/sh\n")?;
        let mut users = UserNames::from_path(&path);
        assert_eq!(users.name(66), "ev\u{fffd}il");
        Ok(())
    }

    #[test]
    fn system_passwd_has_root() {
        let mut users = UserNames::system();
        if Path::new("/etc/passwd").exists() {
            assert_eq!(users.name(0), "root");
        }
    }
}
