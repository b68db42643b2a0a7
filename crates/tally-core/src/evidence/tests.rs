use super::*;
use crate::answer::AnswerEntry;
use crate::checkpoint::Checkpoint;
use crate::keys::SigningKey;
use crate::map::MapKey;
use crate::sample;
use crate::tlog::HashReader as _;

/// A log in memory that signs checkpoints and answers lookups.
struct TestLog {
    key: SigningKey,
    replay: Replay,
    entries: Vec<Vec<u8>>,
}

impl TestLog {
    fn new(name: &str, seed: u8) -> TestLog {
        TestLog {
            key: SigningKey::from_seed(KeyName::new(name).unwrap(), [seed; 32]),
            replay: Replay::new(),
            entries: Vec::new(),
        }
    }

    fn push(&mut self, a: &Attestation) {
        self.replay.push(a.as_bytes());
        self.entries.push(a.as_bytes().to_vec());
    }

    fn checkpoint(&mut self) -> String {
        let root = self.replay.map_root();
        self.checkpoint_with_map(root)
    }

    fn checkpoint_with_map(&mut self, map_root: Hash) -> String {
        let c = Checkpoint {
            origin: self.key.name().clone(),
            tree: self.replay.tree_head(),
            map_root,
        };
        String::from_utf8(SignedCheckpoint::sign(c, &self.key).unwrap().to_bytes()).unwrap()
    }

    fn answer(&mut self, path: &StorePathHash) -> LogAnswer {
        let checkpoint = self.checkpoint();
        let proof = self.replay.map_proof(&MapKey::for_path(path));
        let size = self.replay.size();
        let present = match &proof.terminal {
            crate::map::Terminal::Leaf { key, value } if *key == MapKey::for_path(path) => {
                Some(value.leaf_index)
            }
            _ => None,
        };
        LogAnswer {
            checkpoint,
            map_proof: proof,
            entry: present.map(|i| AnswerEntry {
                index: i,
                data: self.entries[i as usize].clone(),
            }),
            inclusion_proof: present.map(|i| self.replay.inclusion_proof(i, size).unwrap()),
        }
    }

