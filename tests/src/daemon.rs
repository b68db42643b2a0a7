//! Running real `tally` daemons in tests.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tally_core::VerifyingKey;
use tally_proto::client::{self, Address};
use tally_proto::v1;

use crate::{http, run_ok, tally};

/// What daemons in tests listen on: port 0, so the kernel picks a free port and the daemon
/// reports it (`--ready-file`). Picking a port in the test and releasing it for the daemon
/// would race with every other test doing the same.
pub const ANY_PORT: &str = "127.0.0.1:0";

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

/// Config file text: `defaults`, each replaced by the option of the same name in `options`,
/// plus the options that replace nothing.
fn config_lines(defaults: &[String], options: &[&str]) -> String {
    let mut lines = std::collections::BTreeMap::new();
    for line in defaults
        .iter()
        .map(String::as_str)
        .chain(options.iter().copied())
    {
        let name = line.split('=').next().unwrap().trim().to_owned();
        lines.insert(name, line.to_owned());
    }
    lines.values().map(|l| format!("{l}\n")).collect()
}

/// Makes a Nix-format key named `name` at `path` unless it exists.
fn ensure_key(path: &Path, name: &str) -> tally_core::SigningKey {
    if !path.exists() {
        crate::run_ok(
            tally()
                .args(["keygen", "--name", name, "--secret-key-file"])
                .arg(path),
        );
    }
    tally_store::read_signing_key(path).unwrap()
}

/// A `tally` child process serving HTTP, logging to a file in `dir`. Killed when dropped.
///
/// It is started with `--ready-file` and listens on port 0; the addresses it reports are
/// written back into its config files (`pins`: ready-file key → config file), so a restart
/// listens where the first start did and its URLs stay valid.
struct Process {
    dir: PathBuf,
    args: Vec<String>,
    log_file: &'static str,
    pins: Vec<(&'static str, PathBuf)>,
    addresses: BTreeMap<String, SocketAddr>,
    child: Option<Child>,
}

impl Process {
    fn new(
        dir: &Path,
        args: &[&str],
        log_file: &'static str,
        pins: Vec<(&'static str, PathBuf)>,
    ) -> Process {
        let mut p = Process {
            dir: dir.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            log_file,
            pins,
            addresses: BTreeMap::new(),
            child: None,
        };
        p.restart();
        p
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = self.dir.join(self.log_file);
        let ready = self.dir.join(format!("{}.ready", self.log_file));
        let _ = std::fs::remove_file(&ready);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = tally()
            .args(&self.args)
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        self.addresses = wait_ready(&ready, &mut child, &log);
        for (key, config) in &self.pins {
            let text = std::fs::read_to_string(config).unwrap();
            let pinned = text.replace(
                &format!("listen = \"{ANY_PORT}\""),
                &format!("listen = \"{}\"", self.addresses[*key]),
            );
            std::fs::write(config, pinned).unwrap();
        }
        wait_healthy(self.addr(), &mut child, &log);
        self.child = Some(child);
    }

    /// The address it reported under `listen`.
    fn addr(&self) -> SocketAddr {
        self.addresses["listen"]
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }

    /// SIGKILL: no chance to clean up.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(self.log_file)).unwrap_or_default()
    }
}

/// Waits for a daemon's `--ready-file`, or panics with its log if it exits first.
fn wait_ready(ready: &Path, child: &mut Child, log: &Path) -> BTreeMap<String, SocketAddr> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(ready) {
            return serde_json::from_str(&text).unwrap();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "daemon exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "daemon not listening after 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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
    process: Process,
}

impl LogDaemon {
    /// Makes the key a log started in `dir` will sign with, and returns its verifier key:
    /// a witness can be told about the log before it starts.
    pub fn key_for(dir: &Path, origin: &str) -> String {
        std::fs::create_dir_all(dir).unwrap();
        ensure_key(&dir.join("log.key"), origin)
            .verifying_key()
            .to_note_vkey()
    }

    /// The log's checkpoint (the published one), its signature checked, and every entry
    /// under it, read over its socket.
    pub async fn read_all(&self) -> (tally_core::SignedCheckpoint, Vec<Vec<u8>>) {
        let address = self.socket().parse().unwrap();
        let mut c = client::connect(&address, Default::default()).await.unwrap();
        let note = c
            .get_checkpoint(v1::GetCheckpointRequest {})
            .await
            .unwrap()
            .into_inner()
            .note;
        let signed = tally_core::SignedCheckpoint::open(&note, &self.vkey).unwrap();
        let size = signed.checkpoint().tree.size;
        let mut entries = Vec::new();
        let mut at = 0;
        while at < size {
            let end = (at + 1000).min(size);
            let mut pages = c
                .get_entries(v1::GetEntriesRequest { start: at, end })
                .await
                .unwrap()
                .into_inner();
            while let Some(page) = pages.message().await.unwrap() {
                entries.extend(page.entries);
            }
            at = end;
        }
        assert_eq!(entries.len() as u64, size);
        (signed, entries)
    }

