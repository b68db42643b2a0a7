//! C2SP tlog-proofs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tally_core::tlog_proof::TlogProof;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(p) = TlogProof::parse(text)
    {
        assert_eq!(TlogProof::parse(&p.to_text()).expect("reparses"), p);
    }
});
