//! Errors from talking to a Tally service, said so an operator can act on them.

use tally_proto::client::{self, Address, Service};

/// An error status from `address`, where `expected` was asked: names the service that
/// actually answers there when it is another, and never leaves the message empty.
pub(crate) async fn status(
    address: &Address,
    what: &str,
    status: tonic::Status,
    expected: Service,
) -> anyhow::Error {
    let wrong_service = matches!(
        status.code(),
        tonic::Code::Unimplemented | tonic::Code::Unknown | tonic::Code::Internal
    ) && (status.message().is_empty()
        || status.message().contains("grpc-status header missing")
        || status.message().contains("HTTP status"));
    if wrong_service && let Some(why) = client::wrong_service(address, expected).await {
        return anyhow::anyhow!("{what}: {why}");
    }
    let message = if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_owned()
    };
    anyhow::anyhow!("{what} from {address}: {message}")
}
