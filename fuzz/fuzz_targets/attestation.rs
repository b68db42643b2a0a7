//! Attestation decoding: anything that decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tally_core::Attestation;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Attestation::decode(data) {
        assert_eq!(a.as_bytes(), data, "the encoding is canonical");
        let again = Attestation::decode(a.as_bytes()).expect("re-decodes");
        assert_eq!(again, a);
    }
});
