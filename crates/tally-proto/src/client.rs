//! Reaching a log daemon: `unix:/path` or `http://host:port`, with an optional bearer token.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::v1::log_client::LogClient;

/// Where a daemon listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A Unix socket path (`unix:/run/tally/submit.sock`).
    Unix(PathBuf),
    /// An HTTP URL (`http://127.0.0.1:7420`).
    Http(String),
}

/// Why an address or a connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The address is neither `unix:<path>` nor `http(s)://host:port`.
    #[error("{0:?} is not an address: use unix:/path/to/socket or http://host:port")]
    Address(String),
    /// The token cannot be sent as an HTTP header.
    #[error("the bearer token contains characters that cannot go in an HTTP header")]
    Token,
    /// Connecting failed.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address.
        address: String,
        /// Why.
        source: tonic::transport::Error,
    },
}

impl FromStr for Address {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self, ClientError> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ClientError::Address(s.to_owned()));
            }
            Ok(Address::Unix(path.into()))
        } else if (s.starts_with("http://") || s.starts_with("https://")) && s.len() > 8 {
            Ok(Address::Http(s.trim_end_matches('/').to_owned()))
        } else {
            Err(ClientError::Address(s.to_owned()))
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Http(u) => f.write_str(u),
        }
    }
}

/// Adds `authorization: Bearer <token>` when a token is set.
#[derive(Clone, Debug, Default)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl BearerToken {
    /// A token to send, or none.
    pub fn new(token: Option<&str>) -> Result<BearerToken, ClientError> {
        token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| ClientError::Token)
            })
            .transpose()
            .map(BearerToken)
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A client of the `tally.v1.Log` service.
pub type Client = LogClient<InterceptedService<Channel, BearerToken>>;

/// A client of the `tally.v1.Aggregator` service.
pub type AggregatorClient = crate::v1::aggregator_client::AggregatorClient<Channel>;

/// Connects to an aggregator.
pub async fn connect_aggregator(address: &Address) -> Result<AggregatorClient, ClientError> {
    Ok(aggregator_client(channel(address).await?))
}

/// An aggregator client that connects on first use (see [`lazy_channel`]).
pub fn connect_aggregator_lazy(address: &Address) -> Result<AggregatorClient, ClientError> {
    Ok(aggregator_client(lazy_channel(address)?))
}

fn aggregator_client(channel: Channel) -> AggregatorClient {
    AggregatorClient::new(channel)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(64 << 20)
}

/// Connects to a log daemon.
pub async fn connect(address: &Address, token: BearerToken) -> Result<Client, ClientError> {
    let channel = channel(address).await?;
    Ok(LogClient::with_interceptor(channel, token)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// Receive windows large enough for a page of entries: with HTTP/2's default 64 KiB, a
/// streamed page of 1,000 entries stalls on flow control many times over.
fn windows(endpoint: Endpoint) -> Endpoint {
    endpoint
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20))
}

/// The endpoint for `address`: timeouts, windows and, for TCP, no Nagle delay.
fn endpoint(address: &Address) -> Result<Endpoint, ClientError> {
    let endpoint = match address {
        Address::Http(url) => Endpoint::from_shared(url.clone())
            .map_err(|_| ClientError::Address(url.clone()))?
            .tcp_nodelay(true),
        // The URI is required by the API but unused: the connector dials the socket.
        Address::Unix(_) => Endpoint::from_static("http://localhost"),
    };
    Ok(windows(endpoint.connect_timeout(Duration::from_secs(5))))
}

/// Dials a Unix socket.
fn unix_connector(
    path: PathBuf,
) -> impl tower::Service<
    tonic::transport::Uri,
    Response = TokioIo<tokio::net::UnixStream>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<TokioIo<tokio::net::UnixStream>>> + Send,
> + Clone
+ Send {
    tower::service_fn(move |_| {
        let path = path.clone();
        async move { Ok(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
    })
}

/// A gRPC channel to `address`, connected now.
pub async fn channel(address: &Address) -> Result<Channel, ClientError> {
    let endpoint = endpoint(address)?;
    let connected = match address {
        Address::Http(_) => endpoint.connect().await,
        Address::Unix(path) => {
            endpoint
                .connect_with_connector(unix_connector(path.clone()))
                .await
        }
    };
    connected.map_err(|source| ClientError::Connect {
        address: address.to_string(),
        source,
    })
}

/// A gRPC channel to `address` that connects on first use and reconnects as needed: for
/// services that must start while the other side is down.
pub fn lazy_channel(address: &Address) -> Result<Channel, ClientError> {
    let endpoint = endpoint(address)?;
    Ok(match address {
        Address::Http(_) => endpoint.connect_lazy(),
        Address::Unix(path) => endpoint.connect_with_connector_lazy(unix_connector(path.clone())),
    })
}

/// The conflicts an ALREADY_EXISTS status from `Submit` carries in its details.
pub fn submit_conflicts(status: &tonic::Status) -> Option<crate::v1::SubmitConflicts> {
    use prost::Message as _;
    (status.code() == tonic::Code::AlreadyExists)
        .then(|| crate::v1::SubmitConflicts::decode(status.details()).ok())
        .flatten()
}
