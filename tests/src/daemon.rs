//! Running real `tally` daemons in tests.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tally_core::VerifyingKey;

use crate::{http, tally};

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Sends SIGTERM and waits for the process to exit.
pub fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("process {} did not stop on SIGTERM within 20 s", child.id());
}

/// Waits until `GET /healthz` answers 200, or panics with the daemon's log.
pub fn wait_healthy(addr: SocketAddr, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http::request(addr, "GET", "/healthz", &[], &[]).is_ok_and(|r| r.status == 200) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "daemon exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "daemon not healthy after 30 s:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// An attester log daemon in a temporary directory.
pub struct LogDaemon {
    /// Its directory (key, config, data, socket, spool).
    pub dir: PathBuf,
    /// Its origin.
    pub origin: String,
    /// Its HTTP and gRPC address.
    pub addr: SocketAddr,
    /// Its public key.
    pub vkey: VerifyingKey,
    child: Option<Child>,
}

impl LogDaemon {
    /// Makes a key and config in `dir` (created if needed) and starts the daemon. `options`
    /// are config lines (`key = value`) that replace or add to the test defaults.
    pub fn start(dir: &Path, origin: &str, options: &[&str]) -> LogDaemon {
        std::fs::create_dir_all(dir).unwrap();
        let key = dir.join("log.key");
        if !key.exists() {
            crate::run_ok(
                tally()
                    .args(["keygen", "--name", origin, "--secret-key-file"])
                    .arg(&key),
            );
        }
        let vkey = tally_store::read_signing_key(&key).unwrap().verifying_key();
        let addr = free_port();
        let mut lines = std::collections::BTreeMap::new();
        let defaults = [
            format!("origin = \"{origin}\""),
            format!("secret_key_file = \"{}\"", key.display()),
            format!("data_dir = \"{}\"", dir.join("data").display()),
            format!("listen = \"{addr}\""),
            format!("submit_socket = \"{}\"", dir.join("log.sock").display()),
            format!("spool_dir = \"{}\"", dir.join("spool").display()),
            "batch_period_ms = 20".to_owned(),
            "batch_idle_ms = 5".to_owned(),
        ];
        for line in defaults
            .iter()
            .map(String::as_str)
            .chain(options.iter().copied())
        {
            let name = line.split('=').next().unwrap().trim().to_owned();
            lines.insert(name, line.to_owned());
        }
        let config: String = lines.values().map(|l| format!("{l}\n")).collect();
        std::fs::write(dir.join("log.toml"), config).unwrap();
        let mut daemon = LogDaemon {
            dir: dir.to_owned(),
            origin: origin.to_owned(),
            addr,
            vkey,
            child: None,
        };
        daemon.restart();
        daemon
    }

    /// Starts the daemon again with the same config (after [`LogDaemon::stop`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = self.dir.join("daemon.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = tally()
            .args(["log", "serve", "--config"])
            .arg(self.dir.join("log.toml"))
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        wait_healthy(self.addr, &mut child, &log);
        self.child = Some(child);
    }

    /// Stops the daemon with SIGTERM.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `unix:<socket>`.
    pub fn socket(&self) -> String {
        format!("unix:{}", self.dir.join("log.sock").display())
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for LogDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An aggregator daemon in a temporary directory.
pub struct AggregatorDaemon {
    /// Its directory.
    pub dir: PathBuf,
    /// Its gRPC and HTTP address.
    pub addr: SocketAddr,
    /// Its witness's cosigner verifier key.
    pub witness_vkey: String,
    child: Option<Child>,
}

impl AggregatorDaemon {
    /// Starts an aggregator following `logs` (origin, vkey, urls). `options` are extra config
    /// lines that replace the test defaults.
    pub fn start(
        dir: &Path,
        logs: &[(String, String, Vec<String>)],
        options: &[&str],
    ) -> AggregatorDaemon {
        std::fs::create_dir_all(dir).unwrap();
        let key = dir.join("witness.key");
        if !key.exists() {
            crate::run_ok(
                tally()
                    .args([
                        "keygen",
                        "--name",
                        "aggregator.test/witness",
                        "--secret-key-file",
                    ])
                    .arg(&key),
            );
        }
        let witness = tally_store::read_signing_key(&key).unwrap();
        let witness_vkey = tally_core::cosignature::Cosigner::new(witness)
            .verifier()
            .to_vkey();
        let addr = free_port();
        let mut top = std::collections::BTreeMap::new();
        let defaults = [
            format!("data_dir = \"{}\"", dir.join("data").display()),
            format!("listen = \"{addr}\""),
            "poll_interval_secs = 1".to_owned(),
            format!("witness_key_file = \"{}\"", key.display()),
            "cache_mb = 32".to_owned(),
        ];
        for line in defaults
            .iter()
            .map(String::as_str)
            .chain(options.iter().copied())
        {
            top.insert(
                line.split('=').next().unwrap().trim().to_owned(),
                line.to_owned(),
            );
        }
        let mut config: String = top.values().map(|l| format!("{l}\n")).collect();
        for (origin, vkey, urls) in logs {
            let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
            config.push_str(&format!(
                "\n[[logs]]\norigin = \"{origin}\"\nvkey = \"{vkey}\"\nurls = [{}]\n",
                urls.join(", ")
            ));
        }
        std::fs::write(dir.join("aggregator.toml"), config).unwrap();
        let mut daemon = AggregatorDaemon {
            dir: dir.to_owned(),
            addr,
            witness_vkey,
            child: None,
        };
        daemon.restart();
        daemon
    }

    /// Starts it again (after [`AggregatorDaemon::stop`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = self.dir.join("aggregator.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = tally()
            .args(["aggregate", "serve", "--config"])
            .arg(self.dir.join("aggregator.toml"))
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        wait_healthy(self.addr, &mut child, &log);
        self.child = Some(child);
    }

    /// Stops it with SIGTERM.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("aggregator.log")).unwrap_or_default()
    }
}

impl Drop for AggregatorDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl LogDaemon {
    /// This log as an aggregator's config entry: origin, vkey, URLs.
    pub fn follow(&self) -> (String, String, Vec<String>) {
        (
            self.origin.clone(),
            self.vkey.to_note_vkey(),
            vec![self.url()],
        )
    }
}
