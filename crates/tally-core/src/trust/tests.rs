use super::*;
use crate::cosignature::Cosigner;
use crate::keys::SigningKey;

fn log_key(n: u8) -> SigningKey {
    SigningKey::from_seed(
        KeyName::new(&format!("builder{n}.example.org/tally")).unwrap(),
        [n; 32],
    )
}

fn witness(n: u8) -> Cosigner {
    Cosigner::new(SigningKey::from_seed(
        KeyName::new(&format!("witness{n}.example")).unwrap(),
        [100 + n; 32],
    ))
}

fn logs(n: u8) -> String {
    (1..=n)
        .map(|i| format!("log {}\n", log_key(i).verifying_key().to_note_vkey()))
        .collect()
}

fn parse(text: &str) -> Result<TrustPolicy, TrustPolicyError> {
    TrustPolicy::parse(text.as_bytes())
}

fn refused(text: &str, line: usize, needle: &str) {
    let err = parse(text).unwrap_err();
    assert_eq!(err.line, line, "{err}");
    assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
}

#[test]
fn a_full_policy_parses() {
    let text = format!(
        "# three builders\n{}\
         \twitness  w1 {} https://w1.example/\n\
         witness w2 {}\n\
         witness w3 {}\n\
         group two 2 w1 w2 w3\n\
         group any-of any two\n\
         quorum any-of\n\
         attest 2-of-3,dissent=1\n\
         mirror builder2.example.org/tally https://mirror.example/b2\n",
        logs(3),
        witness(1).verifier().to_vkey(),
        witness(2).verifier().to_vkey(),
        witness(3).verifier().to_vkey(),
    );
    let p = parse(&text).unwrap();
    assert_eq!(p.logs().len(), 3);
    assert_eq!(p.logs()[1].urls, ["https://mirror.example/b2"]);
    assert_eq!(p.witnesses().len(), 3);
    assert_eq!(p.witnesses()[0].url.as_deref(), Some("https://w1.example/"));
    assert_eq!(p.attest().to_string(), "2-of-3,dissent=1");
    assert_eq!(p.quorum_name(), "any-of");
    assert!(p.requires_witnesses());
    assert_eq!(
        p.to_string(),
        "3 logs, attest 2-of-3,dissent=1, witness quorum any-of"
    );
}

#[test]
fn quorum_none_and_the_default_attestation_quorum() {
    let p = parse(&format!("{}quorum none\n", logs(3))).unwrap();
    assert!(!p.requires_witnesses());
    assert_eq!(p.attest(), &Policy::default());
    let w = p.witnessed(&crate::Note::sign("x\n", &log_key(1)).unwrap());
    assert!(p.quorum_met(&w, 0));
}

