//! Lexical path handling for paths reported by the kernel.
//!
//! Nothing here touches the file system: symbolic links are not followed, and `..` is resolved
//! by dropping the previous component (as a shell's `cd -L` does). That is what a monitor wants: the
//! path a process named, made absolute and canonical enough for rules to match, without racing the
//! file system or following links an attacker controls.

/// Normalises `path` lexically.
///
/// - repeated slashes collapse (`a//b` → `a/b`, `//a` → `/a`);
/// - `.` components are removed;
/// - `..` removes the previous component; it never climbs above `/` (`/a/../../b` → `/b`), and
///   in a relative path a leading `..` that has nothing to remove is kept (`../a` → `../a`);
/// - a trailing slash is dropped (`/a/b/` → `/a/b`), but `/` stays `/`;
/// - a relative path that becomes empty (including the empty path) is `.`.
pub fn normalize(path: &str) -> String {
    if is_normal_absolute(path) {
        return path.to_owned();
    }
    normalize_components(path)
}

/// Whether `path` is absolute and already as [`normalize`] leaves it, as most paths from the
/// kernel are: they are then copied in one piece (this runs for every file event).
/// One pass over the bytes, looking only at what follows each `/` (a `split` by `/` was most
/// of `normalize`'s cost; `memchr` measured slower here, the components being short).
fn is_normal_absolute(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes == b"/" {
        return true;
    }
    if bytes.first() != Some(&b'/') {
        return false;
    }
    // Each `/` must start a component that is not empty, `.` or `..`.
    bytes.iter().enumerate().all(|(i, &b)| {
        b != b'/'
            || !matches!(
                &bytes[i + 1..],
                [] | [b'/', ..] | [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..]
            )
    })
}

/// [`normalize`], component by component.
fn normalize_components(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
                // Absolute and already at `/`: `/..` is `/`.
            }
            name => parts.push(name),
        }
    }

    let len = parts.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut out = String::with_capacity(len.max(1));
    if absolute {
        for part in &parts {
            out.push('/');
            out.push_str(part);
        }
        if out.is_empty() {
            out.push('/');
        }
    } else if parts.is_empty() {
        out.push('.');
    } else {
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(part);
        }
    }
    out
}

/// Longest path [`KnownPath::join`] returns, in bytes (Linux's `PATH_MAX`).
///
/// Resolution is lexical, so a process can make the paths it names grow without bound: with a
/// symlink `x -> .`, `openat(dirfd, "x")` opens the same directory each time while the path
/// secmon computes for the new fd gains `/x`, and the same goes for `chdir("x")` and the cwd.
/// Unbounded, a loop of such calls makes every later event of that process larger and slower
/// to print than the last: a way to drown the monitor. Longer results are cut in the middle
/// (see [`KnownPath`]).
pub const MAX_RESOLVED_LEN: usize = 4096;

/// What stands for the components left out of a cut path: `/tmp/x/x/.../x/name`.
const CUT_MARK: &str = "/...";
/// The most of the last component a cut path keeps (Linux's `NAME_MAX`; more only after a lossy
/// UTF-8 conversion).
const NAME_MAX: usize = 255;

/// A path secmon resolved, and whether it is incomplete: cut to [`MAX_RESOLVED_LEN`] here, or
/// resolved against a directory (a cwd, a directory fd) whose own path was. The flag travels
/// with cwd and fd paths, so a later `..` that removes the cut mark from the text still leaves
/// the result flagged (the event's `truncated`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownPath {
    pub path: String,
    pub cut: bool,
}

impl KnownPath {
    /// A path known in full (from /proc, or absolute from the kernel).
    pub fn exact(path: String) -> KnownPath {
        KnownPath { path, cut: false }
    }

    /// `path` resolved against this directory and normalised. An absolute `path` ignores the
    /// directory. An empty directory (cwd unknown) stands for `/`, a relative one (which a cwd
    /// never is) is taken as relative to `/`. An empty `path` resolves to the directory itself.
    pub fn join(&self, path: &str) -> KnownPath {
        if path.starts_with('/') {
            return bounded(normalize(path));
        }
        let mut joined = String::with_capacity(self.path.len() + path.len() + 2);
        if !self.path.starts_with('/') {
            joined.push('/');
        }
        joined.push_str(&self.path);
        joined.push('/');
        joined.push_str(path);
        let mut resolved = bounded(normalize(&joined));
        resolved.cut |= self.cut;
        resolved
    }
}

