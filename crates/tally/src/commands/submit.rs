//! `tally submit`: append attestations to a log.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use tally_core::{Attestation, AttestationFields, NarHash, StorePath};
use tally_proto::client::{self, Address, BearerToken, Client};
use tally_proto::v1;
use tokio::sync::Mutex;

use crate::output::outln;
use crate::{output, runtime};

/// Submit attestations to a log
///
/// One attestation comes from flags; many come from JSON lines (--jsonl FILE, or - for
/// stdin), one attestation per line in the form docs/formats.md shows. All input is checked
/// before anything is sent. Bulk input shows a progress bar on a terminal and ends with a
/// summary. Exits 1 if the log refused any attestation because it already attests that
/// output path differently.
///
/// Writes go over the log's Unix socket, or over http:// with the log's bearer token.
///
/// Examples:
///
///   tally submit --log unix:/run/tally/log.sock --jsonl attestations.jsonl
///
///   tally submit --log http://builder1:7420 --token-file submit.token \
///       --output-path /nix/store/7wm0…-hello-2.12.1 --nar-hash sha256:0mdq… --nar-size 226560 \
///       --drv-path /nix/store/1ynz…-hello-2.12.1.drv --output-name out \
///       --reference /nix/store/9y8p…-glibc-2.38-27
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    #[command(flatten)]
    to: LogTarget,
    /// JSON lines to submit, or - for stdin.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["output_path", "drv_path", "output_name", "nar_hash", "nar_size", "references"])]
    jsonl: Option<PathBuf>,
    /// Attestations per request (at most the log's batch_size).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// The output path (single attestation).
    #[arg(long, value_parser = StorePath::parse)]
    output_path: Option<StorePath>,
    /// The derivation that built it.
    #[arg(long, value_parser = StorePath::parse)]
    drv_path: Option<StorePath>,
    /// The output's name in that derivation.
    #[arg(long)]
    output_name: Option<String>,
    /// The NAR hash (sha256:<nixbase32>, sha256:<hex> or sha256-<base64>).
    #[arg(long)]
    nar_hash: Option<NarHash>,
    /// The NAR size in bytes.
    #[arg(long)]
    nar_size: Option<u64>,
    /// A reference (repeat for each; full path or basename).
    #[arg(long = "reference", value_parser = StorePath::parse_lenient)]
    references: Vec<StorePath>,
}

/// Totals of a submission run.
#[derive(Default, Debug, serde::Serialize)]
pub(crate) struct Summary {
    pub(crate) submitted: usize,
    pub(crate) appended: usize,
    pub(crate) duplicates: usize,
    pub(crate) conflicts: Vec<Conflict>,
    pub(crate) log_size: u64,
}

/// One refused attestation.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Conflict {
    pub(crate) output_path: String,
    pub(crate) existing_index: u64,
    pub(crate) existing_nar_hash: String,
    pub(crate) submitted_nar_hash: String,
}

