//! Getting checkpoints witnessed: C2SP tlog-witness `add-checkpoint` to every configured
//! witness, at a bounded cadence, and publishing what enough of them cosigned.
//!
//! Each round takes a snapshot of the log, and sends its checkpoint to each witness with a
//! consistency proof from the size that witness last cosigned. The spec's answers:
//!
//! | status | meaning | what the log does |
//! |---|---|---|
//! | 200 | cosignature lines | keeps the valid ones |
//! | 409, `text/x.tlog.size` | the witness is at another size | resends once, from that size |
//! | 422 | the consistency proof did not verify | forgets the witness's size; next round asks afresh |
//! | 404 | the witness does not know this log | logs that its operator must add it |
//! | 403 | no valid signature from a key it trusts for this origin | logs the key mismatch |
//! | 400, other | a bad request or a witness failure | logs, retries next round |
//!
//! When at least `witness_quorum` witnesses cosigned, readers move to that snapshot. A round
//! never blocks submissions: sequencing goes on, and the next round carries the newest
//! checkpoint. Each witness sees at most one new checkpoint per `witness_interval_secs`
//! (plus a retry after a 409), so a public witness network's budget is respected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_core::Note;
use tally_core::cosignature;
use tally_core::note::NoteSignature;
use tally_core::witness::AddCheckpoint;
use tally_store::{LogReader, StoredCheckpoint};
use tokio_util::sync::CancellationToken;

use crate::config::WitnessConfig;
use crate::metrics::Metrics;
use crate::publish::{Published, View};

/// How long one witness may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The witnesses and what the log knows of each.
pub struct Witnessing {
    witnesses: Vec<Tracked>,
    quorum: usize,
    every: Duration,
    refresh: Duration,
    client: reqwest::Client,
    published: Arc<Published>,
    metrics: Arc<Metrics>,
    /// The checkpoint being witnessed, until a newer one replaces it.
    current: Option<Round>,
}

struct Tracked {
    config: WitnessConfig,
    /// The size this witness last cosigned, if known.
    size: Option<u64>,
}

/// One checkpoint and the cosignatures collected for it so far, over as many rounds as it
/// stays the latest.
struct Round {
    reader: Arc<LogReader>,
    stored: StoredCheckpoint,
    note: Note,
    /// Which witnesses cosigned it.
    cosigned: Vec<bool>,
    /// How many cosignatures the published view carries.
    published_with: Option<usize>,
    /// When collecting began: after `refresh`, the same checkpoint is collected again.
    started: Instant,
}

/// What one witness answered.
enum Answer {
    Cosigned(Vec<NoteSignature>),
    /// At another size: resend from it.
    AtSize(u64),
    Failed(String),
}

impl Witnessing {
    /// Witnessing for `witnesses`, publishing once `quorum` cosigned, every `every`, and
    /// collecting fresh cosignatures for an unchanged checkpoint after `refresh`.
    pub fn new(
        witnesses: Vec<WitnessConfig>,
        quorum: usize,
        every: Duration,
        refresh: Duration,
        published: Arc<Published>,
        metrics: Arc<Metrics>,
    ) -> Result<Witnessing, String> {
        Ok(Witnessing {
            witnesses: witnesses
                .into_iter()
                .map(|config| Tracked { config, size: None })
                .collect(),
            quorum,
            every,
            refresh,
            client: tally_proto::client::http_client(TIMEOUT).map_err(|e| e.to_string())?,
            published,
            metrics,
            current: None,
        })
    }

