//! Network family. TCP connections are followed through `sock:inet_sock_set_state`
//! (connect reported when established, with both ends; close reported with byte counts summed
//! from `sock:sock_send_length`/`sock_recv_length` in `SM_TCP`); accept, listen and UDP sends
//! come from syscall tracepoints, which run in the caller's context (the passive TCP state
//! changes run in softirq context, where the current task is whoever happened to be running).
use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::tracepoint, programs::TracePointContext};
use monitor_common::{
    EventHeader, Listener, NetData, NetEvent, PendingSyscall, SocketKey, TcpConnection, family,
    kind, marks, ops,
};

use super::{
    current_tgid, current_tid, fill_header, ignored, is_self, read_user, reserve, submit, tp_field,
};
use crate::maps::{SM_LISTENERS, SM_PENDING, SM_TCP};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const EINTR: i64 = 4;
const EALREADY: i64 = 114;
const EINPROGRESS: i64 = 115;
/// The kernel's "restart the syscall" codes, seen at sys_exit when a signal interrupts it.
const ERESTARTSYS: i64 = 512;
const ERESTARTNOHAND: i64 = 514;
const MSG_PEEK: i32 = 2;

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_SYN_RECV: i32 = 3;
const TCP_CLOSE: i32 = 7;
const TCP_LISTEN: i32 = 10;

/// An IPv4 or IPv6 endpoint read from a user `struct sockaddr`.
struct Endpoint {
    family: u16,
    port: u16,
    addr: [u8; 16],
}

/// Reads a `sockaddr_in`/`sockaddr_in6` from user memory; other families give None.
#[inline(always)]
fn read_sockaddr(ptr: u64) -> Option<Endpoint> {
    let family: u16 = read_user(ptr)?;
    let port = u16::from_be(read_user::<u16>(ptr + 2)?);
    let mut addr = [0u8; 16];
    match family {
        // sockaddr_in { family, port, addr[4] @4 }
        AF_INET => addr[..4].copy_from_slice(&read_user::<[u8; 4]>(ptr + 4)?),
        // sockaddr_in6 { family, port, flowinfo, addr[16] @8, scope_id }
        AF_INET6 => addr = read_user::<[u8; 16]>(ptr + 8)?,
        _ => return None,
    }
    Some(Endpoint { family, port, addr })
}

#[inline(always)]
fn empty_net(family: u16, protocol: u16) -> NetData {
    NetData {
        family,
        protocol,
        src_port: 0,
        dst_port: 0,
        src_addr: [0; 16],
        dst_addr: [0; 16],
        fd: -1,
        flags: 0,
        bytes_sent: 0,
        bytes_received: 0,
        duration_ns: 0,
        error: 0,
        _pad: 0,
    }
}

#[inline(always)]
fn submit_net(kind: u32, header: Option<&EventHeader>, net: &NetData) -> Option<()> {
    let mut entry = reserve::<NetEvent>(family::NETWORK)?;
    // SAFETY: `entry` is a fresh ring-buffer reservation, sized and aligned for the record,
    // that nothing else touches until `submit`; the record is integers and byte arrays only,
    // so whatever bytes the ring held there already form a valid value.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    match header {
        Some(owner) => {
            event.header = *owner;
            event.header.kind = kind;
            // SAFETY: helper without arguments or preconditions.
            event.header.timestamp_ns = unsafe { bpf_ktime_get_ns() };
        }
        None => fill_header(&mut event.header, kind),
    }
    event.data = *net;
    submit(entry);
    Some(())
}

