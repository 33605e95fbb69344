//! The monitor cleans up its kernel objects, survives hostile names, and does not report itself.
//!
//! Ownership of BPF objects is read from `/proc/<pid>/fdinfo` (`prog_id:` / `map_id:`): the
//! bpftool on this machine is built without skeletons, so `bpftool prog show` has no `pids`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    DEFAULT_TIMEOUT, Instance, TestDir, assert_field, comm_of, copy_executable, cstring, lossy,
    marker, monitor, require_root, run, spawn, str_is, wait_child,
};

/// Programs or maps listed by `bpftool -j <kind> show`: id → (name, map_ids for programs).
fn bpftool_list(kind: &str) -> BTreeMap<u64, (String, Vec<u64>)> {
    let out = run(
        Command::new("bpftool").args(["-j", kind, "show"]),
        DEFAULT_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "bpftool -j {kind} show: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<Value> =
        serde_json::from_slice(&out.stdout).expect("bpftool prints a JSON array");
    list.iter()
        .map(|o| {
            let id = o["id"].as_u64().expect("every object has an id");
            let name = o["name"].as_str().unwrap_or("").to_string();
            let maps = o["map_ids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            (id, (name, maps))
        })
        .collect()
}

/// BPF program and map ids that one process holds file descriptors to.
#[derive(Default, Debug)]
struct Held {
    progs: BTreeSet<u64>,
    maps: BTreeSet<u64>,
}

fn held_by(pid: &str) -> Held {
    let mut held = Held::default();
    // The process or its descriptors may vanish while we look: that just means "holds nothing".
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return held;
    };
    for fd in fds.flatten() {
        let Ok(info) = fs::read_to_string(fd.path()) else {
            continue;
        };
        for line in info.lines() {
            let mut parts = line.split(':');
            let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(id) = value.trim().parse::<u64>() else {
                continue;
            };
            match key {
                "prog_id" => {
                    held.progs.insert(id);
                }
                "map_id" => {
                    held.maps.insert(id);
                }
                _ => {}
            }
        }
    }
    held
}

/// What every process on the machine holds.
fn held_by_anyone() -> Held {
    let mut all = Held::default();
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let held = held_by(pid);
        all.progs.extend(held.progs);
        all.maps.extend(held.maps);
    }
    all
}

/// Problems with leftover `sm_` programs and `SM_` maps: those in `gone` that still exist, and
/// those nobody holds (directly, or for maps through a program that is held).
fn leftovers(gone: &Held) -> Vec<String> {
    let progs = bpftool_list("prog");
    let maps = bpftool_list("map");
    let held = held_by_anyone();
    let mut problems = Vec::new();
    for (id, (name, _)) in progs.iter().filter(|(_, (n, _))| n.starts_with("sm_")) {
        if gone.progs.contains(id) {
            problems.push(format!(
                "program {id} ({name}) outlived the monitor that loaded it"
            ));
        } else if !held.progs.contains(id) {
            problems.push(format!(
                "program {id} ({name}) is held by no process (orphan)"
            ));
        }
    }
    let maps_of_held_progs: BTreeSet<u64> = progs
        .iter()
        .filter(|(id, _)| held.progs.contains(id))
        .flat_map(|(_, (_, m))| m.iter().copied())
        .collect();
    for (id, (name, _)) in maps.iter().filter(|(_, (n, _))| n.starts_with("SM_")) {
        if gone.maps.contains(id) {
            problems.push(format!(
                "map {id} ({name}) outlived the monitor that created it"
            ));
        } else if !held.maps.contains(id) && !maps_of_held_progs.contains(id) {
            problems.push(format!("map {id} ({name}) is held by no process (orphan)"));
        }
    }
    problems
}

