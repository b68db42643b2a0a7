//! Shared test fixtures: deterministic attestations, and an independent in-memory replay.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::BTreeMap;

use tally_core::map::{self, MapError, MapKey, MapNode, MapNodeId, MapNodeReader, MapValue};
use tally_core::store_path::StorePathHash;
use tally_core::tlog::{self, HashReader, NodeId, ProofError, TreeHead};
use tally_core::{Attestation, AttestationFields, Hash, KeyName, NarHash, SigningKey, StorePath};

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

/// Replays entries in memory, independently of the store's tables.
#[derive(Default)]
pub struct Replay {
    hashes: BTreeMap<NodeId, Hash>,
    nodes: BTreeMap<MapNodeId, MapNode>,
    pub size: u64,
}

#[derive(Debug)]
pub struct Missing;

impl From<ProofError> for Missing {
    fn from(_: ProofError) -> Self {
        Missing
    }
}

impl HashReader for Replay {
    type Error = Missing;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Missing> {
        ids.iter()
            .map(|id| self.hashes.get(id).copied().ok_or(Missing))
            .collect()
    }
}

impl MapNodeReader for Replay {
    type Error = MapError;
    fn read_node(&self, id: &MapNodeId) -> Result<Option<MapNode>, MapError> {
        Ok(self.nodes.get(id).cloned())
    }
}

impl Replay {
    pub fn of(entries: &[Vec<u8>]) -> Replay {
        let mut r = Replay::default();
        let mut pairs = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for e in entries {
            let new = tlog::hashes_to_store(r.size, tlog::leaf_hash(e), &r).unwrap();
            r.hashes.extend(new);
            if let Ok(a) = Attestation::decode(e) {
                let k = map_key(&a);
                if seen.insert(k) {
                    pairs.push((
                        k,
                        MapValue {
                            leaf_index: r.size,
                            entry_hash: Hash::of(e),
                        },
                    ));
                }
            }
            r.size += 1;
        }
        let update = map::insert(&r, pairs).unwrap();
        r.nodes.extend(update.nodes);
        r
    }

    pub fn head(&self) -> TreeHead {
        TreeHead {
            size: self.size,
            root: tlog::tree_hash(self.size, self).unwrap(),
        }
    }

    pub fn map_root(&self) -> Hash {
        map::root(self).unwrap()
    }
}
