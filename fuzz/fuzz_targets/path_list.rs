//! Closure lists and CycloneDX SBOMs, as `tally report` and report uploads read them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tally_core::report::PathList;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PathList::closure(text);
        let _ = PathList::cyclonedx(text);
        let _ = PathList::parse(text);
    }
});