/// `sys_exit` of connect, accept, accept4, listen, sendto and sendmsg.
#[inline(always)]
pub fn on_sys_exit(pending: &PendingSyscall, ret: i64) -> Option<()> {
    let a = pending.args;
    match pending.op {
        // connect(fd, uservaddr, addrlen). TCP connects are reported when established (see
        // sm_sock_state); what is left here is a datagram socket choosing its peer.
        ops::CONNECT
            if (ret == 0 || ret == -EINPROGRESS) && pending.marks & marks::TCP_CONNECT == 0 =>
        {
            let peer = read_sockaddr(a[1])?;
            let mut net = empty_net(peer.family, IPPROTO_UDP);
            net.dst_port = peer.port;
            net.dst_addr = peer.addr;
            net.fd = a[0] as i32;
            submit_net(kind::NET_CONNECT, None, &net)
        }
        // A blocking TCP connect that failed: the socket already closed (see report_close),
        // which left the report to us, because only the syscall knows the errno.
        ops::CONNECT
            if pending.marks & marks::TCP_CONNECT != 0
                && (connect_failed(ret) || pending.marks & marks::TCP_FAILED != 0) =>
        {
            let peer = read_sockaddr(a[1])?;
            let mut net = empty_net(peer.family, IPPROTO_TCP);
            net.dst_port = peer.port;
            net.dst_addr = peer.addr;
            net.fd = a[0] as i32;
            // A non-blocking connect that failed within the call still returns EINPROGRESS.
            if connect_failed(ret) {
                net.error = (-ret) as i32;
            }
            submit_net(kind::NET_CONNECT_FAILED, None, &net)
        }
        // accept(fd, upeer_sockaddr, upeer_addrlen) / accept4(..., flags): returns the new fd.
        ops::ACCEPT | ops::ACCEPT4 if ret >= 0 => {
            // SAFETY: the value is only read; a `Listener` is integers only, so an entry evicted
            // and reused under us (LRU) reads as another valid listener, never as undefined
            // behaviour.
            let listener = unsafe {
                SM_LISTENERS.get(SocketKey {
                    tgid: current_tgid(),
                    fd: a[0] as i32,
                })
            };
            let peer = if a[1] != 0 { read_sockaddr(a[1]) } else { None };
            let family = match (&peer, listener) {
                (Some(p), _) => p.family,
                (None, Some(l)) => l.family,
                (None, None) => 0,
            };
            let mut net = empty_net(family, IPPROTO_TCP);
            net.fd = ret as i32;
            if let Some(l) = listener {
                net.src_port = l.port;
                net.src_addr = l.addr;
            }
            if let Some(p) = peer {
                net.dst_port = p.port;
                net.dst_addr = p.addr;
            }
            submit_net(kind::NET_ACCEPT, None, &net)
        }
        // sendto(fd, buf, len, flags, addr, addrlen): only saved when addr is set.
        ops::SENDTO if ret >= 0 => report_datagram(a[0], a[4]),
        // sendmsg(fd, msghdr, flags): msghdr.msg_name is the first field.
        ops::SENDMSG if ret >= 0 => report_datagram(a[0], read_user::<u64>(a[1])?),
        _ => None,
    }
}

/// Whether a TCP connect's return value is a failure. In progress (non-blocking), already in
/// progress and interrupted connects go on in the background: the socket reports their end.
#[inline(always)]
fn connect_failed(ret: i64) -> bool {
    ret < 0
        && !matches!(
            -ret,
            EINPROGRESS | EALREADY | EINTR | ERESTARTSYS | ERESTARTNOHAND
        )
}

#[inline(always)]
fn report_datagram(fd: u64, sockaddr: u64) -> Option<()> {
    let peer = read_sockaddr(sockaddr)?;
    let mut net = empty_net(peer.family, IPPROTO_UDP);
    net.dst_port = peer.port;
    net.dst_addr = peer.addr;
    net.fd = fd as i32;
    submit_net(kind::NET_UDP, None, &net)
}

/// `sock:inet_sock_set_state(skaddr @8, oldstate @16, newstate @20, sport @24, dport @26,
/// family @28, protocol @30, saddr @32, daddr @36, saddr_v6 @40, daddr_v6 @56)`.
#[tracepoint]
pub fn sm_sock_state(ctx: TracePointContext) -> u32 {
    let _ = try_sock_state(&ctx);
    0
}

fn try_sock_state(ctx: &TracePointContext) -> Option<()> {
    let protocol: u16 = tp_field(ctx, 30);
    if protocol != IPPROTO_TCP {
        return None;
    }
    let sk: u64 = tp_field(ctx, 8);
    let old: i32 = tp_field(ctx, 16);
    let new: i32 = tp_field(ctx, 20);
    if new == TCP_CLOSE {
        // Always forget the socket, even with the family switched off.
        return report_close(sk);
    }
    if ignored_softirq_safe() {
        return None;
    }
    // The 4-tuple is read (two helper calls) only in the arms that use it: about half of a
    // connection's state changes are the steps of its close (FIN_WAIT1/2, CLOSE_WAIT,
    // LAST_ACK…), which fall through to `_` having read nothing more.
    match (old, new) {
        // connect(): runs in the caller's context; the local port is not chosen yet.
        (_, TCP_SYN_SENT) => {
            if is_self(current_tgid()) {
                return None;
            }
            mark_tcp_connect();
            let mut conn = new_connection(tuple_of(ctx), kind::NET_CONNECT);
            fill_header(&mut conn.owner, kind::NET_CONNECT);
            SM_TCP.insert(sk, conn, 0).ok()
        }
        (TCP_SYN_SENT, TCP_ESTABLISHED) => {
            // SAFETY: a successful lookup in `SM_TCP`, a preallocated map whose slots are reused
            // (LRU), never freed, so the pointer stays valid for the program. Programs on
            // different CPUs are not serialised: another may update this connection at the
            // same time (two sends on one socket), which can lose a byte count (accepted, see
            // `count_bytes`) but cannot make a value invalid, being integers only.
            let conn = unsafe { &mut *SM_TCP.get_ptr_mut(sk)? };
            conn.net = tuple_of(ctx);
            conn.established = 1;
            // SAFETY: helper without arguments or preconditions.
            conn.start_ns = unsafe { bpf_ktime_get_ns() };
            submit_net(kind::NET_CONNECT, Some(&conn.owner), &conn.net)
        }
        // Passive open completing in softirq context: the owner is learnt from the first
        // send/receive, and net_accept is reported by the accept() syscall.
        (TCP_SYN_RECV, TCP_ESTABLISHED) => {
            let mut conn = new_connection(tuple_of(ctx), kind::NET_ACCEPT);
            conn.established = 1;
            SM_TCP.insert(sk, conn, 0).ok()
        }
        // listen(): in the caller's context.
        (_, TCP_LISTEN) => report_listen(&tuple_of(ctx)),
        _ => None,
    }
}

