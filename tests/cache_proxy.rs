//! The substituter trust plugin with real Nix (Debian's nix-bin): paths built by Nix and
//! copied to real binary caches (one over HTTP, uncompressed; one `file://`, xz), attested
//! by three log daemons (one disagreeing about one path), checked by an aggregator, and
//! served by `tally cache serve` to a fresh client store that trusts only the proxy's key.
//! Needs Nix; see `tally_tests::nix`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tally_core::{Attestation, AttestationFields, StorePath};
use tally_nix::narinfo::NarInfo;
use tally_tests::daemon::{
    AggregatorDaemon, CacheDaemon, LogDaemon, StaticServer, terminate, trust_policy,
};
use tally_tests::upstream::upload_synthetic;
use tally_tests::{http, nix};

const ATTRS: &[&str] = &[
    "lib",
    "app",
    "disputed",
    "badhash",
    "badrefs",
    "badnar",
    "unknown",
    "compressed",
    "late",
];

fn derivations(nonce: &str) -> String {
    format!(
        r#"
let
  mk = args: derivation ({{ system = builtins.currentSystem; builder = "/bin/sh"; nonce = "{nonce}"; }} // args);
in rec {{
  lib = mk {{ name = "proxy-lib"; args = ["-c" "echo a library > $out"]; }};
  app = mk {{
    name = "proxy-app";
    args = ["-c" "/bin/mkdir -p $out/bin; echo '#!/bin/sh' > $out/bin/app; echo 'cat ${{lib}}' >> $out/bin/app; /bin/chmod +x $out/bin/app"];
  }};
  disputed = mk {{ name = "proxy-disputed"; args = ["-c" "echo builders disagree > $out"]; }};
  badhash = mk {{ name = "proxy-badhash"; args = ["-c" "echo its narinfo lies about the hash > $out"]; }};
  badrefs = mk {{ name = "proxy-badrefs"; args = ["-c" "echo ${{lib}} > $out"]; }};
  badnar = mk {{ name = "proxy-badnar"; args = ["-c" "echo nar bytes changed > $out"]; }};
  unknown = mk {{ name = "proxy-unknown"; args = ["-c" "echo nobody attests this > $out"]; }};
  compressed = mk {{ name = "proxy-compressed"; args = ["-c" "echo served from an xz cache > $out"]; }};
  late = mk {{ name = "proxy-late"; args = ["-c" "echo asked while the aggregator is down > $out"]; }};
}}
"#
    )
}

struct Setup {
    dir: PathBuf,
    paths: std::collections::BTreeMap<&'static str, StorePath>,
}

impl Setup {
    fn nix(&self, program: &str) -> Command {
        nix::command(program, &self.dir.join("xdg-cache"))
    }

    fn path(&self, attr: &str) -> &StorePath {
        &self.paths[attr]
    }

    /// The attestation the store supports for `path`.
    fn attestation(&self, path: &StorePath) -> Attestation {
        let q = |flag: &str| {
            nix::output(
                self.nix("nix-store")
                    .args(["--query", flag])
                    .arg(path.to_string()),
            )
        };
        Attestation::new(AttestationFields {
            drv_path: Some(StorePath::parse(&q("--deriver")).unwrap()),
            output_name: Some("out".into()),
            output_path: path.clone(),
            nar_hash: q("--hash").parse().unwrap(),
            nar_size: q("--size").parse().unwrap(),
            references: q("--references")
                .lines()
                .map(|l| StorePath::parse(l).unwrap())
                .collect(),
        })
        .unwrap()
    }

    /// `nix-store --realise` into the fresh client store, trusting only the proxy.
    fn realise(&self, cache: &CacheDaemon, path: &StorePath) -> Output {
        self.nix("nix-store")
            .arg("--store")
            .arg(self.dir.join("client"))
            .args(["--realise", &path.to_string()])
            .args(["--option", "substituters", &cache.url()])
            .args(["--option", "trusted-public-keys", &cache.public_key])
            .args(["--option", "require-sigs", "true"])
            .args(["--option", "narinfo-cache-negative-ttl", "0"])
            .args(["--option", "narinfo-cache-positive-ttl", "0"])
            .output()
            .unwrap()
    }

    fn in_client(&self, path: &StorePath) -> PathBuf {
        self.dir.join("client/nix/store").join(path.basename())
    }

    fn valid_in_client(&self, path: &StorePath) -> bool {
        self.nix("nix-store")
            .arg("--store")
            .arg(self.dir.join("client"))
            .args(["--check-validity", &path.to_string()])
            .output()
            .unwrap()
            .status
            .success()
    }

    fn upstream_file(&self, cache: &str, path: &StorePath) -> PathBuf {
        self.dir
            .join(cache)
            .join(format!("{}.narinfo", path.hash()))
    }
}

fn build(dir: &Path) -> Setup {
    std::fs::write(
        dir.join("default.nix"),
        derivations(&dir.display().to_string()),
    )
    .unwrap();
    let mut setup = Setup {
        dir: dir.to_owned(),
        paths: Default::default(),
    };
    for attr in ATTRS {
        let out = nix::output(setup.nix("nix-build").arg(dir.join("default.nix")).args([
            "--no-out-link",
            "-A",
            attr,
        ]));
        setup.paths.insert(attr, StorePath::parse(&out).unwrap());
    }
    setup
}

/// Copies `attrs` (with their closures) to a `file://` cache with Nix itself.
fn nix_copy(setup: &Setup, url: &str, attrs: &[&str]) {
    let mut cmd = setup.nix("nix");
    cmd.args(["copy", "--to", url]);
    for a in attrs {
        cmd.arg(setup.path(a).to_string());
    }
    nix::output(&mut cmd);
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        text.contains(from),
        "{from:?} not in {}:\n{text}",
        file.display()
    );
    std::fs::write(file, text.replace(from, to)).unwrap();
}

