use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

/// An in-memory node store.
#[derive(Default, Clone)]
struct MemoryMap {
    nodes: BTreeMap<MapNodeId, MapNode>,
}

impl MapNodeReader for MemoryMap {
    type Error = MapError;
    fn read_node(&self, id: &MapNodeId) -> Result<Option<MapNode>, MapError> {
        Ok(self.nodes.get(id).cloned())
    }
}

impl MemoryMap {
    fn insert(&mut self, pairs: Vec<(MapKey, MapValue)>) -> Hash {
        let update = insert(&*self, pairs).unwrap();
        self.nodes.extend(update.nodes);
        assert_eq!(root(&*self).unwrap(), update.root);
        update.root
    }
}

/// The definition in the module docs, computed directly.
fn reference_root(pairs: &BTreeMap<MapKey, MapValue>) -> Hash {
    fn hash(depth: usize, pairs: &[(&MapKey, &MapValue)]) -> Hash {
        match pairs {
            [] => Hash::ZERO,
            [(k, v)] => leaf_hash(k, v),
            _ => {
                let split = pairs.partition_point(|(k, _)| !k.bit(depth));
                node_hash(
                    &hash(depth + 1, &pairs[..split]),
                    &hash(depth + 1, &pairs[split..]),
                )
            }
        }
    }
    let pairs: Vec<_> = pairs.iter().collect();
    hash(0, &pairs)
}

fn value(i: u64) -> MapValue {
    MapValue {
        leaf_index: i,
        entry_hash: Hash::of(&i.to_be_bytes()),
    }
}

fn key(i: u64) -> MapKey {
    MapKey(Hash::of(format!("key-{i}").as_bytes()).0)
}

#[test]
fn empty_and_single() {
    let mut m = MemoryMap::default();
    assert_eq!(root(&m).unwrap(), EMPTY_ROOT);
    let proof = prove(&m, &key(1)).unwrap();
    assert_eq!(proof.verify(&key(1), &EMPTY_ROOT), Ok(MapAnswer::Absent));

    let r = m.insert(vec![(key(1), value(1))]);
    assert_eq!(r, leaf_hash(&key(1), &value(1)), "a lone leaf is the root");
    let proof = prove(&m, &key(1)).unwrap();
    assert!(proof.siblings.is_empty());
    assert_eq!(proof.verify(&key(1), &r), Ok(MapAnswer::Present(value(1))));
    let proof = prove(&m, &key(2)).unwrap();
    assert_eq!(proof.verify(&key(2), &r), Ok(MapAnswer::Absent));
}

#[test]
fn keys_sharing_long_prefixes() {
    // Keys that agree on their first 250 bits force a long chain of single-child nodes.
    let base = key(7);
    let mut pairs = BTreeMap::new();
    for i in 0..6u8 {
        let mut k = base;
        k.0[31] = (k.0[31] & 0xc0) | i;
        pairs.insert(k, value(u64::from(i)));
    }
    let mut m = MemoryMap::default();
    let r = m.insert(pairs.clone().into_iter().collect());
    assert_eq!(r, reference_root(&pairs));
    for (k, v) in &pairs {
        let p = prove(&m, k).unwrap();
        assert!(p.siblings.len() >= 250);
        assert_eq!(p.verify(k, &r), Ok(MapAnswer::Present(*v)));
        assert_eq!(lookup(&m, k).unwrap(), Some(*v));
    }
}

#[test]
fn duplicates_are_refused() {
    let mut m = MemoryMap::default();
    m.insert(vec![(key(1), value(1)), (key(2), value(2))]);
    assert_eq!(
        insert(&m, vec![(key(1), value(9))]),
        Err(MapError::DuplicateKey(key(1)))
    );
    assert_eq!(
        insert(&m, vec![(key(3), value(3)), (key(3), value(4))]),
        Err(MapError::DuplicateKey(key(3)))
    );
}