/// Cuts `path` to at most [`MAX_RESOLVED_LEN`] bytes, keeping its start and its last component
/// (the name rules look at: `/tmp/x/x/.../authorized_keys`) around [`CUT_MARK`].
fn bounded(path: String) -> KnownPath {
    if path.len() <= MAX_RESOLVED_LEN {
        return KnownPath::exact(path);
    }
    let mut tail_start = path.rfind('/').unwrap_or(0);
    if path.len() - tail_start > NAME_MAX + 1 {
        tail_start = path.len() - (NAME_MAX + 1);
        while !path.is_char_boundary(tail_start) {
            tail_start += 1;
        }
    }
    let tail = &path[tail_start..];
    let separator = if tail.starts_with('/') { "" } else { "/" };
    let mut head_end = MAX_RESOLVED_LEN - CUT_MARK.len() - separator.len() - tail.len();
    while !path.is_char_boundary(head_end) {
        head_end -= 1;
    }
    // The mark stands as a component of its own, and once: a path cut again (it grew some more)
    // does not pile marks up.
    let mut head = &path[..head_end];
    if let Some(slash) = head.rfind('/') {
        head = &head[..slash];
    }
    while let Some(shorter) = head.strip_suffix(CUT_MARK) {
        head = shorter;
    }
    KnownPath {
        path: format!("{head}{CUT_MARK}{separator}{tail}"),
        cut: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `path` resolved against `base_dir`, the text only.
    fn resolve(base_dir: &str, path: &str) -> String {
        KnownPath::exact(base_dir.to_string()).join(path).path
    }

    #[test]
    fn a_path_grown_through_a_symlink_loop_is_bounded_and_keeps_its_name() {
        // openat(fd_of(path), "x") again and again, x -> "."
        let mut dir = KnownPath::exact("/tmp".to_string());
        for _ in 0..5000 {
            dir = dir.join("x");
            assert!(
                dir.path.len() <= MAX_RESOLVED_LEN,
                "{} bytes",
                dir.path.len()
            );
        }
        assert!(dir.cut);
        let tail = &dir.path[dir.path.len() - 20..];
        assert!(
            dir.path.starts_with("/tmp/x/x/")
                && dir.path.contains("/x/.../x")
                && dir.path.ends_with("/x"),
            "{tail}"
        );
        assert_eq!(dir.path.matches("/...").count(), 1, "one mark");
        let file = dir.join("authorized_keys");
        assert!(
            file.cut && file.path.ends_with("/x/.../authorized_keys"),
            "{file:?}"
        );
        assert!(!KnownPath::exact("/tmp".into()).join("x").cut);
    }

    #[test]
    fn a_path_resolved_against_a_cut_directory_stays_flagged() {
        let deep = KnownPath::exact("/".into()).join(&"d/".repeat(3000));
        assert!(deep.cut);
        // `..` back past the mark: the text no longer shows the cut, the flag still does.
        let up = deep.join(&"../".repeat(2040));
        assert!(!up.path.contains("..."), "{}", up.path);
        assert!(up.cut);
        // An absolute path does not depend on the directory.
        assert!(!deep.join("/etc/passwd").cut);
    }

    #[test]
    fn a_cut_keeps_character_boundaries_and_a_bounded_name() {
        let deep = format!("/{}", "é".repeat(MAX_RESOLVED_LEN));
        let cut = KnownPath::exact("/".into()).join(&deep);
        assert!(cut.cut && cut.path.len() <= MAX_RESOLVED_LEN);
        let long_name = format!("/tmp/{}/{}", "a/".repeat(2100), "é".repeat(300));
        let cut = KnownPath::exact("/".into()).join(&long_name);
        assert!(
            cut.cut && cut.path.len() <= MAX_RESOLVED_LEN,
            "{}",
            cut.path.len()
        );
        assert!(cut.path.contains("/.../") && cut.path.ends_with('é'));
    }

    #[test]
    fn normalize_absolute() {
        let cases = [
            ("/", "/"),
            ("//", "/"),
            ("///", "/"),
            ("/a/b/c", "/a/b/c"),
            ("/a//b///c", "/a/b/c"),
            ("//a", "/a"),
            ("/a/b/", "/a/b"),
            ("/a/b//", "/a/b"),
            ("/./a/./b/.", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/../../b", "/b"),
            ("/../../..", "/"),
            ("/..", "/"),
            ("/a/b/../..", "/"),
            ("/a/b/../../..", "/"),
            ("/etc/../etc/./shadow", "/etc/shadow"),
            ("/tmp/../../../etc/passwd", "/etc/passwd"),
            ("/a/.../b", "/a/.../b"),
            ("/a/..b/c", "/a/..b/c"),
            ("/a/.b/c", "/a/.b/c"),
            ("/a b/c d", "/a b/c d"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "normalize({input:?})");
        }
    }

    #[test]
    fn normalize_relative() {
        let cases = [
            ("", "."),
            (".", "."),
            ("./", "."),
            ("./x", "x"),
            ("x/", "x"),
            ("a/./b/../c", "a/c"),
            ("a/b/../../c", "c"),
            ("a/..", "."),
            ("..", ".."),
            ("../a", "../a"),
            ("../../a/b", "../../a/b"),
            ("a/../../b", "../b"),
            ("./../x/./y/..", "../x"),
            ("a//b", "a/b"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "normalize({input:?})");
        }
    }

    proptest::proptest! {
        /// Paths the quick check copies as they are come out the same component by component.
        #[test]
        fn normal_paths_are_copied_as_normalize_would_write_them(
            parts in proptest::collection::vec(
                proptest::sample::select(vec!["", ".", "..", "a", "bc", "...", ".x", "é"]),
                0..6,
            ),
            absolute in proptest::bool::ANY,
        ) {
            let path = format!("{}{}", if absolute { "/" } else { "" }, parts.join("/"));
            proptest::prop_assert_eq!(normalize(&path), normalize_components(&path));
            // The quick check says yes exactly for the absolute paths already normal.
            proptest::prop_assert_eq!(
                is_normal_absolute(&path),
                path.starts_with('/') && normalize_components(&path) == path
            );
        }
    }

    #[test]
    fn normalize_is_idempotent() {
        for input in ["/a/../../b", "a/./b/../c", "../../x", "", "/", "//x//y/"] {
            let once = normalize(input);
            assert_eq!(normalize(&once), once, "{input:?}");
        }
    }

    #[test]
    fn resolve_absolute_path_ignores_base() {
        assert_eq!(resolve("/home/user", "/etc/passwd"), "/etc/passwd");
        assert_eq!(resolve("/home/user", "/etc/../etc//shadow"), "/etc/shadow");
        assert_eq!(resolve("", "/x/./y/"), "/x/y");
    }

    #[test]
    fn resolve_relative_path() {
        assert_eq!(resolve("/home/user", "file"), "/home/user/file");
        assert_eq!(resolve("/home/user", "./x"), "/home/user/x");
        assert_eq!(resolve("/home/user/", "a/./b/../c"), "/home/user/a/c");
        assert_eq!(
            resolve("/home/user", "../../../../etc/shadow"),
            "/etc/shadow"
        );
        assert_eq!(resolve("/home/user", ".."), "/home");
        assert_eq!(resolve("/", "tmp/x"), "/tmp/x");
        assert_eq!(resolve("/tmp", "dir/"), "/tmp/dir");
    }

    #[test]
    fn resolve_empty_or_odd_base() {
        assert_eq!(resolve("", "x"), "/x");
        assert_eq!(resolve("", "../x"), "/x");
        assert_eq!(resolve("", ""), "/");
        assert_eq!(resolve("relative/dir", "x"), "/relative/dir/x");
        assert_eq!(resolve("/a//b/./", "c"), "/a/b/c");
    }

    #[test]
    fn resolve_empty_path_is_base() {
        assert_eq!(resolve("/home/user", ""), "/home/user");
        assert_eq!(resolve("/home/user/../x/", ""), "/home/x");
        assert_eq!(resolve("/var", "."), "/var");
    }
}
