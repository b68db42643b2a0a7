//! Tally's Nix formats against what real Nix prints: nixbase32, NAR hashes, store paths and
//! key files. Needs Nix (Debian's nix-bin); see `tally_tests::nix`.

use std::fs;

use tally_core::{NarHash, StorePath, nixbase32};
use tally_tests::{nix, run_ok, tally};

#[test]
fn nixbase32_and_nar_hashes_match_nix() {
    if !nix::available("nixbase32_and_nar_hashes_match_nix") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");

    // nix-hash converts arbitrary hex to nixbase32: compare on varied digests.
    for seed in 0..24u8 {
        let digest: Vec<u8> = (0..32u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(seed.wrapping_mul(101)))
            .collect();
        let hex = digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let theirs = nix::output(nix::command("nix-hash", &cache).args([
            "--type",
            "sha256",
            "--to-base32",
            &hex,
        ]));
        assert_eq!(nixbase32::encode(&digest), theirs, "digest {hex}");
        assert_eq!(nixbase32::decode(&theirs, 32).unwrap(), digest);
    }

    // A real store path: its NAR hash in every spelling Nix prints.
    let file = dir.path().join("tally-nix-format-test.txt");
    fs::write(&file, format!("tally format test {}\n", std::process::id())).unwrap();
    let path = nix::output(nix::command("nix-store", &cache).arg("--add").arg(&file));
    let store_path = StorePath::parse(&path).unwrap();
    assert_eq!(store_path.to_string(), path);
    assert_eq!(store_path.name(), "tally-nix-format-test.txt");

    let nix32 = nix::output(nix::command("nix-store", &cache).args(["--query", "--hash", &path]));
    let hex = nix::output(nix::command("nix-hash", &cache).args(["--type", "sha256", &path]));
    let sri = nix::output(nix::command("nix", &cache).args(["hash", "path", &path]));
    let to_base32 = nix::output(nix::command("nix", &cache).args(["hash", "to-base32", &sri]));
    let a: NarHash = nix32.parse().unwrap();
    let b: NarHash = format!("sha256:{hex}").parse().unwrap();
    let c: NarHash = sri.parse().unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a.to_nix32(), nix32);
    assert_eq!(a.to_sri(), sri);
    assert_eq!(a.to_nix32(), format!("sha256:{to_base32}"));
}

#[test]
fn nix_generated_keys_load_and_print_identically() {
    if !nix::available("nix_generated_keys_load_and_print_identically") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (sk, pk) = (dir.path().join("sk"), dir.path().join("pk"));
    nix::output(
        nix::command("nix-store", &dir.path().join("cache"))
            .args(["--generate-binary-cache-key", "builder1.example.org/tally"])
            .args([&sk, &pk]),
    );
    let out = run_ok(
        tally()
            .args(["key", "public", "--secret-key-file"])
            .arg(&sk),
    );
    let nix_public = fs::read_to_string(&pk).unwrap();
    assert_eq!(
        out.lines().next(),
        Some(nix_public.as_str()),
        "the Nix public key line"
    );
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with("builder1.example.org/tally+")
    );

    // And tally's own keys are usable by Nix: sign a path with one.
    let ours = dir.path().join("ours.sk");
    run_ok(
        tally()
            .args(["keygen", "--name", "tally-made-1", "--secret-key-file"])
            .arg(&ours),
    );
    let file = dir.path().join("signed.txt");
    fs::write(&file, format!("sign me {}\n", std::process::id())).unwrap();
    let cache = dir.path().join("cache");
    let path = nix::output(nix::command("nix-store", &cache).arg("--add").arg(&file));
    nix::output(
        nix::command("nix", &cache)
            .args(["store", "sign", "--key-file"])
            .arg(&ours)
            .arg(&path),
    );
    let sigs = nix::output(nix::command("nix", &cache).args(["path-info", "--sigs", &path]));
    assert!(sigs.contains("tally-made-1:"), "{sigs}");
}
