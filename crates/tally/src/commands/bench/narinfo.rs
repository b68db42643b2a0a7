//! `tally bench narinfo` and `tally bench sample-cache`: load a binary cache with narinfo
//! requests, and write an upstream cache of sample narinfos to load it with.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use tally_cache::upstream::{BinaryCacheUrl, Upstreams};
use tally_core::sample;
use tally_nix::narinfo::NarInfo;

use super::{Report, closed_loop, rss_mb, sample_walk};
use crate::output::{self, outln};

/// Load a cache with narinfo requests, report throughput and latency
///
/// N clients each fetch narinfos of sample paths (samples 0..RANGE) back to back until C
/// are answered, over one keep-alive HTTP client as Nix would. Point it at a `tally cache`
/// and at the upstream it reads to see the latency the proxy adds.
///
/// Example:
///
///   tally bench sample-cache --dir /srv/upstream --count 10000
///   tally bench narinfo --cache http://127.0.0.1:7422 --clients 8 --count 50000 --range 10000
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct NarinfoArgs {
    /// The binary cache: http://host:port.
    #[arg(long)]
    cache: BinaryCacheUrl,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Narinfos to fetch in all.
    #[arg(long, default_value_t = 50_000)]
    count: u64,
    /// Sample indices to draw from: 0..RANGE.
    #[arg(long, default_value_t = 10_000)]
    range: u64,
    /// Report this process's resident memory at the end (the cache's pid).
    #[arg(long)]
    daemon_pid: Option<u32>,
}

/// Write a file:// cache of sample narinfos for `tally bench narinfo`
///
/// It holds the narinfos of sample attestations 0..COUNT (no NAR files), which match the
/// logs `tally bench submit` fills.
///
/// Example:
///
///   tally bench sample-cache --dir /srv/upstream --count 10000
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct SampleCacheArgs {
    /// The cache directory (created if needed).
    #[arg(long)]
    dir: PathBuf,
    /// How many sample narinfos.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
}

pub(super) async fn run(args: NarinfoArgs) -> anyhow::Result<Report> {
    if args.clients == 0 || args.range == 0 {
        bail!("--clients and --range must be at least 1");
    }
    let upstreams = Upstreams::new(vec![args.cache.clone()], Duration::from_secs(10))?;
    let requests: Vec<_> = sample_walk(args.count, args.range)
        .map(|i| sample::output_path(i).hash())
        .collect();
    let missing = Arc::new(AtomicU64::new(0));
    let bar = crate::progress::bar(args.count, "fetching narinfos");
    let run = closed_loop(requests, args.clients, &bar, {
        let missing = missing.clone();
        move |hash| {
            let (upstreams, missing) = (upstreams.clone(), missing.clone());
            async move {
                let cache = &upstreams.caches()[0];
                if upstreams.narinfo_from(cache, &hash).await?.is_none() {
                    missing.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(1)
            }
        }
    })
    .await?;
    let missing = missing.load(Ordering::Relaxed);
    let mode = format!(
        "{} fetching narinfos from {} ({missing} not found)",
        output::count(args.clients, "client", "clients"),
        args.cache
    );
    let mut report = Report::new(mode, "narinfos", args.count, &run);
    report.daemon_rss_mb = args.daemon_pid.and_then(rss_mb);
    Ok(report)
}

pub(super) fn write_sample_cache(args: SampleCacheArgs, json: bool) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)?;
    std::fs::write(args.dir.join("nix-cache-info"), "StoreDir: /nix/store\n")?;
    let bar = crate::progress::bar(args.count, "writing narinfos");
    for i in 0..args.count {
        let a = sample::attestation(i);
        let hash = a.nar_hash();
        let info = NarInfo {
            store_path: a.output_path().clone(),
            url: format!("nar/{}.nar", hash.to_nix32().trim_start_matches("sha256:")),
            compression: Some("none".into()),
            file_hash: Some(hash.to_string()),
            file_size: Some(a.nar_size().to_string()),
            nar_hash: hash,
            nar_size: a.nar_size(),
            references: a.references().to_vec(),
            deriver: a.drv_path().cloned(),
            signatures: vec![],
            ca: None,
            other: vec![],
        };
        std::fs::write(
            args.dir.join(format!("{}.narinfo", a.output_path().hash())),
            info.to_string(),
        )?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    if json {
        output::json(&serde_json::json!({"dir": args.dir, "narinfos": args.count}))?;
    } else {
        outln!(
            "wrote {} to {}",
            output::count(args.count, "narinfo", "narinfos"),
            args.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
