use super::*;
use crate::note::NoteSignature;

#[derive(serde::Deserialize)]
struct Vector {
    body: String,
    ed25519_seed_hex: String,
    key_hash_hex: String,
    public_key_b64: String,
    signed_note: String,
    verifier_key: String,
}

fn vector() -> Vector {
    #[derive(serde::Deserialize)]
    struct File {
        checkpoint: Vector,
    }
    let path = crate::test_vectors::path("rfc6962-c2sp.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str::<File>(&text).unwrap().checkpoint
}

fn vector_key(v: &Vector) -> SigningKey {
    let seed: [u8; 32] = hex::decode(&v.ed25519_seed_hex)
        .unwrap()
        .try_into()
        .unwrap();
    let origin = v.body.lines().next().unwrap();
    SigningKey::from_seed(KeyName::new(origin).unwrap(), seed)
}

#[test]
fn reproduces_the_vector_note_byte_for_byte() {
    let v = vector();
    let key = vector_key(&v);
    let note = Note::sign(&v.body, &key).unwrap();
    assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), v.signed_note);

    let public = key.verifying_key();
    assert_eq!(public.to_note_vkey(), v.verifier_key);
    assert_eq!(format!("{:08x}", public.note_key_id()), v.key_hash_hex);
    assert!(public.to_nix_public().ends_with(&v.public_key_b64));
    Note::parse(v.signed_note.as_bytes())
        .unwrap()
        .verify(&VerifyingKey::from_note_vkey(&v.verifier_key).unwrap())
        .unwrap();

    // The vector is a plain C2SP checkpoint: a Tally checkpoint needs its map line.
    assert_eq!(
        SignedCheckpoint::open(v.signed_note.as_bytes(), &public).unwrap_err(),
        CheckpointError::LineCount(3)
    );
}

fn sample() -> (SigningKey, SignedCheckpoint) {
    let key = vector_key(&vector());
    let checkpoint = Checkpoint {
        origin: key.name().clone(),
        tree: TreeHead {
            size: 70,
            root: Hash::of(b"root"),
        },
        map_root: Hash::of(b"map"),
    };
    let signed = SignedCheckpoint::sign(checkpoint, &key).unwrap();
    (key, signed)
}

#[test]
fn round_trip() {
    let (key, signed) = sample();
    let bytes = signed.to_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with("tally.example/test-log\n70\n"), "{text}");
    assert!(text.contains(&format!(
        "\nmap {}\n\n— tally.example/test-log ",
        Hash::of(b"map")
    )));
    let opened = SignedCheckpoint::open(&bytes, &key.verifying_key()).unwrap();
    assert_eq!(opened, signed);
}

/// Re-signs edited checkpoint text with the right key, so only the edit can be the problem.
fn resigned(key: &SigningKey, edit: impl Fn(&str) -> String) -> Vec<u8> {
    let (_, signed) = sample();
    let text = edit(signed.note().text());
    let sig = NoteSignature {
        name: key.name().clone(),
        key_id: key.verifying_key().note_key_id(),
        signature: key.sign(text.as_bytes()).to_vec(),
    };
    format!("{text}\n{}", sig.to_line()).into_bytes()
}

#[test]
fn rejects_the_wrong_key() {
    let (key, signed) = sample();
    let impostor = SigningKey::from_seed(key.name().clone(), [7; 32]);
    let err = SignedCheckpoint::open(&signed.to_bytes(), &impostor.verifying_key()).unwrap_err();
    assert!(
        matches!(err, CheckpointError::Note(NoteError::OtherKey { .. })),
        "{err}"
    );
}

#[test]
fn rejects_the_wrong_origin() {
    let (key, _) = sample();
    let bytes = resigned(&key, |t| {
        t.replacen("tally.example/test-log", "other.example/log", 1)
    });
    let err = SignedCheckpoint::open(&bytes, &key.verifying_key()).unwrap_err();
    assert_eq!(
        err,
        CheckpointError::WrongOrigin {
            expected: "tally.example/test-log".into(),
            found: "other.example/log".into()
        }
    );
}

#[test]
fn rejects_no_signature() {
    let (key, signed) = sample();
    let unsigned = format!("{}\n", signed.note().text());
    let err = SignedCheckpoint::open(unsigned.as_bytes(), &key.verifying_key()).unwrap_err();
    assert_eq!(err, CheckpointError::Note(NoteError::NoSignatureLines));
    // Signed, but only by someone else.
    let other = SigningKey::from_seed(KeyName::new("someone.else").unwrap(), [9; 32]);
    let by_other = Note::sign(signed.note().text(), &other).unwrap().to_bytes();
    let err = SignedCheckpoint::open(&by_other, &key.verifying_key()).unwrap_err();
    assert!(
        matches!(err, CheckpointError::Note(NoteError::NotSignedBy(_))),
        "{err}"
    );
}