    /// Makes a key and config in `dir` (created if needed) and starts the daemon. `options`
    /// are config lines (`key = value`) that replace or add to the test defaults.
    pub fn start(dir: &Path, origin: &str, options: &[&str]) -> LogDaemon {
        std::fs::create_dir_all(dir).unwrap();
        let key = dir.join("log.key");
        let vkey = ensure_key(&key, origin).verifying_key();
        let defaults = [
            format!("origin = \"{origin}\""),
            format!("secret_key_file = \"{}\"", key.display()),
            format!("data_dir = \"{}\"", dir.join("data").display()),
            format!("listen = \"{ANY_PORT}\""),
            format!("submit_socket = \"{}\"", dir.join("log.sock").display()),
            format!("spool_dir = \"{}\"", dir.join("spool").display()),
            "batch_period_ms = 20".to_owned(),
            "batch_idle_ms = 5".to_owned(),
        ];
        let config = dir.join("log.toml");
        std::fs::write(&config, config_lines(&defaults, options)).unwrap();
        let process = Process::new(
            dir,
            &["log", "serve", "--config", config.to_str().unwrap()],
            "daemon.log",
            vec![("listen", config.clone())],
        );
        LogDaemon {
            dir: dir.to_owned(),
            origin: origin.to_owned(),
            addr: process.addr(),
            vkey,
            process,
        }
    }

    /// Starts the daemon again with the same config (after [`LogDaemon::stop`]).
    pub fn restart(&mut self) {
        self.process.restart();
    }

    /// Stops the daemon with SIGTERM.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Kills the daemon with SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
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
        self.process.log()
    }

    /// Submits attestations over the Unix socket, in requests of at most 1000.
    pub async fn submit(&self, attestations: &[tally_core::Attestation]) {
        let address = self.socket().parse().unwrap();
        let mut c = client::connect(&address, Default::default()).await.unwrap();
        for chunk in attestations.chunks(1000) {
            c.submit(v1::SubmitRequest {
                attestations: chunk.iter().map(|a| a.as_bytes().to_vec()).collect(),
            })
            .await
            .unwrap();
        }
    }

    /// This log as an aggregator's config entry: origin, vkey, URLs.
    pub fn follow(&self) -> (String, String, Vec<String>) {
        (
            self.origin.clone(),
            self.vkey.to_note_vkey(),
            vec![self.url()],
        )
    }
}

/// A trust policy (file text) listing `logs` with their URLs, no witnesses, and `extra`
/// lines (an `attest` line, say).
pub fn trust_policy(logs: &[&LogDaemon], extra: &str) -> String {
    let mut text: String = logs
        .iter()
        .map(|l| format!("log {} {}\n", l.vkey.to_note_vkey(), l.url()))
        .collect();
    text.push_str("quorum none\n");
    text.push_str(extra);
    text
}

/// An aggregator daemon in a temporary directory.
pub struct AggregatorDaemon {
    /// Its directory.
    pub dir: PathBuf,
    /// Its gRPC and HTTP address.
    pub addr: SocketAddr,
    /// Its witness's cosigner verifier key.
    pub witness_vkey: String,
    process: Process,
}

impl AggregatorDaemon {
    /// Asserts that `tally check`, under a 1-of-1 policy of `log` written into this
    /// aggregator's directory, finds `path` trusted with proofs that check. Returns the
    /// policy file.
    pub fn assert_trusted(&self, log: &LogDaemon, path: &str) -> PathBuf {
        let policy = self.dir.join("trust.policy");
        std::fs::write(&policy, trust_policy(&[log], "attest 1-of-1\n")).unwrap();
        run_ok(
            tally()
                .args(["check", "--aggregator", &self.url(), "--policy-file"])
                .arg(&policy)
                .arg(path),
        );
        policy
    }

    /// Starts an aggregator following `logs` (origin, vkey, urls). `options` are extra config
    /// lines that replace the test defaults.
    pub fn start(
        dir: &Path,
        logs: &[(String, String, Vec<String>)],
        options: &[&str],
    ) -> AggregatorDaemon {
        let config = AggregatorDaemon::write_config(dir, logs, options);
        let witness = tally_store::read_signing_key(&dir.join("witness.key")).unwrap();
        let process = Process::new(
            dir,
            &["aggregate", "serve", "--config", config.to_str().unwrap()],
            "aggregator.log",
            vec![("listen", config.clone())],
        );
        AggregatorDaemon {
            dir: dir.to_owned(),
            addr: process.addr(),
            witness_vkey: tally_core::cosignature::Cosigner::new(witness)
                .verifier()
                .to_vkey(),
            process,
        }
    }

