//! Thread priorities. The kernel reader and the driver run at the default priority; the
//! sinks that may fall behind (history, recording, web controller) run lower, so that when
//! the CPUs are scarce they lose events (counted) instead of slowing capture.

/// The nice value of the best-effort threads.
pub const BACKGROUND_NICE: libc::c_int = 10;

/// Lowers the calling thread (not the process) to [`BACKGROUND_NICE`]. Best effort: without
/// CAP_SYS_NICE nothing changes.
pub fn lower_this_thread() {
    // SAFETY: gettid has no preconditions; setpriority(PRIO_PROCESS, tid) changes only the
    // calling thread's nice value on Linux and fails harmlessly (ignored).
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS as _, tid as libc::id_t, BACKGROUND_NICE);
    }
}

/// A current-thread tokio runtime for a best-effort companion (web controller, NATS
/// exporter): the calling thread and every thread the runtime starts run at
/// [`BACKGROUND_NICE`].
pub fn background_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    lower_this_thread();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(lower_this_thread)
        .build()
}