#[test]
fn rejects_a_size_with_leading_zeros() {
    let (key, _) = sample();
    let bytes = resigned(&key, |t| t.replacen("\n70\n", "\n070\n", 1));
    assert_eq!(
        SignedCheckpoint::open(&bytes, &key.verifying_key()).unwrap_err(),
        CheckpointError::Size("070".into())
    );
    let text = "o\n007\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nmap AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    assert_eq!(
        Checkpoint::from_text(text).unwrap_err(),
        CheckpointError::Size("007".into())
    );
    for size in ["", "+7", "-0", "7 ", "18446744073709551616"] {
        let text = text.replacen("007", size, 1);
        assert!(
            matches!(Checkpoint::from_text(&text), Err(CheckpointError::Size(_))),
            "{size:?}"
        );
    }
}

#[test]
fn rejects_a_missing_newline() {
    let (key, signed) = sample();
    let bytes = signed.to_bytes();
    // No final newline after the signature.
    let err = SignedCheckpoint::open(&bytes[..bytes.len() - 1], &key.verifying_key()).unwrap_err();
    assert_eq!(err, CheckpointError::Note(NoteError::NoSignatureLines));
    // No blank line between text and signature.
    let text = String::from_utf8(bytes).unwrap();
    let joined = text.replacen("\n\n—", "\n—", 1);
    let err = SignedCheckpoint::open(joined.as_bytes(), &key.verifying_key()).unwrap_err();
    assert_eq!(err, CheckpointError::Note(NoteError::NoSeparator));
    // The text's own final newline, as Checkpoint::from_text sees it.
    let body = signed.note().text();
    assert!(Checkpoint::from_text(&body[..body.len() - 1]).is_err());
}

#[test]
fn rejects_an_extra_newline() {
    let (key, signed) = sample();
    let text = String::from_utf8(signed.to_bytes()).unwrap();
    let doubled = text.replacen("\n\n—", "\n\n\n—", 1);
    let err = SignedCheckpoint::open(doubled.as_bytes(), &key.verifying_key()).unwrap_err();
    assert_eq!(err, CheckpointError::LineCount(5));
    let bytes = resigned(&key, |t| t.replacen("\n70\n", "\n\n70\n", 1));
    let err = SignedCheckpoint::open(&bytes, &key.verifying_key()).unwrap_err();
    assert_eq!(err, CheckpointError::LineCount(5));
    let trailing = format!("{text}\n");
    let err = SignedCheckpoint::open(trailing.as_bytes(), &key.verifying_key()).unwrap_err();
    assert!(matches!(err, CheckpointError::Note(_)), "{err}");
}

#[test]
fn rejects_control_characters() {
    let (key, _) = sample();
    for c in ['\r', '\t', '\0', '\u{1b}'] {
        let bytes = resigned(&key, |t| t.replacen("test-log", &format!("test{c}log"), 1));
        let err = SignedCheckpoint::open(&bytes, &key.verifying_key()).unwrap_err();
        assert_eq!(err, CheckpointError::Note(NoteError::ControlCharacter(c)));
    }
}

#[test]
fn rejects_bad_roots_and_extension_lines() {
    let good = sample().1.note().text().to_owned();
    let root = Hash::of(b"root").to_string();
    let short = good.replacen(&root, "AAAA", 1);
    assert!(matches!(
        Checkpoint::from_text(&short),
        Err(CheckpointError::Root(_))
    ));
    let no_map = good.replacen("\nmap ", "\nmop ", 1);
    assert!(matches!(
        Checkpoint::from_text(&no_map),
        Err(CheckpointError::MapRoot(_))
    ));
    let extra = format!("{good}extra\n");
    assert_eq!(
        Checkpoint::from_text(&extra),
        Err(CheckpointError::LineCount(5))
    );
}

#[test]
fn docs_formats_example() {
    // The example in docs/formats.md, signed with the test vectors' seed.
    let key = SigningKey::from_seed(
        KeyName::new("builder1.example.org/tally").unwrap(),
        [0x42; 32],
    );
    let checkpoint = Checkpoint {
        origin: key.name().clone(),
        tree: TreeHead {
            size: 1258,
            root: "xOYBm/7UupzlTep9mCVTnyoYkqM31WMKn4Wa0NIMnWk="
                .parse()
                .unwrap(),
        },
        map_root: "+KLXyHnmJ3JV6y1KO+/sXPkXOZ4nu/eynRA8r6iKl7c="
            .parse()
            .unwrap(),
    };
    let note = SignedCheckpoint::sign(checkpoint, &key).unwrap().to_bytes();
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/formats.md"
    ))
    .unwrap();
    let text = String::from_utf8(note).unwrap();
    assert!(docs.contains(&text), "docs/formats.md should show:\n{text}");
}
