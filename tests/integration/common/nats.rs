//! A NATS server with JetStream for one test: `nats-server -js -sd DIR -a 127.0.0.1 -p PORT`
//! on a free loopback port, its store in the test's own directory. It can be stopped and
//! started again on the same port and store (a server that goes away mid-stream).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{die_with_parent, path_str, wait_timeout};

/// How long the server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    /// A configuration file (`-c`: TLS, login) instead of the plain command line.
    config: Option<PathBuf>,
}

/// The Debian package's binary (`cargo xtask setup` installs it), else whatever is on PATH.
fn binary() -> &'static str {
    if Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else if Path::new("/usr/bin/nats-server").exists() {
        "/usr/bin/nats-server"
    } else {
        "nats-server"
    }
}

/// A free loopback port (free a moment ago).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("its address").port()
}

impl NatsServer {
    /// Starts a server storing its streams in `store`, and waits until it listens.
    pub fn start(store: &Path) -> NatsServer {
        NatsServer::start_on(store, free_port())
    }

    /// [`NatsServer::start`] on a given port (one a publisher was told before the server ran).
    pub fn start_on(store: &Path, port: u16) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port,
            store: store.to_path_buf(),
            config: None,
        };
        server.restart();
        server
    }

    /// A server configured by `settings` (nats-server's configuration syntax: `tls { … }`,
    /// `authorization { … }`), with JetStream in `store` on a free loopback port. Its URL is
    /// `scheme://127.0.0.1:PORT` ([`NatsServer::url_with`]).
    pub fn start_configured(store: &Path, settings: &str) -> NatsServer {
        let port = free_port();
        let config = store.with_extension("conf");
        std::fs::write(
            &config,
            format!(
                "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {:?} }}\n{settings}\n",
                path_str(store)
            ),
        )
        .expect("write nats-server's configuration");
        let mut server = NatsServer {
            child: None,
            port,
            store: store.to_path_buf(),
            config: Some(config),
        };
        server.restart();
        server
    }

    /// `scheme://127.0.0.1:PORT` (`tls`, say).
    pub fn url_with(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it again (same port, same store) after [`NatsServer::stop`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let mut cmd = Command::new(binary());
        match &self.config {
            Some(config) => cmd.args(["-c", &path_str(config)]),
            None => cmd
                .args(["-js", "-sd", &path_str(&self.store), "-a", "127.0.0.1"])
                .args(["-p", &self.port.to_string()]),
        };
        // Its log, for the message when it will not start (a configuration it refuses).
        let log = std::fs::File::create(self.store.with_extension("log"))
            .expect("create nats-server's log");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (cargo xtask setup): {e}", binary()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log =
                    std::fs::read_to_string(self.store.with_extension("log")).unwrap_or_default();
                panic!(
                    "nats-server on port {} exited at start: {status}; its log:\n{log}",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on port {} within {START_TIMEOUT:?}",
                self.port
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (SIGTERM, then SIGKILL after 10 s) and waits until the port is closed.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill has no memory-safety preconditions; the child is ours and not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        if wait_timeout(&mut child, Duration::from_secs(10)).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
