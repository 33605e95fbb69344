//! process_exec, process_fork, process_exit and ptrace.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    DEFAULT_TIMEOUT, TestDir, assert_absent, assert_field, comm_of, copy_executable, gettid,
    main_thread_comm, marker, monitor, path_str, spawn, str_field, test_pid, thread_comm,
    wait_child,
};

#[test]
fn exec_reports_exe_argv_and_parent() {
    let mon = monitor();
    let m = marker();
    let dir = TestDir::new(&m);
    let exe = copy_executable("/bin/true", &dir.join(&m));
    let exe_s = path_str(&exe);
    let arg = format!("{m}-arg");

    let cp = mon.checkpoint();
    let mut child = spawn(Command::new(&exe).arg(&arg));
    let pid = child.id();
    assert!(wait_child(&mut child, DEFAULT_TIMEOUT).success());

    let e = mon.expect(&cp, "process_exec", &format!("{exe_s} (pid {pid})"), |e| {
        e["pid"] == pid
    });
    assert_field(&e, "exe", exe_s.as_str());
    assert_field(&e, "argv", json!([exe_s, arg]));
    assert_field(&e, "cmdline", format!("{exe_s} {arg}"));
    assert_field(&e, "tid", pid);
    assert_field(&e, "ppid", test_pid());
    assert_field(&e, "uid", 0u32);
    assert_field(&e, "user", "root");
    assert_field(&e, "process", comm_of(m.as_bytes()));
    assert_absent(&e, "truncated");

    // The parent is the test process: its name is the comm of its main thread (from the process
    // table) or of the thread that forked (from the kernel at fork time).
    let parent = str_field(&e, "parent_process");
    let names = [main_thread_comm(), thread_comm()];
    assert!(
        names.iter().any(|n| n == parent),
        "`parent_process` should be one of {names:?}\n  in event: {e}"
    );
    let ancestors = e["ancestors"].as_array().expect("ancestors is an array");
    assert_eq!(
        ancestors.first().and_then(Value::as_str),
        Some(parent),
        "`ancestors` should start with the parent's name\n  in event: {e}"
    );
}

#[test]
fn exec_argv_is_capped_at_16() {
    let mon = monitor();
    let m = marker();
    let dir = TestDir::new(&m);
    let exe = copy_executable("/bin/true", &dir.join(&m));
    let exe_s = path_str(&exe);
    let args: Vec<String> = (1..20).map(|i| format!("a{i}")).collect();

    let cp = mon.checkpoint();
    let mut child = spawn(Command::new(&exe).args(&args));
    let pid = child.id();
    assert!(wait_child(&mut child, DEFAULT_TIMEOUT).success());

    let e = mon.expect(&cp, "process_exec", &format!("{exe_s} with 20 args"), |e| {
        e["pid"] == pid
    });
    let mut expected = vec![exe_s.clone()];
    expected.extend(args.iter().take(15).cloned());
    assert_field(&e, "argv", json!(expected));
    assert_field(&e, "exe", exe_s.as_str());
}

#[test]
fn fork_reports_child_and_parent() {
    let mon = monitor();
    let cp = mon.checkpoint();
    // dash forks for `/bin/true` (not the last command), then runs the builtin `true`.
    let mut sh = spawn(Command::new("/bin/sh").args(["-c", "/bin/true; true"]));
    let sh_pid = sh.id();
    assert!(wait_child(&mut sh, DEFAULT_TIMEOUT).success());

    // The test process forking the shell.
    let e = mon.expect(
        &cp,
        "process_fork",
        &format!("the fork of sh (pid {sh_pid})"),
        |e| e["pid"] == sh_pid,
    );
    assert_field(&e, "ppid", test_pid());

    // The shell forking /bin/true.
    let e = mon.expect(
        &cp,
        "process_fork",
        &format!("a fork by sh (pid {sh_pid})"),
        |e| e["ppid"] == sh_pid,
    );
    let child = e["pid"].as_u64().expect("pid is a number");
    assert_ne!(
        child,
        u64::from(sh_pid),
        "a fork's pid is the new child\n  in event: {e}"
    );

    // ... which then executes /bin/true.
    let exec = mon.expect(
        &cp,
        "process_exec",
        &format!("/bin/true in pid {child}"),
        |e| e["pid"] == child,
    );
    assert!(
        str_field(&exec, "exe").ends_with("/true"),
        "the forked child should exec /bin/true\n  in event: {exec}"
    );
    assert_field(&exec, "ppid", sh_pid);
}

