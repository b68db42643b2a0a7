use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// An in-memory log: the reference for these tests.
#[derive(Default)]
pub(crate) struct MemoryLog {
    hashes: BTreeMap<NodeId, Hash>,
    size: u64,
}

#[derive(Debug, PartialEq)]
pub(crate) enum ReadError {
    Missing(NodeId),
    Proof(ProofError),
}

impl From<ProofError> for ReadError {
    fn from(e: ProofError) -> Self {
        ReadError::Proof(e)
    }
}

impl HashReader for MemoryLog {
    type Error = ReadError;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, ReadError> {
        ids.iter()
            .map(|id| self.hashes.get(id).copied().ok_or(ReadError::Missing(*id)))
            .collect()
    }
}

impl MemoryLog {
    pub(crate) fn append(&mut self, leaf: &[u8]) {
        let new = hashes_to_store(self.size, leaf_hash(leaf), &*self).unwrap();
        self.hashes.extend(new);
        self.size += 1;
    }

    pub(crate) fn with_leaves(n: u64) -> MemoryLog {
        let mut log = MemoryLog::default();
        for i in 0..n {
            log.append(format!("leaf-{i}").as_bytes());
        }
        log
    }

    pub(crate) fn head(&self, size: u64) -> TreeHead {
        TreeHead {
            size,
            root: tree_hash(size, self).unwrap(),
        }
    }
}

/// RFC 6962 `MTH`, computed directly from the leaves: the definition, not the optimisation.
fn reference_root(leaves: &[Vec<u8>]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
        }
    }
}

#[test]
fn subtrees_decompose_ranges() {
    let ids: Vec<_> = subtrees(0, 7).collect();
    assert_eq!(
        ids,
        [NodeId::new(2, 0), NodeId::new(1, 2), NodeId::new(0, 6)]
    );
    let ids: Vec<_> = subtrees(4, 7).collect();
    assert_eq!(ids, [NodeId::new(1, 2), NodeId::new(0, 6)]);
    assert_eq!(subtrees(5, 5).count(), 0);
}

#[test]
fn roots_match_the_definition() {
    let log = MemoryLog::with_leaves(300);
    let leaves: Vec<Vec<u8>> = (0..300).map(|i| format!("leaf-{i}").into_bytes()).collect();
    for n in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 257, 300] {
        assert_eq!(
            log.head(n as u64).root,
            reference_root(&leaves[..n]),
            "size {n}"
        );
    }
}

#[test]
fn inclusion_edge_cases() {
    let log = MemoryLog::with_leaves(12);
    let head = log.head(10);
    let leaf = leaf_hash(b"leaf-3");
    let proof = InclusionProof::generate(3, 10, &log).unwrap();
    proof.verify(leaf, &head).unwrap();

    // Index at or past the size.
    assert_eq!(
        InclusionProof::generate(10, 10, &log),
        Err(ReadError::Proof(ProofError::IndexOutOfRange {
            index: 10,
            size: 10
        }))
    );
    let past = InclusionProof {
        index: 10,
        ..proof.clone()
    };
    assert_eq!(
        past.verify(leaf, &head),
        Err(ProofError::IndexOutOfRange {
            index: 10,
            size: 10
        })
    );
    // Extra and missing elements.
    let mut extra = proof.clone();
    extra.hashes.push(Hash::ZERO);
    assert_eq!(
        extra.verify(leaf, &head),
        Err(ProofError::Length {
            expected: 4,
            found: 5
        })
    );
    let mut short = proof.clone();
    short.hashes.pop();
    assert!(matches!(
        short.verify(leaf, &head),
        Err(ProofError::Length { .. })
    ));
    // The wrong tree size: a proof for size 10 checked against another tree head. For index
    // 3 the audit paths of sizes 9 and 10 have the same shape, so only the recorded size can
    // tell them apart.
    for size in [9, 11] {
        let wrong = TreeHead {
            size,
            root: head.root,
        };
        assert_eq!(
            proof.verify(leaf, &wrong),
            Err(ProofError::WrongTreeSize {
                proof: 10,
                head: size
            })
        );
        let relabelled = InclusionProof {
            tree_size: size,
            ..proof.clone()
        };
        assert!(
            relabelled.verify(leaf, &log.head(size)).is_err(),
            "size {size}"
        );
    }
    // The single-leaf tree needs no proof.
    let one = InclusionProof::generate(0, 1, &log).unwrap();
    assert!(one.hashes.is_empty());
    one.verify(leaf_hash(b"leaf-0"), &log.head(1)).unwrap();
}

