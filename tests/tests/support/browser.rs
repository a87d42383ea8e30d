//! Headless Chromium driven through chromedriver (WebDriver), for the
//! dashboard's browser test.
//!
//! The binaries are Debian's `chromium` and `chromium-driver`, which
//! `scripts/chromium.sh` installs when missing; `scripts/test.sh` exports
//! `PIPELINE_CHROMEDRIVER` (and `PIPELINE_CHROMIUM`). Without them,
//! `chromedriver` on `PATH` and `/usr/bin/chromium` are used.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};

/// How long chromedriver may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A chromedriver on a free loopback port, killed on drop.
pub(crate) struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
    profile: PathBuf,
}

impl Driver {
    pub(crate) fn start() -> Driver {
        let binary = std::env::var_os("PIPELINE_CHROMEDRIVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("chromedriver"));
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let scratch =
            std::env::temp_dir().join(format!("pipeline-browser-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&scratch).expect("scratch folder");
        let log = scratch.join("chromedriver.log");
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(File::create(&log).expect("log file"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): run `bash scripts/chromium.sh` (the README's test \
                     command does) or set PIPELINE_CHROMEDRIVER",
                    binary.display()
                )
            });
        let driver = Driver {
            child,
            port,
            log,
            profile: scratch.join("profile"),
        };
        let start = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(
                start.elapsed() < READY_TIMEOUT,
                "chromedriver did not listen on port {port}: {}",
                std::fs::read_to_string(&driver.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        driver
    }

    /// A new headless browser session of `width` x `height` pixels.
    pub(crate) async fn browser(&self, width: u32, height: u32) -> Client {
        let chromium =
            std::env::var("PIPELINE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        // The flags this machine's notes give for Chromium on a closed
        // network: without the background-networking ones it keeps trying
        // to reach Google's hosts.
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", self.profile.display()),
            format!("--window-size={width},{height}"),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium, "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no browser session ({e}); chromedriver said: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
