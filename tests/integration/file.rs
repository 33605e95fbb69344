//! file_open, file_write, file_delete, file_rename, file_chmod, file_link; path normalisation;
//! failed syscalls are not reported.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::process::Command;
use std::time::Duration;

use crate::common::{
    DEFAULT_TIMEOUT, TestDir, assert_field, assert_syscall_in, flag_tokens, gettid, marker,
    monitor, path_str, spawn, str_is, test_pid, wait_child,
};

/// Asserts that the symbolic flags contain every one of `want` and none of `unwanted`.
#[track_caller]
fn assert_flags(e: &serde_json::Value, want: &[&str], unwanted: &[&str]) {
    let tokens = flag_tokens(e);
    for w in want {
        assert!(
            tokens.iter().any(|t| t == w),
            "`flags` should contain {w}\n  in event: {e}"
        );
    }
    for u in unwanted {
        assert!(
            !tokens.iter().any(|t| t == u),
            "`flags` should not contain {u}\n  in event: {e}"
        );
    }
}

#[test]
fn read_only_open_is_file_open() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    let path = dir.join("read-me");
    let path_s = path_str(&path);
    fs::write(&path, b"x").expect("create the file");
    // Wait for the creation to be delivered, so the checkpoint below only sees the read.
    let cp = mon.checkpoint();
    mon.expect(&cp, "file_write", &format!("creation of {path_s}"), |e| {
        e["pid"] == test_pid() && str_is(e, "file_path", |p| p == path_s)
    });

    let cp = mon.checkpoint();
    drop(File::open(&path).expect("open read-only"));
    let e = mon.expect(&cp, "file_open", &format!("open of {path_s}"), |e| {
        e["pid"] == test_pid() && str_is(e, "file_path", |p| p.ends_with("read-me"))
    });
    assert_field(&e, "file_path", path_s.as_str());
    assert_field(&e, "tid", gettid());
    assert_field(&e, "syscall", "openat");
    assert_flags(
        &e,
        &["O_RDONLY"],
        &["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"],
    );
    assert_field(&e, "uid", 0u32);
    let exe = std::env::current_exe()
        .expect("current_exe")
        .canonicalize()
        .expect("canonicalise current_exe");
    assert_field(&e, "exe", path_str(&exe));
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    assert_field(&e, "ppid", ppid);

    // A read-only open is not a write.
    mon.sync_point(dir.path());
    mon.assert_no_event_for(
        &cp,
        &["file_write"],
        "a read-only open reported as a write",
        Duration::from_millis(200),
        |e| str_is(e, "file_path", |p| p == path_s),
    );
}

#[test]
fn open_for_writing_is_file_write() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    let path = dir.join("written");
    let path_s = path_str(&path);

    let cp = mon.checkpoint();
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&path)
        .expect("open for writing");
    drop(f);
    let e = mon.expect(&cp, "file_write", &format!("open of {path_s}"), |e| {
        e["pid"] == test_pid() && str_is(e, "file_path", |p| p.ends_with("written"))
    });
    assert_field(&e, "file_path", path_s.as_str());
    assert_field(&e, "syscall", "openat");
    assert_flags(&e, &["O_WRONLY", "O_CREAT", "O_TRUNC"], &["O_RDONLY"]);
    assert_field(&e, "mode", 0o640u32);
    assert_field(&e, "tid", gettid());
}

#[test]
fn relative_path_is_resolved_against_cwd() {
    let mon = monitor();
    let m = marker();
    let dir = TestDir::new(&m);
    let name = format!("rel-{m}");
    let path_s = path_str(&dir.join(&name));
    fs::write(dir.join(&name), b"relative").expect("create the file");

    let cp = mon.checkpoint();
    let mut cat = spawn(
        Command::new("cat")
            .arg(&name)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null()),
    );
    let pid = cat.id();
    assert!(wait_child(&mut cat, DEFAULT_TIMEOUT).success());

    let e = mon.expect(
        &cp,
        "file_open",
        &format!("`cat {name}` (pid {pid})"),
        |e| e["pid"] == pid && str_is(e, "file_path", |p| p.ends_with(&name)),
    );
    assert_field(&e, "file_path", path_s.as_str());
}

