//! Trust policy files (C2SP tlog-policy with Tally's lines).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tally_core::trust::TrustPolicy;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = TrustPolicy::parse(data) {
        // A policy in hand is one a consumer can decide with.
        let _ = p.to_string();
        assert!(!p.logs().is_empty());
    }
});