#[test]
fn node_encoding_round_trips_and_rejects_garbage() {
    let mut m = MemoryMap::default();
    m.insert((0..100).map(|i| (key(i), value(i))).collect());
    for node in m.nodes.values() {
        assert_eq!(&MapNode::from_bytes(&node.to_bytes()).unwrap(), node);
    }
    assert!(
        MapNode::from_bytes(&[0, 1, 0, 1]).is_err(),
        "slot 0 both leaf and child"
    );
    assert!(
        MapNode::from_bytes(&[0, 1, 0, 0]).is_err(),
        "a leaf with no payload"
    );
    assert!(MapNode::from_bytes(&[0]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn root_depends_only_on_the_set(
        n in 0u64..400,
        seed in any::<u64>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let pairs: BTreeMap<MapKey, MapValue> = (0..n).map(|i| (key(i ^ seed), value(i))).collect();
        let want = reference_root(&pairs);

        // All at once, in key order.
        let mut one = MemoryMap::default();
        prop_assert_eq!(one.insert(pairs.clone().into_iter().collect()), want);

        // Shuffled, in batches cut at random points.
        let mut shuffled: Vec<_> = pairs.clone().into_iter().collect();
        let len = shuffled.len().max(1);
        for i in 0..shuffled.len() {
            shuffled.swap(i, (seed as usize).wrapping_mul(i + 7) % len);
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (shuffled.len() + 1)).collect();
        cuts.push(shuffled.len());
        cuts.sort_unstable();
        let mut batched = MemoryMap::default();
        let mut start = 0;
        for cut in cuts {
            batched.insert(shuffled[start..cut].to_vec());
            start = cut;
        }
        prop_assert_eq!(root(&batched).unwrap(), want);
    }

    #[test]
    fn proofs_answer_truthfully_and_never_lie(
        n in 1u64..300,
        probes in proptest::collection::vec(any::<u64>(), 12),
        bit in 0usize..256,
    ) {
        let mut m = MemoryMap::default();
        let present: BTreeSet<MapKey> = (0..n).map(key).collect();
        let r = m.insert((0..n).map(|i| (key(i), value(i))).collect());

        // A pool of proofs: honest ones for present and absent keys, and damaged ones.
        let mut pool = Vec::new();
        for p in &probes {
            let k = if p % 2 == 0 { key(p % n) } else { key(1_000_000 + p) };
            let proof = prove(&m, &k).unwrap();
            let answer = proof.verify(&k, &r).unwrap();
            match (present.contains(&k), answer) {
                (true, MapAnswer::Present(v)) => prop_assert_eq!(Some(v), lookup(&m, &k).unwrap()),
                (false, MapAnswer::Absent) => prop_assert_eq!(lookup(&m, &k).unwrap(), None),
                (p, a) => prop_assert!(false, "present={} answered {:?}", p, a),
            }
            let mut empty = proof.clone();
            empty.terminal = Terminal::Empty;
            pool.push(empty);
            let mut shorter = proof.clone();
            shorter.siblings.pop();
            pool.push(shorter);
            if let Some(s) = proof.siblings.first() {
                let mut flipped = proof.clone();
                let mut h = *s;
                h.0[bit / 8] ^= 1 << (bit % 8);
                flipped.siblings[0] = h;
                pool.push(flipped);
            }
            pool.push(proof);
        }

        // No proof in the pool may show a present key absent, or an absent key present.
        for p in &probes {
            for k in [key(p % n), key(1_000_000 + p)] {
                for proof in &pool {
                    match proof.verify(&k, &r) {
                        Ok(MapAnswer::Absent) => prop_assert!(!present.contains(&k)),
                        Ok(MapAnswer::Present(v)) => {
                            prop_assert!(present.contains(&k));
                            prop_assert_eq!(Some(v), lookup(&m, &k).unwrap());
                        }
                        Err(_) => {}
                    }
                }
            }
        }
    }
}

#[test]
fn docs_formats_example() {
    // The map example in docs/formats.md.
    let path = crate::StorePath::parse("/nix/store/7wm0wahkpyx0dd44m7r9g8gp1jl4rl59-hello-2.12.1")
        .unwrap();
    let key = MapKey::for_path(&path.hash());
    assert_eq!(
        hex::encode(key.0),
        "f9da842c693ac6ef3c1856108e0da48a29be48b68c19f477873b0ed2afdfe8e6"
    );
    let entry = crate::attestation::tests::example();
    let value = MapValue {
        leaf_index: 41,
        entry_hash: Hash::of(entry.as_bytes()),
    };
    assert_eq!(
        hex::encode(value.to_bytes()),
        "0000000000000029ed55efdd97896037a108e6dd553b25441f5250123d2981d4fd36ad40bc99995a"
    );
    assert_eq!(
        leaf_hash(&key, &value).to_string(),
        "+KLXyHnmJ3JV6y1KO+/sXPkXOZ4nu/eynRA8r6iKl7c="
    );
    assert_eq!(
        crate::tlog::leaf_hash(entry.as_bytes()).to_string(),
        "xOYBm/7UupzlTep9mCVTnyoYkqM31WMKn4Wa0NIMnWk="
    );
}

#[test]
fn node_ids_walk_down_and_round_trip() {
    let k = key(9);
    for depth in 0..63u8 {
        let id = MapNodeId::on_path(&k, depth);
        assert_eq!(
            id.child(k.nibble(usize::from(depth))),
            MapNodeId::on_path(&k, depth + 1)
        );
        assert_eq!(MapNodeId::from_bytes(&id.to_bytes()), Some(id));
    }
    assert_eq!(
        MapNodeId::from_bytes(&[2, 0xab, 0xcd]),
        None,
        "depth 2 uses one byte"
    );
    assert_eq!(MapNodeId::from_bytes(&[]), None);
}
