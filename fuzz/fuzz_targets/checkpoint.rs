//! Checkpoints: parsing never panics, and a parsed checkpoint prints back to its text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tally_core::{Checkpoint, UnverifiedCheckpoint};

fuzz_target!(|data: &[u8]| {
    let _ = UnverifiedCheckpoint::parse(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(c) = Checkpoint::from_text(text)
    {
        assert_eq!(Checkpoint::from_text(&c.to_text()).expect("reparses"), c);
    }
});