#[test]
fn consistency_edge_cases() {
    let log = MemoryLog::with_leaves(10);
    let (h0, h4, h7, h10) = (log.head(0), log.head(4), log.head(7), log.head(10));

    // Old size 0: empty proof, and the empty root.
    let p = ConsistencyProof::generate(0, 10, &log).unwrap();
    assert!(p.hashes.is_empty());
    p.verify(&h0, &h10).unwrap();
    let bogus_empty = TreeHead {
        size: 0,
        root: h4.root,
    };
    assert_eq!(
        p.verify(&bogus_empty, &h10),
        Err(ProofError::EmptyRoot(h4.root))
    );
    let mut nonempty = p.clone();
    nonempty.hashes.push(h4.root);
    assert!(matches!(
        nonempty.verify(&h0, &h10),
        Err(ProofError::Length { .. })
    ));

    // m == n: empty proof and equal roots.
    let same = ConsistencyProof::generate(7, 7, &log).unwrap();
    same.verify(&h7, &h7).unwrap();
    let fork = TreeHead {
        size: 7,
        root: h10.root,
    };
    assert_eq!(
        same.verify(&h7, &fork),
        Err(ProofError::RootMismatch { size: 7 })
    );

    // m > n.
    assert_eq!(
        ConsistencyProof::generate(10, 7, &log),
        Err(ReadError::Proof(ProofError::OldLargerThanNew {
            old: 10,
            new: 7
        }))
    );
    let backwards = ConsistencyProof {
        old_size: 10,
        new_size: 7,
        hashes: vec![],
    };
    assert_eq!(
        backwards.verify(&h10, &h7),
        Err(ProofError::OldLargerThanNew { old: 10, new: 7 })
    );

    // Extra, missing, wrong sizes.
    let p = ConsistencyProof::generate(7, 10, &log).unwrap();
    p.verify(&h7, &h10).unwrap();
    let mut extra = p.clone();
    extra.hashes.push(Hash::ZERO);
    assert!(matches!(
        extra.verify(&h7, &h10),
        Err(ProofError::Length { .. })
    ));
    let mut short = p.clone();
    short.hashes.pop();
    assert!(matches!(
        short.verify(&h7, &h10),
        Err(ProofError::Length { .. })
    ));
    let wrong_old = TreeHead {
        size: 6,
        root: h7.root,
    };
    assert_eq!(
        p.verify(&wrong_old, &h10),
        Err(ProofError::WrongTreeSize { proof: 7, head: 6 })
    );
    let wrong_new = TreeHead {
        size: 9,
        root: h10.root,
    };
    assert_eq!(
        p.verify(&h7, &wrong_new),
        Err(ProofError::WrongTreeSize { proof: 10, head: 9 })
    );
    let relabelled = ConsistencyProof {
        new_size: 9,
        ..p.clone()
    };
    assert!(relabelled.verify(&h7, &log.head(9)).is_err());
    // A power-of-two old size leaves the old root out of the proof.
    let p4 = ConsistencyProof::generate(4, 10, &log).unwrap();
    p4.verify(&h4, &h10).unwrap();
}

mod vectors {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vectors {
        leaves: Vec<String>,
        roots: Vec<Root>,
        inclusion_proofs: Vec<Inclusion>,
        consistency_proofs: Vec<Consistency>,
    }
    #[derive(serde::Deserialize)]
    struct Root {
        size: u64,
        root_b64: Hash,
    }
    #[derive(serde::Deserialize)]
    struct Inclusion {
        index: u64,
        size: u64,
        proof_b64: Vec<Hash>,
    }
    #[derive(serde::Deserialize)]
    struct Consistency {
        old_size: u64,
        new_size: u64,
        proof_b64: Vec<Hash>,
    }