pub(crate) fn run(args: Args, json: bool) -> anyhow::Result<ExitCode> {
    args.to.token()?;
    let attestations = match &args.jsonl {
        Some(path) => read_jsonl(path)?,
        None => vec![single(&args)?],
    };
    if args.batch == 0 || args.jobs == 0 {
        bail!("--batch and --jobs must be at least 1");
    }
    let bulk = args.jsonl.is_some();
    let start = Instant::now();
    let summary = runtime::block_on(async {
        let client = args.to.connect().await?;
        submit_all(client, attestations, args.batch, args.jobs, bulk).await
    })??;
    let seconds = start.elapsed().as_secs_f64();
    if json {
        output::json(&serde_json::json!({
            "log": args.to.log.to_string(), "seconds": seconds, "summary": summary,
        }))?;
    } else {
        for c in &summary.conflicts {
            eprintln!(
                "conflict: {} is already attested with {} (entry {}); submitted {}",
                c.output_path, c.existing_nar_hash, c.existing_index, c.submitted_nar_hash
            );
        }
        outln!(
            "submitted {} to {} in {seconds:.2} s: {} appended, {} already present, {} conflicting; log size {}",
            output::count(summary.submitted, "attestation", "attestations"),
            args.to.log,
            summary.appended,
            summary.duplicates,
            summary.conflicts.len(),
            summary.log_size
        );
    }
    Ok(if summary.conflicts.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The log to submit to, and the token that allows it: the one way every command submits.
#[derive(clap::Args, Debug)]
pub(crate) struct LogTarget {
    /// The log: unix:/path/to/socket, or http(s)://host:port (needs --token-file).
    #[arg(long)]
    pub(crate) log: Address,
    /// A file holding the log's submit bearer token (mode 0600).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Send the token over plaintext http:// to a host that is not loopback (anyone on the
    /// path can read it and submit as this builder).
    #[arg(long)]
    allow_plaintext_token: bool,
}

impl LogTarget {
    /// The token to send, read and checked: call it before any work, so a missing token is
    /// the first thing said.
    pub(crate) fn token(&self) -> anyhow::Result<BearerToken> {
        read_token(
            &self.log,
            self.token_file.as_deref(),
            self.allow_plaintext_token,
        )
    }

    /// Connects with the token, if any.
    pub(crate) async fn connect(&self) -> anyhow::Result<tally_proto::client::Client> {
        Ok(tally_proto::client::connect(&self.log, self.token()?).await?)
    }
}

/// The bearer token for `log`, required over TCP and refused over a socket. It goes in clear
/// over http:// to a host that is not loopback only with `allow_plaintext`.
pub(crate) fn read_token(
    log: &Address,
    file: Option<&Path>,
    allow_plaintext: bool,
) -> anyhow::Result<BearerToken> {
    match (log, file) {
        (Address::Http(_) | Address::Https(_), None) => bail!(
            "submitting to {log} needs --token-file (the log's submit_token_file); \
             or use the log's unix: socket"
        ),
        (_, Some(path)) => {
            let token = tally_store::read_secret(path)?;
            let token = BearerToken::new(Some(&token))?;
            Ok(if allow_plaintext {
                token.allow_plaintext()
            } else {
                token
            })
        }
        (Address::Unix(_), None) => Ok(BearerToken::default()),
    }
}

fn single(args: &Args) -> anyhow::Result<Attestation> {
    let missing = |flag: &str| anyhow::anyhow!("{flag} is required (or use --jsonl FILE)");
    Attestation::new(AttestationFields {
        drv_path: args.drv_path.clone(),
        output_name: args.output_name.clone(),
        output_path: args
            .output_path
            .clone()
            .ok_or_else(|| missing("--output-path"))?,
        nar_hash: args.nar_hash.ok_or_else(|| missing("--nar-hash"))?,
        nar_size: args.nar_size.ok_or_else(|| missing("--nar-size"))?,
        references: args.references.clone(),
    })
    .context("the attestation given by flags")
}

fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Attestation>> {
    let reader: Box<dyn std::io::BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    };
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            attestation_line(&line)
                .map_err(|why| anyhow::anyhow!("{} line {}: {why}", path.display(), n + 1))?,
        );
    }
    if out.is_empty() {
        bail!("{} holds no attestations", path.display());
    }
    Ok(out)
}

/// One JSONL line as an attestation, or what is wrong with it in words an operator can act
/// on: a JSON array or pretty-printed JSON is named as such.
fn attestation_line(line: &str) -> Result<Attestation, String> {
    const ONE_PER_LINE: &str = "give one compact JSON object per line";
    let trimmed = line.trim();
    if trimmed.starts_with('[') {
        return Err(format!(
            "this is a JSON array; {ONE_PER_LINE} (`jq -c '.[]' FILE` turns an array into lines)"
        ));
    }
    if trimmed == "{" || !trimmed.ends_with('}') {
        return Err(format!(
            "this looks like pretty-printed JSON; {ONE_PER_LINE} (`jq -c . FILE` compacts it)"
        ));
    }
    serde_json::from_str(line).map_err(|e| {
        let message = e.to_string();
        // serde_json ends with "at line 1 column N": the line is ours, the column is its.
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m);
        format!(
            "not a valid attestation: {message} (column {}); {ONE_PER_LINE}",
            e.column()
        )
    })
}

