//! Real nginx (Debian's), serving a directory of tlog-tiles on loopback with the cache
//! headers docs/operations.md gives, as an operator would put a log behind a web server.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx; stopped when dropped.
pub struct Nginx {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
}

/// The `server` block for a tiles directory: the checkpoint must be revalidated, tiles are
/// immutable.
pub fn server_block(listen: SocketAddr, root: &Path) -> String {
    format!(
        r#"server {{
    listen {listen};
    root {root};
    location = /checkpoint {{
        default_type "text/plain; charset=utf-8";
        add_header Cache-Control "no-cache" always;
    }}
    location /tile/ {{
        default_type application/octet-stream;
        add_header Cache-Control "public, max-age=31536000, immutable" always;
    }}
}}"#,
        root = root.display()
    )
}

impl Nginx {
    /// Serves `root`, from a config and scratch directories in `dir`. nginx cannot report
    /// a port the kernel picked, so ports are tried until one is free.
    pub fn serve(dir: &Path, root: &Path) -> Nginx {
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let seed = std::process::id() as u64
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64;
        for attempt in 0..50u64 {
            let port = 20_000 + ((seed.wrapping_mul(2654435761) + attempt * 7919) % 40_000) as u16;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let config = dir.join("nginx.conf");
            let tmp = dir.join("tmp");
            std::fs::write(
                &config,
                format!(
                    "daemon off;\nmaster_process off;\nworker_processes 1;\npid {pid};\n\
                     error_log {log} warn;\nevents {{ worker_connections 1024; }}\n\
                     http {{\n access_log off;\n keepalive_requests 1000000;\n\
                     client_body_temp_path {tmp}/body;\n proxy_temp_path {tmp}/proxy;\n\
                     fastcgi_temp_path {tmp}/fastcgi;\n uwsgi_temp_path {tmp}/uwsgi;\n\
                     scgi_temp_path {tmp}/scgi;\n{server}\n}}\n",
                    pid = dir.join("nginx.pid").display(),
                    log = dir.join("error.log").display(),
                    tmp = tmp.display(),
                    server = server_block(addr, root),
                ),
            )
            .unwrap();
            let mut child = Command::new(nginx())
                .arg("-c")
                .arg(&config)
                .arg("-p")
                .arg(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx runs (apt install nginx)");
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                    assert!(
                        log.contains("Address already in use"),
                        "nginx exited with {status}: {log}"
                    );
                    break;
                }
                if std::net::TcpStream::connect(addr).is_ok() {
                    return Nginx { addr, child };
                }
                assert!(Instant::now() < deadline, "nginx did not listen on {addr}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("no free port for nginx after 50 tries");
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn nginx() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
