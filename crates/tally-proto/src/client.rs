//! Reaching a daemon: `unix:/path`, `http://host:port` or `https://host:port`, with an
//! optional bearer token.
//!
//! The scheme is honoured or refused, never downgraded: `https://` is TLS (rustls with
//! ring, the system's roots, plus any CA file given to [`add_ca_file`]); `http://` is
//! plaintext. A bearer token is never sent in clear to a host that is not loopback, unless
//! the caller says so with [`BearerToken::allow_plaintext`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Once;
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
    /// A plaintext HTTP URL (`http://127.0.0.1:7420`).
    Http(String),
    /// An HTTPS URL (`https://log.example.org`): TLS, never plaintext.
    Https(String),
}

impl ClientError {
    /// Names the service that was expected, for the hint in a connection error.
    fn expecting(self, service: Service) -> ClientError {
        match self {
            ClientError::Connect {
                address, reason, ..
            } => ClientError::Connect {
                address,
                reason,
                service: Some(service),
            },
            other => other,
        }
    }
}

impl Address {
    /// Whether what is sent to this address can be read on the way: plaintext HTTP to a host
    /// that is not loopback.
    pub fn is_plaintext_remote(&self) -> bool {
        let Address::Http(url) = self else {
            return false;
        };
        let rest = url.trim_start_matches("http://");
        let host = match rest.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => rest.split([':', '/']).next().unwrap_or_default(),
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        !loopback
    }
}

/// Extra CA certificates (PEM) that `https://` connections trust besides the system's roots.
static EXTRA_CA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// Trusts the CA certificates in `path` (PEM) for every `https://` connection this process
/// makes, besides the system's roots. Call it once, at start-up.
pub fn add_ca_file(path: &std::path::Path) -> Result<(), ClientError> {
    let pem = std::fs::read(path).map_err(|e| ClientError::CaFile {
        path: path.to_owned(),
        problem: e.to_string(),
    })?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(ClientError::CaFile {
            path: path.to_owned(),
            problem: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        });
    }
    let _ = EXTRA_CA.set(pem);
    Ok(())
}

/// The CA certificates given to [`add_ca_file`], if any.
pub fn extra_ca() -> Option<&'static [u8]> {
    EXTRA_CA.get().map(Vec::as_slice)
}

/// Why an address or a connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The address is neither `unix:<path>` nor `http(s)://host:port`.
    #[error(
        "{0:?} is not an address: use unix:/path/to/socket, http://host:port or https://host:port"
    )]
    Address(String),
    /// A bearer token would go in clear over the network.
    #[error(
        "refusing to send a bearer token in clear to {0}: use https:// or a unix: socket, or allow it explicitly (--allow-plaintext-token)"
    )]
    PlaintextToken(String),
    /// The HTTP client cannot be built.
    #[error("HTTP client: {0}")]
    Http(String),
    /// A CA file cannot be used.
    #[error("CA file {path}: {problem}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The token cannot be sent as an HTTP header.
    #[error("the bearer token contains characters that cannot go in an HTTP header")]
    Token,
    /// Connecting failed.
    #[error("cannot connect to {address}: {reason}{}", hint(*.service))]
    Connect {
        /// The address.
        address: String,
        /// Why, in a few words (the innermost cause: "Connection refused (os error 111)").
        reason: String,
        /// What was expected to listen there.
        service: Option<Service>,
    },
}

/// The Tally services a client talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// `tally log serve`.
    Log,
    /// `tally aggregate serve`.
    Aggregator,
    /// `tally cache serve`.
    Cache,
}

impl Service {
    /// The command that runs it.
    pub fn command(self) -> &'static str {
        match self {
            Service::Log => "tally log serve",
            Service::Aggregator => "tally aggregate serve",
            Service::Cache => "tally cache serve",
        }
    }

    /// What it is, in words.
    pub fn name(self) -> &'static str {
        match self {
            Service::Log => "a Tally log",
            Service::Aggregator => "a Tally aggregator",
            Service::Cache => "a Tally binary cache",
        }
    }

    /// Its default port.
    pub fn default_port(self) -> u16 {
        match self {
            Service::Log => 7420,
            Service::Aggregator => 7421,
            Service::Cache => 7422,
        }
    }
}

