//! Narinfo files from upstream caches: parsing never panics, and what parses prints back to
//! something that parses the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tally_nix::narinfo::NarInfo;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(info) = NarInfo::parse(text) {
        let again = NarInfo::parse(&info.to_string()).expect("a printed narinfo parses");
        assert_eq!(again, info);
        let _ = info.attestation();
    }
});
