//! Secret files: signing keys in Nix's format (`name:base64(seed ‖ public key)`), and
//! bearer tokens.
//!
//! Every Tally service reads its secrets through [`read_secret`], so every one refuses a
//! secret file that group or others can read, the way `ssh` and harmonia do.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use tally_core::{KeyName, SigningKey};
use zeroize::Zeroizing;

use crate::StoreError;
use crate::error::io;

fn key_error(path: &Path, problem: impl ToString) -> StoreError {
    StoreError::SecretFile {
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

/// Reads a secret key, refusing files readable by group or others.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, StoreError> {
    let text = read_secret_file(
        path,
        &format!(
            "does not exist; make one with `tally keygen --name NAME --secret-key-file {}`",
            path.display()
        ),
    )?;
    SigningKey::from_nix_secret(&text).map_err(|e| key_error(path, e))
}

/// Reads a secret file such as a bearer token (trimmed), refusing files readable by group
/// or others, and empty ones.
pub fn read_secret(path: &Path) -> Result<Zeroizing<String>, StoreError> {
    read_secret_file(
        path,
        &format!(
            "does not exist; make a token with `head -c 32 /dev/urandom | base64 > {p}; chmod \
             600 {p}`",
            p = path.display()
        ),
    )
}

/// Reads a secret file; `missing` says how to make one.
fn read_secret_file(path: &Path, missing: &str) -> Result<Zeroizing<String>, StoreError> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => key_error(path, missing),
        _ => io(path)(e),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_error(
            path,
            format!(
                "mode {mode:04o} lets group or others read it; run `chmod 600 {}`",
                path.display()
            ),
        ));
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io(path))?);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(key_error(path, "is empty"));
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// A new key with a random seed.
pub fn generate_signing_key(name: KeyName) -> Result<SigningKey, StoreError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(&mut seed[..]).map_err(|e| StoreError::Io {
        path: "/dev/urandom".into(),
        source: std::io::Error::other(e),
    })?;
    Ok(SigningKey::from_seed(name, *seed))
}

/// Writes a secret key to a new file with mode 0600. Refuses to overwrite.
pub fn write_signing_key(path: &Path, key: &SigningKey) -> Result<(), StoreError> {
    write_secret(path, &key.to_nix_secret())
}

/// A new random bearer token: 32 bytes, hex.
pub fn generate_token() -> Result<Zeroizing<String>, StoreError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(&mut bytes[..]).map_err(|e| StoreError::Io {
        path: "/dev/urandom".into(),
        source: std::io::Error::other(e),
    })?;
    Ok(Zeroizing::new(hex::encode(*bytes)))
}

/// Writes a secret (a key or a token) to a new file with mode 0600, durably. Refuses to
/// overwrite.
pub fn write_secret(path: &Path, secret: &str) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                key_error(path, "already exists; refusing to overwrite a key")
            }
            _ => io(path)(e),
        })?;
    // The mode argument is filtered by the umask; make sure it is exactly 0600.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io(path))?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        let key = generate_signing_key(KeyName::new("log.example/a").unwrap()).unwrap();
        write_signing_key(&path, &key).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = read_signing_key(&path).unwrap();
        assert_eq!(back.verifying_key(), key.verifying_key());

        let err = write_signing_key(&path, &key).unwrap_err().to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_signing_key(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o604)).unwrap();
        assert!(read_signing_key(&path).is_err());

        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "name:notbase64").unwrap();
        let err = read_signing_key(&path).unwrap_err().to_string();
        assert!(
            err.contains("not standard base64") && err.contains("log.key"),
            "{err}"
        );
    }
}
