//! Shared test fixtures: deterministic attestations, and the in-memory replay.
#![allow(dead_code, unreachable_pub, missing_docs)]

use tally_core::map::MapKey;
use tally_core::store_path::StorePathHash;
use tally_core::{Attestation, AttestationFields, Hash, KeyName, NarHash, SigningKey, StorePath};

/// The in-memory replay, an implementation independent of the store's tables.
pub use tally_core::replay::Replay;

pub fn key() -> SigningKey {
    SigningKey::from_seed(KeyName::new("test.example/log").unwrap(), [0x11; 32])
}

fn path(seed: u64, name: &str) -> StorePath {
    let h = Hash::of(&seed.to_be_bytes());
    let mut hash = [0u8; 20];
    hash.copy_from_slice(&h.0[..20]);
    StorePath::from_basename(&format!("{}-{name}", StorePathHash::from_bytes(hash))).unwrap()
}

/// Attestation number `i`: deterministic, realistic-looking, distinct output paths.
pub fn attestation(i: u64) -> Attestation {
    attestation_with_hash(i, Hash::of(format!("nar-{i}").as_bytes()))
}

/// Attestation `i` with a chosen NAR hash: a conflicting claim about the same path.
pub fn attestation_with_hash(i: u64, nar: Hash) -> Attestation {
    let name = format!("pkg{}-{}.{}", i % 997, i % 13, i % 7);
    Attestation::new(AttestationFields {
        drv_path: Some(path(i ^ 0xd5, &format!("{name}.drv"))),
        output_name: Some("out".into()),
        output_path: path(i, &name),
        nar_hash: NarHash::from_digest(nar),
        nar_size: 1000 + i * 7919 % 1_000_000,
        references: (0..i % 5)
            .map(|r| path(1_000_000 + (i * 31 + r) % 200, "dep-1.0"))
            .collect(),
    })
    .unwrap()
}

/// The map key of attestation `i`'s output path.
pub fn map_key(a: &Attestation) -> MapKey {
    MapKey::for_path(&a.output_path().hash())
}
