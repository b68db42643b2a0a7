//! Checks of the machine a service is about to run on, for `check-config`: that a directory
//! it will create or write can be, and that an address it will listen on is free.
//!
//! They write nothing: a directory that does not exist yet is judged by its nearest existing
//! ancestor.

use std::net::SocketAddr;
use std::path::Path;

/// Checks that `dir` is a writable directory, or could be created as one.
pub fn check_writable_dir(dir: &Path) -> Result<(), String> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(meta) if !meta.is_dir() => {
                return Err(format!("{} exists and is not a directory", at.display()));
            }
            Ok(_) => {
                return access_write(at).map_err(|e| {
                    if at == dir {
                        format!("{} is not writable: {e}", dir.display())
                    } else {
                        format!(
                            "{} does not exist and cannot be created: {} is not writable ({e})",
                            dir.display(),
                            at.display()
                        )
                    }
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                return Err(format!(
                    "{} cannot be created: a part of it is a file, not a directory",
                    dir.display()
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match at.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => at = parent,
                _ => return Ok(()),
            },
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
}

/// Whether this process may write into `dir`: a temporary file is the one portable way to
/// ask without `access(2)`, and it is removed at once.
fn access_write(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".tally-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// Checks that `addr` can be listened on now (binds it and lets it go at once).
pub fn check_listen(addr: SocketAddr) -> Result<(), String> {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
            "{addr} is already in use: another process listens there (`ss -ltnp 'sport = :{}'` \
             shows which); stop it or choose another address",
            addr.port()
        )),
        Err(e) => Err(format!("cannot listen on {addr}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_ports() {
        let dir = tempfile::tempdir().unwrap();
        check_writable_dir(dir.path()).unwrap();
        check_writable_dir(&dir.path().join("a/b/c")).unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = check_writable_dir(&file.join("sub")).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = check_listen(held.local_addr().unwrap()).unwrap_err();
        assert!(err.contains("already in use"), "{err}");
    }
}