    fn load() -> Vectors {
        let path = crate::test_vectors::path("rfc6962-c2sp.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn reproduces_go_sumdb_vectors() {
        let v = load();
        let mut log = MemoryLog::default();
        for leaf in &v.leaves {
            log.append(leaf.as_bytes());
        }
        assert!(!v.roots.is_empty() && !v.inclusion_proofs.is_empty());
        for r in &v.roots {
            assert_eq!(log.head(r.size).root, r.root_b64, "root at size {}", r.size);
        }
        for p in &v.inclusion_proofs {
            let ours = InclusionProof::generate(p.index, p.size, &log).unwrap();
            assert_eq!(
                ours.hashes, p.proof_b64,
                "inclusion {} in {}",
                p.index, p.size
            );
            let leaf = leaf_hash(v.leaves[p.index as usize].as_bytes());
            ours.verify(leaf, &log.head(p.size)).unwrap();
        }
        assert!(!v.consistency_proofs.is_empty());
        for p in &v.consistency_proofs {
            let ours = ConsistencyProof::generate(p.old_size, p.new_size, &log).unwrap();
            assert_eq!(
                ours.hashes, p.proof_b64,
                "consistency {} → {}",
                p.old_size, p.new_size
            );
            ours.verify(&log.head(p.old_size), &log.head(p.new_size))
                .unwrap();
        }
    }
}

/// rs_merkle with RFC 6962 domain separation: an independent oracle for roots.
#[derive(Clone)]
struct Rfc6962;

impl rs_merkle::Hasher for Rfc6962 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        Hash::of(data).0
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(right) => Self::hash(&[&[0x01][..], left, right].concat()),
            // rs_merkle promotes an odd node unchanged, which is RFC 6962's shape too.
            None => *left,
        }
    }
}

fn rs_merkle_root(leaves: &[Vec<u8>]) -> Hash {
    let hashed: Vec<[u8; 32]> = leaves.iter().map(|l| leaf_hash(l).0).collect();
    let tree = rs_merkle::MerkleTree::<Rfc6962>::from_leaves(&hashed);
    tree.root().map(Hash).unwrap_or_else(empty_root)
}

fn flip(h: &mut Hash, bit: usize) {
    h.0[bit / 8 % 32] ^= 1 << (bit % 8);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_proof_verifies_and_every_tamper_fails(
        size in 1u64..3000,
        picks in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<usize>()), 8),
    ) {
        let log = MemoryLog::with_leaves(size);
        let head = log.head(size);
        for (a, b, bit) in picks {
            // Inclusion.
            let index = a % size;
            let leaf = leaf_hash(format!("leaf-{index}").as_bytes());
            let proof = InclusionProof::generate(index, size, &log).unwrap();
            prop_assert_eq!(proof.verify(leaf, &head), Ok(()));
            for i in 0..proof.hashes.len() {
                let mut bad = proof.clone();
                flip(&mut bad.hashes[i], bit);
                prop_assert!(bad.verify(leaf, &head).is_err());
            }
            let mut bad_leaf = leaf;
            flip(&mut bad_leaf, bit);
            prop_assert!(proof.verify(bad_leaf, &head).is_err());
            let mut bad_root = head;
            flip(&mut bad_root.root, bit);
            prop_assert!(proof.verify(leaf, &bad_root).is_err());
            for other in [index.wrapping_sub(1), index + 1, b % size] {
                if other != index {
                    let moved = InclusionProof { index: other, ..proof.clone() };
                    prop_assert!(moved.verify(leaf, &head).is_err());
                }
            }
            for other_size in [size - 1, size + 1, b % (size + 5)] {
                if other_size != size {
                    // Against the same root claimed for another size, and against the real
                    // head of that size, with the proof relabelled to match.
                    let other = TreeHead { size: other_size, root: head.root };
                    prop_assert!(proof.verify(leaf, &other).is_err());
                    if other_size > index && other_size < size {
                        let relabelled = InclusionProof { tree_size: other_size, ..proof.clone() };
                        prop_assert!(relabelled.verify(leaf, &log.head(other_size)).is_err());
                    }
                }
            }

            // Consistency.
            let old = b % (size + 1);
            let old_head = log.head(old);
            let proof = ConsistencyProof::generate(old, size, &log).unwrap();
            prop_assert_eq!(proof.verify(&old_head, &head), Ok(()));
            for i in 0..proof.hashes.len() {
                let mut bad = proof.clone();
                flip(&mut bad.hashes[i], bit);
                prop_assert!(bad.verify(&old_head, &head).is_err());
            }
            if old > 0 {
                let mut bad_old = old_head;
                flip(&mut bad_old.root, bit);
                prop_assert!(proof.verify(&bad_old, &head).is_err());
            }
            // Any tree extends the empty tree, so only a non-empty old tree constrains the new.
            if old > 0 && old < size {
                let mut bad_new = head;
                flip(&mut bad_new.root, bit);
                prop_assert!(proof.verify(&old_head, &bad_new).is_err());
                let other = TreeHead { size: size + 1, root: head.root };
                prop_assert!(proof.verify(&old_head, &other).is_err());
            }
            if old > 1 && old < size {
                let other = TreeHead { size: old - 1, root: old_head.root };
                prop_assert!(proof.verify(&other, &head).is_err());
            }
        }
    }

    #[test]
    fn roots_equal_rs_merkle(leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..600)) {
        let mut log = MemoryLog::default();
        for l in &leaves {
            log.append(l);
        }
        prop_assert_eq!(log.head(leaves.len() as u64).root, rs_merkle_root(&leaves));
        prop_assert_eq!(log.head(leaves.len() as u64).root, reference_root(&leaves));
    }
}

