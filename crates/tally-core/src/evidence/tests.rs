use super::*;
use crate::decision::Uncached;
use crate::keys::SigningKey;
use crate::replay::Replay;
use crate::sample;
use crate::test_log::TestLog;

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
    // Two map roots signed for one tree are a fork of the map.
    let map_fork = Fork {
        a: a.clone(),
        b: honest.checkpoint_with_map(Hash::of(b"another map")),
        at: 9,
        path_a: Vec::new(),
        path_b: Vec::new(),
        ..fork.clone()
    };
    let p = Bundle::Fork(map_fork).verify(&[honest.vkey()]).unwrap();
    assert!(p.claim.contains("two map roots"), "{}", p.claim);
    // Another key cannot be framed.
    let stranger = SigningKey::from_seed(KeyName::new("fork.example/log").unwrap(), [9; 32]);
    assert!(
        Bundle::Fork(fork)
            .verify(&[stranger.verifying_key()])
            .is_err()
    );
}

#[test]
fn bad_entries_prove_nothing() {
    // Anyone can take a log's public checkpoint and pair it with bytes of their choosing.
    let mut log = TestLog::new("bad.example/log", 2);
    for i in 0..10 {
        log.push(&sample::attestation(i));
    }
    let forged = BadEntries {
        origin: log.key.name().clone(),
        checkpoint: log.checkpoint(),
        start: 0,
        peaks: Vec::new(),
        path_start: Vec::new(),
        entries: vec![b"arbitrary bytes".to_vec()],
        path_end: log.replay.prefix_path(1, 10).unwrap(),
    };
    let err = roundtrip(Bundle::BadEntries(forged))
        .verify(&[log.vkey()])
        .unwrap_err();
    assert!(
        matches!(&err, EvidenceError::NotProven(why) if why.contains("not the log's statement")),
        "{err}"
    );
}

/// A log whose tree holds `entries` but whose signed map is the replay of `map_entries`.
fn lying_map(entries: &[Attestation], map_entries: &[Attestation]) -> (TestLog, String, Replay) {
    let mut log = TestLog::new("map.example/log", 3);
    for a in entries {
        log.push(a);
    }
    let mut map = Replay::new();
    for a in map_entries {
        map.push(a.as_bytes());
    }
    let checkpoint = log.checkpoint_with_map(map.map_root());
    (log, checkpoint, map)
}

fn bad_map(
    log: &TestLog,
    checkpoint: &str,
    map: &mut Replay,
    path: u64,
    entry: Option<u64>,
) -> BadMapRoot {
    let path = sample::output_path(path).hash();
    BadMapRoot {
        origin: log.key.name().clone(),
        checkpoint: checkpoint.to_owned(),
        path,
        map_proof: map.map_proof(&MapKey::for_path(&path)),
        entry: entry.map(|i| ProvenEntry {
            entry: log.entries[i as usize].clone(),
            inclusion_proof: log
                .replay
                .inclusion_proof(i, log.entries.len() as u64)
                .unwrap(),
        }),
    }
}

