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

/// Longest path [`resolve`] returns, in bytes (Linux's `PATH_MAX`).
///
/// Resolution is lexical, so a process can make the paths it names grow without bound: with a
/// symlink `x -> .`, `openat(dirfd, "x")` opens the same directory each time while the path
/// secmon computes for the new fd gains `/x`, and the same goes for `chdir("x")` and the cwd.
/// Unbounded, a loop of such calls makes every later event of that process larger and slower
/// to print than the last: a way to drown the monitor. Longer results are cut here (and the
/// event marked truncated by the caller: see [`is_cut`]).
pub const MAX_RESOLVED_LEN: usize = 4096;

/// True when `path` came out of [`resolve`] cut to [`MAX_RESOLVED_LEN`].
pub fn is_cut(path: &str) -> bool {
    path.len() >= MAX_RESOLVED_LEN - 3 && path.ends_with("...")
}

/// Resolves `path` against the directory `base_dir` (a process's cwd) and normalises the result.
///
/// An absolute `path` ignores `base_dir`. The result is always absolute: an empty `base_dir`
/// (cwd unknown) stands for `/`, and a relative `base_dir` (which a cwd never is) is taken as
/// relative to `/`. An empty `path` resolves to `base_dir` itself. The result is at most
/// [`MAX_RESOLVED_LEN`] bytes.
pub fn resolve(base_dir: &str, path: &str) -> String {
    if path.starts_with('/') {
        return bounded(normalize(path));
    }
    let mut joined = String::with_capacity(base_dir.len() + path.len() + 2);
    if !base_dir.starts_with('/') {
        joined.push('/');
    }
    joined.push_str(base_dir);
    joined.push('/');
    joined.push_str(path);
    bounded(normalize(&joined))
}

/// Cuts `path` to [`MAX_RESOLVED_LEN`] bytes at a character boundary, ending it with `...` so
/// the cut is visible where the path is shown.
fn bounded(mut path: String) -> String {
    if path.len() <= MAX_RESOLVED_LEN {
        return path;
    }
    let mut end = MAX_RESOLVED_LEN - 3;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path.truncate(end);
    path.push_str("...");
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_bounds_a_path_grown_through_a_symlink_loop() {
        // openat(fd_of(path), "x") again and again, x -> "."
        let mut path = "/tmp".to_string();
        for _ in 0..5000 {
            path = resolve(&path, "x");
            assert!(path.len() <= MAX_RESOLVED_LEN, "{} bytes", path.len());
        }
        assert!(is_cut(&path));
        assert!(path.starts_with("/tmp/x/x/") && path.ends_with("..."));
        assert!(!is_cut(&resolve("/tmp", "x")));
    }

    #[test]
    fn resolve_cuts_at_a_character_boundary() {
        let deep = format!("/{}", "é".repeat(MAX_RESOLVED_LEN));
        let cut = resolve("/", &deep);
        assert!(cut.len() <= MAX_RESOLVED_LEN);
        assert!(cut.ends_with("..."));
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
