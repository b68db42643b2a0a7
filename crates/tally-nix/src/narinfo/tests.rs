//! Narinfo parsing, printing and signatures, against files and a key real Nix 2.8 wrote
//! (`nix copy --to file://…?secret-key=…`, `nix-store --generate-binary-cache-key`).

use tally_core::{KeyName, SigningKey, VerifyingKey};

use super::{NarInfo, NarInfoError};

const REFS: &str = include_str!("psr8z1hjvldg5gp45wb8cx0152wbp02i.narinfo");
const SINGLE: &str = include_str!("2yxrynmfrysg4jnwbdmngpv1zn9nwx74.narinfo");
const XZ_UNSIGNED: &str = include_str!("xz-unsigned.narinfo");
const NIX_KEY: &str = include_str!("tally-cache-1.pub");

fn nix_key() -> VerifyingKey {
    VerifyingKey::from_nix_public(NIX_KEY).unwrap()
}

#[test]
fn real_narinfos_round_trip_byte_for_byte() {
    for text in [REFS, SINGLE, XZ_UNSIGNED] {
        let info = NarInfo::parse(text).unwrap();
        assert_eq!(info.to_string(), text);
    }
    let info = NarInfo::parse(REFS).unwrap();
    assert_eq!(
        info.store_path.to_string(),
        "/nix/store/psr8z1hjvldg5gp45wb8cx0152wbp02i-refs"
    );
    assert_eq!(info.nar_size, 832);
    assert_eq!(info.references.len(), 3);
    assert_eq!(
        info.deriver.unwrap().basename(),
        "v6jxf06wl377g4dyzvhyjs5b5dxbzilc-refs.drv"
    );
    assert_eq!(info.compression.as_deref(), Some("none"));
    let xz = NarInfo::parse(XZ_UNSIGNED).unwrap();
    assert!(xz.signatures.is_empty());
    assert_eq!(xz.compression.as_deref(), Some("xz"));
}

#[test]
fn fingerprints_match_what_nix_signed() {
    let refs = NarInfo::parse(REFS).unwrap();
    assert_eq!(
        refs.fingerprint(),
        "1;/nix/store/psr8z1hjvldg5gp45wb8cx0152wbp02i-refs;\
         sha256:1pyjbli83fr0czjwh7f8vcan19zl46b2b4wqvipxkb41y4x2rjb5;832;\
         /nix/store/2yxrynmfrysg4jnwbdmngpv1zn9nwx74-single,\
         /nix/store/76ad9g8kg177c09lzrdqz74z289mc821-multi-lib,\
         /nix/store/yqcx118w11nxjfr71kl80h7h0b1cv07q-multi-dev"
    );
    let single = NarInfo::parse(SINGLE).unwrap();
    assert!(single.fingerprint().ends_with(";128;"));
    // Nix's own signatures verify under our fingerprint.
    assert!(refs.is_signed_by(&nix_key()));
    assert!(single.is_signed_by(&nix_key()));
}

#[test]
fn any_change_to_a_signed_field_breaks_the_signature() {
    let info = NarInfo::parse(REFS).unwrap();
    let mut size = info.clone();
    size.nar_size += 1;
    let mut refs = info.clone();
    refs.references.pop();
    let mut hash = info.clone();
    hash.nar_hash = NarInfo::parse(SINGLE).unwrap().nar_hash;
    for changed in [size, refs, hash] {
        assert!(!changed.is_signed_by(&nix_key()));
    }
    // Unsigned fields are not covered, as in Nix.
    let mut url = info;
    url.url = "nar/elsewhere.nar".into();
    assert!(url.is_signed_by(&nix_key()));
}

#[test]
fn signing_replaces_the_upstream_signatures() {
    let key = SigningKey::from_seed(KeyName::new("proxy-1").unwrap(), [9; 32]);
    let mut info = NarInfo::parse(REFS).unwrap();
    info.sign(&key);
    assert_eq!(info.signatures.len(), 1);
    assert!(info.signatures[0].starts_with("proxy-1:"));
    assert!(info.is_signed_by(&key.verifying_key()));
    assert!(!info.is_signed_by(&nix_key()));
    // The re-signed text parses back to the same narinfo.
    assert_eq!(NarInfo::parse(&info.to_string()).unwrap(), info);
    // A signature by another key under the same name does not count.
    let impostor = SigningKey::from_seed(KeyName::new("tally-cache-1").unwrap(), [1; 32]);
    let mut forged = NarInfo::parse(REFS).unwrap();
    forged.sign(&impostor);
    assert!(!forged.is_signed_by(&nix_key()));
}

