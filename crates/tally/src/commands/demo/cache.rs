//! The demo's binary cache: an upstream `file://` cache holding two small store paths, and
//! the attestations the builders make of them.
//!
//! Both paths are single files made here (no Nix needed), with NARs, hashes and narinfos
//! exactly as Nix would have them, so that a real Nix can substitute the trusted one through
//! `tally cache serve`.

use std::path::Path;

use tally_core::{Attestation, AttestationFields, Hash, NarHash, StorePath, StorePathHash};
use tally_nix::nar;
use tally_nix::narinfo::NarInfo;

/// A store path of the demo: its path, NAR and attestation.
pub(super) struct DemoPath {
    pub(super) path: StorePath,
    pub(super) nar: Vec<u8>,
}

impl DemoPath {
    /// An executable script at `/nix/store/<hash>-<name>`, the hash derived from both.
    pub(super) fn script(name: &str, body: &str) -> anyhow::Result<DemoPath> {
        let contents = format!("#!/bin/sh\n{body}\n");
        Ok(DemoPath {
            path: store_path(name, contents.as_bytes())?,
            nar: nar::regular_file(contents.as_bytes(), true),
        })
    }

    fn nar_hash(&self) -> NarHash {
        NarHash::from_digest(Hash::of(&self.nar))
    }

    /// What a builder that built it attests; `nar_hash` overrides the true one.
    pub(super) fn attestation(&self, nar_hash: Option<NarHash>) -> anyhow::Result<Attestation> {
        let drv = store_path(
            &format!("{}.drv", self.path.name()),
            self.path.name().as_bytes(),
        )?;
        Ok(Attestation::new(AttestationFields {
            drv_path: Some(drv),
            output_name: Some("out".into()),
            output_path: self.path.clone(),
            nar_hash: nar_hash.unwrap_or_else(|| self.nar_hash()),
            nar_size: self.nar.len() as u64,
            references: vec![],
        })?)
    }

    /// Writes its narinfo and NAR into the `file://` cache at `dir`, as `nix copy` would.
    pub(super) fn upload(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir.join("nar"))?;
        std::fs::write(dir.join("nix-cache-info"), "StoreDir: /nix/store\n")?;
        let hash = self.nar_hash();
        let file = format!("{}.nar", hash.to_nix32().trim_start_matches("sha256:"));
        std::fs::write(dir.join("nar").join(&file), &self.nar)?;
        let info = NarInfo {
            store_path: self.path.clone(),
            url: format!("nar/{file}"),
            compression: Some("none".into()),
            file_hash: Some(hash.to_string()),
            file_size: Some(self.nar.len().to_string()),
            nar_hash: hash,
            nar_size: self.nar.len() as u64,
            references: vec![],
            deriver: None,
            signatures: vec![],
            ca: None,
            other: vec![],
        };
        std::fs::write(
            dir.join(format!("{}.narinfo", self.path.hash())),
            info.to_string(),
        )?;
        Ok(())
    }
}

fn store_path(name: &str, seed: &[u8]) -> anyhow::Result<StorePath> {
    let digest = Hash::of(&[name.as_bytes(), b"\0", seed].concat());
    let mut bytes = [0u8; 20];
    bytes.copy_from_slice(&digest.as_bytes()[..20]);
    Ok(StorePath::from_basename(&format!(
        "{}-{name}",
        StorePathHash::from_bytes(bytes)
    ))?)
}