/// Whether two trees (files, directories, executable bits) are identical.
fn same_tree(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let (ma, mb) = (a.symlink_metadata().unwrap(), b.symlink_metadata().unwrap());
    if ma.is_dir() && mb.is_dir() {
        let names = |d: &Path| {
            let mut n: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            n.sort();
            n
        };
        let (na, nb) = (names(a), names(b));
        na == nb && na.iter().all(|n| same_tree(&a.join(n), &b.join(n)))
    } else if ma.is_file() && mb.is_file() {
        (ma.permissions().mode() & 0o111 != 0) == (mb.permissions().mode() & 0o111 != 0)
            && std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
    } else {
        false
    }
}

fn narinfo(cache: &CacheDaemon, path: &StorePath) -> http::Response {
    http::get(cache.addr, &format!("/{}.narinfo", path.hash()))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn nix_substitutes_only_what_a_quorum_attests() {
    if !nix::available("nix_substitutes_only_what_a_quorum_attests") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let setup = build(dir.path());
    let p = |a: &str| setup.path(a).clone();

    // Upstreams: an uncompressed cache served over HTTP, and an xz cache read as file://.
    let plain = dir.path().join("plain");
    let xz = dir.path().join("xz");
    nix_copy(
        &setup,
        &format!("file://{}?compression=none", plain.display()),
        &[
            "app", "disputed", "badhash", "badrefs", "badnar", "unknown", "late",
        ],
    );
    nix_copy(&setup, &format!("file://{}", xz.display()), &["compressed"]);
    // The upstream narinfos of two paths lie; the NAR bytes of a third are altered.
    let other_hash = setup.attestation(&p("unknown")).nar_hash().to_string();
    let true_hash = setup.attestation(&p("badhash")).nar_hash().to_string();
    edit(
        &setup.upstream_file("plain", &p("badhash")),
        &format!("NarHash: {true_hash}"),
        &format!("NarHash: {other_hash}"),
    );
    edit(
        &setup.upstream_file("plain", &p("badrefs")),
        &format!("References: {}\n", p("lib").basename()),
        "References: \n",
    );
    let badnar = NarInfo::parse(
        &std::fs::read_to_string(setup.upstream_file("plain", &p("badnar"))).unwrap(),
    )
    .unwrap();
    edit(
        &plain.join(&badnar.url),
        "nar bytes changed",
        "NAR BYTES CHANGED",
    );
    let mut http_upstream = StaticServer::start(&plain);

    // Three builders attest everything but `unknown`; the third disagrees about `disputed`.
    let attested = [
        "lib",
        "app",
        "disputed",
        "badhash",
        "badrefs",
        "badnar",
        "compressed",
        "late",
    ];
    let honest: Vec<Attestation> = attested.iter().map(|a| setup.attestation(&p(a))).collect();
    let mut dissent = honest.clone();
    let mut fields = dissent[2].fields().clone();
    fields.nar_hash = other_hash.parse().unwrap();
    dissent[2] = Attestation::new(fields).unwrap();
    let logs: Vec<LogDaemon> = (1..=3)
        .map(|n| {
            LogDaemon::start(
                &dir.path().join(format!("log{n}")),
                &format!("b{n}.proxy.test/log"),
                &[],
            )
        })
        .collect();
    logs[0].submit(&honest).await;
    logs[1].submit(&honest).await;
    logs[2].submit(&dissent).await;
    let follow: Vec<_> = logs.iter().map(LogDaemon::follow).collect();
    let mut agg = AggregatorDaemon::start(&dir.path().join("agg"), &follow, &[]);
    for log in &logs {
        agg.wait_verified(&log.origin, attested.len() as u64).await;
    }
    let cache = CacheDaemon::start(
        &dir.path().join("cache"),
        &[http_upstream.url(), format!("file://{}", xz.display())],
        &trust_policy(&logs.iter().collect::<Vec<_>>(), ""),
        Some(&format!("url = \"{}\"", agg.url())),
        &[],
    );

    // The binary cache protocol.
    let info = http::get(cache.addr, "/nix-cache-info");
    assert_eq!(info.status, 200);
    assert_eq!(info.headers["content-type"], "text/x-nix-cache-info");
    assert!(
        info.text().contains("StoreDir: /nix/store\n") && info.text().contains("Priority: 30\n")
    );
    assert_eq!(
        http::request(cache.addr, "HEAD", "/nix-cache-info", &[], &[])
            .unwrap()
            .status,
        200
    );

    // A trusted path with its closure: substituted, byte for byte, re-signed by the proxy.
    let out = setup.realise(&cache, &p("app"));
    assert!(out.status.success(), "{}\n{}", stderr(&out), cache.log());
    for a in ["app", "lib"] {
        assert!(setup.valid_in_client(&p(a)), "{a} not in the client store");
        assert!(
            same_tree(&setup.in_client(&p(a)), Path::new(&p(a).to_string())),
            "{a} differs from the original"
        );
    }
    let served = narinfo(&cache, &p("app"));
    assert_eq!(served.status, 200);
    assert_eq!(served.headers["content-type"], "text/x-nix-narinfo");
    let signed = NarInfo::parse(&served.text()).unwrap();
    let proxy_key = tally_core::VerifyingKey::from_nix_public(&cache.public_key).unwrap();
    assert!(signed.is_signed_by(&proxy_key));
    assert_eq!(signed.signatures.len(), 1);
    let head = http::request(cache.addr, "HEAD", &format!("/{}", signed.url), &[], &[]).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["content-type"], "application/x-nix-nar");
    assert_eq!(
        head.headers["content-length"],
        std::fs::metadata(plain.join(&signed.url))
            .unwrap()
            .len()
            .to_string()
    );

    // A trusted path from the compressed file:// upstream.
    let out = setup.realise(&cache, &p("compressed"));
    assert!(out.status.success(), "{}\n{}", stderr(&out), cache.log());
    assert!(same_tree(
        &setup.in_client(&p("compressed")),
        Path::new(&p("compressed").to_string())
    ));
    assert!(
        narinfo(&cache, &p("compressed"))
            .text()
            .contains("Compression: xz\n")
    );

    // A disputed path, and an unknown one: 404, not substituted.
    let r = narinfo(&cache, &p("disputed"));
    assert_eq!(r.status, 404);
    assert!(r.text().contains("disputed"), "{}", r.text());
    let r = narinfo(&cache, &p("unknown"));
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("not attested by a quorum"),
        "{}",
        r.text()
    );
    for a in ["disputed", "unknown"] {
        let out = setup.realise(&cache, &p(a));
        assert!(!out.status.success(), "{a} was substituted");
        assert!(
            stderr(&out).contains("don't know how to build"),
            "{a}: {}",
            stderr(&out)
        );
        assert!(!setup.valid_in_client(&p(a)));
    }

    // Upstream narinfos that differ from the attestations: 404, logged and counted by field.
    for (a, field) in [("badhash", "NarHash"), ("badrefs", "References")] {
        let r = narinfo(&cache, &p(a));
        assert_eq!(r.status, 404);
        assert!(r.text().contains(field), "{}", r.text());
        // The reason ends the body; nothing dangles after it.
        assert!(r.text().trim_end().ends_with("attested"), "{}", r.text());
        let out = setup.realise(&cache, &p(a));
        assert!(
            !out.status.success() && !setup.valid_in_client(&p(a)),
            "{a} was substituted"
        );
        let line = cache
            .log()
            .lines()
            .find(|l| l.contains("refused") && l.contains(&p(a).to_string()))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no refusal logged for {a}:\n{}", cache.log()));
        assert!(line.contains(field) && line.contains("attested"), "{line}");
    }
    let metrics = http::get(cache.addr, "/metrics").text();
    for field in ["NarHash", "References"] {
        assert!(
            metrics.contains(&format!(
                "tally_cache_mismatches_total{{field=\"{field}\"}}"
            )),
            "{metrics}"
        );
    }

    // Altered NAR bytes behind a true narinfo: the proxy passes them on, Nix's own hash
    // check rejects them.
    assert_eq!(narinfo(&cache, &p("badnar")).status, 200);
    let out = setup.realise(&cache, &p("badnar"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("hash mismatch"), "{}", stderr(&out));
    assert!(!setup.valid_in_client(&p("badnar")));

    // Failures are 502, never an answer: the aggregator down (a cached verdict still
    // serves), then the HTTP upstream down.
    agg.stop();
    let r = narinfo(&cache, &p("late"));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("aggregator"), "{}", r.text());
    assert_eq!(narinfo(&cache, &p("app")).status, 200);
    http_upstream.stop();
    let r = narinfo(&cache, &p("app"));
    assert_eq!(r.status, 502, "{}", r.text());
    let metrics = http::get(cache.addr, "/metrics").text();
    for outcome in [
        "served",
        "disputed",
        "unknown",
        "mismatch",
        "no_decision",
        "upstream_error",
    ] {
        assert!(
            metrics.contains(&format!(
                "tally_cache_narinfo_requests_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome}: {metrics}"
        );
    }
}

/// `aggregator.config`: the cache runs the aggregator itself (no Nix needed).
#[tokio::test(flavor = "multi_thread")]
async fn an_in_process_aggregator_decides() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("upstream");
    let agreed = upload_synthetic(&upstream, "agreed", b"two builders agree\n");
    let single = upload_synthetic(&upstream, "single", b"one builder built this\n");
    let logs: Vec<LogDaemon> = (1..=2)
        .map(|n| {
            LogDaemon::start(
                &dir.path().join(format!("log{n}")),
                &format!("c{n}.proxy.test/log"),
                &[],
            )
        })
        .collect();
    logs[0].submit(&[agreed.clone(), single.clone()]).await;
    logs[1].submit(std::slice::from_ref(&agreed)).await;
    let follow: Vec<_> = logs.iter().map(LogDaemon::follow).collect();
    let agg_config = AggregatorDaemon::write_config(&dir.path().join("agg"), &follow, &[]);
    // The cache's own policy decides, whatever the aggregator's default.
    let cache = CacheDaemon::start(
        &dir.path().join("cache"),
        &[format!("file://{}", upstream.display())],
        &trust_policy(&logs.iter().collect::<Vec<_>>(), "attest all\n"),
        Some(&format!("config = \"{}\"", agg_config.display())),
        // The first answers may come before both logs are verified: decide again soon.
        &["decision_ttl_secs = 1"],
    );
    // The aggregator runs inside the cache process: its own port answers too.
    assert_eq!(
        http::get(cache.aggregator_addr.unwrap(), "/healthz").status,
        200
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let served = loop {
        let r = narinfo(&cache, agreed.output_path());
        if r.status == 200 {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}\n{}",
            r.text(),
            cache.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let info = NarInfo::parse(&served.text()).unwrap();
    let key = tally_core::VerifyingKey::from_nix_public(&cache.public_key).unwrap();
    assert!(info.is_signed_by(&key));
    let nar = http::get(cache.addr, &format!("/{}", info.url));
    assert_eq!(nar.status, 200);
    assert_eq!(
        tally_core::Hash::of(&nar.body),
        info.nar_hash.digest(),
        "the NAR passed on is the upstream's"
    );
    // Under policy "all", one log of two is not enough.
    let r = narinfo(&cache, single.output_path());
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("not attested by a quorum"),
        "{}",
        r.text()
    );
    assert_eq!(http::get(cache.addr, "/nar/../../etc/passwd").status, 404);
}

/// `tally demo` prints a command that a real Nix runs against its cache.
#[test]
fn the_demo_cache_works_with_nix() {
    if !nix::available("the_demo_cache_works_with_nix") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut demo = tally_tests::tally()
        .args(["demo", "--json", "--entries", "100", "--dir"])
        .arg(dir.path().join("demo"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = demo.stdout.take().unwrap();
    let printed: serde_json::Value = serde_json::Deserializer::from_reader(stdout)
        .into_iter()
        .next()
        .expect("the demo printed its JSON")
        .unwrap();
    let cache = &printed["cache"];
    let out = nix::command("sh", &dir.path().join("xdg"))
        .args(["-c", cache["realise"].as_str().unwrap()])
        .output()
        .unwrap();
    let run = std::process::Command::new(cache["run"].as_str().unwrap()).output();
    terminate(&mut demo);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = run.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "Hello from a path three independent builders agree on.\n"
    );
    let served = cache["served"].as_array().unwrap();
    assert_eq!(served[0]["served"], true);
    assert_eq!(served[1]["served"], false);
}
