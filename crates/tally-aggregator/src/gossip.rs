//! Gossip: reading other aggregators' and witnesses' cosigned checkpoints, so that a log
//! showing one history here and another there is caught.
//!
//! Every `gossip_interval_secs`, for each peer and each followed log, the checkpoint at the
//! peer's C2SP tlog-witness monitoring path is read and its log signature checked. It is then
//! offered to the log's follower like any view: one that contradicts the verified tree is a
//! fork, kept as evidence from the two checkpoints the log signed. A peer that is a Tally
//! aggregator may already hold that evidence (its view reached the other's size first), so
//! its fork and bad-map-root evidence about the followed logs is read too, and kept here once
//! it verifies with the logs' keys.

use std::sync::Arc;
use std::time::Duration;

use tally_core::evidence::BundleFile;
use tally_core::{Hash, KeyName, SignedCheckpoint, VerifyingKey};
use tally_proto::client::{self, Address};
use tally_proto::v1;
use tally_store::StoredCheckpoint;
use tokio_util::sync::CancellationToken;

use crate::evidence::{EXCLUDING, EvidenceSink};
use crate::offered::Offered;

/// Reads the peers, and offers what they show.
pub(crate) struct Gossip {
    pub(crate) peers: Vec<String>,
    pub(crate) logs: Vec<(KeyName, VerifyingKey)>,
    pub(crate) offered: Arc<Offered>,
    pub(crate) evidence: Arc<EvidenceSink>,
    pub(crate) every: Duration,
}

/// The C2SP monitoring path of a log's checkpoint: `<hex SHA-256 of the origin>/checkpoint`.
pub fn checkpoint_path(origin: &KeyName) -> String {
    format!(
        "{}/checkpoint",
        Hash::of(origin.as_str().as_bytes()).to_hex()
    )
}

impl Gossip {
    /// Runs until `shutdown`.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let Ok(http) = client::http_client(Duration::from_secs(20)) else {
            tracing::error!("gossip: no HTTP client");
            return;
        };
        loop {
            for peer in &self.peers {
                self.checkpoints(&http, peer).await;
                self.peer_evidence(peer).await;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.every) => {}
            }
        }
    }

    async fn checkpoints(&self, http: &reqwest::Client, peer: &str) {
        for (origin, key) in &self.logs {
            let url = format!("{}/{}", peer.trim_end_matches('/'), checkpoint_path(origin));
            let note = match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(b) => b.to_vec(),
                    Err(e) => {
                        tracing::debug!("gossip {url}: {e}");
                        continue;
                    }
                },
                Ok(r) => {
                    tracing::debug!("gossip {url}: {}", r.status());
                    continue;
                }
                Err(e) => {
                    tracing::debug!("gossip {url}: {e}");
                    continue;
                }
            };
            // Only the log's own signature makes a checkpoint worth comparing.
            if SignedCheckpoint::open(&note, key).is_err() {
                tracing::warn!("gossip: {url} served a checkpoint not signed by {origin}");
                continue;
            }
            if let Ok(c) = StoredCheckpoint::from_note(note) {
                self.offered.offer(origin, &format!("peer {peer}"), c);
            }
        }
    }

    /// Fork and bad-map-root evidence a Tally aggregator peer holds about the followed logs.
    async fn peer_evidence(&self, peer: &str) {
        let Ok(address) = peer.parse::<Address>() else {
            return;
        };
        let Ok(mut c) = client::connect_aggregator(&address).await else {
            return;
        };
        let Ok(list) = client::all_evidence(&mut c, "").await else {
            return;
        };
        for summary in list {
            let about_ours = summary
                .origins
                .iter()
                .any(|o| self.logs.iter().any(|(origin, _)| origin.as_str() == o));
            if !about_ours || !EXCLUDING.contains(&summary.kind.as_str()) {
                continue;
            }
            let Ok(e) = c
                .get_evidence(v1::GetEvidenceRequest { id: summary.id })
                .await
            else {
                continue;
            };
            let Ok(file) = serde_json::from_str::<BundleFile>(&e.into_inner().bundle_json) else {
                continue;
            };
            // Kept only if it verifies with the logs' keys: a peer's word counts for nothing.
            let dedupe = format!("peer:{peer}:{}", summary.id);
            self.evidence.record(&dedupe, file.bundle);
        }
    }
}