#[test]
fn relative_write_is_resolved_against_cwd() {
    let mon = monitor();
    let m = marker();
    let dir = TestDir::new(&m);
    let name = format!("out-{m}");
    let path_s = path_str(&dir.join(&name));

    let cp = mon.checkpoint();
    let mut sh = spawn(
        Command::new("/bin/sh")
            .args(["-c", &format!("echo hi > {name}")])
            .current_dir(dir.path()),
    );
    let pid = sh.id();
    assert!(wait_child(&mut sh, DEFAULT_TIMEOUT).success());

    let e = mon.expect(
        &cp,
        "file_write",
        &format!("`echo hi > {name}` (pid {pid})"),
        |e| e["pid"] == pid && str_is(e, "file_path", |p| p.ends_with(&name)),
    );
    assert_field(&e, "file_path", path_s.as_str());
    assert_flags(&e, &["O_WRONLY", "O_CREAT", "O_TRUNC"], &[]);
}

#[test]
fn dotdot_is_removed_from_absolute_paths() {
    let mon = monitor();
    let m = marker();
    let dir = TestDir::new(&m);
    let name = format!("dots-{m}");
    fs::create_dir(dir.join("sub")).expect("create sub");
    fs::write(dir.join(&name), b"x").expect("create the file");
    let via_dots = dir.path().join("sub").join("..").join(&name);

    let cp = mon.checkpoint();
    drop(File::open(&via_dots).expect("open through .."));
    let e = mon.expect(
        &cp,
        "file_open",
        &format!("open of {}", via_dots.display()),
        |e| e["pid"] == test_pid() && str_is(e, "file_path", |p| p.ends_with(&name)),
    );
    assert_field(&e, "file_path", path_str(&dir.join(&name)));
}

#[test]
fn dotdot_is_removed_from_relative_paths() {
    let mon = monitor();
    let m = marker();
    let dir = TestDir::new(&m);
    let name = format!("up-{m}");
    fs::create_dir(dir.join("sub")).expect("create sub");
    fs::write(dir.join(&name), b"x").expect("create the file");

    let cp = mon.checkpoint();
    let rel = format!("../{name}");
    let mut cat = spawn(
        Command::new("cat")
            .arg(&rel)
            .current_dir(dir.join("sub"))
            .stdout(std::process::Stdio::null()),
    );
    let pid = cat.id();
    assert!(wait_child(&mut cat, DEFAULT_TIMEOUT).success());

    let e = mon.expect(&cp, "file_open", &format!("`cat {rel}` (pid {pid})"), |e| {
        e["pid"] == pid && str_is(e, "file_path", |p| p.ends_with(&name))
    });
    assert_field(&e, "file_path", path_str(&dir.join(&name)));
}

#[test]
fn unlink_is_file_delete() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    let path = dir.join("doomed");
    let path_s = path_str(&path);
    fs::write(&path, b"x").expect("create the file");

    let cp = mon.checkpoint();
    fs::remove_file(&path).expect("unlink");
    let e = mon.expect(&cp, "file_delete", &format!("unlink of {path_s}"), |e| {
        e["pid"] == test_pid() && str_is(e, "file_path", |p| p.ends_with("doomed"))
    });
    assert_field(&e, "file_path", path_s.as_str());
    assert_syscall_in(&e, &["unlink", "unlinkat"]);
    assert_field(&e, "tid", gettid());
}

#[test]
fn rmdir_is_file_delete() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    let sub = dir.join("gone-dir");
    let sub_s = path_str(&sub);
    fs::create_dir(&sub).expect("create the directory");

    let cp = mon.checkpoint();
    fs::remove_dir(&sub).expect("rmdir");
    let e = mon.expect(&cp, "file_delete", &format!("rmdir of {sub_s}"), |e| {
        e["pid"] == test_pid() && str_is(e, "file_path", |p| p.ends_with("gone-dir"))
    });
    assert_field(&e, "file_path", sub_s.as_str());
    assert_syscall_in(&e, &["rmdir", "unlinkat"]);
}