/// Submits in batches, `jobs` at a time, retrying unavailable logs and resubmitting a batch
/// without the attestations the log refused as conflicting.
pub(crate) async fn submit_all(
    client: Client,
    attestations: Vec<Attestation>,
    batch: usize,
    jobs: usize,
    progress: bool,
) -> anyhow::Result<Summary> {
    let bar = if progress {
        crate::progress::bar(attestations.len() as u64, "submitting")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let batches: Vec<Vec<Attestation>> = attestations.chunks(batch).map(<[_]>::to_vec).collect();
    let queue = Arc::new(Mutex::new(batches.into_iter()));
    let summary = Arc::new(Mutex::new(Summary::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..jobs {
        let (queue, summary, bar, mut client) =
            (queue.clone(), summary.clone(), bar.clone(), client.clone());
        tasks.spawn(async move {
            loop {
                let Some(batch) = queue.lock().await.next() else {
                    return anyhow::Ok(());
                };
                let n = batch.len() as u64;
                submit_batch(&mut client, batch, &summary).await?;
                bar.inc(n);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    bar.finish_and_clear();
    let mut summary = std::mem::take(&mut *summary.lock().await);
    if summary.appended + summary.duplicates == 0 {
        // Nothing was taken (everything conflicted): the size comes from the log itself.
        let mut c = client.clone();
        if let Ok(r) = c.get_checkpoint(v1::GetCheckpointRequest {}).await {
            summary.log_size = tally_core::UnverifiedCheckpoint::parse(&r.into_inner().note)
                .map_or(0, |c| c.size());
        }
    }
    Ok(summary)
}

async fn submit_batch(
    client: &mut Client,
    mut batch: Vec<Attestation>,
    summary: &Mutex<Summary>,
) -> anyhow::Result<()> {
    let mut attempt = 0;
    while !batch.is_empty() {
        let request = v1::SubmitRequest {
            attestations: batch.iter().map(|a| a.as_bytes().to_vec()).collect(),
        };
        match client.submit(request).await {
            Ok(response) => {
                let response = response.into_inner();
                let size = response
                    .checkpoint
                    .and_then(|c| tally_core::Note::parse(&c.note).ok())
                    .and_then(|n| tally_core::Checkpoint::from_text(n.text()).ok())
                    .map_or(0, |c| c.tree.size);
                let mut s = summary.lock().await;
                s.submitted += batch.len();
                for r in response.results {
                    if r.duplicate {
                        s.duplicates += 1;
                    } else {
                        s.appended += 1;
                    }
                }
                s.log_size = s.log_size.max(size);
                return Ok(());
            }
            Err(status) => {
                if let Some(details) = client::submit_conflicts(&status) {
                    let mut positions: Vec<usize> = details
                        .conflicts
                        .iter()
                        .map(|c| c.position as usize)
                        .collect();
                    positions.sort_unstable();
                    positions.dedup();
                    let mut s = summary.lock().await;
                    s.submitted += positions.len();
                    s.conflicts
                        .extend(details.conflicts.into_iter().map(|c| Conflict {
                            output_path: c.output_path,
                            existing_index: c.existing_index,
                            existing_nar_hash: c.existing_nar_hash,
                            submitted_nar_hash: c.submitted_nar_hash,
                        }));
                    for p in positions.into_iter().rev() {
                        if p < batch.len() {
                            batch.remove(p);
                        }
                    }
                    continue;
                }
                let retryable = matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                );
                match runtime::retry_delay(attempt).filter(|_| retryable) {
                    Some(delay) => {
                        attempt += 1;
                        tokio::time::sleep(delay).await;
                    }
                    None => bail!(
                        "the log refused the submission ({:?}): {}",
                        status.code(),
                        status.message()
                    ),
                }
            }
        }
    }
    Ok(())
}
