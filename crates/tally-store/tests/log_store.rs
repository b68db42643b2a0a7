//! The log store against an independent in-memory replay: commits, reopening, proofs,
//! duplicates and conflicts, out-of-range requests, and tiles.

mod common;

use common::{Replay, attestation, attestation_with_hash, key, map_key};
use tally_core::map::MapAnswer;
use tally_core::tlog::{TreeHead, leaf_hash, node_hash};
use tally_core::{Hash, SignedCheckpoint, tiles};
use tally_store::{LogStore, Outcome, StoreError};

fn open(dir: &tempfile::TempDir) -> LogStore {
    LogStore::open(&dir.path().join("log.redb")).unwrap()
}

#[test]
fn batches_commit_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let mut heads = Vec::new();
    {
        let store = open(&dir);
        let first = store.append_batch(&key, &[]).unwrap();
        assert_eq!(
            first.checkpoint.checkpoint.tree.size, 0,
            "an empty log gets a checkpoint"
        );
        heads.push(first.checkpoint.checkpoint.tree);
        for batch in [1u64, 255, 2, 300, 700] {
            let start = heads.last().unwrap().size;
            let leaves: Vec<_> = (start..start + batch).map(attestation).collect();
            let result = store.append_batch(&key, &[&leaves]).unwrap();
            let want: Vec<_> = (start..start + batch).map(Outcome::Appended).collect();
            assert_eq!(result.groups, [Ok(want)]);
            heads.push(result.checkpoint.checkpoint.tree);
        }
    }
    let store = open(&dir);
    let reader = store.read().unwrap();
    let stored = reader.checkpoint().unwrap().unwrap();
    let signed = SignedCheckpoint::open(&stored.note, &key.verifying_key()).unwrap();
    let head = signed.checkpoint().tree;
    assert_eq!(head.size, 1258);
    assert_eq!(Some(&head), heads.last());

    let entries = reader.entries(0, head.size).unwrap();
    let expected: Vec<Vec<u8>> = (0..head.size)
        .map(|i| attestation(i).as_bytes().to_vec())
        .collect();
    assert_eq!(entries, expected);
    let mut replay = Replay::of(&entries);
    assert_eq!(replay.tree_head(), head);
    assert_eq!(replay.map_root(), signed.checkpoint().map_root);
    assert_eq!(reader.map_root(), signed.checkpoint().map_root);

    for i in (0..head.size).step_by(37) {
        let proof = reader.inclusion_proof(i, head.size).unwrap();
        proof
            .verify(leaf_hash(&entries[i as usize]), &head)
            .unwrap();
        let a = attestation(i);
        let answer = reader
            .map_proof(&map_key(&a))
            .unwrap()
            .verify(&map_key(&a), &signed.checkpoint().map_root);
        match answer.unwrap() {
            MapAnswer::Present(v) => {
                assert_eq!(v.leaf_index, i);
                assert_eq!(v.entry_hash, Hash::of(a.as_bytes()));
            }
            MapAnswer::Absent => panic!("entry {i} missing from the map"),
        }
    }
    let absent = map_key(&attestation(99_999));
    let answer = reader
        .map_proof(&absent)
        .unwrap()
        .verify(&absent, &signed.checkpoint().map_root);
    assert_eq!(answer, Ok(MapAnswer::Absent));
    for old in &heads {
        reader
            .consistency_proof(old.size, head.size)
            .unwrap()
            .verify(old, &head)
            .unwrap();
    }
}

#[test]
fn duplicates_and_conflicts_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = key();
    store
        .append_batch(&key, &[&[attestation(0), attestation(1)]])
        .unwrap();
    let before = store.read().unwrap().checkpoint().unwrap().unwrap();

    // A duplicate is accepted with its existing index; a conflict rejects its whole group,
    // including the new attestation beside it.
    let other = attestation_with_hash(1, Hash::of(b"something else"));
    let result = store
        .append_batch(&key, &[&[attestation(1)], &[attestation(7), other.clone()]])
        .unwrap();
    assert_eq!(result.groups[0], Ok(vec![Outcome::Duplicate(1)]));
    let conflicts = result.groups[1].clone().unwrap_err();
    assert_eq!(conflicts.len(), 1);
    assert_eq!((conflicts[0].position, conflicts[0].index), (1, 1));
    assert_eq!(*conflicts[0].existing, attestation(1));
    assert_eq!(result.checkpoint, before, "nothing new, no new checkpoint");
    assert_eq!(store.read().unwrap().checkpoint().unwrap().unwrap(), before);
    assert_eq!(store.read().unwrap().size(), 2);

    // Within one batch: the first claim wins, across groups and within one.
    let result = store
        .append_batch(
            &key,
            &[
                &[attestation(2), attestation(2)],
                &[attestation_with_hash(2, Hash::ZERO)],
                &[attestation(3), attestation_with_hash(3, Hash::ZERO)],
                &[attestation(4)],
            ],
        )
        .unwrap();
    assert_eq!(
        result.groups[0],
        Ok(vec![Outcome::Appended(2), Outcome::Duplicate(2)])
    );
    assert!(
        matches!(&result.groups[1], Err(c) if c[0].index == 2 && *c[0].existing == attestation(2))
    );
    assert!(matches!(&result.groups[2], Err(c) if c[0].position == 1));
    assert_eq!(
        result.groups[3],
        Ok(vec![Outcome::Appended(3)]),
        "the rejected group's index is reused"
    );
    assert_eq!(result.checkpoint.checkpoint.tree.size, 4);
    let entries = store.read().unwrap().entries(0, 4).unwrap();
    assert_eq!(entries[3], attestation(4).as_bytes());
}

