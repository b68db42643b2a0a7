//! The hook's spool under faults: a corrupt file, a file that is not UTF-8, a file the
//! daemon cannot read, and a half-written file a killed writer left are each moved to
//! `quarantine/` and never block the good files; and a daemon running as its own user drains
//! what root (the hook, under nix-daemon) spooled, through the setgid directory contract.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use tally_core::answer::{LogAnswer, Verified};
use tally_core::{Attestation, sample};
use tally_proto::client::{self, Address, BearerToken};
use tally_proto::v1;
use tally_tests::daemon::{LogDaemon, wait_healthy};
use tally_tests::{http, tally, tally_bin};

/// Waits until the log at `address` attests `a`.
async fn wait_attested(address: &Address, vkey: &tally_core::VerifyingKey, a: &Attestation) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = client::connect(address, BearerToken::default()).await
            && let Ok(r) = c
                .lookup(v1::LookupRequest {
                    path: a.output_path().to_string(),
                })
                .await
        {
            let answer = LogAnswer::try_from(&r.into_inner()).unwrap();
            if let Verified::Present { attestation, .. } =
                answer.verify(vkey, &a.output_path().hash()).unwrap()
            {
                assert_eq!(*attestation, *a);
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never attested",
            a.output_path()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_spool_file_is_quarantined_and_never_blocks_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("log/spool");
    let spool = tally_store::Spool::open(&spool_dir).unwrap();
    let (good1, good2) = (sample::attestation(1), sample::attestation(2));
    spool.push(std::slice::from_ref(&good1)).unwrap();
    // Bad files in between, in arrival order.
    std::fs::write(
        spool_dir.join("00000000000000000001-aaaaaaaa.jsonl"),
        "{not json\n",
    )
    .unwrap();
    std::fs::write(
        spool_dir.join("00000000000000000002-bbbbbbbb.jsonl"),
        [0xff, 0xfe, b'\n'],
    )
    .unwrap();
    // A temporary file a writer killed mid-write left behind, long ago.
    let tmp = spool_dir.join(".00000000000000000003-cccccccc.jsonl.tmp");
    std::fs::write(&tmp, "{\"drv_pa").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    spool.push(std::slice::from_ref(&good2)).unwrap();

    let log = LogDaemon::start(
        &dir.path().join("log"),
        "spool.test/log",
        &["spool_drain_interval_secs = 1"],
    );
    let address: Address = log.socket().parse().unwrap();
    wait_attested(&address, &log.vkey, &good1).await;
    wait_attested(&address, &log.vkey, &good2).await;
    let mut quarantined: Vec<String> = std::fs::read_dir(spool_dir.join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    quarantined.sort();
    assert_eq!(
        quarantined,
        [
            ".00000000000000000003-cccccccc.jsonl.tmp",
            "00000000000000000001-aaaaaaaa.jsonl",
            "00000000000000000002-bbbbbbbb.jsonl"
        ]
    );
    let remaining: Vec<_> = std::fs::read_dir(&spool_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "quarantine")
        .collect();
    assert!(remaining.is_empty(), "{remaining:?}");
    let metrics = http::get(log.addr, "/metrics").text();
    assert!(
        metrics.contains("tally_log_spool_quarantined_total 2"),
        "the two bad .jsonl files are counted: {metrics}"
    );
    for name in ["not UTF-8", "aaaaaaaa"] {
        assert!(
            log.log().contains(name),
            "{name} not logged:\n{}",
            log.log()
        );
    }
}

/// The daemon runs as an unprivileged user (setpriv), as the NixOS module runs it; root
/// spools as the hook does under nix-daemon. The daemon's setgid spool directory gives the
/// files its group, so it drains them; a file root made unreadable is quarantined.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_running_as_its_own_user_drains_what_root_spooled() {
    const UID: u32 = 65534;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().join("log");
    std::fs::create_dir(&home).unwrap();
    let key = home.join("log.key");
    let origin = "user.spool.test/log";
    tally_tests::run_ok(
        tally()
            .args(["keygen", "--name", origin, "--secret-key-file"])
            .arg(&key),
    );
    let vkey = tally_store::read_signing_key(&key).unwrap().verifying_key();
    std::os::unix::fs::chown(&home, Some(UID), Some(UID)).unwrap();
    std::os::unix::fs::chown(&key, Some(UID), Some(UID)).unwrap();
    let config = home.join("log.toml");
    std::fs::write(
        &config,
        format!(
            "origin = \"{origin}\"\nsecret_key_file = \"{}\"\ndata_dir = \"{}\"\n\
             listen = \"127.0.0.1:0\"\nsubmit_socket = \"{}\"\nspool_dir = \"{}\"\n\
             spool_drain_interval_secs = 1\n",
            key.display(),
            home.join("data").display(),
            home.join("log.sock").display(),
            home.join("spool").display()
        ),
    )
    .unwrap();
    let ready = home.join("ready");
    let mut daemon = Command::new("setpriv")
        .args([
            &format!("--reuid={UID}"),
            &format!("--regid={UID}"),
            "--clear-groups",
        ])
        .arg(tally_bin())
        .args(["log", "serve", "--config"])
        .arg(&config)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("daemon.log")).unwrap())
        .spawn()
        .expect("setpriv (util-linux) runs the daemon as another user");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        assert!(
            Instant::now() < deadline && daemon.try_wait().unwrap().is_none(),
            "{}",
            std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let addr: std::net::SocketAddr =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&ready).unwrap())
            .unwrap()["listen"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    wait_healthy(addr, &mut daemon, &dir.path().join("daemon.log"));
    let spool_dir = home.join("spool");
    let mode = std::fs::metadata(&spool_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o2770, "the daemon made its spool setgid");

    // Root spools, as the hook does.
    let spooled = sample::attestation(7);
    let file = tally_store::Spool::open(&spool_dir)
        .unwrap()
        .push(std::slice::from_ref(&spooled))
        .unwrap();
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        std::fs::metadata(&file).map(|m| m.gid()).unwrap_or(UID),
        UID
    );
    // And a file root made unreadable to others.
    let hidden = spool_dir.join("00000000000000000001-dddddddd.jsonl");
    std::fs::write(
        &hidden,
        format!(
            "{}\n",
            serde_json::to_string(&sample::attestation(8)).unwrap()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o600)).unwrap();

    let address = Address::Http(format!("http://{addr}"));
    wait_attested(&address, &vkey, &spooled).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !spool_dir
        .join("quarantine/00000000000000000001-dddddddd.jsonl")
        .exists()
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(text.contains("setgid"), "{text}");
    let _ = daemon.kill();
    let _ = daemon.wait();
}
