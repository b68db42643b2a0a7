//! Realistic sample attestations, for demos, benchmarks and load tests.
//!
//! Deterministic in the index: sample `i` is always the same attestation, with a store path
//! named like a nixpkgs package and 0 to 7 references drawn from a pool of common
//! dependencies (glibc, zlib, openssl…), as real closures are. The average encoding is about
//! 430 bytes.

use crate::attestation::{Attestation, AttestationFields};
use crate::hash::Hash;
use crate::nar_hash::NarHash;
use crate::store_path::{StorePath, StorePathHash};

const PACKAGES: &[&str] = &[
    "hello",
    "glibc",
    "gcc",
    "bash",
    "zlib",
    "openssl",
    "python3",
    "perl",
    "coreutils",
    "libffi",
    "ncurses",
    "readline",
    "xz",
    "bzip2",
    "curl",
    "systemd",
    "libxml2",
    "expat",
    "gnutls",
    "nettle",
    "sqlite",
    "git",
    "nix",
    "boost",
    "icu",
    "libpng",
    "freetype",
    "fontconfig",
    "harfbuzz",
    "pango",
    "cairo",
    "gtk3",
    "qtbase",
    "rustc",
    "cargo",
    "go",
    "nodejs",
    "ruby",
];

const DEPENDENCIES: &[&str] = &[
    "glibc-2.39-52",
    "gcc-13.3.0-lib",
    "zlib-1.3.1",
    "openssl-3.0.14",
    "bash-5.2p32",
    "ncurses-6.4.20221231",
    "libffi-3.4.6",
    "xz-5.6.2",
    "bzip2-1.0.8",
    "readline-8.2p13",
    "sqlite-3.46.1",
    "libxml2-2.13.3",
    "expat-2.6.3",
    "pcre2-10.44",
    "util-linux-2.39.4-lib",
];

fn store_path(seed: &[u8], name: &str) -> StorePath {
    let h = Hash::of(seed);
    let mut hash = [0u8; 20];
    hash.copy_from_slice(&h.0[..20]);
    StorePath::from_basename(&format!("{}-{name}", StorePathHash::from_bytes(hash)))
        .unwrap_or_else(|e| unreachable!("sample names are valid: {e}"))
}

/// The package name and version of sample `i`.
fn name(i: u64) -> String {
    let pkg = PACKAGES[(i % PACKAGES.len() as u64) as usize];
    format!("{pkg}-{}.{}.{}", 1 + i % 17, i / 17 % 23, i % 1009)
}

/// The output path of sample `i`.
pub fn output_path(i: u64) -> StorePath {
    store_path(format!("tally-sample-out-{i}").as_bytes(), &name(i))
}

/// Sample attestation `i`, as an honest builder reports it.
pub fn attestation(i: u64) -> Attestation {
    attestation_with_nar(i, Hash::of(format!("tally-sample-nar-{i}").as_bytes()))
}

/// Sample attestation `i` with another NAR hash: what a builder that did not reproduce the
/// output (or a compromised one) reports.
pub fn attestation_with_nar(i: u64, nar: Hash) -> Attestation {
    let name = name(i);
    let out = output_path(i);
    // A small, skewed reference count: most paths have a few, some many.
    let mix = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    let mut references: Vec<StorePath> = (0..mix % 7)
        .map(|r| {
            let d = (mix >> (4 * r)) as usize % DEPENDENCIES.len();
            store_path(format!("tally-sample-dep-{d}").as_bytes(), DEPENDENCIES[d])
        })
        .collect();
    if i.is_multiple_of(2) {
        references.push(out.clone());
    }
    let fields = AttestationFields {
        drv_path: Some(store_path(
            format!("tally-sample-drv-{i}").as_bytes(),
            &format!("{name}.drv"),
        )),
        output_name: Some("out".into()),
        output_path: out,
        nar_hash: NarHash::from_digest(nar),
        nar_size: 4096 + (mix % 50_000_000),
        references,
    };
    Attestation::new(fields).unwrap_or_else(|e| unreachable!("samples are valid: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_are_deterministic_and_distinct() {
        assert_eq!(super::attestation(5), super::attestation(5));
        assert_ne!(super::output_path(5), super::output_path(6));
        let avg = (0..1000)
            .map(|i| super::attestation(i).as_bytes().len())
            .sum::<usize>()
            / 1000;
        assert!((300..600).contains(&avg), "average sample is {avg} bytes");
    }
}
