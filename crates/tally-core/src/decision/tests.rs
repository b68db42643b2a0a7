use super::*;
use crate::cosignature::Cosigner;
use crate::hash::Hash;
use crate::keys::{SigningKey, VerifyingKey};
use crate::policy::Policy;
use crate::sample;
use crate::test_log::TestLog;

/// "Now" for the tests: the cosignatures below are made at 1,700,000,000.
const NOW: u64 = 1_700_000_100;

/// Three logs; the first two attest sample 5 honestly, the third a different NAR.
fn federation() -> (Vec<TestLog>, StorePathHash) {
    let mut logs: Vec<TestLog> = (0..3)
        .map(|i| TestLog::new(&format!("d{i}.example/log"), 30 + i as u8))
        .collect();
    logs[0].push(&sample::attestation(5));
    logs[1].push(&sample::attestation(5));
    logs[2].push(&sample::attestation_with_nar(5, Hash::of(b"dissent")));
    for l in &mut logs {
        l.push(&sample::attestation(6));
    }
    (logs, sample::output_path(5).hash())
}

fn policy(logs: &[TestLog], extra: &str) -> TrustPolicy {
    let mut text: String = logs
        .iter()
        .map(|l| format!("log {}\n", l.vkey().to_note_vkey()))
        .collect();
    text.push_str(extra);
    TrustPolicy::parse(text.as_bytes()).unwrap()
}

fn ballot(log: &mut TestLog, path: &StorePathHash) -> Ballot {
    Ballot {
        origin: log.key.name().to_string(),
        answer: Ok(log.answer(path)),
    }
}

fn decide_all(trust: &TrustPolicy, path: &StorePathHash, ballots: Vec<Ballot>) -> Decision {
    decide(trust, path, ballots, &Uncached, NOW)
}

#[test]
fn genuine_answers_decide_under_the_consumers_policy() {
    let (mut logs, path) = federation();
    let ballots: Vec<Ballot> = logs.iter_mut().map(|l| ballot(l, &path)).collect();
    let strict = policy(&logs, "quorum none\n");
    let d = decide_all(&strict, &path, ballots.clone());
    assert_eq!(d.verdict.status(), "disputed");
    assert!(d.votes.iter().all(|v| v.counted.verified()));
    let tolerant = policy(&logs, "quorum none\nattest 2-of-3,dissent=1\n");
    let d = decide_all(&tolerant, &path, ballots);
    let Verdict::Trusted { agreed, .. } = &d.verdict else {
        panic!("{d:?}")
    };
    assert_eq!(agreed.origins.len(), 2);
    assert_eq!(agreed.output_path, sample::output_path(5));
}

#[test]
fn a_repeated_answer_counts_once() {
    let (mut logs, path) = federation();
    let trust = policy(&logs, "quorum none\nattest 2-of-3\n");
    let one = ballot(&mut logs[0], &path);
    let d = decide_all(&trust, &path, vec![one.clone(), one.clone(), one]);
    assert_eq!(d.verdict.status(), "unknown", "{d:?}");
    assert_eq!(d.ignored.len(), 2);
    assert!(d.ignored[0].why.contains("second answer"));
}

#[test]
fn answers_from_outside_the_policy_do_not_count() {
    let (mut logs, path) = federation();
    let trust = policy(&logs[..2], "quorum none\nattest 1-of-2\n");
    // A log the consumer does not list, even one whose answer verifies with its own key.
    let mut stranger = TestLog::new("stranger.example/log", 99);
    stranger.push(&sample::attestation(5));
    let d = decide_all(&trust, &path, vec![ballot(&mut stranger, &path)]);
    assert_eq!(d.verdict.status(), "unknown");
    assert_eq!(d.ignored[0].origin, "stranger.example/log");
    // An answer signed by another key but claiming a listed origin is rejected.
    let mut impostor = TestLog::new("d0.example/log", 98);
    impostor.push(&sample::attestation(5));
    let d = decide_all(&trust, &path, vec![ballot(&mut impostor, &path)]);
    assert_eq!(d.verdict.status(), "unknown");
    assert!(
        matches!(&d.votes[0].counted, Counted::Rejected(why) if why.contains("key ID")),
        "{:?}",
        d.votes[0]
    );
    // And the genuine answer, delivered after the forged one, still counts.
    let d = decide_all(
        &trust,
        &path,
        vec![ballot(&mut impostor, &path), ballot(&mut logs[0], &path)],
    );
    assert_eq!(d.verdict.status(), "trusted");
}

#[test]
fn a_swapped_leaf_or_another_paths_answer_is_rejected() {
    let (mut logs, path) = federation();
    let trust = policy(&logs, "quorum none\nattest 1-of-3\n");
    // The entry replaced by the dissenter's, with the honest proofs.
    let mut swapped = ballot(&mut logs[0], &path);
    let theirs = logs[2].answer(&path).entry.unwrap();
    swapped
        .answer
        .as_mut()
        .unwrap()
        .entry
        .as_mut()
        .unwrap()
        .data = theirs.data;
    let d = decide_all(&trust, &path, vec![swapped]);
    assert!(matches!(d.votes[0].counted, Counted::Rejected(_)), "{d:?}");
    assert_eq!(d.verdict.status(), "unknown");
    // A genuine answer about another path does not answer this one.
    let other = sample::output_path(6).hash();
    let mut wrong = ballot(&mut logs[0], &other);
    wrong.answer.as_mut().unwrap().checkpoint = logs[0].checkpoint();
    let d = decide_all(&trust, &path, vec![wrong]);
    assert!(matches!(d.votes[0].counted, Counted::Rejected(_)), "{d:?}");
}