    fn vkey(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
}

fn roundtrip(b: Bundle) -> BundleFile {
    let json = serde_json::to_string(&BundleFile::new(b)).unwrap();
    serde_json::from_str(&json).unwrap()
}

#[test]
fn fork_of_two_views() {
    let mut honest = TestLog::new("fork.example/log", 1);
    let mut other = TestLog::new("fork.example/log", 1);
    for i in 0..9 {
        honest.push(&sample::attestation(i));
        other.push(&sample::attestation(if i < 4 { i } else { 100 + i }));
    }
    let a = honest.checkpoint();
    other.replay.tree_head();
    let b = other.checkpoint();
    let fork = Fork {
        origin: honest.key.name().clone(),
        a: a.clone(),
        b: b.clone(),
        at: 7,
        path_a: honest.replay.prefix_path(7, 9).unwrap(),
        path_b: other.replay.prefix_path(7, 9).unwrap(),
    };
    let file = roundtrip(Bundle::Fork(fork.clone()));
    let proven = file.verify(&[honest.vkey()]).unwrap();
    assert_eq!(proven.misbehaving, [honest.key.name().clone()]);

    // Where they agree there is nothing to prove; a tampered path proves nothing either.
    let agree = Fork {
        at: 3,
        path_a: honest.replay.prefix_path(3, 9).unwrap(),
        path_b: other.replay.prefix_path(3, 9).unwrap(),
        ..fork.clone()
    };
    assert!(matches!(
        Bundle::Fork(agree).verify(&[honest.vkey()]),
        Err(EvidenceError::NotProven(_))
    ));
    let mut tampered = fork.clone();
    tampered.path_b[0].0[0] ^= 1;
    assert!(Bundle::Fork(tampered).verify(&[honest.vkey()]).is_err());
    // Same size, same data, signed twice: no fork.
    let same = Fork {
        b: a.clone(),
        path_b: fork.path_a.clone(),
        ..fork.clone()
    };
    assert!(Bundle::Fork(same).verify(&[honest.vkey()]).is_err());
    // Another key cannot be framed.
    let stranger = SigningKey::from_seed(KeyName::new("fork.example/log").unwrap(), [9; 32]);
    assert!(
        Bundle::Fork(fork)
            .verify(&[stranger.verifying_key()])
            .is_err()
    );
}

#[test]
fn bad_entries_and_bad_map_roots() {
    let mut log = TestLog::new("bad.example/log", 2);
    for i in 0..10 {
        log.push(&sample::attestation(i));
    }
    let checkpoint = log.checkpoint();
    let mut served = log.entries[4..8].to_vec();
    served[1] = sample::attestation(55).as_bytes().to_vec();
    let peaks = log.replay.read_hashes(&tlog::peak_ids(4)).unwrap();
    let bad = BadEntries {
        origin: log.key.name().clone(),
        checkpoint: checkpoint.clone(),
        start: 4,
        peaks,
        path_start: log.replay.prefix_path(4, 10).unwrap(),
        entries: served,
        path_end: log.replay.prefix_path(8, 10).unwrap(),
    };
    roundtrip(Bundle::BadEntries(bad.clone()))
        .verify(&[log.vkey()])
        .unwrap();
    let honest = BadEntries {
        entries: log.entries[4..8].to_vec(),
        ..bad.clone()
    };
    assert!(matches!(
        Bundle::BadEntries(honest).verify(&[log.vkey()]),
        Err(EvidenceError::NotProven(_))
    ));

    // A map root that is not the replay.
    let lie = log.checkpoint_with_map(Hash::of(b"made up"));
    let bad_map = BadMapRoot {
        origin: log.key.name().clone(),
        checkpoint: lie,
        entries: log.entries.clone(),
    };
    roundtrip(Bundle::BadMapRoot(bad_map.clone()))
        .verify(&[log.vkey()])
        .unwrap();
    let truthful = BadMapRoot {
        checkpoint,
        ..bad_map.clone()
    };
    assert!(Bundle::BadMapRoot(truthful).verify(&[log.vkey()]).is_err());
    let mut altered = bad_map;
    altered.entries[3] = sample::attestation(77).as_bytes().to_vec();
    assert!(
        Bundle::BadMapRoot(altered).verify(&[log.vkey()]).is_err(),
        "entries must be the signed tree"
    );
}

#[test]
fn contradictions_and_disagreements() {
    let mut log = TestLog::new("two.example/log", 3);
    log.push(&sample::attestation(1));
    log.push(&sample::attestation(2));
    log.push(&sample::attestation_with_nar(
        1,
        Hash::of(b"second opinion"),
    ));
    let checkpoint = log.checkpoint();
    let proven = |i: u64| ProvenEntry {
        entry: log.entries[i as usize].clone(),
        inclusion_proof: log.replay.inclusion_proof(i, 3).unwrap(),
    };
    let c = Contradiction {
        origin: log.key.name().clone(),
        checkpoint: checkpoint.clone(),
        first: proven(0),
        second: proven(2),
    };
    roundtrip(Bundle::Contradiction(c.clone()))
        .verify(&[log.vkey()])
        .unwrap();
    let unrelated = Contradiction {
        second: proven(1),
        ..c
    };
    assert!(
        Bundle::Contradiction(unrelated)
            .verify(&[log.vkey()])
            .is_err()
    );

    let mut a = TestLog::new("a.example/log", 4);
    let mut b = TestLog::new("b.example/log", 5);
    a.push(&sample::attestation(9));
    b.push(&sample::attestation_with_nar(9, Hash::of(b"b's build")));
    let path = sample::output_path(9).hash();
    let d = Disagreement {
        path,
        answers: vec![
            OriginAnswer {
                origin: a.key.name().clone(),
                answer: a.answer(&path),
            },
            OriginAnswer {
                origin: b.key.name().clone(),
                answer: b.answer(&path),
            },
        ],
    };
    roundtrip(Bundle::Disagreement(d.clone()))
        .verify(&[a.vkey(), b.vkey()])
        .unwrap();
    assert!(matches!(
        Bundle::Disagreement(d).verify(&[a.vkey()]),
        Err(EvidenceError::NoKey(_))
    ));
}

#[test]
fn query_bundles_recompute_the_verdict() {
    let mut logs: Vec<TestLog> = (0..3)
        .map(|i| TestLog::new(&format!("q{i}.example/log"), 10 + i as u8))
        .collect();
    logs[0].push(&sample::attestation(5));
    logs[1].push(&sample::attestation(5));
    logs[2].push(&sample::attestation_with_nar(5, Hash::of(b"dissent")));
    let path = sample::output_path(5).hash();
    let keys: Vec<VerifyingKey> = logs.iter().map(TestLog::vkey).collect();
    let entries: Vec<QueryLog> = logs
        .iter_mut()
        .map(|l| QueryLog {
            origin: l.key.name().clone(),
            answer: Some(l.answer(&path)),
            unavailable: None,
        })
        .collect();
    let votes: Vec<(KeyName, Vote)> = entries
        .iter()
        .zip(&keys)
        .map(
            |(e, k)| match e.answer.as_ref().unwrap().verify(k, &path).unwrap() {
                Verified::Present { attestation, .. } => {
                    (e.origin.clone(), Vote::Present(attestation))
                }
                Verified::Absent { .. } => (e.origin.clone(), Vote::Absent),
            },
        )
        .collect();
    let default = Policy::default();
    let tolerant: Policy = "2-of-3,dissent=1".parse().unwrap();
    let disputed = QueryBundle {
        path,
        policy: default.clone(),
        logs: entries.clone(),
        verdict: default.decide(&votes),
    };
    assert_eq!(disputed.verdict.status(), "disputed");
    roundtrip(Bundle::Query(disputed.clone()))
        .verify(&keys)
        .unwrap();
    let trusted = QueryBundle {
        policy: tolerant.clone(),
        verdict: tolerant.decide(&votes),
        ..disputed.clone()
    };
    assert_eq!(trusted.verdict.status(), "trusted");
    trusted_bundle_verifies(&trusted, &keys);

    // Claiming "trusted" under the default policy is caught.
    let lie = QueryBundle {
        verdict: trusted.verdict.clone(),
        ..disputed.clone()
    };
    assert!(matches!(
        Bundle::Query(lie).verify(&keys),
        Err(EvidenceError::NotProven(_))
    ));
    // Hiding the dissenter as "unavailable" is possible, but shows as a caveat.
    let mut hidden = trusted.clone();
    hidden.logs[2] = QueryLog {
        origin: hidden.logs[2].origin.clone(),
        answer: None,
        unavailable: Some("down".into()),
    };
    hidden.verdict = tolerant.decide(&[
        votes[0].clone(),
        votes[1].clone(),
        (votes[2].0.clone(), Vote::Unavailable("down".into())),
    ]);
    let p = Bundle::Query(hidden).verify(&keys).unwrap();
    assert_eq!(p.caveats.len(), 1);
}

fn trusted_bundle_verifies(b: &QueryBundle, keys: &[VerifyingKey]) {
    let p = roundtrip(Bundle::Query(b.clone())).verify(keys).unwrap();
    assert!(p.claim.contains("trusted"), "{}", p.claim);
    assert!(p.caveats.is_empty());
}

#[test]
fn version_is_checked() {
    let mut log = TestLog::new("v.example/log", 6);
    log.push(&sample::attestation(1));
    let mut file = BundleFile::new(Bundle::BadMapRoot(BadMapRoot {
        origin: log.key.name().clone(),
        checkpoint: log.checkpoint(),
        entries: log.entries.clone(),
    }));
    file.version = "tally-bundle/v0".into();
    assert!(matches!(
        file.verify(&[log.vkey()]),
        Err(EvidenceError::Version(_))
    ));
}