fn hint(service: Option<Service>) -> String {
    service.map_or_else(String::new, |s| {
        format!("; is `{}` running there?", s.command())
    })
}

/// The innermost cause of an error, which is the one that says what happened.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// Says, for an error status from `address` where `expected` was asked, which service
/// actually answers there, when it is another: the usual reason for an empty UNIMPLEMENTED
/// or a "grpc-status header missing". Probes the address over HTTP.
pub async fn wrong_service(address: &Address, expected: Service) -> Option<String> {
    let base = match address {
        Address::Http(u) | Address::Https(u) => u.clone(),
        Address::Unix(_) => return None,
    };
    let http = http_client(Duration::from_secs(5)).ok()?;
    let get = |path: &'static str| {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        async move {
            let r = http.get(url).send().await.ok()?;
            r.status().is_success().then_some(())?;
            r.text().await.ok()
        }
    };
    // Judged by content: a gRPC server answers unknown paths with HTTP 200 too.
    let actual = if get("/nix-cache-info")
        .await
        .is_some_and(|t| t.contains("StoreDir: "))
    {
        Service::Cache
    } else if get("/checkpoint").await.is_some_and(|t| {
        t.lines()
            .nth(1)
            .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    }) {
        Service::Log
    } else if get("/metrics")
        .await
        .is_some_and(|m| m.contains("tally_aggregator"))
    {
        Service::Aggregator
    } else {
        return Some(format!(
            "{base} answers, but it is not a Tally service (no log, aggregator or binary cache \
             there); {} listens on port {} by default",
            expected.name(),
            expected.default_port()
        ));
    };
    (actual != expected).then(|| {
        let suggestion = match actual {
            Service::Log => format!("to ask a log, use `tally log lookup --log {base}`"),
            Service::Cache => {
                format!("to ask a cache why, use `tally cache explain --cache {base}`")
            }
            Service::Aggregator => {
                format!("to ask an aggregator, use `tally query --aggregator {base}`")
            }
        };
        format!(
            "{base} answers, but it is {}, not {} ({} listens on port {} by default); {suggestion}",
            actual.name(),
            expected.name(),
            expected.name(),
            expected.default_port()
        )
    })
}

impl FromStr for Address {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self, ClientError> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ClientError::Address(s.to_owned()));
            }
            Ok(Address::Unix(path.into()))
        } else if s.starts_with("http://") && s.len() > "http://".len() {
            Ok(Address::Http(s.trim_end_matches('/').to_owned()))
        } else if s.starts_with("https://") && s.len() > "https://".len() {
            Ok(Address::Https(s.trim_end_matches('/').to_owned()))
        } else {
            Err(ClientError::Address(s.to_owned()))
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Http(u) | Address::Https(u) => f.write_str(u),
        }
    }
}

/// Adds `authorization: Bearer <token>` when a token is set.
#[derive(Clone, Debug, Default)]
pub struct BearerToken {
    value: Option<MetadataValue<tonic::metadata::Ascii>>,
    plaintext_allowed: bool,
}

impl BearerToken {
    /// A token to send, or none.
    pub fn new(token: Option<&str>) -> Result<BearerToken, ClientError> {
        let value = token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| ClientError::Token)
            })
            .transpose()?;
        Ok(BearerToken {
            value,
            plaintext_allowed: false,
        })
    }

    /// Lets the token go over plaintext HTTP to a host that is not loopback (a trusted
    /// network, or a test).
    pub fn allow_plaintext(mut self) -> BearerToken {
        self.plaintext_allowed = true;
        self
    }

    /// Refuses to send this token in clear to `address`.
    fn check(&self, address: &Address) -> Result<(), ClientError> {
        if self.value.is_some() && !self.plaintext_allowed && address.is_plaintext_remote() {
            return Err(ClientError::PlaintextToken(address.to_string()));
        }
        Ok(())
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.value {
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
    Ok(aggregator_client(
        channel(address)
            .await
            .map_err(|e| e.expecting(Service::Aggregator))?,
    ))
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
    token.check(address)?;
    let channel = channel(address)
        .await
        .map_err(|e| e.expecting(Service::Log))?;
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
        Address::Https(url) => {
            let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
            if let Some(pem) = extra_ca() {
                tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
            }
            Endpoint::from_shared(url.clone())
                .map_err(|_| ClientError::Address(url.clone()))?
                .tcp_nodelay(true)
                .tls_config(tls)
                .map_err(|source| ClientError::Connect {
                    address: url.clone(),
                    reason: innermost(&source),
                    service: None,
                })?
        }
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
        Address::Http(_) | Address::Https(_) => endpoint.connect().await,
        Address::Unix(path) => {
            endpoint
                .connect_with_connector(unix_connector(path.clone()))
                .await
        }
    };
    connected.map_err(|source| ClientError::Connect {
        address: address.to_string(),
        reason: innermost(&source),
        service: None,
    })
}