#[test]
fn kernel_objects_are_released_on_exit() {
    require_root();
    let mut instance = Instance::start(&["--json", "--duration", "4"]);
    instance.wait_ready();
    let pid = instance.pid().to_string();

    // While it runs: it holds its programs and maps, all programs named sm_, some maps SM_.
    let held = held_by(&pid);
    let progs = bpftool_list("prog");
    let maps = bpftool_list("map");
    let prog_names: Vec<(u64, &str)> = held
        .progs
        .iter()
        .map(|id| {
            (
                *id,
                progs.get(id).map_or("<not listed>", |(n, _)| n.as_str()),
            )
        })
        .collect();
    let map_names: Vec<(u64, &str)> = held
        .maps
        .iter()
        .map(|id| {
            (
                *id,
                maps.get(id).map_or("<not listed>", |(n, _)| n.as_str()),
            )
        })
        .collect();
    assert!(
        !prog_names.is_empty(),
        "the running monitor (pid {pid}) holds no BPF program"
    );
    assert!(
        prog_names.iter().all(|(_, n)| n.starts_with("sm_")),
        "every program of the monitor is named sm_*: {prog_names:?}"
    );
    assert!(
        map_names.iter().any(|(_, n)| n.starts_with("SM_")),
        "the monitor holds SM_* maps: {map_names:?}"
    );

    let (status, _stdout, stderr) = instance.finish(Duration::from_secs(30));
    assert!(
        status.success(),
        "`--duration 4` exits 0, got {status}; stderr:\n{}",
        stderr.join("\n")
    );

    // After it exits: none of its objects remain, and no sm_/SM_ object is orphaned. The kernel
    // frees objects asynchronously, so poll (bounded).
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    loop {
        let problems = leftovers(&held);
        if problems.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{DEFAULT_TIMEOUT:?} after the monitor (pid {pid}) exited:\n  {}",
            problems.join("\n  ")
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hostile_exe_name_is_carried_safely() {
    let mon = monitor();
    let m = marker();
    let dir = TestDir::new(&m);
    // An ESC sequence and a byte that is not UTF-8 in the file name (and so in comm and argv[0]).
    let mut name = b"h\x1b[31m\xffx-".to_vec();
    name.extend_from_slice(m.as_bytes());
    let exe = copy_executable("/bin/true", &dir.join(OsStr::from_bytes(&name)));

    let cp = mon.checkpoint();
    let mut child = spawn(&mut Command::new(&exe));
    let pid = child.id();
    assert!(wait_child(&mut child, DEFAULT_TIMEOUT).success());

    let e = mon.expect(
        &cp,
        "process_exec",
        &format!("the hostile exe (pid {pid})"),
        |e| e["pid"] == pid,
    );
    let exe_s = lossy(&exe);
    assert!(exe_s.contains('\u{1b}') && exe_s.contains('\u{fffd}'));
    assert_field(&e, "exe", exe_s.as_str());
    assert_field(&e, "argv", serde_json::json!([exe_s]));
    assert_field(&e, "process", comm_of(&name));
    assert!(
        mon.exited().is_none(),
        "the monitor must survive hostile names"
    );
    assert_eq!(
        mon.bad_lines(),
        Vec::<String>::new(),
        "every stdout line is a JSON object"
    );
}

#[test]
fn hostile_comm_and_path_are_carried_safely() {
    let mon = monitor();
    let m = marker();
    let dir = TestDir::new(&m);
    let mut file_name = b"f\x1b]0;owned\x07\xfe-".to_vec();
    file_name.extend_from_slice(m.as_bytes());
    let file = dir.join(OsStr::from_bytes(&file_name));
    fs::write(&file, b"x").expect("create the hostile file");
    let exe = copy_executable("/bin/true", &dir.join(&m));

    // In the child, before exec: a comm with control characters and a non-UTF-8 byte, then a
    // read-only open of the hostile file (the file_open event carries that comm).
    let comm: &[u8] = b"\x1b[31m\xffev\x07\x01";
    let comm_c = cstring(comm);
    let file_c = cstring(file.as_os_str().as_bytes());
    let mut cmd = Command::new(&exe);
    // SAFETY: the closure only calls prctl, open and close (async-signal-safe) on C strings
    // prepared before fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_NAME, comm_c.as_ptr()) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(file_c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }

    let cp = mon.checkpoint();
    let mut child = spawn(&mut cmd);
    let pid = child.id();
    assert!(wait_child(&mut child, DEFAULT_TIMEOUT).success());

    let e = mon.expect(
        &cp,
        "file_open",
        &format!("the hostile open (pid {pid})"),
        |e| e["pid"] == pid && str_is(e, "file_path", |p| p.contains(&m)),
    );
    let expected_comm = String::from_utf8_lossy(comm).into_owned();
    assert!(expected_comm.contains('\u{1b}') && expected_comm.contains('\u{fffd}'));
    assert_field(&e, "process", expected_comm.as_str());
    assert_field(&e, "file_path", lossy(&file));

    // The monitor is still alive and reporting: the exec that follows arrives.
    let e = mon.expect(
        &cp,
        "process_exec",
        &format!("the exec in pid {pid}"),
        |e| e["pid"] == pid,
    );
    assert_field(&e, "process", comm_of(m.as_bytes()));
    assert!(
        mon.exited().is_none(),
        "the monitor must survive hostile names"
    );
    assert_eq!(
        mon.bad_lines(),
        Vec::<String>::new(),
        "every stdout line is a JSON object"
    );
}

#[test]
fn monitor_does_not_report_itself() {
    let mon = monitor();
    let m = marker();
    let dir = TestDir::new(&m);
    let exe = copy_executable("/bin/true", &dir.join(&m));

    // Give it something to enrich (it reads /proc, writes stdout), then look at everything so far.
    let cp = mon.checkpoint();
    let mut child = spawn(&mut Command::new(&exe));
    let pid = child.id();
    assert!(wait_child(&mut child, DEFAULT_TIMEOUT).success());
    mon.expect(&cp, "process_exec", &format!("{m} (pid {pid})"), |e| {
        e["pid"] == pid
    });
    mon.sync_point(dir.path());

    let own: Vec<Value> = mon
        .events()
        .into_iter()
        .filter(|e| e["pid"] == mon.pid())
        .take(5)
        .collect();
    assert!(
        own.is_empty(),
        "the monitor (pid {}) reported its own activity, e.g.:\n  {}",
        mon.pid(),
        own.iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// On a kernel without per-syscall tracepoints the entry program falls back to the raw
/// `sys_enter` tracepoint (forced here by a debug-build variable): it says so at start, and
/// what needs the entry — argv at exec, the exit code — still arrives.
#[test]
fn raw_sys_enter_fallback_still_reports_argv_and_exit_codes() {
    require_root();
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the fallback can only be forced in a debug build of secmon-tui");
        return;
    }
    let mut instance = Instance::start_with_env(
        &["--json", "--config", crate::common::SHARED_CONFIG],
        &[("SECMON_TEST_RAW_SYS_ENTER", "1")],
    );
    instance.wait_ready();
    let m = marker();
    let status = Command::new("/bin/sh")
        .args(["-c", "exit 7", &m])
        .status()
        .expect("run sh");
    assert_eq!(status.code(), Some(7));
    instance.sync_point(instance.home());
    instance.signal(libc::SIGINT);
    let (status, stdout, stderr) = instance.finish(DEFAULT_TIMEOUT);
    let stderr = stderr.join("\n");
    assert!(status.success(), "monitor exit {status}; stderr:\n{stderr}");
    assert!(
        stderr.contains("followed on the raw sys_enter tracepoint"),
        "the fallback is reported at start; stderr:\n{stderr}"
    );
    assert!(
        !stderr
            .lines()
            .any(|l| l.starts_with("secmon: probe family") && l.contains("sys_enter")),
        "no group lost to the fallback; stderr:\n{stderr}"
    );
    let (events, _) = crate::common::parse_json_lines(&stdout);
    let exec = events
        .iter()
        .find(|e| e["event_type"] == "process_exec" && str_is(e, "cmdline", |c| c.contains(&m)))
        .unwrap_or_else(|| panic!("no process_exec with {m} in its argv; stderr:\n{stderr}"));
    assert_field(exec, "cmdline", format!("/bin/sh -c exit 7 {m}"));
    let pid = exec["pid"].clone();
    let exit = events
        .iter()
        .find(|e| e["event_type"] == "process_exit" && e["pid"] == pid)
        .unwrap_or_else(|| panic!("no process_exit of pid {pid}"));
    assert_field(exit, "exit_code", 7);
}

// ---------------------------------------------------------------------------------------------
// Stopping is bounded

/// Opens and closes files in `dir` on `threads` threads until the returned flag is set; the
/// handles return how many opens each made.
fn open_flood(
    dir: &std::path::Path,
    threads: usize,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Vec<thread::JoinHandle<u64>>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let target = dir.join("flooded");
    fs::write(&target, b"x").expect("create the flood's file");
    let handles = (0..threads)
        .map(|_| {
            let stop = stop.clone();
            let target = target.clone();
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    drop(fs::File::open(&target));
                    n += 1;
                }
                n
            })
        })
        .collect();
    (stop, handles)
}

