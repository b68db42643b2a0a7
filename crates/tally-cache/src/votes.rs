//! Where the logs' answers come from: an aggregator (remote here, or in process through the
//! binary's own [`Votes`] implementation) or the logs themselves.
//!
//! A source only delivers. Nothing it says is believed: every answer is checked against the
//! cache's trust policy in [`crate::decision`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tally_core::StorePathHash;
use tally_core::decision::{self, Ballot, CheckpointMemo};
use tally_core::index::PathAnswer;
use tally_core::trust::{TrustPolicy, TrustedLog};
use tally_proto::client::{self, Address, AggregatorClient, BearerToken, Client};
use tally_proto::v1;

/// How long a source may take to answer about one path.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A boxed future, as [`Votes`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A source of the logs' answers about a path.
pub trait Votes: Send + Sync + 'static {
    /// Every answer this source has about `path`, unchecked. An error means the source could
    /// not be asked at all.
    fn ballots<'a>(&'a self, path: &'a StorePathHash)
    -> BoxFuture<'a, Result<Vec<Ballot>, String>>;

    /// What the source is, for logs and explanations.
    fn describe(&self) -> String;
}

/// A remote aggregator, asked over gRPC for every log's answer with its proofs.
pub struct RemoteAggregator {
    address: Address,
    client: AggregatorClient,
}

impl RemoteAggregator {
    /// An aggregator at `address`, connected on first use.
    pub fn new(address: Address) -> Result<RemoteAggregator, client::ClientError> {
        Ok(RemoteAggregator {
            client: client::connect_aggregator_lazy(&address)?,
            address,
        })
    }
}

impl Votes for RemoteAggregator {
    fn ballots<'a>(
        &'a self,
        path: &'a StorePathHash,
    ) -> BoxFuture<'a, Result<Vec<Ballot>, String>> {
        Box::pin(async move {
            let request = v1::QueryRequest {
                paths: vec![path.to_string()],
                policy: String::new(),
                proofs: true,
            };
            let answer = tokio::time::timeout(QUERY_TIMEOUT, self.client.clone().query(request))
                .await
                .map_err(|_| format!("{} did not answer in {QUERY_TIMEOUT:?}", self.address))?
                .map_err(|s| format!("{}: {}: {}", self.address, s.code(), s.message()))?
                .into_inner();
            let [result] = answer.results.as_slice() else {
                return Err(format!(
                    "{} sent {} results for one path",
                    self.address,
                    answer.results.len()
                ));
            };
            let answer = PathAnswer::try_from(result)
                .map_err(|e| format!("{} sent an unusable answer: {e}", self.address))?;
            if answer.hash != *path {
                return Err(format!(
                    "{} answered about {} instead",
                    self.address, answer.path
                ));
            }
            Ok(answer.ballots())
        })
    }

    fn describe(&self) -> String {
        format!("aggregator {}", self.address)
    }
}

/// The logs of a trust policy, asked directly with `Lookup`, each URL in turn until one
/// answer verifies: a URL serving bad proofs costs nothing while another serves good ones.
pub struct DirectLogs {
    trust: TrustPolicy,
    clients: Vec<Vec<(Address, Client)>>,
    checkpoints: CheckpointMemo,
}

impl DirectLogs {
    /// The logs of `trust`, at the URLs it lists. A log without a URL can never be asked.
    pub fn new(trust: &TrustPolicy) -> Result<DirectLogs, client::ClientError> {
        let clients = trust
            .logs()
            .iter()
            .map(|log| {
                log.urls
                    .iter()
                    .map(|url| {
                        let address: Address = url.parse()?;
                        let channel = client::lazy_channel(&address)?;
                        let client = v1::log_client::LogClient::with_interceptor(
                            channel,
                            BearerToken::default(),
                        )
                        .max_decoding_message_size(16 << 20);
                        Ok((address, client))
                    })
                    .collect::<Result<Vec<_>, client::ClientError>>()
            })
            .collect::<Result<Vec<_>, client::ClientError>>()?;
        Ok(DirectLogs {
            trust: trust.clone(),
            clients,
            checkpoints: CheckpointMemo::default(),
        })
    }

    /// The first answer from `log` that verifies; else the first that came (its checks fail
    /// again, and say why, when it is counted), or why none came.
    async fn ask(
        &self,
        log: &TrustedLog,
        urls: &[(Address, Client)],
        path: &StorePathHash,
    ) -> Ballot {
        let mut errors = Vec::new();
        let mut unverified = None;
        for (address, client) in urls {
            let request = v1::LookupRequest {
                path: path.to_string(),
            };
            let answer =
                match tokio::time::timeout(QUERY_TIMEOUT, client.clone().lookup(request)).await {
                    Err(_) => Err(format!("{address}: no answer in {QUERY_TIMEOUT:?}")),
                    Ok(Err(s)) => Err(format!("{address}: {}: {}", s.code(), s.message())),
                    Ok(Ok(r)) => tally_core::answer::LogAnswer::try_from(&r.into_inner())
                        .map_err(|e| format!("{address}: unusable answer: {e}")),
                };
            match answer {
                Ok(a) => {
                    let counted =
                        decision::count(&self.trust, log, path, &a, &self.checkpoints, now());
                    if counted.verified() {
                        unverified = Some(a);
                        break;
                    }
                    errors.push(format!("{address}: {counted}"));
                    unverified.get_or_insert(a);
                }
                Err(e) => errors.push(e),
            }
        }
        if urls.is_empty() {
            errors.push("the trust policy gives no URL for this log".into());
        }
        if !errors.is_empty() {
            tracing::debug!(origin = %log.origin(), %path, "asking the log: {}", errors.join("; "));
        }
        Ballot {
            origin: log.origin().to_string(),
            answer: unverified.ok_or_else(|| errors.join("; ")),
        }
    }
}

/// Seconds since 1970, for the age of cosignatures.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Votes for DirectLogs {
    fn ballots<'a>(
        &'a self,
        path: &'a StorePathHash,
    ) -> BoxFuture<'a, Result<Vec<Ballot>, String>> {
        Box::pin(async move {
            let asks = self
                .trust
                .logs()
                .iter()
                .zip(&self.clients)
                .map(|(log, urls)| self.ask(log, urls, path));
            Ok(futures_util::future::join_all(asks).await)
        })
    }

    fn describe(&self) -> String {
        match self.clients.len() {
            1 => "the 1 log of the trust policy, directly".to_owned(),
            n => format!("the {n} logs of the trust policy, directly"),
        }
    }
}