#[test]
fn rename_is_file_rename() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    let old = dir.join("old-name");
    let new = dir.join("new-name");
    fs::write(&old, b"x").expect("create the file");

    let cp = mon.checkpoint();
    fs::rename(&old, &new).expect("rename");
    let e = mon.expect(
        &cp,
        "file_rename",
        &format!("rename of {}", old.display()),
        |e| e["pid"] == test_pid() && str_is(e, "file_path", |p| p.ends_with("old-name")),
    );
    assert_field(&e, "file_path", path_str(&old));
    assert_field(&e, "new_path", path_str(&new));
    assert_syscall_in(&e, &["rename", "renameat", "renameat2"]);
}

#[test]
fn setuid_chmod_is_file_chmod() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    let path = dir.join("suid");
    let path_s = path_str(&path);
    fs::write(&path, b"x").expect("create the file");

    let cp = mon.checkpoint();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o4755)).expect("chmod 4755");
    let e = mon.expect(&cp, "file_chmod", &format!("chmod 4755 {path_s}"), |e| {
        e["pid"] == test_pid() && str_is(e, "file_path", |p| p.ends_with("suid"))
    });
    assert_field(&e, "file_path", path_s.as_str());
    assert_field(&e, "mode", 2541u32);
    assert_syscall_in(&e, &["chmod", "fchmodat", "fchmodat2"]);
}

#[test]
fn hard_link_is_file_link() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    let target = dir.join("target");
    let link = dir.join("hard-link");
    fs::write(&target, b"x").expect("create the target");

    let cp = mon.checkpoint();
    fs::hard_link(&target, &link).expect("link");
    let e = mon.expect(
        &cp,
        "file_link",
        &format!("hard link {}", link.display()),
        |e| e["pid"] == test_pid() && str_is(e, "new_path", |p| p.ends_with("hard-link")),
    );
    assert_field(&e, "file_path", path_str(&target));
    assert_field(&e, "new_path", path_str(&link));
    assert_syscall_in(&e, &["link", "linkat"]);
}

#[test]
fn symlink_is_file_link() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    let target = dir.join("target");
    let link = dir.join("soft-link");
    fs::write(&target, b"x").expect("create the target");

    let cp = mon.checkpoint();
    symlink(&target, &link).expect("symlink");
    let e = mon.expect(
        &cp,
        "file_link",
        &format!("symlink {}", link.display()),
        |e| e["pid"] == test_pid() && str_is(e, "new_path", |p| p.ends_with("soft-link")),
    );
    assert_field(&e, "file_path", path_str(&target));
    assert_field(&e, "new_path", path_str(&link));
    assert_syscall_in(&e, &["symlink", "symlinkat"]);
}

#[test]
fn failed_syscalls_are_not_reported() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    let missing = dir.join("missing");
    let elsewhere = dir.join("missing-too");

    let cp = mon.checkpoint();
    File::open(&missing).expect_err("opening a missing file fails");
    OpenOptions::new()
        .write(true)
        .open(&missing)
        .expect_err("opening a missing file for writing (no O_CREAT) fails");
    fs::remove_file(&missing).expect_err("unlinking a missing file fails");
    fs::remove_dir(&missing).expect_err("removing a missing directory fails");
    fs::rename(&missing, &elsewhere).expect_err("renaming a missing file fails");
    fs::set_permissions(&missing, fs::Permissions::from_mode(0o644))
        .expect_err("chmod of a missing file fails");
    fs::hard_link(&missing, &elsewhere).expect_err("linking a missing file fails");

    mon.sync_point(dir.path());
    mon.assert_no_event_for(
        &cp,
        &[
            "file_open",
            "file_write",
            "file_delete",
            "file_rename",
            "file_chmod",
            "file_link",
        ],
        "a failed syscall",
        Duration::from_millis(500),
        |e| str_is(e, "file_path", |p| p.contains("/missing")),
    );
}

