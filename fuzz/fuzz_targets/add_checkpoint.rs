//! tlog-witness add-checkpoint request bodies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tally_core::witness::AddCheckpoint;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = AddCheckpoint::parse(data) {
        let again = AddCheckpoint::parse(&r.to_body()).expect("a printed request parses");
        assert_eq!(again, r);
    }
});