#[test]
fn requests_beyond_the_tree_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = key();
    store
        .append_batch(&key, &[&(0..10).map(attestation).collect::<Vec<_>>()])
        .unwrap();
    let r = store.read().unwrap();
    assert!(matches!(
        r.entries(5, 11),
        Err(StoreError::OutOfRange { size: 10, .. })
    ));
    assert!(matches!(
        r.entries(7, 3),
        Err(StoreError::OutOfRange { .. })
    ));
    assert!(r.inclusion_proof(10, 10).is_err());
    assert!(r.inclusion_proof(3, 11).is_err());
    assert!(r.consistency_proof(3, 11).is_err());
    assert!(r.consistency_proof(8, 5).is_err());
    assert!(matches!(
        r.hash_tile(0, 0, 11),
        Err(StoreError::TileOutOfRange { .. })
    ));
    assert!(matches!(
        r.hash_tile(0, 1, 1),
        Err(StoreError::TileOutOfRange { .. })
    ));
    assert!(matches!(
        r.hash_tile(1, 0, 1),
        Err(StoreError::TileOutOfRange { .. })
    ));
    assert!(matches!(
        r.hash_tile(63, u64::MAX, 1),
        Err(StoreError::TileOutOfRange { .. })
    ));
    assert!(matches!(
        r.entry_bundle(0, 11),
        Err(StoreError::TileOutOfRange { .. })
    ));
}

#[test]
fn another_logs_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append_batch(&key(), &[&[attestation(0)]]).unwrap();
    let other =
        tally_core::SigningKey::from_seed(tally_core::KeyName::new("other").unwrap(), [1; 32]);
    assert!(matches!(
        store.append_batch(&other, &[&[attestation(1)]]),
        Err(StoreError::WrongLog { .. })
    ));
}

#[test]
fn tiles_hold_the_tree_levels() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = key();
    let n = 256 * 3 + 17;
    for chunk in (0..n).collect::<Vec<u64>>().chunks(100) {
        store
            .append_batch(
                &key,
                &[&chunk.iter().map(|&i| attestation(i)).collect::<Vec<_>>()],
            )
            .unwrap();
    }
    let r = store.read().unwrap();
    let entries = r.entries(0, n).unwrap();

    for index in 0..4u64 {
        let path = tiles::TilePath::for_tree(tiles::TileKind::Hash { level: 0 }, index, n).unwrap();
        let tile = r.hash_tile(0, index, path.width()).unwrap();
        let want: Vec<u8> = entries[(index * 256) as usize..][..path.width() as usize]
            .iter()
            .flat_map(|e| leaf_hash(e).0)
            .collect();
        assert_eq!(tile, want, "level 0 tile {index}");
        let bundle = r.entry_bundle(index, path.width()).unwrap();
        let decoded = tiles::bundle_entries(&bundle).unwrap();
        assert_eq!(
            decoded,
            &entries[(index * 256) as usize..][..path.width() as usize]
        );
    }
    // Level 1, partial tile 0: the roots of the three full 256-leaf subtrees.
    let tile = r.hash_tile(1, 0, 3).unwrap();
    for k in 0..3usize {
        let sub = Replay::of(&entries[k * 256..(k + 1) * 256])
            .tree_head()
            .root;
        assert_eq!(&tile[k * 32..(k + 1) * 32], &sub.0[..]);
    }
    // The tiles alone give the root, as a tlog-tiles client computes it: RFC 6962 splits
    // 785 leaves as 512 + (256 + 17).
    let head = store
        .read()
        .unwrap()
        .checkpoint()
        .unwrap()
        .unwrap()
        .checkpoint
        .tree;
    let sub = |k: usize| Hash::from_slice(&tile[k * 32..(k + 1) * 32]).unwrap();
    let tail = Replay::of(&entries[768..]).tree_head().root;
    let root = node_hash(&node_hash(&sub(0), &sub(1)), &node_hash(&sub(2), &tail));
    assert_eq!(TreeHead { size: n, root }, head);
}

#[test]
fn the_in_memory_map_top_is_rebuilt_on_reopening() {
    // Enough keys that the top four map levels hold only child nodes, plus a reopen between
    // batches, so the stored shapes carry stale child hashes that must be recomputed.
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let n = 80_000u64;
    for (round, start) in (0..n).step_by(20_000).enumerate() {
        let store = open(&dir);
        let batch: Vec<_> = (start..start + 20_000).map(attestation).collect();
        let result = store.append_batch(&key, &[&batch]).unwrap();
        let reopened = open_again(store, &dir);
        let reader = reopened.read().unwrap();
        assert_eq!(
            reader.map_root(),
            result.checkpoint.checkpoint.map_root,
            "round {round}"
        );
    }
    let store = open(&dir);
    let reader = store.read().unwrap();
    let stored = reader.checkpoint().unwrap().unwrap();
    let mut replay = Replay::of(&reader.entries(0, n).unwrap());
    assert_eq!(replay.map_root(), stored.checkpoint.map_root);
    for i in (0..n).step_by(997) {
        let k = map_key(&attestation(i));
        let answer = reader
            .map_proof(&k)
            .unwrap()
            .verify(&k, &stored.checkpoint.map_root);
        assert!(
            matches!(answer, Ok(MapAnswer::Present(v)) if v.leaf_index == i),
            "{i}"
        );
    }
}

fn open_again(store: LogStore, dir: &tempfile::TempDir) -> LogStore {
    drop(store);
    open(dir)
}
