//! Evidence and query bundles, as `tally verify` reads them: never a panic, and a bundle of
//! arbitrary data never proves anything against these keys.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tally_core::decision::Uncached;
use tally_core::evidence::{Bundle, BundleFile};
use tally_core::policy::Policy;
use tally_core::trust::TrustPolicy;
use tally_core::{KeyName, SigningKey};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = serde_json::from_slice::<BundleFile>(data) else {
        return;
    };
    let keys: Vec<_> = (1u8..=3)
        .map(|i| {
            SigningKey::from_seed(KeyName::new(&format!("b{i}.fuzz/log")).unwrap(), [i; 32])
                .verifying_key()
        })
        .collect();
    // The fuzzer cannot sign with these keys, so nothing it makes proves misbehaviour.
    if let Ok(p) = file.verify(&keys) {
        assert!(p.misbehaving.is_empty(), "forged evidence verified: {}", p.claim);
    }
    if let Bundle::Query(q) = &file.bundle {
        let trust = TrustPolicy::of_keys(&keys, Policy::default()).unwrap();
        let d = q.decide(&trust, &Uncached, 0);
        assert_ne!(d.verdict.status(), "trusted", "a forged query bundle was trusted");
    }
});
