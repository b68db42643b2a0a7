//! `tally import`: attest what an existing binary cache serves.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tally_cache::upstream::{BinaryCacheUrl, UpstreamError, Upstreams};
use tally_core::report::PathList;
use tally_core::{Attestation, StorePath};
use tally_nix::narinfo::NarInfo;
use tally_proto::client::Client;
use tally_proto::v1;
use tokio::sync::{Mutex, mpsc};

use crate::output::{self, outln};
use crate::runtime;

/// Turn a binary cache's narinfos into attestations in a log
///
/// For each path, fetches `<hash>.narinfo` from the cache and submits its NarHash, NarSize
/// and References, with the derivation from its Deriver. The output name is not in a
/// narinfo: it is inferred from the deriver's name by Nix's naming rule (`<name>` is output
/// `out` of `<name>.drv`, `<name>-dev` is its `dev`), and recorded as unknown when there is no
/// deriver or the name does not follow the rule (docs/formats.md).
///
/// Each narinfo must carry a valid signature by one of the --trusted-public-key keys (as Nix
/// checks them with require-sigs); an unsigned or wrongly signed one fails, unless
/// --no-check-sigs is given.
///
/// Paths the log already attests are skipped without asking the cache, so running the same
/// command again resumes an interrupted import. Requests run --jobs at a time; failed ones
/// are retried with backoff. Ends with a summary: imported, already present, missing
/// upstream, failed. Exits 1 if any failed.
///
/// Examples:
///
///   nix-store -qR /run/current-system > closure.txt
///   tally import --from-cache https://cache.nixos.org --log unix:/run/tally/log.sock \
///       --trusted-public-key cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY= \
///       --paths closure.txt
///
///   tally import --from-cache file:///srv/cache --log http://127.0.0.1:7420 \
///       --token-file submit.token --no-check-sigs /nix/store/7wm0…-hello-2.12.1
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// The binary cache: https://…, http://… or file:///path.
    #[arg(long, value_name = "URL")]
    from_cache: BinaryCacheUrl,
    #[command(flatten)]
    to: super::submit::LogTarget,
    /// A file of store paths, one per line (`nix-store -qR` output), or - for stdin.
    #[arg(long, value_name = "FILE", conflicts_with = "path")]
    paths: Option<PathBuf>,
    /// Narinfo requests in flight at once.
    #[arg(long, default_value_t = 16)]
    jobs: usize,
    /// Attestations per submit request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Seconds before a request to the cache times out.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
    /// A key the cache's narinfos must be signed by (Nix's `name:base64` public key form);
    /// repeat for several.
    #[arg(long = "trusted-public-key", value_name = "KEY", value_parser = crate::keyarg::PublicKeyParser)]
    trusted_public_keys: Vec<tally_core::VerifyingKey>,
    /// Import narinfos without checking their signatures.
    #[arg(long, conflicts_with = "trusted_public_keys")]
    no_check_sigs: bool,
    /// Store paths to import.
    #[arg(required_unless_present = "paths")]
    path: Vec<String>,
}

/// What became of each path.
#[derive(Default, Debug, serde::Serialize)]
struct Summary {
    paths: usize,
    imported: usize,
    already_present: usize,
    missing_upstream: usize,
    failed: usize,
    failures: Vec<Failure>,
}

#[derive(Debug, serde::Serialize)]
struct Failure {
    path: String,
    error: String,
}

/// One path's outcome, before submission.
enum Fetched {
    Present,
    Missing,
    Attest(Box<Attestation>),
    Failed(String),
}