#[test]
fn the_loader_names_the_line_of_each_problem() {
    let l1 = log_key(1).verifying_key();
    // The same key twice: under the same name, and as a witness under another name.
    refused(
        &format!(
            "log {}\nlog {}\nquorum none\n",
            l1.to_note_vkey(),
            l1.to_note_vkey()
        ),
        2,
        "same public key as line 1",
    );
    let same_as_witness = Cosigner::new(log_key(1)).verifier().to_vkey();
    refused(
        &format!("{}witness w {same_as_witness}\nquorum none\n", logs(1)),
        2,
        "same public key as line 1",
    );
    // Another name for the same key is the same key.
    let renamed = SigningKey::from_seed(KeyName::new("other.example/log").unwrap(), [1; 32]);
    refused(
        &format!(
            "{}log {}\nquorum none\n",
            logs(1),
            renamed.verifying_key().to_note_vkey()
        ),
        2,
        "same public key",
    );
    // Unknown names: a group member, the quorum, a mirror's origin, a required log.
    refused(
        &format!("{}group g any nobody\nquorum none\n", logs(1)),
        2,
        "\"nobody\" is not defined",
    );
    refused(&format!("{}quorum nobody\n", logs(1)), 2, "not defined");
    refused(
        &format!(
            "{}quorum none\nmirror nobody.example/log http://x\n",
            logs(1)
        ),
        3,
        "not the origin of a log",
    );
    refused(
        &format!(
            "{}quorum none\nattest majority,require=nobody.example/log\n",
            logs(3)
        ),
        5,
        "requires nobody.example/log",
    );
    // M that is not the number of logs.
    refused(
        &format!("{}quorum none\nattest 2-of-4\n", logs(3)),
        5,
        "counts 4 logs, but 3 are followed",
    );
    // A dissent that lets two candidates both reach the quorum.
    refused(
        &format!("{}quorum none\nattest 2-of-4,dissent=2\n", logs(4)),
        6,
        "two different NARs",
    );
    // A witness key where a log key belongs, and the other way round.
    refused(
        &format!("log {}\nquorum none\n", witness(1).verifier().to_vkey()),
        1,
        "type 0x04, expected 0x01",
    );
    refused(
        &format!("{}witness w {}\nquorum none\n", logs(1), l1.to_note_vkey()),
        2,
        "type 0x01, expected 0x04",
    );
    // Grammar.
    refused(
        &format!("{}quorum none\nquorum none\n", logs(1)),
        3,
        "second quorum",
    );
    refused(&logs(1), 0, "no quorum line");
    refused("quorum none\n", 0, "no log lines");
    refused(&format!("{}frobnicate x\n", logs(1)), 2, "unknown keyword");
    refused(
        &format!("{}quorum none\nmax-age 60\n", logs(1)),
        3,
        "quorum none",
    );
    refused(
        &format!("{}quorum none\r\n", logs(1)),
        2,
        "Windows line endings",
    );
    let w = witness(1).verifier().to_vkey();
    refused(
        &format!("{}witness none {w}\nquorum none\n", logs(1)),
        2,
        "predefined",
    );
    refused(
        &format!("{}witness a {w}\ngroup g 2 a\nquorum g\n", logs(1)),
        3,
        "not between 1 and 1",
    );
    refused(
        &format!("{}witness a {w}\ngroup g any a a\nquorum g\n", logs(1)),
        3,
        "listed twice",
    );
    refused(
        &format!("{}witness a {w}\ngroup g +1 a\nquorum g\n", logs(1)),
        3,
        "not all, any or a decimal",
    );
    refused(
        &format!("{}witness a {w}\ngroup a any a\nquorum a\n", logs(1)),
        3,
        "already defined",
    );
}

#[test]
fn witness_quorums_follow_the_groups() {
    let ws: Vec<Cosigner> = (1..=3).map(witness).collect();
    let text = format!(
        "{}{}group two 2 w1 w2 w3\nquorum two\n",
        logs(1),
        ws.iter()
            .enumerate()
            .map(|(i, w)| format!("witness w{} {}\n", i + 1, w.verifier().to_vkey()))
            .collect::<String>()
    );
    let p = parse(&text).unwrap();
    let mut note = crate::Note::sign("builder1.example.org/tally\n1\nAAAA\n", &log_key(1)).unwrap();
    assert!(!p.quorum_met(&p.witnessed(&note), 20));
    note.add_signature(ws[0].cosign(note.text(), 10));
    let one = p.witnessed(&note);
    assert_eq!(one.cosigned, [("w1".to_owned(), 10)]);
    assert!(!p.quorum_met(&one, 20));
    // A cosignature by a witness outside the policy does not count.
    let stranger = witness(9);
    note.add_signature(stranger.cosign(note.text(), 11));
    assert!(!p.quorum_met(&p.witnessed(&note), 20));
    note.add_signature(ws[2].cosign(note.text(), 12));
    let two = p.witnessed(&note);
    assert!(p.quorum_met(&two, 20));
    assert_eq!(two.cosigned.len(), 2);
}