#[test]
fn the_accepted_spellings() {
    let minimal = "StorePath: /nix/store/2yxrynmfrysg4jnwbdmngpv1zn9nwx74-single\n\
                   URL: nar/x.nar\n\
                   NarHash: sha256-o9u+dn1S0tmpurRPb8Wan1qM+mTp8moVyumGHtyQOIA=\n\
                   NarSize: 128\n\
                   Deriver: unknown-deriver\n\
                   System: x86_64-linux\n";
    let info = NarInfo::parse(minimal).unwrap();
    assert!(info.references.is_empty() && info.deriver.is_none());
    assert_eq!(
        info.nar_hash.to_string(),
        "sha256:101qj3f1x1p9r8anmwp9ckx8qnlzkb2nykxlpalxkljjgmvbxnx3"
    );
    assert_eq!(info.other, [("System".into(), "x86_64-linux".into())]);
    // Nix's signature is over the hash, not its spelling.
    let mut signed = info.clone();
    signed.signatures = NarInfo::parse(SINGLE).unwrap().signatures;
    assert!(signed.is_signed_by(&nix_key()));
}

#[test]
fn malformed_narinfos_are_refused_naming_the_problem() {
    let cases: &[(&str, NarInfoError)] = &[
        (
            REFS.trim_end(),
            NarInfoError::NoFinalNewline,
        ),
        (
            &REFS.replace("NarSize: 832", "NarSize:  832"),
            NarInfoError::Field {
                field: "NarSize",
                problem: "\" 832\" is not a positive size".into(),
            },
        ),
        (
            &REFS.replace("NarSize: 832", "NarSize: 0"),
            NarInfoError::Field {
                field: "NarSize",
                problem: "\"0\" is not a positive size".into(),
            },
        ),
        (
            &REFS.replace("URL: ", "URL:"),
            NarInfoError::Line {
                line: 2,
                problem: "\"URL:nar/1pyjbli83fr0czjwh7f8vcan19zl46b2b4wqvipxkb41y4x2rjb5.nar\" is not `Key: value`".into(),
            },
        ),
        (
            &REFS.replace('\n', "\r\n"),
            NarInfoError::Line {
                line: 1,
                problem: "control character '\\r'".into(),
            },
        ),
        (
            &REFS.replace("URL: ", "Bad Key: y\nURL: "),
            NarInfoError::Line {
                line: 2,
                problem: "\"Bad Key\" is not a field name".into(),
            },
        ),
        (
            &format!("{REFS}NarSize: 832\n"),
            NarInfoError::Repeated("NarSize".into()),
        ),
        (
            &REFS.replace("NarHash: ", "Foo: "),
            NarInfoError::Missing("NarHash"),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(NarInfo::parse(text).as_ref(), Err(want), "{text}");
    }
    for (text, field) in [
        (REFS.replace("-single ", "-sin/gle "), "References"),
        (
            REFS.replace("NarHash: sha256:1", "NarHash: md5:1"),
            "NarHash",
        ),
        (
            REFS.replace("StorePath: /nix/store/", "StorePath: /gnu/store/"),
            "StorePath",
        ),
        (REFS.replace("Deriver: v6", "Deriver: e6"), "Deriver"),
    ] {
        match NarInfo::parse(&text) {
            Err(NarInfoError::Field { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn attestations_take_the_output_name_from_nix_naming() {
    let refs = NarInfo::parse(REFS).unwrap();
    assert_eq!(refs.output_name().as_deref(), Some("out"));
    let a = refs.attestation().unwrap();
    assert_eq!(a.output_name(), Some("out"));
    assert_eq!(a.drv_path(), refs.deriver.as_ref());
    assert_eq!((a.nar_hash(), a.nar_size()), (refs.nar_hash, refs.nar_size));
    assert_eq!(a.references(), refs.references.as_slice());

    // `multi-dev` is output `dev` of `multi.drv`.
    let dev = REFS
        .replace(
            "psr8z1hjvldg5gp45wb8cx0152wbp02i-refs",
            "yqcx118w11nxjfr71kl80h7h0b1cv07q-multi-dev",
        )
        .replace(
            "v6jxf06wl377g4dyzvhyjs5b5dxbzilc-refs.drv",
            "v6jxf06wl377g4dyzvhyjs5b5dxbzilc-multi.drv",
        );
    assert_eq!(
        NarInfo::parse(&dev).unwrap().output_name().as_deref(),
        Some("dev")
    );

    // A name that does not follow the rule, or no deriver: unknown, and said so.
    let odd = REFS.replace("-refs.drv", "-source.drv");
    let odd = NarInfo::parse(&odd).unwrap();
    assert_eq!(odd.output_name(), None);
    assert_eq!(odd.attestation().unwrap().output_name(), None);
    let underived = REFS.replace("Deriver: v6jxf06wl377g4dyzvhyjs5b5dxbzilc-refs.drv\n", "");
    let a = NarInfo::parse(&underived).unwrap().attestation().unwrap();
    assert_eq!((a.drv_path(), a.output_name()), (None, None));
    assert!(
        String::from_utf8_lossy(a.as_bytes()).contains("\ndrv <unknown>\noutput <unknown>\n"),
        "{}",
        String::from_utf8_lossy(a.as_bytes())
    );
}