#[test]
fn compact_ranges_match_stored_trees() {
    let log = MemoryLog::with_leaves(300);
    let mut c = CompactRange::new();
    for i in 0..300u64 {
        assert_eq!(c.root(), log.head(i).root, "size {i}");
        c.append(leaf_hash(format!("leaf-{i}").as_bytes()));
    }
    assert_eq!(c.root(), log.head(300).root);
    let peaks = log.read_hashes(&peak_ids(300)).unwrap();
    assert_eq!(c.peaks(), &peaks[..]);
    assert_eq!(CompactRange::from_peaks(300, peaks.clone()), Some(c));
    assert_eq!(CompactRange::from_peaks(301, peaks), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prefix_paths_prove_prefix_roots(n in 1u64..700, k in any::<u64>(), bit in any::<usize>()) {
        let k = k % (n + 1);
        let log = MemoryLog::with_leaves(n);
        let head = log.head(n);
        let path = prefix_path(k, n, &log).unwrap();
        prop_assert_eq!(prefix_root(k, &head, &path), Ok(log.head(k).root));
        // Damage any hash: the path no longer reaches the root, or implies another prefix.
        for i in 0..path.len() {
            let mut bad = path.clone();
            flip(&mut bad[i], bit);
            prop_assert_ne!(prefix_root(k, &head, &bad), Ok(log.head(k).root));
        }
        // A different tree of the same size does not accept the path.
        if k > 0 && k < n {
            let other = MemoryLog::with_leaves(n + 1).head(n + 1);
            prop_assert!(prefix_root(k, &other, &path).is_err());
        }
    }
}

#[test]
fn forks_show_as_different_prefix_roots() {
    // Two trees sharing 5 leaves, then diverging: at k = 7 their prefix roots differ, and
    // each path binds to its own root.
    let mut a = MemoryLog::default();
    let mut b = MemoryLog::default();
    for i in 0..12 {
        a.append(format!("leaf-{i}").as_bytes());
        b.append(
            if i < 5 {
                format!("leaf-{i}")
            } else {
                format!("other-{i}")
            }
            .as_bytes(),
        );
    }
    let (ha, hb) = (a.head(12), b.head(10));
    for k in [3u64, 5, 7, 8, 10] {
        let ra = prefix_root(k, &ha, &prefix_path(k, 12, &a).unwrap()).unwrap();
        let rb = prefix_root(k, &hb, &prefix_path(k, 10, &b).unwrap()).unwrap();
        assert_eq!(ra == rb, k <= 5, "k = {k}");
    }
}
