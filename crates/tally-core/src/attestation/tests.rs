use proptest::prelude::*;

use super::*;
use crate::store_path::StorePathHash;

fn path(hash: &str, name: &str) -> StorePath {
    StorePath::parse(&format!("/nix/store/{hash}-{name}")).unwrap()
}

pub(crate) fn example() -> Attestation {
    Attestation::new(AttestationFields {
        drv_path: Some(path("1ynz2k0vz8rqdgdwqjdxk2hqbgysrgjq", "hello-2.12.1.drv")),
        output_name: Some("out".into()),
        output_path: path("7wm0wahkpyx0dd44m7r9g8gp1jl4rl59", "hello-2.12.1"),
        nar_hash: "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
            .parse()
            .unwrap(),
        nar_size: 226560,
        // Given unsorted and with a duplicate: the constructor normalises.
        references: vec![
            path("9y8pmvk8gdwwznmkzxa6pwyah52xy3nk", "glibc-2.38-27"),
            path("7wm0wahkpyx0dd44m7r9g8gp1jl4rl59", "hello-2.12.1"),
            path("9y8pmvk8gdwwznmkzxa6pwyah52xy3nk", "glibc-2.38-27"),
        ],
    })
    .unwrap()
}

const EXAMPLE: &str = "tally/attestation/v1
drv /nix/store/1ynz2k0vz8rqdgdwqjdxk2hqbgysrgjq-hello-2.12.1.drv
output out
path /nix/store/7wm0wahkpyx0dd44m7r9g8gp1jl4rl59-hello-2.12.1
nar-hash sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73
nar-size 226560
ref 7wm0wahkpyx0dd44m7r9g8gp1jl4rl59-hello-2.12.1
ref 9y8pmvk8gdwwznmkzxa6pwyah52xy3nk-glibc-2.38-27
";

#[test]
fn example_matches_the_documented_encoding() {
    let a = example();
    assert_eq!(std::str::from_utf8(a.as_bytes()).unwrap(), EXAMPLE);
    assert_eq!(Attestation::decode(EXAMPLE.as_bytes()).unwrap(), a);
}

#[test]
fn unknown_deriver_and_output_are_explicit() {
    let mut fields = example().fields().clone();
    fields.drv_path = None;
    fields.output_name = None;
    let a = Attestation::new(fields).unwrap();
    let text = std::str::from_utf8(a.as_bytes()).unwrap();
    assert!(
        text.contains("\ndrv <unknown>\noutput <unknown>\n"),
        "{text}"
    );
    assert_eq!(Attestation::decode(a.as_bytes()).unwrap(), a);
}