/// The softirq-context state changes cannot use the current task to filter: only the family
/// switch applies there.
#[inline(always)]
fn ignored_softirq_safe() -> bool {
    use crate::maps::SM_CONFIG;
    let enabled = SM_CONFIG
        .get(monitor_common::config::ENABLED_FAMILIES)
        .copied()
        .unwrap_or(0);
    enabled & family::bit(family::NETWORK) == 0
}

#[inline(always)]
fn tuple_of(ctx: &TracePointContext) -> NetData {
    let family: u16 = tp_field(ctx, 28);
    let mut net = empty_net(family, IPPROTO_TCP);
    net.src_port = tp_field(ctx, 24);
    net.dst_port = tp_field(ctx, 26);
    // Byte arrays are copied with a helper: the verifier refuses loads through a context
    // pointer that LLVM has offset, which is how it lowers multi-byte copies.
    if family == AF_INET6 {
        // SAFETY: saddr_v6 is 16 bytes at 40 in the record; the read is fault-handled.
        net.src_addr = unsafe { ctx.read_at::<[u8; 16]>(40) }.unwrap_or([0; 16]);
        // SAFETY: daddr_v6 is 16 bytes at 56 in the record; the read is fault-handled.
        net.dst_addr = unsafe { ctx.read_at::<[u8; 16]>(56) }.unwrap_or([0; 16]);
    } else {
        // SAFETY: saddr is 4 bytes at 32 in the record; the read is fault-handled.
        let s = unsafe { ctx.read_at::<[u8; 4]>(32) }.unwrap_or([0; 4]);
        // SAFETY: daddr is 4 bytes at 36 in the record; the read is fault-handled.
        let d = unsafe { ctx.read_at::<[u8; 4]>(36) }.unwrap_or([0; 4]);
        net.src_addr[..4].copy_from_slice(&s);
        net.dst_addr[..4].copy_from_slice(&d);
    }
    net
}

#[inline(always)]
fn new_connection(net: NetData, role: u32) -> TcpConnection {
    // SAFETY: `EventHeader` is integers and byte arrays, for which all-zero bytes are valid.
    let mut owner: EventHeader = unsafe { core::mem::zeroed() };
    owner.kind = role;
    TcpConnection {
        owner,
        net,
        // SAFETY: helper without arguments or preconditions.
        start_ns: unsafe { bpf_ktime_get_ns() },
        role,
        established: 0,
    }
}

/// Tells the connect() in progress on this thread that TCP reports it (see sm_exit_net).
#[inline(always)]
fn mark_tcp_connect() {
    if let Some(pending) = SM_PENDING.get_ptr_mut(current_tid()) {
        // SAFETY: `SM_PENDING` is keyed by thread id and only the current thread's own programs,
        // which never run concurrently with this one, insert or remove its entry, so no other
        // reference to the value exists while this one does (userspace never writes this map).
        let pending = unsafe { &mut *pending };
        if pending.op == ops::CONNECT {
            pending.marks |= marks::TCP_CONNECT;
        }
    }
}

#[inline(always)]
fn report_listen(net: &NetData) -> Option<()> {
    if ignored(family::NETWORK) {
        return None;
    }
    let mut listen = *net;
    // Remember which fd listens, so accept() can name its local address.
    // SAFETY: `SM_PENDING` is keyed by thread id and only the current thread's own programs,
    // which never run concurrently with this one, insert or remove its entry, so the value
    // cannot be replaced while we read it (userspace never writes this map).
    if let Some(pending) = unsafe { SM_PENDING.get(current_tid()) }
        && pending.op == ops::LISTEN
    {
        listen.fd = pending.args[0] as i32;
        let key = SocketKey {
            tgid: current_tgid(),
            fd: listen.fd,
        };
        let listener = Listener {
            family: net.family,
            port: net.src_port,
            _pad: 0,
            addr: net.src_addr,
        };
        let _ = SM_LISTENERS.insert(key, listener, 0);
    }
    submit_net(kind::NET_LISTEN, None, &listen)
}

