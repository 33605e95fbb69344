//! bpf_load, and module_load being reported as unavailable on this kernel.

use crate::common::{assert_field, gettid, monitor, next_id, test_pid};

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
struct BpfInsn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble.
    regs: u8,
    off: i16,
    imm: i32,
}

/// The BPF_PROG_LOAD part of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// Loads `r0 = 0; exit` as a socket filter named `name` and closes it again.
fn load_socket_filter(name: &str) {
    assert!(name.len() < 16, "a BPF object name has at most 15 bytes");
    let insns = [
        // BPF_ALU64 | BPF_MOV | BPF_K: r0 = 0
        BpfInsn {
            code: 0xb7,
            regs: 0,
            off: 0,
            imm: 0,
        },
        // BPF_JMP | BPF_EXIT
        BpfInsn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    let license = c"GPL";
    let mut prog_name = [0u8; 16];
    prog_name[..name.len()].copy_from_slice(name.as_bytes());
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
        prog_ifindex: 0,
        expected_attach_type: 0,
    };
    // SAFETY: attr points to a properly laid-out, initialised bpf_attr prefix whose pointers
    // (insns, license) stay valid for the duration of the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    assert!(
        fd >= 0,
        "BPF_PROG_LOAD of a trivial socket filter failed: {}",
        std::io::Error::last_os_error()
    );
    let fd = libc::c_int::try_from(fd).expect("an fd fits c_int");
    // SAFETY: fd is a descriptor we own.
    unsafe { libc::close(fd) };
}

#[test]
fn bpf_prog_load_is_bpf_load() {
    let mon = monitor();
    // Not `sm_`: that prefix is the monitor's own. At most 15 bytes: t<pid>_<n>.
    let name = format!("t{}_{}", test_pid(), next_id() % 1000);
    let cp = mon.checkpoint();
    load_socket_filter(&name);

    let e = mon.expect(&cp, "bpf_load", &format!("BPF_PROG_LOAD of {name}"), |e| {
        e["pid"] == test_pid() && e["bpf_prog_name"] == name.as_str()
    });
    assert_field(&e, "bpf_prog_type", BPF_PROG_TYPE_SOCKET_FILTER);
    assert_field(&e, "tid", gettid());
    assert_field(&e, "uid", 0u32);
}

#[test]
fn module_load_is_reported_unavailable() {
    let mon = monitor();
    let line = mon.wait_for_stderr("saying module_load is unavailable", |l| {
        l.contains("module_load") && l.contains("unavailable")
    });
    assert!(
        line.starts_with("secmon:"),
        "stderr lines start with `secmon:`: {line:?}"
    );
    // ... and the monitor still came up.
    assert_eq!(mon.ready_lines(), 1, "exactly one `secmon: ready` line");
    assert!(mon.exited().is_none(), "the monitor keeps running");
}