pub(crate) fn run(args: Args, json: bool) -> anyhow::Result<ExitCode> {
    let text = match &args.paths {
        Some(file) if file.as_os_str() == "-" => {
            std::io::read_to_string(std::io::stdin()).context("reading stdin")?
        }
        Some(file) => {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        }
        None => {
            for p in &args.path {
                StorePath::parse(p).with_context(|| format!("{p} is not a store path"))?;
            }
            args.path.join("\n")
        }
    };
    let list = PathList::closure(&text).context("the paths to import")?;
    if list.skipped_derivations > 0 {
        eprintln!(
            "skipping {} derivation (.drv) paths: caches serve build outputs",
            list.skipped_derivations
        );
    }
    if args.jobs == 0 || args.batch == 0 {
        bail!("--jobs and --batch must be at least 1");
    }
    args.to.token()?;
    if args.trusted_public_keys.is_empty() && !args.no_check_sigs {
        bail!(
            "give the cache's signing key with --trusted-public-key (for cache.nixos.org: \
             cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=), or import \
             unsigned narinfos with --no-check-sigs"
        );
    }
    let upstream = Upstreams::new(
        vec![args.from_cache.clone()],
        Duration::from_secs(args.timeout.max(1)),
    )?;
    let start = Instant::now();
    let summary = runtime::block_on(async {
        let client = args.to.connect().await?;
        import(client, upstream, list.paths, &args).await
    })??;
    let seconds = start.elapsed().as_secs_f64();
    if json {
        output::json(&serde_json::json!({
            "cache": args.from_cache.to_string(), "log": args.to.log.to_string(),
            "seconds": seconds, "summary": summary,
        }))?;
    } else {
        for f in summary.failures.iter().take(20) {
            eprintln!("failed: {}: {}", f.path, f.error);
        }
        if summary.failures.len() > 20 {
            eprintln!(
                "… and {} more (--json lists all)",
                output::count(summary.failures.len() - 20, "failure", "failures")
            );
        }
        outln!(
            "{} from {} into {} in {seconds:.1} s: {} imported, {} already present, {} missing upstream, {} failed",
            output::count(summary.paths, "path", "paths"),
            args.from_cache,
            args.to.log,
            summary.imported,
            summary.already_present,
            summary.missing_upstream,
            summary.failed
        );
    }
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn import(
    client: Client,
    upstream: Upstreams,
    paths: Vec<StorePath>,
    args: &Args,
) -> anyhow::Result<Summary> {
    let bar = crate::progress::bar(paths.len() as u64, "importing");
    let summary = Arc::new(Mutex::new(Summary {
        paths: paths.len(),
        ..Summary::default()
    }));
    let queue = Arc::new(Mutex::new(paths.into_iter()));
    let (to_submit, mut submissions) = mpsc::channel::<Attestation>(args.batch * 2);
    let mut fetchers = tokio::task::JoinSet::new();
    for _ in 0..args.jobs {
        let (queue, summary, bar) = (queue.clone(), summary.clone(), bar.clone());
        let (mut client, upstream, to_submit) =
            (client.clone(), upstream.clone(), to_submit.clone());
        let keys = (!args.no_check_sigs).then(|| args.trusted_public_keys.clone());
        fetchers.spawn(async move {
            loop {
                let Some(path) = queue.lock().await.next() else {
                    return anyhow::Ok(());
                };
                let fetched = fetch(&mut client, &upstream, &path, &keys).await?;
                let mut s = summary.lock().await;
                match fetched {
                    Fetched::Present => s.already_present += 1,
                    Fetched::Missing => s.missing_upstream += 1,
                    Fetched::Failed(error) => {
                        s.failed += 1;
                        s.failures.push(Failure {
                            path: path.to_string(),
                            error,
                        });
                    }
                    Fetched::Attest(a) => {
                        drop(s);
                        if to_submit.send(*a).await.is_err() {
                            bail!("the submitter stopped");
                        }
                        continue;
                    }
                }
                bar.inc(1);
            }
        });
    }
    drop(to_submit);
    // Submit in batches as narinfos arrive, so an interrupted import keeps what it sent.
    let submitter = {
        let (summary, bar, mut client, batch) =
            (summary.clone(), bar.clone(), client.clone(), args.batch);
        tokio::spawn(async move {
            let mut pending = Vec::with_capacity(batch);
            while let Some(a) = submissions.recv().await {
                pending.push(a);
                // Send when the batch is full, or when nothing more is ready right now.
                if pending.len() >= batch || submissions.is_empty() {
                    let n = pending.len() as u64;
                    submit(&mut client, std::mem::take(&mut pending), &summary).await?;
                    bar.inc(n);
                }
            }
            anyhow::Ok(())
        })
    };
    let mut fetching = Ok(());
    while let Some(done) = fetchers.join_next().await {
        if let Err(e) = done.map_err(anyhow::Error::from).and_then(|r| r) {
            fetchers.abort_all();
            fetching = Err(e);
            break;
        }
    }
    // The submitter's error explains a fetcher's "the submitter stopped".
    submitter.await??;
    fetching?;
    bar.finish_and_clear();
    let summary = std::mem::take(&mut *summary.lock().await);
    Ok(summary)
}

/// Whether the log has `path`; if not, the cache's attestation for it.
async fn fetch(
    client: &mut Client,
    upstream: &Upstreams,
    path: &StorePath,
    keys: &Option<Vec<tally_core::VerifyingKey>>,
) -> anyhow::Result<Fetched> {
    let present = retry(|| {
        let mut client = client.clone();
        let query = path.to_string();
        async move {
            client
                .lookup(v1::LookupRequest { path: query })
                .await
                .map(|r| r.into_inner().entry.is_some())
        }
    })
    .await
    .map_err(|s| anyhow::anyhow!("asking the log about {path}: {}", s.message()))?;
    if present {
        return Ok(Fetched::Present);
    }
    let hash = path.hash();
    let found = retry(|| upstream.narinfo(&hash)).await;
    let text = match found {
        Ok(Some(found)) => found.text,
        Ok(None) => return Ok(Fetched::Missing),
        Err(e) => return Ok(Fetched::Failed(e.to_string())),
    };
    let narinfo = match NarInfo::parse(&text) {
        Ok(n) => n,
        Err(e) => return Ok(Fetched::Failed(format!("its narinfo: {e}"))),
    };
    if narinfo.store_path != *path {
        return Ok(Fetched::Failed(format!(
            "the cache's {hash}.narinfo is for {}",
            narinfo.store_path
        )));
    }
    if let Some(keys) = keys
        && !keys.iter().any(|k| narinfo.is_signed_by(k))
    {
        let names: Vec<&str> = keys.iter().map(|k| k.name().as_str()).collect();
        let signers: Vec<String> = narinfo
            .signatures
            .iter()
            .map(|s| s.split(':').next().unwrap_or_default().to_owned())
            .collect();
        return Ok(Fetched::Failed(format!(
            "its narinfo has no valid signature by {} (signed by: {}); refusing it \
             (--no-check-sigs imports unsigned narinfos)",
            names.join(", "),
            if signers.is_empty() {
                "nobody".to_owned()
            } else {
                signers.join(", ")
            }
        )));
    }
    Ok(match narinfo.attestation() {
        Ok(a) => Fetched::Attest(Box::new(a)),
        Err(e) => Fetched::Failed(format!("its narinfo: {e}")),
    })
}

/// Errors worth another try.
trait Transient {
    fn transient(&self) -> bool;
}

impl Transient for tonic::Status {
    fn transient(&self) -> bool {
        matches!(
            self.code(),
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::ResourceExhausted
        )
    }
}

impl Transient for UpstreamError {
    fn transient(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unavailable(_) | UpstreamError::Failed { .. }
        )
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the command retry policy gives up.
async fn retry<T, E: Transient, F: Future<Output = Result<T, E>>>(
    mut attempt: impl FnMut() -> F,
) -> Result<T, E> {
    let mut n = 0;
    loop {
        match attempt().await {
            Err(e) if e.transient() => match runtime::retry_delay(n) {
                Some(delay) => {
                    n += 1;
                    tokio::time::sleep(delay).await;
                }
                None => return Err(e),
            },
            result => return result,
        }
    }
}

/// Submits one batch; a conflicting attestation (the log attests the path differently) is
/// a failure of that path, not of the import.
async fn submit(
    client: &mut Client,
    batch: Vec<Attestation>,
    summary: &Mutex<Summary>,
) -> anyhow::Result<()> {
    let n = batch.len();
    let result = super::submit::submit_all(client.clone(), batch, n, 1, false).await?;
    let mut s = summary.lock().await;
    s.imported += result.appended;
    s.already_present += result.duplicates;
    for c in result.conflicts {
        s.failed += 1;
        s.failures.push(Failure {
            path: c.output_path.clone(),
            error: format!(
                "the log already attests {} with {} (entry {}); the cache says {}",
                c.output_path, c.existing_nar_hash, c.existing_index, c.submitted_nar_hash
            ),
        });
    }
    Ok(())
}