/// A symlink `x -> .` lets a process name the same directory by an ever longer path:
/// `openat(fd, "x")` again and again. The paths secmon computes must stay bounded (PATH_MAX,
/// marked truncated) instead of growing with every call, which would make each event larger and
/// slower to print than the last.
#[test]
fn path_grown_through_a_symlink_loop_is_bounded() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    symlink(".", dir.join("x")).expect("create the x -> . symlink");
    let x = c"x";
    let open_dir = |at: libc::c_int, name: &std::ffi::CStr| {
        // SAFETY: a NUL-terminated name; the returned fd is checked.
        let fd = unsafe { libc::openat(at, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
        assert!(fd >= 0, "openat: {}", std::io::Error::last_os_error());
        fd
    };
    let dir_c = std::ffi::CString::new(path_str(dir.path())).expect("no NUL in a temp path");
    let mut fd = open_dir(libc::AT_FDCWD, &dir_c);
    // Each step adds "/x" to the path secmon computes: 2,500 steps make it over 5,000 bytes.
    for _ in 0..2500 {
        let next = open_dir(fd, x);
        // SAFETY: fd is ours and open.
        unsafe { libc::close(fd) };
        fd = next;
    }
    let cp = mon.checkpoint();
    let name = c"deep-marker";
    // SAFETY: as above; the created file's fd is closed at once.
    let file = unsafe { libc::openat(fd, name.as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o600) };
    assert!(file >= 0, "openat: {}", std::io::Error::last_os_error());
    // SAFETY: both fds are ours.
    unsafe {
        libc::close(file);
        libc::close(fd);
    }
    let dir_s = path_str(dir.path());
    let e = mon.expect(
        &cp,
        "file_write",
        "the create through 2,500 symlink hops",
        |e| e["pid"] == test_pid() && str_is(e, "file_path", |p| p.starts_with(&dir_s)),
    );
    assert_cut_keeping_name(&e, "file_path", &format!("{dir_s}/x/x/x/"), "/deep-marker");
}

/// `field` of `e` is a path secmon cut: at most 4096 bytes, starting with `start`, the cut
/// marked (`/x/.../`), the last component `name` kept, and the event flagged `truncated`.
#[track_caller]
fn assert_cut_keeping_name(e: &serde_json::Value, field: &str, start: &str, name: &str) {
    let path = e[field].as_str().unwrap_or_default();
    let tail = &path[path.len().saturating_sub(40)..];
    assert!(
        path.len() <= 4096,
        "{field} of {} bytes, ending {tail}",
        path.len()
    );
    assert!(path.starts_with(start), "{field} ending {tail}");
    assert!(
        path.contains("/x/.../") && path.ends_with(name),
        "a cut {field} says so and keeps its last name; it ends {tail}"
    );
    assert_field(e, "truncated", true);
}

/// The same growth through `chdir`: a program run by a relative name from such a directory has
/// an `exe` secmon resolves against the grown cwd, cut and flagged like any other path.
#[test]
fn exec_by_relative_name_from_a_grown_cwd_is_bounded_and_flagged() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    symlink(".", dir.join("x")).expect("create the x -> . symlink");
    crate::common::copy_executable("/bin/true", &dir.join("prog"));
    let cp = mon.checkpoint();
    // A child does the 2,500 chdir("x") (the cwd is process-wide) and then execs ./prog.
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import os\nfor _ in range(2500): os.chdir('x')\nos.execv('./prog', ['prog'])",
    ])
    .current_dir(dir.path());
    let mut child = spawn(&mut cmd);
    let pid = child.id();
    let status = wait_child(&mut child, DEFAULT_TIMEOUT);
    assert!(status.success(), "the child failed: {status}");
    let dir_s = path_str(dir.path());
    let e = mon.expect(&cp, "process_exec", "./prog after 2,500 chdir hops", |e| {
        e["pid"] == pid && e["process"] == "prog"
    });
    assert_cut_keeping_name(&e, "exe", &format!("{dir_s}/x/x/"), "/prog");
}
