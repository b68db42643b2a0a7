use super::*;
use crate::policy::{Vote, candidates};
use crate::{Hash, KeyName, sample};

fn classify(votes: &[Vote]) -> Reproducibility {
    let votes: Vec<(KeyName, Vote)> = votes
        .iter()
        .enumerate()
        .map(|(i, v)| (KeyName::new(&format!("log{i}.example")).unwrap(), v.clone()))
        .collect();
    Reproducibility::of(&candidates(&votes))
}

fn good() -> Vote {
    Vote::Present(Box::new(sample::attestation(1)))
}

fn bad() -> Vote {
    Vote::Present(Box::new(sample::attestation_with_nar(
        1,
        Hash::of(b"other"),
    )))
}

#[test]
fn classes_follow_the_attesting_logs_not_a_policy() {
    use Reproducibility::*;
    let down = || Vote::Unavailable("down".into());
    assert_eq!(classify(&[good(), good(), Vote::Absent]), Reproduced);
    assert_eq!(classify(&[good(), good(), good()]), Reproduced);
    assert_eq!(classify(&[good(), good(), bad()]), Disputed);
    assert_eq!(classify(&[good(), bad(), Vote::Absent]), Disputed);
    assert_eq!(classify(&[good(), Vote::Absent, down()]), Single);
    assert_eq!(classify(&[Vote::Absent, Vote::Absent, down()]), Unknown);
    assert_eq!(classify(&[]), Unknown);
}

#[test]
fn summary_counts_and_percentages() {
    use Reproducibility::*;
    let s: Summary = [
        Reproduced, Reproduced, Disputed, Unknown, Reproduced, Single,
    ]
    .into_iter()
    .collect();
    assert_eq!(s.total(), 6);
    assert_eq!(s.count(Reproduced), 3);
    assert_eq!(s.percent(Reproduced), 50.0);
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["disputed"], 1);
    assert_eq!(json["single_percent"], 16.7);
    assert_eq!(Summary::default().percent(Unknown), 0.0);
    for c in Reproducibility::ALL {
        assert_eq!(c.name().parse::<Reproducibility>().unwrap(), c);
    }
    assert!("trusted".parse::<Reproducibility>().is_err());
}

const A: &str = "/nix/store/9ljmdv46sk8m8vxg70dgaxhgmbyqkjva-hello-2.12.1";
const B: &str = "/nix/store/01bzb13fmr0dipvssfnlamr6xpj9dp6c-libidn2-2.3.8-bin";
const DRV: &str = "/nix/store/a2irybd3garjx463qd4v61a73q71dlpk-libidn2-2.3.8.drv";

fn strings(list: &PathList) -> Vec<String> {
    list.paths.iter().map(ToString::to_string).collect()
}

#[test]
fn a_closure_is_one_path_per_line() {
    let list = PathList::parse(&format!("{A}\n\n  {B}  \n{A}\n{DRV}\n")).unwrap();
    assert_eq!(strings(&list), [A, B]);
    assert_eq!(list.source, Source::Closure);
    assert_eq!(list.skipped_derivations, 1);

    let err = PathList::parse(&format!("{A}\nhello\n")).unwrap_err();
    assert!(err.to_string().starts_with("line 2: \"hello\""), "{err}");
    assert_eq!(PathList::parse("\n \n").unwrap_err(), PathListError::Empty);
    assert_eq!(PathList::parse(DRV).unwrap_err(), PathListError::Empty);
}

#[test]
fn nix_build_sbom_and_runtime_tree_sboms() {
    // The shape nix-build-sbom and nix-runtime-tree-to-sbom write (lila's test fixture).
    let sbom = format!(
        r#"{{"bomFormat": "CycloneDX", "specVersion": "1.3", "version": "1",
        "metadata": {{"component": {{"bom-ref": "{A}", "name": "{A}",
            "properties": [{{"name": "nix:drv_path", "value": "{DRV}"}},
                           {{"name": "nix:output", "value": "out"}},
                           {{"name": "nix:out_path", "value": "{A}"}}]}}}},
        "components": [{{"bom-ref": "{B}", "name": "libidn2-2.3.8-bin",
            "properties": [{{"name": "nix:drv_path", "value": "{DRV}"}},
                           {{"name": "nix:out_path", "value": "{B}"}}]}}],
        "dependencies": [{{"ref": "{A}", "dependsOn": ["{B}"]}}]}}"#
    );
    let list = PathList::parse(&sbom).unwrap();
    assert_eq!(strings(&list), [A, B]);
    assert_eq!(list.source, Source::CycloneDx);
}

#[test]
fn sbomnix_bombon_and_nested_components() {
    // sbomnix: the bom-ref is the derivation, outputs are properties.
    // bombon: the bom-ref is the basename; vendored crates have package URLs.
    let base_b = B.trim_start_matches("/nix/store/");
    let sbom = format!(
        r#"{{"bomFormat": "CycloneDX", "specVersion": "1.5",
        "components": [
            {{"bom-ref": "{DRV}", "name": "libidn2",
              "properties": [{{"name": "nix:output_path", "value": "{A}"}},
                             {{"name": "nix:output_path", "value": "{B}"}}]}},
            {{"bom-ref": "{base_b}", "name": "libidn2",
              "components": [{{"bom-ref": "pkg:cargo/serde@1.0.0", "name": "serde"}}]}},
            {{"bom-ref": "{DRV}", "name": "no outputs known"}}
        ]}}"#
    );
    let list = PathList::parse(&sbom).unwrap();
    assert_eq!(strings(&list), [A, B]);
    assert_eq!(list.skipped_derivations, 1);
}

#[test]
fn json_that_is_not_an_sbom_is_refused() {
    assert!(matches!(
        PathList::parse("{not json").unwrap_err(),
        PathListError::Json(_)
    ));
    assert!(matches!(
        PathList::parse(r#"{"spdxVersion": "SPDX-2.3"}"#).unwrap_err(),
        PathListError::NotCycloneDx(_)
    ));
    assert_eq!(
        PathList::parse(r#"{"bomFormat": "CycloneDX", "components": []}"#).unwrap_err(),
        PathListError::Empty
    );
}