/// The stop ends in bounded time while the machine keeps flooding the ring buffer. The last
/// drain used to read "until the ring is empty", which a flood never allows: a `--duration`
/// monitor then ran until the flood ended (issue 12). With history on, as shipped.
#[test]
fn stop_is_bounded_under_a_flood() {
    require_root();
    let _flood = crate::common::flooding_the_machine();
    let dir = TestDir::new(&marker());
    let mut instance = Instance::start(&["--json", "--ring-buffer-mib", "1"]);
    instance.wait_ready();
    let (flooding, flood) = open_flood(dir.path(), 2);
    // In full flood: the monitor is writing the flood's events.
    let cp = instance.checkpoint();
    let flooded = crate::common::path_str(&dir.join("flooded"));
    instance.expect(&cp, "file_open", "an open of the flood", |e| {
        str_is(e, "file_path", |p| p == flooded)
    });
    let asked = Instant::now();
    instance.signal(libc::SIGTERM);
    // Long enough for a loaded CI machine; without the bound the stop waits for the flood,
    // which only ends after this.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        instance.finish(crate::common::STOP_TIMEOUT)
    }));
    let took = asked.elapsed();
    flooding.store(true, std::sync::atomic::Ordering::Relaxed);
    for handle in flood {
        let _ = handle.join();
    }
    let (status, _stdout, stderr) = result.unwrap_or_else(|e| std::panic::resume_unwind(e));
    let stderr = stderr.join("\n");
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    assert!(
        stderr.contains("secmon: stopped: "),
        "the stop is reported:\n{stderr}"
    );
    eprintln!("stop under a flood took {took:?}");
}

