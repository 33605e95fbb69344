//! privilege_change: the setuid family and capset.

use std::process::Command;

use crate::common::{
    DEFAULT_TIMEOUT, assert_field, assert_syscall_in, monitor, spawn, str_field, wait_child,
};

const NOBODY: u32 = 65534;

#[test]
fn dropping_to_nobody_is_privilege_change() {
    let mon = monitor();
    let cp = mon.checkpoint();
    let mut setpriv = spawn(Command::new("setpriv").args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "/bin/true",
    ]));
    let pid = setpriv.id();
    assert!(wait_child(&mut setpriv, DEFAULT_TIMEOUT).success());

    let e = mon.expect(
        &cp,
        "privilege_change",
        &format!("setpriv (pid {pid}) changing uid to {NOBODY}"),
        |e| e["pid"] == pid && e["new_uid"] == NOBODY,
    );
    assert_field(&e, "old_uid", 0u32);
    assert_syscall_in(&e, &["setuid", "setreuid", "setresuid"]);
    assert_field(&e, "process", "setpriv");

    let e = mon.expect(
        &cp,
        "privilege_change",
        &format!("setpriv (pid {pid}) changing gid to {NOBODY}"),
        |e| e["pid"] == pid && e["new_gid"] == NOBODY,
    );
    assert_field(&e, "old_gid", 0u32);
    let syscall = str_field(&e, "syscall");
    assert!(
        [
            "setgid",
            "setregid",
            "setresgid",
            "setuid",
            "setreuid",
            "setresuid"
        ]
        .contains(&syscall),
        "a gid change comes from the setgid family (or a combined uid/gid event)\n  in event: {e}"
    );
}

#[test]
fn capset_is_privilege_change() {
    let mon = monitor();
    let cp = mon.checkpoint();
    // Inheritable set = { CAP_NET_RAW } (bit 13); root has it in its permitted set.
    let mut setpriv = spawn(Command::new("setpriv").args(["--inh-caps=+net_raw", "/bin/true"]));
    let pid = setpriv.id();
    assert!(wait_child(&mut setpriv, DEFAULT_TIMEOUT).success());

    let e = mon.expect(
        &cp,
        "privilege_change",
        &format!("the capset adding CAP_NET_RAW (bit 13) to the inheritable set (pid {pid})"),
        // setpriv calls capset twice: first with the sets unchanged, then with +net_raw.
        |e| e["pid"] == pid && e["syscall"] == "capset" && e["capabilities"][2] == 1u32 << 13,
    );
    let caps = e["capabilities"]
        .as_array()
        .filter(|c| c.len() == 3)
        .unwrap_or_else(|| {
            panic!("`capabilities` should be [effective, permitted, inheritable]\n  in event: {e}")
        });
    assert_eq!(
        caps[2],
        1u32 << 13,
        "the inheritable set should be CAP_NET_RAW only\n  in event: {e}"
    );
    assert!(
        caps[0].as_u64().is_some_and(|c| c & (1 << 13) != 0),
        "root keeps CAP_NET_RAW effective\n  in event: {e}"
    );
}
