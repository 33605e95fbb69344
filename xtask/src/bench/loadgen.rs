//! The load generators the benchmark times: `cargo xtask bench loadgen <load>` (hidden), run from
//! the release build of xtask so the loop itself costs as little as possible.
//!
//! Each prints one line on stdout, `<elapsed seconds> <operations>`, timing only the loop (not
//! process start-up or set-up such as creating the file or the listener).

use std::ffi::CString;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;

#[derive(Debug, Clone, Subcommand)]
pub enum Load {
    /// open(2) + close(2) of a temporary file, N times.
    Open { n: u64 },
    /// fork + exec of /bin/true and wait for it, N times.
    Exec { n: u64 },
    /// N loopback TCP connects: connect, wait for the server's close, close.
    Connect { n: u64 },
    /// open + close at OPS_PER_SEC for SECS seconds (paced every millisecond), split over
    /// THREADS threads.
    Rate {
        ops_per_sec: u64,
        secs: f64,
        #[arg(long, default_value_t = 1)]
        threads: u32,
    },
}

/// What one loop did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadResult {
    pub secs: f64,
    pub ops: u64,
}

impl LoadResult {
    /// Parses the line the generator prints.
    pub fn parse(text: &str) -> Option<LoadResult> {
        let mut words = text.split_whitespace();
        let secs = words.next()?.parse().ok()?;
        let ops = words.next()?.parse().ok()?;
        Some(LoadResult { secs, ops })
    }
}

pub fn run(load: &Load) -> Result<()> {
    let result = match *load {
        Load::Open { n } => with_temp_file(|path| open_loop(path, n))?,
        Load::Exec { n } => exec_loop(n)?,
        Load::Connect { n } => connect_loop(n)?,
        Load::Rate {
            ops_per_sec,
            secs,
            threads,
        } => {
            if ops_per_sec == 0 || secs.is_nan() || secs <= 0.0 || threads == 0 {
                bail!("rate: OPS_PER_SEC, SECS and --threads must be positive");
            }
            with_temp_file(|path| rate_threads(path, ops_per_sec, secs, threads))?
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:.6} {}", result.secs, result.ops)?;
    out.flush()?;
    Ok(())
}

/// Creates `/tmp/secmon-bench-<pid>/file`, runs `f` with its path, removes it.
fn with_temp_file(f: impl FnOnce(&CString) -> Result<LoadResult>) -> Result<LoadResult> {
    let dir = std::env::temp_dir().join(format!("secmon-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file: PathBuf = dir.join("file");
    std::fs::write(&file, b"secmon bench\n")
        .with_context(|| format!("creating {}", file.display()))?;
    let path = CString::new(file.as_os_str().as_bytes()).context("temp path has a NUL")?;
    let result = f(&path);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[inline]
fn open_close(path: &CString) -> Result<()> {
    // SAFETY: `path` is a valid NUL-terminated string; the fd is closed right away.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("open");
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    unsafe { libc::close(fd) };
    Ok(())
}

fn open_loop(path: &CString, n: u64) -> Result<LoadResult> {
    let start = Instant::now();
    for _ in 0..n {
        open_close(path)?;
    }
    Ok(LoadResult {
        secs: start.elapsed().as_secs_f64(),
        ops: n,
    })
}

fn exec_loop(n: u64) -> Result<LoadResult> {
    // std's Command uses posix_spawn (clone with CLONE_VFORK) for this simple case: the cheapest
    // fork + exec there is, and the same in every run. stdio is inherited so no /dev/null opens
    // are added to the loop.
    let mut cmd = Command::new("/bin/true");
    cmd.stdin(Stdio::inherit());
    let start = Instant::now();
    for _ in 0..n {
        let status = cmd.status().context("running /bin/true")?;
        if !status.success() {
            bail!("/bin/true failed: {status}");
        }
    }
    Ok(LoadResult {
        secs: start.elapsed().as_secs_f64(),
        ops: n,
    })
}

fn connect_loop(n: u64) -> Result<LoadResult> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        for _ in 0..n {
            // Accept and close: the client sees EOF.
            let (stream, _) = listener.accept()?;
            drop(stream);
        }
        Ok(())
    });
    let start = Instant::now();
    let mut byte = [0u8; 1];
    for i in 0..n {
        let mut stream =
            TcpStream::connect(addr).with_context(|| format!("connect #{i} to {addr}"))?;
        // Wait for the server's close, so the accept queue never overflows (an overflow would
        // cost a one-second SYN retransmit) and the server side's TIME_WAIT keeps the client's
        // ephemeral ports free.
        let _ = stream.read(&mut byte);
    }
    let secs = start.elapsed().as_secs_f64();
    match server.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e).context("accept"),
        Err(_) => bail!("the accept thread panicked"),
    }
    Ok(LoadResult { secs, ops: n })
}

/// `threads` pacers of `ops_per_sec / threads` each; the result spans the slowest one.
fn rate_threads(path: &CString, ops_per_sec: u64, secs: f64, threads: u32) -> Result<LoadResult> {
    if threads == 1 {
        return rate_loop(path, ops_per_sec, secs);
    }
    let per_thread = (ops_per_sec / u64::from(threads)).max(1);
    let start = Instant::now();
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| rate_loop(path, per_thread, secs)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| bail!("a rate thread panicked")))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(LoadResult {
        secs: start.elapsed().as_secs_f64(),
        ops: results.iter().map(|r| r.ops).sum(),
    })
}

fn rate_loop(path: &CString, ops_per_sec: u64, secs: f64) -> Result<LoadResult> {
    let total = (ops_per_sec as f64 * secs).round() as u64;
    let tick = Duration::from_millis(1);
    let start = Instant::now();
    let mut done = 0u64;
    while done < total {
        let elapsed = start.elapsed();
        let due = ((elapsed.as_secs_f64() * ops_per_sec as f64) as u64 + 1).min(total);
        while done < due {
            open_close(path)?;
            done += 1;
        }
        if done < total {
            // Ahead of schedule: sleep to the next tick (when behind, `due` is already past).
            let next = start.elapsed();
            let ahead =
                Duration::from_secs_f64(done as f64 / ops_per_sec as f64).saturating_sub(next);
            if !ahead.is_zero() {
                std::thread::sleep(ahead.min(tick));
            }
        }
    }
    Ok(LoadResult {
        secs: start.elapsed().as_secs_f64(),
        ops: done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_result_line() {
        assert_eq!(
            LoadResult::parse("1.250000 1000\n"),
            Some(LoadResult {
                secs: 1.25,
                ops: 1000
            })
        );
        assert_eq!(LoadResult::parse("oops"), None);
    }

    #[test]
    fn loops_run() {
        with_temp_file(|p| open_loop(p, 10)).expect("open loop");
        connect_loop(3).expect("connect loop");
        let r = with_temp_file(|p| rate_loop(p, 1000, 0.02)).expect("rate loop");
        assert_eq!(r.ops, 20);
        assert!(r.secs >= 0.018, "{r:?}");
        let r = with_temp_file(|p| rate_threads(p, 2000, 0.02, 2)).expect("rate threads");
        assert_eq!(r.ops, 40);
    }
}