/// Program ids attached to the cgroup v2 root (`bpftool cgroup show`).
fn cgroup_programs() -> BTreeSet<u64> {
    let root = secmon::capture::enforce::cgroup2_root().expect("a cgroup v2 hierarchy");
    let out = run(
        Command::new("bpftool")
            .args(["-j", "cgroup", "show"])
            .arg(&root),
        DEFAULT_TIMEOUT,
    );
    assert!(out.status.success(), "bpftool cgroup show");
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return BTreeSet::new();
    }
    let list: Vec<Value> = serde_json::from_str(&text).expect("bpftool prints a JSON array");
    list.iter().filter_map(|o| o["id"].as_u64()).collect()
}

/// Program ids behind BPF links (`bpftool link show`).
fn linked_programs() -> BTreeSet<u64> {
    let out = run(
        Command::new("bpftool").args(["-j", "link", "show"]),
        DEFAULT_TIMEOUT,
    );
    assert!(out.status.success(), "bpftool link show");
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    list.iter().filter_map(|o| o["prog_id"].as_u64()).collect()
}

/// SIGKILL while enforcing (deny entries live, connect programs attached to the cgroup
/// root): the kernel releases every program, map and cgroup link of the monitor, and what
/// was denied runs again.
#[test]
fn sigkill_while_enforcing_leaves_nothing_behind() {
    require_root();
    let dir = TestDir::new(&marker());
    let rules = dir.join("rules");
    fs::create_dir(&rules).expect("rules dir");
    let socket = dir.join("control.sock");
    let config = dir.join("secmon.toml");
    fs::write(
        &config,
        format!(
            "[response]\nenforce = true\ncontrol_socket = \"{}\"\n\n[storage]\nenabled = false\n",
            socket.display()
        ),
    )
    .expect("config");
    let denied = copy_executable("/bin/true", &dir.join("denied"));
    let mut instance = Instance::start(&[
        "--json",
        "--rules",
        &rules.to_string_lossy(),
        "--config",
        &config.to_string_lossy(),
    ]);
    instance.wait_ready();
    let pid = instance.pid().to_string();
    let add = run(
        Command::new(crate::common::BIN)
            .args(["block", "add", "exec"])
            .arg(&denied)
            .arg("--socket")
            .arg(&socket),
        DEFAULT_TIMEOUT,
    );
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let status = run(&mut Command::new(&denied), DEFAULT_TIMEOUT).status;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "enforcing"
    );

    let held = held_by(&pid);
    let progs = bpftool_list("prog");
    let connect: BTreeSet<u64> = held
        .progs
        .iter()
        .filter(|id| {
            progs
                .get(id)
                .is_some_and(|(n, _)| n.starts_with("sm_connect"))
        })
        .copied()
        .collect();
    assert_eq!(
        connect.len(),
        2,
        "sm_connect4 and sm_connect6 held: {held:?}"
    );
    let attached = cgroup_programs();
    assert!(
        connect.iter().all(|id| attached.contains(id)),
        "attached to the cgroup root: {attached:?}"
    );

    instance.signal(libc::SIGKILL);
    let (status, _stdout, _stderr) = instance.finish(Duration::from_secs(30));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );

    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    loop {
        let mut problems = leftovers(&held);
        let attached = cgroup_programs();
        let linked = linked_programs();
        for id in &held.progs {
            if attached.contains(id) {
                problems.push(format!("program {id} is still attached to the cgroup root"));
            }
            if linked.contains(id) {
                problems.push(format!("program {id} still has a link"));
            }
        }
        if problems.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{DEFAULT_TIMEOUT:?} after SIGKILL of the monitor (pid {pid}):\n  {}",
            problems.join("\n  ")
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        run(&mut Command::new(&denied), DEFAULT_TIMEOUT)
            .status
            .success(),
        "runs again once the monitor is gone"
    );
}
