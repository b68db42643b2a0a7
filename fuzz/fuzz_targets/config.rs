//! The three services' TOML configs: parsing and validation never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = toml::from_str::<tally_log::Config>(text) {
        let _ = c.validate();
    }
    if let Ok(c) = toml::from_str::<tally_aggregator::Config>(text) {
        let _ = c.validate();
    }
    if let Ok(c) = toml::from_str::<tally_cache::Config>(text) {
        let _ = c.validate();
    }
});
