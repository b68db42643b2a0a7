//! Reproducibility reports, the dashboard and imports, against a live federation of three
//! log daemons (one disagreeing about one path) and an aggregator, each its own process:
//! `tally report` over closures and SBOMs, named reports defined over HTTP and kept up to
//! date as the logs grow, every dashboard page in headless Chromium, and `tally import` from
//! binary caches real Nix wrote.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tally_core::{Attestation, Hash, StorePath, sample};
use tally_tests::browser::{self, Browser, visible_text};
use tally_tests::daemon::{AggregatorDaemon, LogDaemon, StaticServer};
use tally_tests::{http, nix, run_ok, tally};

/// The path builder 3 disagrees about, the one only builder 1 built, and one nobody built
/// until the test submits it.
const DISPUTED: u64 = 7;
const SINGLE: u64 = 1000;
const LATE: u64 = 2000;
const TOKEN: &str = "let-me-define-reports";

struct Federation {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    logs: Vec<LogDaemon>,
    agg: AggregatorDaemon,
}

impl Federation {
    /// Three logs attesting samples 0..40, builder 3 a different NAR for [`DISPUTED`],
    /// builder 1 also [`SINGLE`]; an aggregator with an admin token, caught up.
    async fn start() -> Federation {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let logs: Vec<LogDaemon> = (1..=3)
            .map(|i| {
                LogDaemon::start(
                    &root.join(format!("log{i}")),
                    &format!("builder{i}.test/log"),
                    &[],
                )
            })
            .collect();
        for (i, log) in logs.iter().enumerate() {
            let mut a: Vec<Attestation> = (0..40).map(sample::attestation).collect();
            if i == 2 {
                a[DISPUTED as usize] =
                    sample::attestation_with_nar(DISPUTED, Hash::of(b"did not reproduce"));
            }
            if i == 0 {
                a.push(sample::attestation(SINGLE));
            }
            log.submit(&a).await;
        }
        let token = root.join("admin.token");
        std::fs::write(&token, TOKEN).unwrap();
        set_mode_0600(&token);
        let option = format!("admin_token_file = \"{}\"", token.display());
        let follows: Vec<_> = logs.iter().map(LogDaemon::follow).collect();
        let agg = AggregatorDaemon::start(&root.join("agg"), &follows, &[&option]);
        for (i, log) in logs.iter().enumerate() {
            agg.wait_verified(&log.origin, if i == 0 { 41 } else { 40 })
                .await;
        }
        Federation {
            _dir: dir,
            dir: root,
            logs,
            agg,
        }
    }

    fn url(&self) -> String {
        self.agg.url()
    }

    fn addr(&self) -> SocketAddr {
        self.agg.addr
    }
}

fn set_mode_0600(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The closure the tests report on: every sample, the single one and the late one.
fn closure() -> String {
    (0..40)
        .chain([SINGLE, LATE])
        .map(|i| format!("{}\n", sample::output_path(i)))
        .collect()
}

/// A CycloneDX SBOM as nix-build-sbom writes it, for samples 0..10, with a derivation path
/// and a vendored component that are not output paths.
fn sbom() -> String {
    let components: Vec<Value> = (1..10)
        .map(|i| {
            let p = sample::output_path(i).to_string();
            serde_json::json!({"bom-ref": p, "name": "x", "properties": [
                {"name": "nix:drv_path", "value": "/nix/store/a2irybd3garjx463qd4v61a73q71dlpk-x.drv"},
                {"name": "nix:out_path", "value": p}]})
        })
        .chain([serde_json::json!({"bom-ref": "pkg:cargo/serde@1.0.0", "name": "serde"})])
        .collect();
    serde_json::json!({
        "bomFormat": "CycloneDX", "specVersion": "1.4", "version": 1,
        "metadata": {"component": {"bom-ref": sample::output_path(0).to_string(), "name": "root"}},
        "components": components,
    })
    .to_string()
}

fn put(addr: SocketAddr, name: &str, token: Option<&str>, body: &str) -> http::Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Accept", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    http::request(
        addr,
        "PUT",
        &format!("/reports/{name}"),
        &headers,
        body.as_bytes(),
    )
    .unwrap()
}

fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let r = http::request(addr, "GET", path, &[("Accept", "application/json")], &[]).unwrap();
    let v =
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.text()));
    (r.status, v)
}

fn summary_of(addr: SocketAddr, report: &str) -> Value {
    let (status, v) = get_json(addr, &format!("/reports/{report}"));
    assert_eq!(status, 200, "{v}");
    v["summary"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_classify_closures_and_sboms_and_follow_the_logs() {
    let mut f = Federation::start().await;
    let dir = &f.dir;
    std::fs::write(dir.join("closure.txt"), closure()).unwrap();
    std::fs::write(dir.join("system.cdx.json"), sbom()).unwrap();

    // `tally report` over a closure: text, JSON and a self-contained page.
    let closure_file = dir.join("closure.txt");
    let html_file = dir.join("report.html");
    let text = run_ok(
        tally()
            .args(["report", "--aggregator", &f.url(), "--closure"])
            .arg(&closure_file)
            .arg("--html")
            .arg(&html_file),
    );
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("42 paths, 3 logs"), "{text}");
    assert!(
        words.contains("reproduced 39 92.9% disputed 1 2.4% single 1 2.4% unknown 1 2.4%"),
        "{text}"
    );
    let disputed = sample::output_path(DISPUTED).to_string();
    let line = text.lines().find(|l| l.starts_with(&disputed)).unwrap();
    assert!(line.contains("disputed"), "{line}");
    let json: Value = serde_json::from_str(&run_ok(
        tally()
            .args(["--json", "report", "--aggregator", &f.url(), "--closure"])
            .arg(&closure_file),
    ))
    .unwrap();
    let s = &json["report"]["summary"];
    assert_eq!(
        (s["total"].as_u64(), s["reproduced"].as_u64()),
        (Some(42), Some(39))
    );
    assert_eq!(
        (
            s["disputed"].as_u64(),
            s["single"].as_u64(),
            s["unknown"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    let rows = json["paths"].as_array().unwrap();
    let row = rows
        .iter()
        .find(|r| r["path"] == disputed.as_str())
        .unwrap();
    assert_eq!(row["candidates"].as_array().unwrap().len(), 2, "{row}");
    let single = rows.iter().find(|r| r["class"] == "single").unwrap();
    assert_eq!(
        single["attested_by"],
        serde_json::json!(["builder1.test/log"])
    );
    let page = std::fs::read_to_string(&html_file).unwrap();
    assert!(page.contains(&disputed) && page.contains("92.9%"), "{page}");
    assert!(
        !page.contains("<script") && !page.contains("http://cdn"),
        "not self-contained"
    );

    // An SBOM: only its output paths count.
    let json: Value = serde_json::from_str(&run_ok(
        tally()
            .args(["--json", "report", "--aggregator", &f.url(), "--sbom"])
            .arg(dir.join("system.cdx.json")),
    ))
    .unwrap();
    assert_eq!(json["report"]["summary"]["total"], 10, "{json}");
    assert_eq!(json["report"]["summary"]["disputed"], 1, "{json}");

    // Defining named reports needs the admin token, and bad input writes nothing.
    let addr = f.addr();
    assert_eq!(put(addr, "system", None, &closure()).status, 401);
    assert_eq!(put(addr, "system", Some("wrong"), &closure()).status, 401);
    let bad = put(addr, "system", Some(TOKEN), "/nix/store/not-a-path\n");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("line 1"), "{}", bad.text());
    assert_eq!(put(addr, "bad%20name", Some(TOKEN), &closure()).status, 400);
    assert_eq!(get_json(addr, "/reports/system").0, 404);

    let made = put(addr, "system", Some(TOKEN), &closure());
    assert_eq!(made.status, 201, "{}", made.text());
    assert_eq!(made.header("location"), Some("/reports/system"));
    assert_eq!(put(addr, "sbom", Some(TOKEN), &closure()).status, 201);
    assert_eq!(
        put(addr, "sbom", Some(TOKEN), &sbom()).status,
        200,
        "replaced"
    );
    let s = summary_of(addr, "system");
    assert_eq!(
        (s["reproduced"].as_u64(), s["unknown"].as_u64()),
        (Some(39), Some(1)),
        "{s}"
    );
    assert_eq!(summary_of(addr, "sbom")["total"], 10);

    // Pages of a report, filtered by class.
    let (_, v) = get_json(addr, "/reports/system?class=disputed");
    assert_eq!(v["rows"][0]["path"], disputed.as_str());
    assert_eq!(v["pages"], 1);
    let (_, v) = get_json(addr, "/reports/system?class=unknown");
    assert_eq!(
        v["rows"][0]["path"],
        sample::output_path(LATE).to_string().as_str()
    );
    assert_eq!(get_json(addr, "/reports/system?class=trusted").0, 400);

    // The report follows the logs: once two builders attest the late path, it is reproduced.
    for log in &f.logs[..2] {
        log.submit(&[sample::attestation(LATE)]).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = summary_of(addr, "system");
        if s["reproduced"] == 40 {
            assert_eq!(s["unknown"], 0, "{s}");
            assert_eq!(s["reproduced_percent"], 95.2, "{s}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the report did not follow the logs: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Metrics: report percentages, disagreements.
    let metrics = http::get(addr, "/metrics").text();
    assert!(
        metrics
            .contains("tally_aggregator_report_paths{report=\"system\",class=\"reproduced\"} 40"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("tally_aggregator_report_percent{report=\"system\",class=\"disputed\"} 2.38"),
        "{metrics}"
    );
    let disagreements = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tally_aggregator_disagreements "))
        .unwrap();
    assert!(disagreements.parse::<u64>().unwrap() >= 1, "{metrics}");

    // Definitions survive a restart, and can be deleted with the token.
    f.agg.stop();
    f.agg.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_json(addr, "/reports/system").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the report did not come back after a restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delete = |token: &str| {
        let auth = format!("Bearer {token}");
        http::request(
            addr,
            "DELETE",
            "/reports/sbom",
            &[("Authorization", &auth)],
            &[],
        )
        .unwrap()
    };
    assert_eq!(delete("wrong").status, 401);
    assert_eq!(delete(TOKEN).status, 204);
    assert_eq!(get_json(addr, "/reports/sbom").0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_in_a_browser() {
    let Some(chromium) = browser::available("the_dashboard_in_a_browser") else {
        return;
    };
    let f = Federation::start().await;
    let addr = f.addr();
    assert_eq!(put(addr, "system", Some(TOKEN), &closure()).status, 201);
    let browser = Browser::new(chromium, &f.dir);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let disputed = sample::output_path(DISPUTED);
    let (_, evidence) = get_json(addr, "/disagreements");
    let id = evidence["evidence"][0]["id"]
        .as_u64()
        .expect("a disagreement is kept");

    let pages = [
        ("logs", "/".to_owned()),
        ("disagreements", "/disagreements".to_owned()),
        ("evidence", format!("/evidence/{id}")),
        ("path", format!("/path/{}", disputed.hash())),
        ("reports", "/reports".to_owned()),
        ("report", "/reports/system".to_owned()),
    ];
    let mut seen = std::collections::BTreeMap::new();
    for (name, path) in &pages {
        let url = format!("{}{path}", f.url());
        browser.screenshot(&url, &shots.join(format!("{name}.png")));
        let dom = browser.dom(&url);
        assert!(!dom.contains("<script"), "{path} runs a script");
        seen.insert(*name, visible_text(&dom));
    }
    eprintln!("screenshots in {}", shots.display());

    // Every page fits a 1280 px screen: hashes, keys and store paths wrap rather than make
    // the reader scroll sideways (the path page's hashes, derivations and references did).
    for (_, path) in &pages {
        let (scroll, client) = browser.widths(&http::get(addr, path).text());
        assert!(
            client == 1280 && scroll <= client,
            "{path} is {scroll} px wide in a {client} px window"
        );
    }

    let logs = &seen["logs"];
    for log in &f.logs {
        assert!(logs.contains(&log.origin), "{logs}");
    }
    assert!(
        logs.contains("verified 40") && logs.contains("verified 41"),
        "{logs}"
    );
    assert!(logs.contains("cosigned at size 41"), "{logs}");
    // The aggregator's own witness key, with what to do with it.
    assert!(logs.contains(&f.agg.witness_vkey), "{logs}");
    assert!(
        logs.contains("Give this key to consumers as a witness line of their trust policy"),
        "{logs}"
    );
    assert!(logs.contains("system 42 92.9% 1"), "{logs}");

    let list = &seen["disagreements"];
    assert!(
        list.contains(&format!("logs disagree about {disputed}")),
        "{list}"
    );
    assert!(list.contains("builder3.test/log"), "{list}");

    let one = &seen["evidence"];
    assert!(one.contains("Download the bundle"), "{one}");
    assert!(
        one.contains(&format!("tally verify tally-evidence-{id}.json")),
        "{one}"
    );
    assert!(one.contains(&f.logs[2].vkey.to_note_vkey()), "{one}");

    let path = &seen["path"];
    assert!(path.contains(&disputed.to_string()), "{path}");
    assert!(path.contains("reproducibility disputed"), "{path}");
    let other = sample::attestation_with_nar(DISPUTED, Hash::of(b"did not reproduce"));
    assert!(path.contains(&other.nar_hash().to_string()), "{path}");
    assert!(
        path.contains(&sample::attestation(DISPUTED).nar_hash().to_string()),
        "{path}"
    );

    let reports = &seen["reports"];
    assert!(
        reports.contains("system closure 42 92.9% (39) 2.4% (1) 2.4% (1) 2.4% (1)"),
        "{reports}"
    );

    let report = &seen["report"];
    assert!(report.contains("reproduced 39 92.9%"), "{report}");
    assert!(report.contains("disputed 1 2.4%"), "{report}");
    assert!(report.contains("Disputed paths (1)"), "{report}");
    assert!(report.contains(&disputed.to_string()), "{report}");

    // Every page has a JSON twin; downloads are what `tally verify` takes.
    for (_, path) in &pages {
        let (status, _) = get_json(addr, path);
        assert_eq!(status, 200, "{path}");
    }
    let bundle = http::get(addr, &format!("/evidence/{id}.json"));
    let bundle_file = f.dir.join("evidence.json");
    std::fs::write(&bundle_file, &bundle.body).unwrap();
    let proofs = http::get(addr, &format!("/path/{}/proofs.json", disputed.hash()));
    let proofs_file = f.dir.join("proofs.json");
    std::fs::write(&proofs_file, &proofs.body).unwrap();
    let verify = |file: &std::path::Path| {
        let mut cmd = tally();
        cmd.arg("verify").arg(file);
        for log in &f.logs {
            cmd.args(["--vkey", &log.vkey.to_note_vkey()]);
        }
        cmd.output().unwrap()
    };
    let out = verify(&bundle_file);
    assert!(out.status.success(), "{out:?}");
    // The disputed path's proofs check out, and decide it disputed: not trusted, exit 1.
    let out = verify(&proofs_file);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("disputed under your policy"), "{printed}");
    assert!(!printed.contains("rejected"), "{printed}");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(http::get(addr, "/no/such/page").status, 404);
}

/// Long reports are paginated: 10^5 paths, a page at a time.
#[tokio::test(flavor = "multi_thread")]
async fn a_report_of_a_hundred_thousand_paths_is_paginated() {
    let f = Federation::start().await;
    let addr = f.addr();
    let big: String = (0..100_000u64)
        .map(|i| format!("{}\n", sample::output_path(i)))
        .collect();
    let made = put(addr, "big", Some(TOKEN), &big);
    assert_eq!(made.status, 201, "{}", made.text());
    let (status, v) = get_json(addr, "/reports/big?page=500");
    assert_eq!(status, 200);
    assert_eq!(
        (v["page"].as_u64(), v["pages"].as_u64()),
        (Some(500), Some(1000))
    );
    assert_eq!(v["rows"].as_array().unwrap().len(), 100);
    assert_eq!(v["summary"]["reproduced"], 39, "{v}");
    let page = http::get(addr, "/reports/big?class=unknown&page=2");
    assert_eq!(page.status, 200);
    assert!(
        page.body.len() < 200_000,
        "a page is {} bytes",
        page.body.len()
    );
    assert!(page.text().contains("page 2 of 1000"), "{}", page.text());
}

/// Derivations whose outputs go to the caches: one with two outputs, one referring to both
/// others, and one that is never copied.
fn derivations(nonce: &str) -> String {
    format!(
        r#"
let
  mk = args: derivation ({{ system = builtins.currentSystem; builder = "/bin/sh"; nonce = "{nonce}"; }} // args);
in rec {{
  single = mk {{ name = "import-single"; args = ["-c" "echo single > $out"]; }};
  multi = mk {{ name = "import-multi"; outputs = ["out" "dev"]; args = ["-c" "echo lib > $out; echo headers > $dev"]; }};
  refs = mk {{ name = "import-refs"; args = ["-c" "echo ${{single}} ${{multi.dev}} > $out"]; }};
  uncopied = mk {{ name = "import-uncopied"; args = ["-c" "echo not in any cache > $out"]; }};
}}
"#
    )
}

fn import_summary(args: &[&str]) -> Value {
    let out = run_ok(tally().args(["--json", "import"]).args(args));
    serde_json::from_str::<Value>(&out).unwrap()["summary"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn import_attests_what_a_cache_made_by_nix_serves() {
    if !nix::available("import_attests_what_a_cache_made_by_nix_serves") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let xdg = dir.join("xdg-cache");
    let nix = |program: &str| nix::command(program, &xdg);
    std::fs::write(
        dir.join("default.nix"),
        derivations(&dir.display().to_string()),
    )
    .unwrap();
    let build = |attr: &str| {
        let out = nix::output(nix("nix-build").arg(dir.join("default.nix")).args([
            "--no-out-link",
            "-A",
            attr,
        ]));
        out.lines()
            .map(|l| StorePath::parse(l).unwrap())
            .collect::<Vec<_>>()
    };
    let [single, multi_out, multi_dev, refs, uncopied] =
        ["single", "multi.out", "multi.dev", "refs", "uncopied"].map(|a| build(a)[0].clone());
    assert_eq!(multi_dev.name(), "import-multi-dev");
    // `nix copy` copies the closure of `refs`: itself, `single` and `multi`'s dev output,
    // signing the narinfos with the cache's key as a real cache does.
    let cache = dir.join("cache");
    let cache_url = format!("file://{}", cache.display());
    let key = dir.join("cache.key");
    run_ok(
        tally()
            .args([
                "keygen",
                "--name",
                "import-cache.test-1",
                "--secret-key-file",
            ])
            .arg(&key),
    );
    let public = tally_store::read_signing_key(&key)
        .unwrap()
        .verifying_key()
        .to_nix_public();
    nix::output(nix("nix").args([
        "copy",
        "--to",
        &format!("{cache_url}?secret-key={}", key.display()),
        &refs.to_string(),
    ]));

    let log = LogDaemon::start(&dir.join("log"), "importer.test/log", &[]);
    let socket = log.socket();

    // Over HTTP first, one path. A narinfo not signed by the given key is refused, unless
    // signatures are not checked.
    let server = StaticServer::start(&cache);
    let stranger = tally_core::SigningKey::from_seed(
        tally_core::KeyName::new("someone-else-1").unwrap(),
        [3; 32],
    )
    .verifying_key()
    .to_nix_public();
    let out = tally()
        .args([
            "--json",
            "import",
            "--from-cache",
            &server.url(),
            "--log",
            &socket,
        ])
        .args(["--trusted-public-key", &stranger, &single.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let refused: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(refused["summary"]["failed"], 1, "{refused}");
    assert!(
        refused["summary"]["failures"][0]["error"]
            .as_str()
            .unwrap()
            .contains("no valid signature by someone-else-1"),
        "{refused}"
    );
    let s = import_summary(&[
        "--from-cache",
        &server.url(),
        "--log",
        &socket,
        "--trusted-public-key",
        &public,
        &single.to_string(),
    ]);
    assert_eq!(
        (s["imported"].as_u64(), s["failed"].as_u64()),
        (Some(1), Some(0)),
        "{s}"
    );
    drop(server);

    // Then everything from the file:// cache: what is done is skipped, what is missing is said.
    let paths = dir.join("paths.txt");
    let listed = [&refs, &single, &multi_dev, &multi_out, &uncopied];
    std::fs::write(
        &paths,
        listed.iter().map(|p| format!("{p}\n")).collect::<String>(),
    )
    .unwrap();
    let args = [
        "--from-cache",
        &cache_url,
        "--log",
        &socket,
        "--trusted-public-key",
        &public,
        "--paths",
        paths.to_str().unwrap(),
    ];
    let s = import_summary(&args);
    assert_eq!(s["paths"], 5, "{s}");
    assert_eq!(
        (s["imported"].as_u64(), s["already_present"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    assert_eq!(
        (s["missing_upstream"].as_u64(), s["failed"].as_u64()),
        (Some(2), Some(0)),
        "{s}"
    );
    // Run again: it resumes, importing nothing twice.
    let s = import_summary(&args);
    assert_eq!(
        (s["imported"].as_u64(), s["already_present"].as_u64()),
        (Some(0), Some(3)),
        "{s}"
    );

    // What the log attests is what the store says, output name included.
    for (path, output) in [(&multi_dev, "dev"), (&refs, "out")] {
        let looked = run_ok(tally().args([
            "--json",
            "log",
            "lookup",
            "--log",
            &log.url(),
            "--vkey",
            &log.vkey.to_note_vkey(),
            &path.to_string(),
        ]));
        let a = &serde_json::from_str::<Value>(&looked).unwrap()["attestation"];
        let q =
            |flag: &str| nix::output(nix("nix-store").args(["--query", flag, &path.to_string()]));
        assert_eq!(a["output_name"], output, "{a}");
        assert_eq!(a["drv_path"], q("--deriver").as_str(), "{a}");
        assert_eq!(a["nar_size"].as_u64(), q("--size").parse().ok(), "{a}");
        let store_hash: tally_core::NarHash = q("--hash").parse().unwrap();
        assert_eq!(a["nar_hash"], store_hash.to_string().as_str(), "{a}");
        let refs_in_store: Vec<String> = q("--references").lines().map(str::to_owned).collect();
        let refs_attested: Vec<String> = a["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        let mut sorted = refs_in_store.clone();
        sorted.sort();
        assert_eq!(refs_attested, sorted, "{a}");
    }

    // A narinfo that names another path than asked is a failure, and is not attested.
    let narinfo = cache.join(format!("{}.narinfo", multi_out.hash()));
    let text = std::fs::read_to_string(cache.join(format!("{}.narinfo", single.hash()))).unwrap();
    std::fs::write(&narinfo, text).unwrap();
    let out = tally()
        .args([
            "import",
            "--from-cache",
            &cache_url,
            "--log",
            &socket,
            "--no-check-sigs",
            &multi_out.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("narinfo is for {single}")),
        "{stderr}"
    );
}
