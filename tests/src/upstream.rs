//! Binary caches as `nix copy` writes them, for tests that need an upstream.

use std::path::Path;

use tally_core::{Attestation, AttestationFields, StorePath};

/// A single-file store path made without Nix, uploaded to a `file://` cache as `nix copy`
/// would; returns its attestation.
pub fn upload_synthetic(cache: &Path, name: &str, contents: &[u8]) -> Attestation {
    let nar = tally_nix::nar::regular_file(contents, false);
    let nar_hash = tally_core::NarHash::from_digest(tally_core::Hash::of(&nar));
    let mut hash = [0u8; 20];
    hash.copy_from_slice(&tally_core::Hash::of(name.as_bytes()).as_bytes()[..20]);
    let path = StorePath::from_basename(&format!(
        "{}-{name}",
        tally_core::StorePathHash::from_bytes(hash)
    ))
    .unwrap();
    let file = format!("{}.nar", &nar_hash.to_string()["sha256:".len()..]);
    std::fs::create_dir_all(cache.join("nar")).unwrap();
    std::fs::write(cache.join("nix-cache-info"), "StoreDir: /nix/store\n").unwrap();
    std::fs::write(cache.join("nar").join(&file), &nar).unwrap();
    std::fs::write(
        cache.join(format!("{}.narinfo", path.hash())),
        format!(
            "StorePath: {path}\nURL: nar/{file}\nCompression: none\nNarHash: {nar_hash}\nNarSize: {}\nReferences: \n",
            nar.len()
        ),
    )
    .unwrap();
    Attestation::new(AttestationFields {
        drv_path: None,
        output_name: None,
        output_path: path,
        nar_hash,
        nar_size: nar.len() as u64,
        references: vec![],
    })
    .unwrap()
}