    /// Runs rounds until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.round().await {
                tracing::warn!("witnessing: {e}");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.every) => {}
            }
        }
    }

    /// One round: the latest checkpoint to every witness that has not cosigned it yet, and
    /// publishing it once enough have.
    async fn round(&mut self) -> Result<(), String> {
        let store = Arc::clone(self.published.store());
        let (reader, stored) = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let reader = store.read().map_err(|e| e.to_string())?;
            let stored = reader
                .checkpoint()
                .map_err(|e| e.to_string())?
                .ok_or("the log has no checkpoint yet")?;
            Ok((reader, stored))
        })
        .await
        .map_err(|e| e.to_string())??;
        let size = stored.checkpoint.tree.size;
        // A new checkpoint starts a new collection; so does an old one, now and then, so
        // that an idle log's cosignatures stay fresh.
        let same = self.current.as_ref().is_some_and(|r| {
            r.stored.checkpoint == stored.checkpoint && r.started.elapsed() < self.refresh
        });
        if !same {
            self.current = Some(Round {
                reader: Arc::new(reader),
                note: Note::parse(&stored.note).map_err(|e| e.to_string())?,
                stored,
                cosigned: vec![false; self.witnesses.len()],
                published_with: None,
                started: Instant::now(),
            });
        }
        let Some(round) = self.current.take() else {
            return Ok(());
        };
        let mut round = round;
        for i in 0..self.witnesses.len() {
            if round.cosigned[i] {
                continue;
            }
            let lines = self.ask(i, &round.reader, &round.stored.note, size).await;
            if !lines.is_empty() {
                round.cosigned[i] = true;
                for sig in lines {
                    round.note.add_signature(sig);
                }
            }
        }
        self.metrics
            .witnessed_size
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        let count = round.cosigned.iter().filter(|c| **c).count();
        let result = if count < self.quorum {
            tracing::warn!(
                size,
                cosigned = count,
                quorum = self.quorum,
                "too few witnesses cosigned; readers stay at the last witnessed checkpoint"
            );
            Ok(())
        } else if round.published_with != Some(count) {
            let view = View {
                reader: Arc::clone(&round.reader),
                checkpoint: round.stored.checkpoint.clone(),
                note: round.note.to_bytes(),
            };
            let published = Arc::clone(&self.published);
            let r = tokio::task::spawn_blocking(move || published.publish(view))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string());
            if r.is_ok() {
                round.published_with = Some(count);
                tracing::info!(size, cosigned = count, "published a witnessed checkpoint");
            }
            r
        } else {
            Ok(())
        };
        self.current = Some(round);
        result
    }

    /// Asks witness `i` to cosign the checkpoint `note` of `size`, resending once after a 409.
    /// Returns its valid cosignature lines.
    async fn ask(
        &mut self,
        i: usize,
        reader: &Arc<LogReader>,
        note: &[u8],
        size: u64,
    ) -> Vec<NoteSignature> {
        let mut old = self.witnesses[i].size.unwrap_or(0).min(size);
        for _ in 0..2 {
            let answer = self.add_checkpoint(i, reader, note, old, size).await;
            let url = &self.witnesses[i].config.url;
            match answer {
                Answer::Cosigned(lines) => {
                    self.metrics.witness(url, "cosigned");
                    self.witnesses[i].size = Some(size);
                    return lines;
                }
                Answer::AtSize(k) if k <= size && k != old => {
                    self.metrics.witness(url, "conflict");
                    self.witnesses[i].size = Some(k);
                    old = k;
                }
                Answer::AtSize(k) => {
                    self.metrics.witness(url, "conflict");
                    tracing::error!(
                        witness = %url,
                        "the witness has cosigned size {k} of this log, but the log is at {size}: \
                         another instance with this key, or a rollback of the database?"
                    );
                    return Vec::new();
                }
                Answer::Failed(why) => {
                    self.metrics.witness(url, "failed");
                    tracing::warn!(witness = %url, "add-checkpoint of size {size}: {why}");
                    return Vec::new();
                }
            }
        }
        Vec::new()
    }

    async fn add_checkpoint(
        &mut self,
        i: usize,
        reader: &Arc<LogReader>,
        note: &[u8],
        old: u64,
        size: u64,
    ) -> Answer {
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            let r = Arc::clone(reader);
            match tokio::task::spawn_blocking(move || r.consistency_proof(old, size)).await {
                Ok(Ok(p)) => p.hashes,
                Ok(Err(e)) => return Answer::Failed(format!("consistency proof: {e}")),
                Err(e) => return Answer::Failed(e.to_string()),
            }
        };
        let body = AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: note.to_vec(),
        }
        .to_body();
        let witness = &self.witnesses[i].config;
        let url = format!("{}/add-checkpoint", witness.url.trim_end_matches('/'));
        let response = match self.client.post(&url).body(body).send().await {
            Ok(r) => r,
            Err(e) => return Answer::Failed(format!("{url}: {e}")),
        };
        let status = response.status().as_u16();
        let size_body = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/x.tlog.size"));
        let text = response.text().await.unwrap_or_default();
        match status {
            200 => {
                let Ok(parsed) = Note::parse(note) else {
                    return Answer::Failed("our own checkpoint does not parse".into());
                };
                let lines = cosignature::valid_lines(&parsed, &text, &witness.vkey);
                if lines.is_empty() {
                    Answer::Failed(format!(
                        "200, but no valid cosignature by {} in the answer {:?}",
                        witness.vkey,
                        text.trim()
                    ))
                } else {
                    Answer::Cosigned(lines)
                }
            }
            409 if size_body => match text.trim().parse::<u64>() {
                Ok(k) => Answer::AtSize(k),
                Err(_) => Answer::Failed(format!("409 with a bad size body {:?}", text.trim())),
            },
            422 => {
                self.witnesses[i].size = None;
                Answer::Failed(format!(
                    "422: the witness did not accept the consistency proof from {old}: {}",
                    text.trim()
                ))
            }
            404 => Answer::Failed(format!(
                "404: the witness does not know this log; ask its operator to add the origin \
                 and the log's verifier key ({})",
                text.trim()
            )),
            403 => Answer::Failed(format!(
                "403: the witness does not accept this log's signature (it does not know the \
                 log, or trusts another key for its origin; ask its operator to add the origin \
                 and the log's verifier key): {}",
                text.trim()
            )),
            code => Answer::Failed(format!("{code}: {}", text.trim())),
        }
    }
}
