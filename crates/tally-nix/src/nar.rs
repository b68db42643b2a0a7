//! Writing NARs (Nix ARchives) of single files, the serialisation a NarHash is the SHA-256 of.
//!
//! A NAR is a sequence of strings, each a little-endian u64 length followed by the bytes,
//! zero-padded to a multiple of 8. `nix-store --dump` of a file holding `single-output\n`:
//!
//! ```text
//! "nix-archive-1" "(" "type" "regular" "contents" "single-output\n" ")"
//! ```
//!
//! An executable file has `"executable" ""` before `"contents"`. Directories and symlinks are
//! not needed by Tally, which only makes NARs for its demo and tests.

/// The NAR of a regular file with `contents`.
pub fn regular_file(contents: &[u8], executable: bool) -> Vec<u8> {
    let mut nar = Vec::with_capacity(contents.len() + 128);
    for s in ["nix-archive-1", "(", "type", "regular"] {
        string(&mut nar, s.as_bytes());
    }
    if executable {
        string(&mut nar, b"executable");
        string(&mut nar, b"");
    }
    string(&mut nar, b"contents");
    string(&mut nar, contents);
    string(&mut nar, b")");
    nar
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
    out.resize(out.len().next_multiple_of(8), 0);
}

#[cfg(test)]
mod tests {
    use tally_core::{Hash, NarHash};

    #[test]
    fn matches_what_nix_store_dump_printed() {
        // From Nix 2.8: `nix-store --dump` of a file holding "single-output\n" is 128 bytes
        // with NarHash sha256:101qj3f1x1p9r8anmwp9ckx8qnlzkb2nykxlpalxkljjgmvbxnx3.
        let nar = super::regular_file(b"single-output\n", false);
        assert_eq!(nar.len(), 128);
        assert_eq!(
            NarHash::from_digest(Hash::of(&nar)).to_string(),
            "sha256:101qj3f1x1p9r8anmwp9ckx8qnlzkb2nykxlpalxkljjgmvbxnx3"
        );
        let exe = super::regular_file(b"x", true);
        assert_eq!(exe.len(), nar.len() - 16 + 8 + 32);
    }
}
