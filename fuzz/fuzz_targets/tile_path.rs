//! tlog-tiles paths, and entry bundles.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tally_core::tiles::{TilePath, bundle_entries, push_entry};

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data)
        && let Ok(t) = TilePath::parse(path)
    {
        assert_eq!(TilePath::parse(&t.to_string()).expect("reparses"), t);
    }
    if let Ok(entries) = bundle_entries(data) {
        let mut again = Vec::new();
        for e in &entries {
            push_entry(&mut again, e);
        }
        assert_eq!(again, data, "bundles are canonical");
    }
});