#[test]
fn json_round_trip() {
    let a = example();
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(serde_json::from_str::<Attestation>(&json).unwrap(), a);
    let err = serde_json::from_str::<Attestation>(&json.replace("nar_size", "narSize"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("narSize"), "{err}");
}

#[test]
fn rejects_non_canonical_spellings() {
    let cases: &[(&str, &str)] = &[
        // Each replaces one piece of the example with a non-canonical spelling.
        (
            "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        ("nar-size 226560", "nar-size 0226560"),
        ("nar-size 226560", "nar-size +226560"),
        ("nar-size 226560", "nar-size  226560"),
        ("output out", "output out "),
        ("output out\n", "output out\r\n"),
        ("tally/attestation/v1", "tally/attestation/v2"),
        (
            "ref 7wm0wahkpyx0dd44m7r9g8gp1jl4rl59-hello-2.12.1\nref 9y8pmvk8gdwwznmkzxa6pwyah52xy3nk-glibc-2.38-27\n",
            "ref 9y8pmvk8gdwwznmkzxa6pwyah52xy3nk-glibc-2.38-27\nref 7wm0wahkpyx0dd44m7r9g8gp1jl4rl59-hello-2.12.1\n",
        ),
        (
            "ref 9y8pmvk8gdwwznmkzxa6pwyah52xy3nk-glibc-2.38-27\n",
            "ref 9y8pmvk8gdwwznmkzxa6pwyah52xy3nk-glibc-2.38-27\nref 9y8pmvk8gdwwznmkzxa6pwyah52xy3nk-glibc-2.38-27\n",
        ),
        ("ref 7wm0", "ref /nix/store/7wm0"),
        ("glibc-2.38-27\n", "glibc-2.38-27"),
        ("glibc-2.38-27\n", "glibc-2.38-27\n\n"),
        (
            "drv /nix/store/1ynz2k0vz8rqdgdwqjdxk2hqbgysrgjq-hello-2.12.1.drv\n",
            "",
        ),
    ];
    for (from, to) in cases {
        assert!(EXAMPLE.contains(from), "{from}");
        let bad = EXAMPLE.replacen(from, to, 1);
        let err = Attestation::decode(bad.as_bytes());
        assert!(err.is_err(), "accepted {bad:?}");
    }
}

#[test]
fn errors_name_the_line() {
    let bad = EXAMPLE.replace("nar-size 226560", "nar-size 0226560");
    let err = Attestation::decode(bad.as_bytes()).unwrap_err();
    assert_eq!(
        err,
        AttestationError::NotCanonical {
            line: 6,
            expected: "nar-size 226560".into(),
            found: "nar-size 0226560".into()
        }
    );
    let bad = EXAMPLE.replace("path /nix/store/7wm0", "path /nix/store/7wme");
    let err = Attestation::decode(bad.as_bytes()).unwrap_err();
    assert!(
        matches!(err, AttestationError::StorePath { line: 4, .. }),
        "{err}"
    );
}

#[test]
fn rejects_invalid_fields() {
    let mut f = example().fields().clone();
    f.drv_path = Some(path("1ynz2k0vz8rqdgdwqjdxk2hqbgysrgjq", "hello"));
    assert!(matches!(
        Attestation::new(f),
        Err(AttestationError::NotDerivation(_))
    ));
    let mut f = example().fields().clone();
    f.output_name = Some("<unknown>".into());
    assert!(matches!(
        Attestation::new(f),
        Err(AttestationError::OutputName { .. })
    ));
    let mut f = example().fields().clone();
    f.references = (0..2000u32)
        .map(|i| {
            let mut h = [0u8; 20];
            h[..4].copy_from_slice(&i.to_be_bytes());
            StorePath::from_basename(&format!(
                "{}-{}",
                StorePathHash::from_bytes(h),
                "x".repeat(20)
            ))
            .unwrap()
        })
        .collect();
    assert!(matches!(
        Attestation::new(f),
        Err(AttestationError::TooLarge(_))
    ));
}

pub(crate) fn arb_store_path() -> impl Strategy<Value = StorePath> {
    (any::<[u8; 20]>(), "[a-zA-Z0-9+_?=][a-zA-Z0-9+._?=-]{0,30}").prop_map(|(h, name)| {
        StorePath::from_basename(&format!("{}-{name}", StorePathHash::from_bytes(h))).unwrap()
    })
}

pub(crate) fn arb_attestation() -> impl Strategy<Value = Attestation> {
    (
        proptest::option::of(arb_store_path()),
        proptest::option::of("[a-z]{1,8}"),
        arb_store_path(),
        any::<[u8; 32]>(),
        any::<u64>(),
        proptest::collection::vec(arb_store_path(), 0..6),
    )
        .prop_map(|(drv, output, path, hash, size, refs)| {
            let drv = drv.map(|d| {
                StorePath::from_basename(&format!("{}-{}.drv", d.hash(), d.name())).unwrap()
            });
            Attestation::new(AttestationFields {
                drv_path: drv,
                output_name: output,
                output_path: path,
                nar_hash: NarHash::from_digest(crate::Hash(hash)),
                nar_size: size,
                references: refs,
            })
            .unwrap()
        })
}

/// One way to damage an encoding.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, byte: u8 },
    Delete { at: usize },
    Truncate { at: usize },
    SwapLines { a: usize, b: usize },
    DuplicateLine { at: usize },
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        Just(b' '),
        Just(b'\n'),
        Just(b'\r'),
        Just(b'0'),
        Just(b'-'),
        Just(b'/'),
        Just(b'e'),
        any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), interesting.clone()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (any::<usize>(), interesting).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Delete { at }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        any::<usize>().prop_map(|at| Mutation::DuplicateLine { at }),
    ]
}

fn apply(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut v = bytes.to_vec();
    let n = v.len();
    match *m {
        Mutation::Flip { at, bit } => v[at % n] ^= 1 << bit,
        Mutation::Set { at, byte } => v[at % n] = byte,
        Mutation::Insert { at, byte } => v.insert(at % (n + 1), byte),
        Mutation::Delete { at } => {
            v.remove(at % n);
        }
        Mutation::Truncate { at } => v.truncate(at % n),
        Mutation::SwapLines { a, b } => {
            let mut lines: Vec<&[u8]> = bytes.split_inclusive(|&c| c == b'\n').collect();
            let l = lines.len();
            lines.swap(a % l, b % l);
            v = lines.concat();
        }
        Mutation::DuplicateLine { at } => {
            let mut lines: Vec<&[u8]> = bytes.split_inclusive(|&c| c == b'\n').collect();
            let l = lines[at % lines.len()];
            lines.insert(at % lines.len(), l);
            v = lines.concat();
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_decode_encode_is_identity(a in arb_attestation()) {
        let decoded = Attestation::decode(a.as_bytes()).unwrap();
        let reencoded = Attestation::new(decoded.fields().clone()).unwrap();
        prop_assert_eq!(reencoded.as_bytes(), a.as_bytes());
        prop_assert_eq!(decoded, a);
    }

    #[test]
    fn whatever_decodes_is_canonical(
        a in arb_attestation(),
        mutations in proptest::collection::vec(arb_mutation(), 1..4),
    ) {
        let mut bytes = a.as_bytes().to_vec();
        for m in &mutations {
            if bytes.is_empty() { break; }
            bytes = apply(&bytes, m);
        }
        if let Ok(decoded) = Attestation::decode(&bytes) {
            // What decodes is exactly what its fields encode to.
            let reencoded = Attestation::new(decoded.fields().clone()).unwrap();
            prop_assert_eq!(reencoded.as_bytes(), &bytes[..]);
        }
    }
}