    /// Writes an aggregator config (and witness key) in `dir` without starting it; returns
    /// the config file. It listens on port 0.
    pub fn write_config(
        dir: &Path,
        logs: &[(String, String, Vec<String>)],
        options: &[&str],
    ) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let key = dir.join("witness.key");
        ensure_key(&key, "aggregator.test/witness");
        let defaults = [
            format!("data_dir = \"{}\"", dir.join("data").display()),
            format!("listen = \"{ANY_PORT}\""),
            "poll_interval_secs = 1".to_owned(),
            format!("witness_key_file = \"{}\"", key.display()),
            "cache_mb = 32".to_owned(),
        ];
        let mut config = config_lines(&defaults, options);
        for (origin, vkey, urls) in logs {
            let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
            config.push_str(&format!(
                "\n[[logs]]\norigin = \"{origin}\"\nvkey = \"{vkey}\"\nurls = [{}]\n",
                urls.join(", ")
            ));
        }
        let path = dir.join("aggregator.toml");
        std::fs::write(&path, config).unwrap();
        path
    }

    /// Starts it again (after [`AggregatorDaemon::stop`]).
    pub fn restart(&mut self) {
        self.process.restart();
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Kills the daemon with SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The aggregator's view of its logs.
    pub async fn logs(&self) -> Vec<v1::LogStatus> {
        let mut c = client::connect_aggregator(&Address::Http(self.url()))
            .await
            .unwrap();
        c.list_logs(v1::ListLogsRequest {})
            .await
            .unwrap()
            .into_inner()
            .logs
    }

    /// Waits until the aggregator has verified `origin` at `size`.
    pub async fn wait_verified(&self, origin: &str, size: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let all = self.logs().await;
            if all
                .iter()
                .any(|l| l.origin == origin && l.verified_size == size && l.state == "verified")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{origin} not verified at {size}: {all:#?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops it with SIGTERM.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// A binary cache proxy (`tally cache serve`) in a temporary directory.
pub struct CacheDaemon {
    /// Its directory.
    pub dir: PathBuf,
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// Its Nix public key, for `trusted-public-keys`.
    pub public_key: String,
    /// The address of the aggregator it runs in process, if it does.
    pub aggregator_addr: Option<SocketAddr>,
    process: Process,
}

impl CacheDaemon {
    /// Starts a cache proxy over `upstreams` with the trust policy `policy` (file text). Its
    /// answers come from `aggregator` (a `url = …` or `config = …` line for the
    /// `[aggregator]` table), or from the policy's log URLs when `None`. `options` are extra
    /// top-level config lines.
    pub fn start(
        dir: &Path,
        upstreams: &[String],
        policy: &str,
        aggregator: Option<&str>,
        options: &[&str],
    ) -> CacheDaemon {
        std::fs::create_dir_all(dir).unwrap();
        let key = dir.join("cache.key");
        let public_key = ensure_key(&key, "cache.test-1")
            .verifying_key()
            .to_nix_public();
        let policy_file = dir.join("trust.policy");
        std::fs::write(&policy_file, policy).unwrap();
        let upstreams: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
        let defaults = [
            format!("listen = \"{ANY_PORT}\""),
            format!("upstreams = [{}]", upstreams.join(", ")),
            format!("secret_key_file = \"{}\"", key.display()),
            format!("policy_file = \"{}\"", policy_file.display()),
        ];
        let mut config = config_lines(&defaults, options);
        if let Some(line) = aggregator {
            config.push_str(&format!("\n[aggregator]\n{line}\n"));
        }
        let path = dir.join("cache.toml");
        std::fs::write(&path, config).unwrap();
        let process = Process::new(
            dir,
            &["cache", "serve", "--config", path.to_str().unwrap()],
            "cache.log",
            vec![("listen", path.clone())],
        );
        CacheDaemon {
            dir: dir.to_owned(),
            addr: process.addr(),
            public_key,
            aggregator_addr: process.addresses.get("aggregator").copied(),
            process,
        }
    }

    /// Stops it with SIGTERM.
    pub fn stop(&mut self) {
        self.process.stop();
    }
    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Python's `http.server` serving a directory: a plain static HTTP binary cache.
pub struct StaticServer {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl StaticServer {
    /// Serves `dir` on a port the kernel picks, which it prints once it listens.
    pub fn start(dir: &Path) -> StaticServer {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 serves the HTTP binary cache");
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .unwrap_or_else(|| panic!("http.server printed {line:?}"))
            .parse()
            .unwrap();
        StaticServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: Some(child),
        }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it with SIGTERM.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
