//! Kernel family: eBPF program loads by other processes and kernel module loads, two favourite
//! rootkit paths. (This machine's kernel has no module support: userspace reports the
//! init_module/finit_module probes as unavailable when their tracepoints are missing.)
use monitor_common::{BpfLoadEvent, ModuleLoadEvent, PendingSyscall, family, kind, ops};

use super::{fill_header, read_user, read_user_str, reserve, submit};

/// Offset of `prog_name[16]` in `union bpf_attr` for BPF_PROG_LOAD.
const BPF_ATTR_PROG_NAME: u64 = 48;

/// `sys_exit` of bpf, init_module and finit_module (`sm_sys_enter` only saves BPF_PROG_LOAD
/// calls of bpf()).
#[inline(always)]
pub fn on_sys_exit(pending: &PendingSyscall, ret: i64) -> Option<()> {
    if ret < 0 {
        return None;
    }
    let a = pending.args;
    match pending.op {
        ops::BPF => {
            let mut entry = reserve::<BpfLoadEvent>(family::KERNEL)?;
            // SAFETY: `entry` is a fresh ring-buffer reservation, sized and aligned for the
            // record, that nothing else touches until `submit`; the record is integers and byte
            // arrays only, so whatever bytes the ring held there already form a valid value.
            let event = unsafe { &mut *entry.as_mut_ptr() };
            fill_header(&mut event.header, kind::BPF_LOAD);
            // union bpf_attr { u32 prog_type; u32 insn_cnt; ... char prog_name[16] @48 }
            event.data.prog_type = read_user::<u32>(a[1]).unwrap_or(0);
            event.data.insn_count = read_user::<u32>(a[1] + 4).unwrap_or(0);
            event.data.prog_name =
                read_user::<[u8; 16]>(a[1] + BPF_ATTR_PROG_NAME).unwrap_or([0; 16]);
            submit(entry);
        }
        ops::INIT_MODULE | ops::FINIT_MODULE => {
            let mut entry = reserve::<ModuleLoadEvent>(family::KERNEL)?;
            // SAFETY: `entry` is a fresh ring-buffer reservation, sized and aligned for the
            // record, that nothing else touches until `submit`; the record is integers and byte
            // arrays only, so whatever bytes the ring held there already form a valid value.
            let event = unsafe { &mut *entry.as_mut_ptr() };
            fill_header(&mut event.header, kind::MODULE_LOAD);
            event.data.op = pending.op;
            // init_module(image, len, params) / finit_module(fd, params, flags)
            let (fd, params) = if pending.op == ops::FINIT_MODULE {
                (a[0] as i32, a[1])
            } else {
                (-1, a[2])
            };
            event.data.fd = fd;
            if read_user_str(params, &mut event.data.params) {
                event.header.truncated = 1;
            }
            submit(entry);
        }
        _ => {}
    }
    Some(())
}
