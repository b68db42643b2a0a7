//! Signed notes: a parsed note prints back to bytes that parse to the same note.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tally_core::Note;

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = Note::parse(data) {
        let again = Note::parse(&n.to_bytes()).expect("a printed note parses");
        assert_eq!(again, n);
    }
});
