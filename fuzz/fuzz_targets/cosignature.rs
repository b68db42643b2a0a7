//! Cosignature lines, as a witness answers add-checkpoint, checked against a note.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tally_core::cosignature::{self, Cosigner};
use tally_core::{KeyName, Note, SigningKey};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let log = SigningKey::from_seed(KeyName::new("fuzz.example/log").unwrap(), [1; 32]);
    let witness = Cosigner::new(SigningKey::from_seed(
        KeyName::new("fuzz.example/w").unwrap(),
        [2; 32],
    ));
    let note = Note::sign("fuzz.example/log\n1\nAAAA\n", &log).unwrap();
    // Random lines are never taken for the witness's cosignature.
    assert!(cosignature::valid_lines(&note, text, &witness.verifier()).is_empty());
    let _ = tally_core::note::NoteSignature::parse_line(text);
});