#[test]
fn an_absent_vote_is_a_proof_not_a_claim() {
    let (mut logs, _) = federation();
    let trust = policy(&logs, "quorum none\n");
    let nobody = sample::output_path(77).hash();
    let d = decide_all(&trust, &nobody, vec![ballot(&mut logs[0], &nobody)]);
    assert!(matches!(d.votes[0].counted, Counted::Absent { .. }));
    assert!(matches!(d.votes[1].counted, Counted::Missing(_)));
    // Dropping the map proof's terminal leaf to fake absence does not verify.
    let (mut logs, path) = federation();
    let mut faked = ballot(&mut logs[0], &path);
    let a = faked.answer.as_mut().unwrap();
    a.map_proof = logs[0].answer(&nobody).map_proof;
    a.entry = None;
    a.inclusion_proof = None;
    let d = decide_all(&trust, &path, vec![faked]);
    assert!(matches!(d.votes[0].counted, Counted::Rejected(_)), "{d:?}");
}

#[test]
fn checkpoints_without_the_witness_quorum_do_not_count() {
    let (mut logs, path) = federation();
    let w: Vec<Cosigner> = (0..2)
        .map(|i| {
            Cosigner::new(SigningKey::from_seed(
                crate::KeyName::new(&format!("w{i}.example")).unwrap(),
                [70 + i; 32],
            ))
        })
        .collect();
    let trust = policy(
        &logs,
        &format!(
            "witness a {}\nwitness b {}\ngroup both all a b\nquorum both\nattest 2-of-3,dissent=1\n",
            w[0].verifier().to_vkey(),
            w[1].verifier().to_vkey()
        ),
    );
    let bare: Vec<Ballot> = logs.iter_mut().map(|l| ballot(l, &path)).collect();
    let d = decide_all(&trust, &path, bare.clone());
    assert_eq!(d.verdict.status(), "unknown");
    assert!(
        matches!(&d.votes[0].counted, Counted::Rejected(why) if why.contains("witness quorum both")),
        "{:?}",
        d.votes[0]
    );
    let cosign = |b: &Ballot, by: &[&Cosigner]| {
        let mut b = b.clone();
        let a = b.answer.as_mut().unwrap();
        let mut note = crate::Note::parse(a.checkpoint.as_bytes()).unwrap();
        for w in by {
            note.add_signature(w.cosign(note.text(), NOW - 100));
        }
        a.checkpoint = String::from_utf8(note.to_bytes()).unwrap();
        b
    };
    // One witness of two is not the quorum; both are.
    let half: Vec<Ballot> = bare.iter().map(|b| cosign(b, &[&w[0]])).collect();
    assert_eq!(decide_all(&trust, &path, half).verdict.status(), "unknown");
    let full: Vec<Ballot> = bare.iter().map(|b| cosign(b, &[&w[0], &w[1]])).collect();
    let d = decide_all(&trust, &path, full);
    assert_eq!(d.verdict.status(), "trusted", "{d:?}");
    let Counted::Present { cosigned, .. } = &d.votes[0].counted else {
        panic!()
    };
    assert_eq!(cosigned.len(), 2);
}

#[test]
fn of_keys_makes_a_policy_without_witnesses() {
    let (logs, _) = federation();
    let keys: Vec<VerifyingKey> = logs.iter().map(TestLog::vkey).collect();
    let trust = TrustPolicy::of_keys(&keys, Policy::default()).unwrap();
    assert_eq!(trust.logs().len(), 3);
    assert!(!trust.requires_witnesses());
}

#[test]
fn old_cosignatures_do_not_count_under_max_age() {
    let (mut logs, path) = federation();
    let w = Cosigner::new(SigningKey::from_seed(
        crate::KeyName::new("w.example").unwrap(),
        [90; 32],
    ));
    let trust = policy(
        &logs,
        &format!(
            "witness w {}\nquorum w\nmax-age 3600\nattest 2-of-3,dissent=1\n",
            w.verifier().to_vkey()
        ),
    );
    let cosigned_at = |b: &Ballot, t: u64| {
        let mut b = b.clone();
        let a = b.answer.as_mut().unwrap();
        let mut note = crate::Note::parse(a.checkpoint.as_bytes()).unwrap();
        note.add_signature(w.cosign(note.text(), t));
        a.checkpoint = String::from_utf8(note.to_bytes()).unwrap();
        b
    };
    let bare: Vec<Ballot> = logs.iter_mut().map(|l| ballot(l, &path)).collect();
    let fresh: Vec<Ballot> = bare.iter().map(|b| cosigned_at(b, NOW - 60)).collect();
    assert_eq!(decide_all(&trust, &path, fresh).verdict.status(), "trusted");
    let stale: Vec<Ballot> = bare.iter().map(|b| cosigned_at(b, NOW - 7200)).collect();
    let d = decide_all(&trust, &path, stale);
    assert_eq!(d.verdict.status(), "unknown");
    assert!(
        matches!(&d.votes[0].counted, Counted::Rejected(why) if why.contains("within 3600s")),
        "{:?}",
        d.votes[0]
    ); // A witness dating its cosignature far ahead cannot keep it fresh; a little clock
    // skew is fine.
    let ahead: Vec<Ballot> = bare
        .iter()
        .map(|b| cosigned_at(b, NOW + 30 * 24 * 3600))
        .collect();
    assert_eq!(decide_all(&trust, &path, ahead).verdict.status(), "unknown");
    let skewed: Vec<Ballot> = bare.iter().map(|b| cosigned_at(b, NOW + 120)).collect();
    assert_eq!(
        decide_all(&trust, &path, skewed).verdict.status(),
        "trusted"
    );
}