#[test]
fn bad_map_roots_are_proven_by_one_entry_and_the_logs_own_map_proof() {
    let honest: Vec<Attestation> = (0..10).map(sample::attestation).collect();
    let keys = |log: &TestLog| vec![log.vkey()];

    // The map hides entry 3's path.
    let mut hidden = honest.clone();
    hidden[3] = sample::attestation(50);
    let (log, cp, mut map) = lying_map(&honest, &hidden);
    let b = bad_map(&log, &cp, &mut map, 3, Some(3));
    let p = roundtrip(Bundle::BadMapRoot(b.clone()))
        .verify(&keys(&log))
        .unwrap();
    assert!(p.claim.contains("absent"), "{}", p.claim);
    assert_eq!(p.misbehaving, [log.key.name().clone()]);
    // The same proof with an entry that does not attest the path proves nothing.
    let unrelated = bad_map(&log, &cp, &mut map, 3, Some(4));
    assert!(Bundle::BadMapRoot(unrelated).verify(&keys(&log)).is_err());
    // An entry that is not in the signed tree is refused.
    let mut forged = b;
    forged.entry.as_mut().unwrap().inclusion_proof.index = 5;
    assert!(Bundle::BadMapRoot(forged).verify(&keys(&log)).is_err());

    // The map points at a later attestation of the path than the first.
    let mut twice = honest.clone();
    twice[6] = sample::attestation(2);
    let mut later = twice.clone();
    later[2] = sample::attestation(60);
    let (log, cp, mut map) = lying_map(&twice, &later);
    let p = Bundle::BadMapRoot(bad_map(&log, &cp, &mut map, 2, Some(2)))
        .verify(&keys(&log))
        .unwrap();
    assert!(p.claim.contains("first"), "{}", p.claim);

    // The map binds the path to the right index, but to other bytes.
    let mut other_bytes = honest.clone();
    other_bytes[7] = sample::attestation_with_nar(7, Hash::of(b"other"));
    let (log, cp, mut map) = lying_map(&honest, &other_bytes);
    let p = Bundle::BadMapRoot(bad_map(&log, &cp, &mut map, 7, Some(7)))
        .verify(&keys(&log))
        .unwrap();
    assert!(p.claim.contains("entry 7"), "{}", p.claim);

    // The map binds a path to an index beyond the tree.
    let mut longer = honest.clone();
    longer.push(sample::attestation(70));
    let (log, cp, mut map) = lying_map(&honest, &longer);
    let p = Bundle::BadMapRoot(bad_map(&log, &cp, &mut map, 70, None))
        .verify(&keys(&log))
        .unwrap();
    assert!(p.claim.contains("beyond"), "{}", p.claim);

    // An honest log's map and entries are consistent: nothing is proven.
    let (log, cp, mut map) = lying_map(&honest, &honest);
    for (path, entry) in [(3, Some(3)), (3, Some(4)), (70, None)] {
        assert!(matches!(
            Bundle::BadMapRoot(bad_map(&log, &cp, &mut map, path, entry)).verify(&keys(&log)),
            Err(EvidenceError::NotProven(_))
        ));
    }
    // The proof is a few kilobytes, whatever the log's size.
    let json = serde_json::to_string(&BundleFile::new(Bundle::BadMapRoot(bad_map(
        &log,
        &cp,
        &mut map,
        3,
        Some(3),
    ))))
    .unwrap();
    assert!(json.len() < 8192, "{}", json.len());
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
fn query_bundles_are_decided_under_the_verifiers_policy() {
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
    let bundle = QueryBundle {
        path,
        policy: "1-of-3".parse().unwrap(),
        logs: entries.clone(),
        verdict: Verdict::Unknown {
            reason: "whatever the bundle says".into(),
        },
    };
    // The bundle's own policy and verdict play no part.
    let strict = TrustPolicy::of_keys(&keys, Policy::default()).unwrap();
    let decided = roundtrip(Bundle::Query(bundle.clone()));
    let Bundle::Query(q) = &decided.bundle else {
        panic!()
    };
    assert_eq!(q.decide(&strict, &Uncached, 0).verdict.status(), "disputed");
    let tolerant = TrustPolicy::of_keys(&keys, "2-of-3,dissent=1".parse().unwrap()).unwrap();
    assert_eq!(
        q.decide(&tolerant, &Uncached, 0).verdict.status(),
        "trusted"
    );
    // Hiding the dissenter as "unavailable" leaves two verified supporters: the verifier's
    // quorum of two is met, and the hidden log shows as missing, not as support.
    let mut hidden = bundle.clone();
    hidden.logs[2] = QueryLog {
        origin: hidden.logs[2].origin.clone(),
        answer: None,
        unavailable: Some("down".into()),
    };
    let d = hidden.decide(&strict, &Uncached, 0);
    assert_eq!(d.verdict.status(), "trusted");
    assert!(matches!(
        d.votes[2].counted,
        crate::decision::Counted::Missing(_)
    ));
    // Under "all", the hidden log means no verdict of trust.
    let all = TrustPolicy::of_keys(&keys, "all".parse().unwrap()).unwrap();
    assert_ne!(
        hidden.decide(&all, &Uncached, 0).verdict.status(),
        "trusted"
    );
    // A query bundle proves nothing by itself.
    assert!(Bundle::Query(bundle).verify(&keys).is_err());
}

#[test]
fn version_is_checked() {
    let mut log = TestLog::new("v.example/log", 6);
    log.push(&sample::attestation(1));
    let checkpoint = log.checkpoint();
    let mut file = BundleFile::new(Bundle::Fork(Fork {
        origin: log.key.name().clone(),
        a: checkpoint.clone(),
        b: checkpoint,
        at: 1,
        path_a: Vec::new(),
        path_b: Vec::new(),
    }));
    file.version = "tally-bundle/v0".into();
    assert!(matches!(
        file.verify(&[log.vkey()]),
        Err(EvidenceError::Version(_))
    ));
}
