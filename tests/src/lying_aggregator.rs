//! An aggregator that lies: a real gRPC server whose `Query` answers come from a function
//! the test writes, so it can claim whatever verdict and votes an attacker would.

use std::net::SocketAddr;
use std::sync::Arc;

use tally_proto::v1;
use tally_proto::v1::aggregator_server::{Aggregator, AggregatorServer};
use tonic::{Request, Response, Status};

type Answer = dyn Fn(&str) -> v1::PathVerdict + Send + Sync;

struct Liar(Arc<Answer>);

#[tonic::async_trait]
impl Aggregator for Liar {
    async fn query(
        &self,
        request: Request<v1::QueryRequest>,
    ) -> Result<Response<v1::QueryResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(v1::QueryResponse {
            policy: "1-of-1".into(),
            results: r.paths.iter().map(|p| (self.0)(p)).collect(),
        }))
    }

    async fn list_logs(
        &self,
        _: Request<v1::ListLogsRequest>,
    ) -> Result<Response<v1::ListLogsResponse>, Status> {
        Ok(Response::new(v1::ListLogsResponse::default()))
    }

    async fn list_evidence(
        &self,
        _: Request<v1::ListEvidenceRequest>,
    ) -> Result<Response<v1::ListEvidenceResponse>, Status> {
        Ok(Response::new(v1::ListEvidenceResponse::default()))
    }

    async fn get_evidence(
        &self,
        _: Request<v1::GetEvidenceRequest>,
    ) -> Result<Response<v1::Evidence>, Status> {
        Err(Status::not_found("none"))
    }

    async fn get_cosigned_checkpoint(
        &self,
        _: Request<v1::GetCosignedCheckpointRequest>,
    ) -> Result<Response<v1::Checkpoint>, Status> {
        Err(Status::not_found("none"))
    }
}

/// A running lying aggregator; it stops when dropped.
pub struct LyingAggregator {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl LyingAggregator {
    /// Answers every path asked with `answer(path)`.
    pub async fn start(
        answer: impl Fn(&str) -> v1::PathVerdict + Send + Sync + 'static,
    ) -> LyingAggregator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = AggregatorServer::new(Liar(Arc::new(answer)));
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        LyingAggregator { addr, task }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LyingAggregator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