/// A gRPC channel to `address` that connects on first use and reconnects as needed: for
/// services that must start while the other side is down.
pub fn lazy_channel(address: &Address) -> Result<Channel, ClientError> {
    let endpoint = endpoint(address)?;
    Ok(match address {
        Address::Http(_) | Address::Https(_) => endpoint.connect_lazy(),
        Address::Unix(path) => endpoint.connect_with_connector_lazy(unix_connector(path.clone())),
    })
}

/// The HTTP client every Tally HTTP request goes through: rustls with ring, the system's
/// roots plus any CA file given to [`add_ca_file`], and `timeout` for
/// connecting and for each read.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, ClientError> {
    static PROVIDER: Once = Once::new();
    // rustls needs one process-wide crypto provider; another caller may have set it.
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = extra_ca() {
        for cert in reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ClientError::Http(format!("CA file: {e}")))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| ClientError::Http(e.to_string()))
}

/// Every evidence summary an aggregator holds (about `origin`, or all), page by page.
pub async fn all_evidence(
    client: &mut AggregatorClient,
    origin: &str,
) -> Result<Vec<crate::v1::EvidenceSummary>, tonic::Status> {
    let mut all = Vec::new();
    let mut after_id = 0;
    loop {
        let page = client
            .list_evidence(crate::v1::ListEvidenceRequest {
                origin: origin.to_owned(),
                after_id,
                limit: 0,
            })
            .await?
            .into_inner();
        after_id = page.evidence.last().map_or(after_id, |e| e.id);
        let done = !page.more || page.evidence.is_empty();
        all.extend(page.evidence);
        if done {
            return Ok(all);
        }
    }
}

/// The conflicts an ALREADY_EXISTS status from `Submit` carries in its details.
pub fn submit_conflicts(status: &tonic::Status) -> Option<crate::v1::SubmitConflicts> {
    use prost::Message as _;
    (status.code() == tonic::Code::AlreadyExists)
        .then(|| crate::v1::SubmitConflicts::decode(status.details()).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_kept_and_tokens_stay_off_the_network_in_clear() {
        let https: Address = "https://log.example.org/".parse().unwrap();
        assert_eq!(https, Address::Https("https://log.example.org".into()));
        assert!(matches!(
            "ftp://x".parse::<Address>(),
            Err(ClientError::Address(_))
        ));
        let token = BearerToken::new(Some("secret")).unwrap();
        for (addr, refused) in [
            ("http://log.example.org:7420", true),
            ("http://10.0.0.1:7420", true),
            ("http://127.0.0.1:7420", false),
            ("http://[::1]:7420", false),
            ("http://localhost:7420", false),
            ("https://log.example.org", false),
            ("unix:/run/tally/log.sock", false),
        ] {
            let a: Address = addr.parse().unwrap();
            assert_eq!(token.check(&a).is_err(), refused, "{addr}");
        }
        let allowed = token.allow_plaintext();
        assert!(allowed.check(&"http://10.0.0.1:1".parse().unwrap()).is_ok());
        assert!(
            BearerToken::default()
                .check(&"http://10.0.0.1:1".parse().unwrap())
                .is_ok()
        );
    }
}