#[test]
fn threads_are_not_reported_as_forks() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    let cp = mon.checkpoint();
    let tid = std::thread::spawn(gettid)
        .join()
        .expect("the thread returns its id");
    // Everything this thread and the one above did is delivered once this sync point arrives.
    mon.sync_point(dir.path());
    mon.assert_no_event_for(
        &cp,
        &["process_fork"],
        &format!("thread {tid} of the test process {}", test_pid()),
        Duration::from_millis(500),
        |e| e["pid"] == test_pid() || e["pid"] == tid || e["tid"] == tid,
    );
}

#[test]
fn exit_code_is_reported() {
    let mon = monitor();
    let m = marker();
    let dir = TestDir::new(&m);
    let sh = copy_executable("/bin/sh", &dir.join(&m));

    let cp = mon.checkpoint();
    let mut child = spawn(Command::new(&sh).args(["-c", "exit 7"]));
    let pid = child.id();
    assert_eq!(wait_child(&mut child, DEFAULT_TIMEOUT).code(), Some(7));

    let e = mon.expect(&cp, "process_exit", &format!("`exit 7` (pid {pid})"), |e| {
        e["pid"] == pid
    });
    assert_field(&e, "exit_code", 7);
    assert_absent(&e, "exit_signal");
    assert_field(&e, "process", comm_of(m.as_bytes()));
    assert_field(&e, "ppid", test_pid());
}

#[test]
fn killed_process_reports_signal() {
    let mon = monitor();
    let m = marker();
    let dir = TestDir::new(&m);
    let sleep = copy_executable("/bin/sleep", &dir.join(&m));

    let cp = mon.checkpoint();
    let mut child = spawn(Command::new(&sleep).arg("60"));
    // `spawn` returns once the child has exec'd: the process killed is the copied sleep.
    let pid = child.id();
    child.kill().expect("kill the sleep");
    let status = wait_child(&mut child, DEFAULT_TIMEOUT);
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    let e = mon.expect(
        &cp,
        "process_exit",
        &format!("killed sleep (pid {pid})"),
        |e| e["pid"] == pid,
    );
    assert_field(&e, "exit_signal", 9);
    assert_field(&e, "exit_code", 137);
    assert_field(&e, "process", comm_of(m.as_bytes()));
}

#[test]
fn ptrace_attach_is_reported() {
    let mon = monitor();
    let cp = mon.checkpoint();
    let mut child = spawn(Command::new("sleep").arg("60"));
    let pid = child.id();
    let target = libc::pid_t::try_from(pid).expect("pid fits pid_t");

    let null = std::ptr::null_mut::<libc::c_void>();
    // SAFETY: PTRACE_ATTACH/DETACH take no pointers; the target is our own child.
    let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, target, null, null) };
    let attach_err = std::io::Error::last_os_error();
    if rc == 0 {
        let mut status = 0;
        // SAFETY: status is a valid out pointer.
        let waited = unsafe { libc::waitpid(target, &mut status, libc::__WALL) };
        assert_eq!(waited, target, "waitpid for the attach stop");
        assert!(
            libc::WIFSTOPPED(status),
            "the tracee stops after PTRACE_ATTACH"
        );
        // SAFETY: as above; the tracee is stopped and traced by this thread.
        let rc = unsafe { libc::ptrace(libc::PTRACE_DETACH, target, null, null) };
        assert_eq!(rc, 0, "PTRACE_DETACH: {}", std::io::Error::last_os_error());
    }
    child.kill().expect("kill the tracee");
    wait_child(&mut child, DEFAULT_TIMEOUT);
    assert_eq!(rc, 0, "PTRACE_ATTACH: {attach_err}");

    let e = mon.expect(&cp, "ptrace", &format!("PTRACE_ATTACH to {pid}"), |e| {
        e["target_pid"] == pid && e["ptrace_request"] == "PTRACE_ATTACH"
    });
    assert_field(&e, "pid", test_pid());
    assert_field(&e, "tid", gettid());
    assert_field(&e, "uid", 0u32);
}
