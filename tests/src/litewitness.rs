//! litewitness, an independent C2SP tlog-witness (filippo.io/torchwood), as a real peer.
//!
//! `../shared/peers/bin/litewitness` takes its Ed25519 key from an ssh-agent; each witness
//! here gets its own key and agent, in a temporary directory. It listens on port 0 and the
//! port it took is read from `/proc`, so nothing is guessed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the peers are: `../shared/peers/bin` beside the checkout, as in CI.
fn peers_bin() -> PathBuf {
    let dir = std::env::var_os("TALLY_PEERS_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers/bin"),
        PathBuf::from,
    );
    assert!(
        dir.join("litewitness").exists(),
        "litewitness not found in {}: the tests expect ../shared/peers/bin beside the checkout \
         (or TALLY_PEERS_BIN)",
        dir.display()
    );
    dir
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The TCP port a process listens on, read from `/proc`.
pub fn listening_port(pid: u32) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_owned)
        })
        .collect();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A (LISTEN), inode.
            if fields.len() > 9 && fields[3] == "0A" && inodes.iter().any(|i| i == fields[9]) {
                let port = fields[1].rsplit(':').next()?;
                return u16::from_str_radix(port, 16).ok();
            }
        }
    }
    None
}

/// A running litewitness. Stopped when dropped.
pub struct Litewitness {
    dir: PathBuf,
    name: String,
    fingerprint: String,
    port: u16,
    /// Its cosigner verifier key, as it printed it.
    pub vkey: String,
    agent: Option<Child>,
    witness: Option<Child>,
}

impl Litewitness {
    /// A witness named `name` with a fresh key, in `dir`, knowing no logs yet.
    pub fn start(dir: &Path, name: &str) -> Litewitness {
        std::fs::create_dir_all(dir).unwrap();
        let key = dir.join("key");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "litewitness", "-f"])
            .arg(&key));
        let socket = dir.join("agent.sock");
        let agent = Command::new("ssh-agent")
            .arg("-a")
            .arg(&socket)
            .arg("-D")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (Debian's openssh-client) runs litewitness's key");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        run(Command::new("ssh-add")
            .arg("-q")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &socket));
        let fingerprint = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(key.with_extension("pub")))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
        let mut w = Litewitness {
            dir: dir.to_owned(),
            name: name.to_owned(),
            fingerprint,
            port: 0,
            vkey: String::new(),
            agent: Some(agent),
            witness: None,
        };
        w.restart();
        w
    }

    /// Starts the witness process again (after [`Litewitness::stop`]), on the same port.
    pub fn restart(&mut self) {
        assert!(self.witness.is_none());
        let log = self.dir.join("litewitness.log");
        let child = Command::new(peers_bin().join("litewitness"))
            .arg("-db")
            .arg(self.dir.join("lw.db"))
            .args(["-name", &self.name, "-key", &self.fingerprint])
            .arg("-ssh-agent")
            .arg(self.dir.join("agent.sock"))
            .args(["-listen", &format!("127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let pid = child.id();
        self.witness = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let vkey = text
                .lines()
                .find_map(|l| l.split("vkey=").nth(1))
                .map(|v| v.trim().to_owned());
            if let (Some(vkey), Some(port)) = (vkey, listening_port(pid)) {
                self.vkey = vkey;
                self.port = port;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "litewitness did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the witness process (its state stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.witness.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Lets the witness cosign checkpoints of the log `origin` signed by `vkey`.
    pub fn add_log(&self, origin: &str, vkey: &str) {
        let ctl = peers_bin().join("witnessctl");
        let db = self.dir.join("lw.db");
        run(Command::new(&ctl)
            .arg("add-log")
            .arg("-db")
            .arg(&db)
            .args(["-origin", origin]));
        run(Command::new(&ctl)
            .arg("add-key")
            .arg("-db")
            .arg(&db)
            .args(["-origin", origin, "-key", vkey]));
    }

    /// Its submission prefix.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Litewitness {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
    }
}
