//! The aggregator's mirror store: chunks committed only when they lead to the signed root,
//! map replay checked at the target, contradictions noted, evidence deduplicated, and the
//! witness's check-and-store.

mod common;

use common::{Replay, attestation, attestation_with_hash, key};
use tally_core::{Checkpoint, Hash, KeyName, SignedCheckpoint};
use tally_store::{Appended, Expect, MirrorStore, StoredCheckpoint};

fn signed(entries: &[Vec<u8>], map_root: Option<Hash>) -> StoredCheckpoint {
    let mut replay = Replay::of(entries);
    let key = key();
    let c = Checkpoint {
        origin: key.name().clone(),
        tree: replay.tree_head(),
        map_root: map_root.unwrap_or_else(|| replay.map_root()),
    };
    StoredCheckpoint::from_note(SignedCheckpoint::sign(c, &key).unwrap().to_bytes()).unwrap()
}

fn open(dir: &tempfile::TempDir) -> MirrorStore {
    MirrorStore::open(
        &dir.path().join("agg.redb"),
        &[key().name().clone()],
        32 << 20,
    )
    .unwrap()
}

#[test]
fn chunks_commit_only_when_they_reach_the_signed_root() {
    let dir = tempfile::tempdir().unwrap();
    let origin = key().name().clone();
    let entries: Vec<Vec<u8>> = (0..500)
        .map(|i| attestation(i).as_bytes().to_vec())
        .collect();
    let target = signed(&entries, None);
    let store = open(&dir);
    store.set_target(&origin, &target).unwrap();

    let first = &entries[..300];
    let root_300 = Replay::of(first).tree_head().root;
    // A wrong expected root: nothing is written.
    let wrong = store
        .append(
            &origin,
            first,
            Expect {
                root: Hash::ZERO,
                completes: None,
                durable: false,
            },
        )
        .unwrap();
    assert!(matches!(wrong, Appended::RootMismatch { computed } if computed.root == root_300));
    assert_eq!(store.state(&origin).unwrap().size, 0);
    // The right one.
    let ok = store
        .append(
            &origin,
            first,
            Expect {
                root: root_300,
                completes: None,
                durable: false,
            },
        )
        .unwrap();
    assert!(matches!(ok, Appended::Synced(t) if t.size == 300));
    let done = store
        .append(
            &origin,
            &entries[300..],
            Expect {
                root: target.checkpoint.tree.root,
                completes: Some(&target),
                durable: true,
            },
        )
        .unwrap();
    assert_eq!(done, Appended::Verified(target.checkpoint.tree));
    let state = store.state(&origin).unwrap();
    assert_eq!(
        (state.size, state.verified.as_ref(), state.target.as_ref()),
        (500, Some(&target), None)
    );
    drop(store);

    // Reopened, the mirror answers proofs against the verified checkpoint.
    let store = open(&dir);
    let reader = store.read(&origin).unwrap();
    assert_eq!(reader.map_root(), target.checkpoint.map_root);
    assert_eq!(reader.checkpoint().unwrap(), Some(target));
    assert_eq!(reader.entries(0, 500).unwrap(), entries);
}

#[test]
fn a_wrong_map_root_and_contradictions_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let origin = key().name().clone();
    let mut entries: Vec<Vec<u8>> = (0..20)
        .map(|i| attestation(i).as_bytes().to_vec())
        .collect();
    entries.push(attestation(3).as_bytes().to_vec()); // identical again: not a contradiction
    entries.push(
        attestation_with_hash(5, Hash::of(b"other"))
            .as_bytes()
            .to_vec(),
    ); // contradiction
    let lying = signed(&entries, Some(Hash::of(b"wrong map")));
    let store = open(&dir);
    store.set_target(&origin, &lying).unwrap();
    let result = store
        .append(
            &origin,
            &entries,
            Expect {
                root: lying.checkpoint.tree.root,
                completes: Some(&lying),
                durable: true,
            },
        )
        .unwrap();
    let mut replay = Replay::of(&entries);
    assert_eq!(
        result,
        Appended::MapMismatch {
            computed: replay.map_root()
        }
    );
    let state = store.state(&origin).unwrap();
    assert_eq!(
        state.size, 22,
        "the entries are the signed tree's, so they are kept"
    );
    assert!(state.verified.is_none());
    assert_eq!(store.contradictions(&origin).unwrap(), [(5, 21)]);
    store.clear_contradictions(&origin).unwrap();
    assert!(store.contradictions(&origin).unwrap().is_empty());
}

#[test]
fn evidence_is_stored_once_and_the_witness_compares_and_swaps() {
    let dir = tempfile::tempdir().unwrap();
    let origin = key().name().clone();
    let store = open(&dir);
    let (a, new) = store
        .add_evidence(
            "fork:x:1",
            "fork",
            vec![origin.to_string()],
            "a fork".into(),
            "{}".into(),
        )
        .unwrap();
    assert!(new);
    let (b, new) = store
        .add_evidence("fork:x:1", "fork", vec![], "again".into(), "{}".into())
        .unwrap();
    assert_eq!((a, new), (b, false));
    let (c, _) = store
        .add_evidence("fork:x:2", "fork", vec![], "another".into(), "{}".into())
        .unwrap();
    assert_eq!(c, a + 1);
    assert_eq!(store.list_evidence().unwrap().len(), 2);
    assert_eq!(store.evidence(a).unwrap().unwrap().about.summary, "a fork");
    assert_eq!(store.list_evidence().unwrap()[0].summary, "a fork");

    let small = signed(&[attestation(0).as_bytes().to_vec()], None);
    let big = signed(
        &[
            attestation(0).as_bytes().to_vec(),
            attestation(1).as_bytes().to_vec(),
        ],
        None,
    );
    assert_eq!(
        store.swap_cosigned(&origin, 5, &small.note).unwrap(),
        Err(0)
    );
    assert_eq!(
        store.swap_cosigned(&origin, 0, &small.note).unwrap(),
        Ok(())
    );
    assert_eq!(
        store.swap_cosigned(&origin, 0, &big.note).unwrap(),
        Err(1),
        "a stale request cannot roll back"
    );
    assert_eq!(store.swap_cosigned(&origin, 1, &big.note).unwrap(), Ok(()));
    assert_eq!(store.cosigned(&origin).unwrap().unwrap(), big);
    let unknown = KeyName::new("not.followed/log").unwrap();
    assert!(store.state(&unknown).is_err());
}