#[inline(always)]
fn report_close(sk: u64) -> Option<()> {
    // SAFETY: the value is copied out at once; a `TcpConnection` is integers and byte arrays,
    // so an entry evicted and reused under us (LRU) reads as another valid value.
    let conn = unsafe { SM_TCP.get(sk) }.copied();
    let _ = SM_TCP.remove(sk);
    let conn = conn?;
    if ignored_softirq_safe() || is_self(conn.owner.pid) {
        return None;
    }
    if conn.established == 0 {
        return report_failed_connect(&conn);
    }
    let mut net = conn.net;
    // SAFETY: helper without arguments or preconditions.
    net.duration_ns = unsafe { bpf_ktime_get_ns() }.saturating_sub(conn.start_ns);
    submit_net(kind::NET_CLOSE, Some(&conn.owner), &net)
}

/// A connect that closed before it was established: refused, timed out, unreachable, or
/// given up by its program. While its thread is still inside connect(), the syscall's exit
/// reports it (with the errno, when connect returns one); otherwise (a non-blocking connect
/// failing later) it is reported here, without one.
#[inline(always)]
fn report_failed_connect(conn: &TcpConnection) -> Option<()> {
    if conn.role != kind::NET_CONNECT || conn.owner.pid == 0 {
        return None;
    }
    if conn.owner.tid == current_tid() {
        // On loopback the answer is handled synchronously, inside the connect call: tell its
        // sys_exit, which may return EINPROGRESS all the same.
        if let Some(pending) = SM_PENDING.get_ptr_mut(conn.owner.tid) {
            // SAFETY: `SM_PENDING` is keyed by thread id and this is the current thread's own
            // entry: only its own programs, which never run concurrently with this one, insert
            // or remove it, so no other reference to the value exists while this one does.
            let pending = unsafe { &mut *pending };
            if pending.op == ops::CONNECT && pending.marks & marks::TCP_CONNECT != 0 {
                pending.marks |= marks::TCP_FAILED;
                return None;
            }
        }
    } else {
        // Another context (a softirq on another CPU) while the owner sleeps in a blocking
        // connect(): its exit reports the failure with the errno.
        // SAFETY: the value is only read; a `PendingSyscall` is integers only, so an entry
        // replaced under us reads as another valid value.
        if let Some(pending) = unsafe { SM_PENDING.get(conn.owner.tid) }
            && pending.op == ops::CONNECT
            && pending.marks & marks::TCP_CONNECT != 0
        {
            return None;
        }
    }
    let mut net = conn.net;
    // SAFETY: helper without arguments or preconditions.
    net.duration_ns = unsafe { bpf_ktime_get_ns() }.saturating_sub(conn.start_ns);
    submit_net(kind::NET_CONNECT_FAILED, Some(&conn.owner), &net)
}

/// `sock:sock_send_length(sk @8, family @16, protocol @18, ret @20, flags @24)`.
#[tracepoint]
pub fn sm_sock_send(ctx: TracePointContext) -> u32 {
    count_bytes(&ctx, true);
    0
}

/// `sock:sock_recv_length(sk @8, family @16, protocol @18, ret @20, flags @24)`.
#[tracepoint]
pub fn sm_sock_recv(ctx: TracePointContext) -> u32 {
    count_bytes(&ctx, false);
    0
}

/// Adds a send's or receive's byte count to its connection. Runs in the caller's context, so
/// an accepted connection learns its owner here.
#[inline(always)]
fn count_bytes(ctx: &TracePointContext, sent: bool) {
    let protocol: u16 = tp_field(ctx, 18);
    let ret: i32 = tp_field(ctx, 20);
    let flags: i32 = tp_field(ctx, 24);
    if protocol != IPPROTO_TCP || ret <= 0 || (!sent && flags & MSG_PEEK != 0) {
        return;
    }
    let sk: u64 = tp_field(ctx, 8);
    let Some(conn) = SM_TCP.get_ptr_mut(sk) else {
        return;
    };
    // SAFETY: a successful lookup in `SM_TCP`, a preallocated map whose slots are reused
    // (LRU), never freed, so the pointer stays valid for the program. Programs on different
    // CPUs are not serialised: another may update this connection at the same time (two sends
    // on one socket), which can lose a byte count (accepted, see `count_bytes`) but cannot
    // make a value invalid, the entry being integers and byte arrays only.
    let conn = unsafe { &mut *conn };
    let counter = if sent {
        &mut conn.net.bytes_sent
    } else {
        &mut conn.net.bytes_received
    };
    // Not atomic (the BPF target's core has no 64-bit fetch_add): two CPUs sending on the same
    // socket at the same instant may lose one count, which is acceptable for a byte total.
    *counter += ret as u64;
    if conn.owner.pid == 0 {
        fill_header(&mut conn.owner, conn.role);
    }
}
