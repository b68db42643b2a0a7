//! Logs that attack whoever follows them: real gRPC servers that sign their checkpoints
//! with a real key (so they get past the signature check) and then misbehave.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tally_core::checkpoint::{Checkpoint, SignedCheckpoint};
use tally_core::keys::{KeyName, SigningKey};
use tally_core::tlog::TreeHead;
use tally_core::{Hash, sample};
use tally_proto::v1;
use tally_proto::v1::log_server::{Log, LogServer};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// How a hostile log misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// `GetEntries` never ends: pages keep coming past the end asked for.
    Endless,
    /// Every entry is 1 MiB, far more than any attestation.
    Oversized,
    /// Every call hangs.
    Slow,
    /// Its checkpoint claims 2^62 entries; it serves attestation-sized noise for any range.
    HugeTree,
}

struct Hostile {
    attack: Attack,
    key: SigningKey,
}

impl Hostile {
    fn size(&self) -> u64 {
        match self.attack {
            Attack::HugeTree => 1 << 62,
            _ => 100_000,
        }
    }

    fn checkpoint(&self) -> Vec<u8> {
        let c = Checkpoint {
            origin: self.key.name().clone(),
            tree: TreeHead {
                size: self.size(),
                root: Hash::of(b"whatever I like"),
            },
            map_root: Hash::of(b"and a map to match"),
        };
        SignedCheckpoint::sign(c, &self.key).unwrap().to_bytes()
    }

    fn entry(&self, i: u64) -> Vec<u8> {
        match self.attack {
            Attack::Oversized => vec![b'x'; 1 << 20],
            _ => sample::attestation(i).as_bytes().to_vec(),
        }
    }

    async fn hang(&self) {
        if self.attack == Attack::Slow {
            std::future::pending::<()>().await;
        }
    }
}

type Pages = Pin<Box<dyn Stream<Item = Result<v1::EntryPage, Status>> + Send>>;

#[tonic::async_trait]
impl Log for Hostile {
    type GetEntriesStream = Pages;

    async fn submit(
        &self,
        _: Request<v1::SubmitRequest>,
    ) -> Result<Response<v1::SubmitResponse>, Status> {
        Err(Status::unimplemented("no"))
    }

    async fn get_checkpoint(
        &self,
        _: Request<v1::GetCheckpointRequest>,
    ) -> Result<Response<v1::Checkpoint>, Status> {
        self.hang().await;
        Ok(Response::new(v1::Checkpoint {
            note: self.checkpoint(),
        }))
    }

    async fn get_entries(
        &self,
        request: Request<v1::GetEntriesRequest>,
    ) -> Result<Response<Pages>, Status> {
        self.hang().await;
        let start = request.into_inner().start;
        let me = Hostile {
            attack: self.attack,
            key: self.key.clone(),
        };
        // Pages of 256 from `start`, for ever (the follower asked for at most 1,000).
        let pages = futures_stream(move |n| {
            let from = start + n * 256;
            Ok(v1::EntryPage {
                start: from,
                entries: (from..from + 256).map(|i| me.entry(i)).collect(),
            })
        });
        Ok(Response::new(Box::pin(pages)))
    }

    async fn get_inclusion_proof(
        &self,
        _: Request<v1::GetInclusionProofRequest>,
    ) -> Result<Response<v1::InclusionProof>, Status> {
        self.hang().await;
        Err(Status::unimplemented("no"))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<v1::GetConsistencyProofRequest>,
    ) -> Result<Response<v1::ConsistencyProof>, Status> {
        self.hang().await;
        let r = request.into_inner();
        Ok(Response::new(v1::ConsistencyProof {
            old_size: r.old_size,
            new_size: r.new_size,
            hashes: (0..40u8)
                .map(|i| Hash::of(&[i]).as_bytes().to_vec())
                .collect(),
        }))
    }

    async fn lookup(
        &self,
        _: Request<v1::LookupRequest>,
    ) -> Result<Response<v1::LookupResponse>, Status> {
        self.hang().await;
        Err(Status::unimplemented("no"))
    }
}

/// An endless stream: item `n` is `f(n)`.
fn futures_stream<T: Send + 'static>(
    f: impl Fn(u64) -> T + Send + 'static,
) -> impl Stream<Item = T> + Send {
    tokio_stream::iter(0u64..).map(f)
}

use tokio_stream::StreamExt as _;

/// A running hostile log; it stops when dropped.
pub struct HostileLog {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its origin.
    pub origin: String,
    /// Its verifier key.
    pub vkey: String,
    task: tokio::task::JoinHandle<()>,
}

impl HostileLog {
    /// Starts a log that carries out `attack`, under origin `origin`.
    pub async fn start(attack: Attack, origin: &str, seed: u8) -> HostileLog {
        let key = SigningKey::from_seed(KeyName::new(origin).unwrap(), [seed; 32]);
        let vkey = key.verifying_key().to_note_vkey();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = LogServer::new(Hostile { attack, key })
            .max_encoding_message_size(usize::MAX)
            .max_decoding_message_size(usize::MAX);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .timeout(Duration::from_secs(3600))
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        HostileLog {
            addr,
            origin: origin.to_owned(),
            vkey,
            task,
        }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for HostileLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server that answers every gRPC call with a well-framed message of bytes that are not
/// protobuf. It stops when dropped.
pub struct GarbageLog {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl GarbageLog {
    /// Starts it.
    pub async fn start() -> GarbageLog {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(garbage_connection(stream));
            }
        });
        GarbageLog { addr, task }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for GarbageLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Speaks just enough HTTP/2 to answer each request with HEADERS (200, application/grpc),
/// a DATA frame holding one gRPC message of junk, and trailers saying all went well.
async fn garbage_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let frame = |kind: u8, flags: u8, stream_id: u32, payload: &[u8]| {
        let mut f = Vec::with_capacity(9 + payload.len());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream_id.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    // Literal header fields without indexing, new names (HPACK 6.2.2).
    let header = |block: &mut Vec<u8>, name: &str, value: &str| {
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    };
    let mut preface = [0u8; 24];
    if stream.read_exact(&mut preface).await.is_err() {
        return;
    }
    let _ = stream.write_all(&frame(0x4, 0, 0, &[])).await; // SETTINGS
    let mut answered = std::collections::BTreeSet::new();
    loop {
        let mut head = [0u8; 9];
        if stream.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if stream.read_exact(&mut payload).await.is_err() {
            return;
        }
        if kind == 0x4 && flags & 0x1 == 0 {
            let _ = stream.write_all(&frame(0x4, 0x1, 0, &[])).await; // SETTINGS ACK
        }
        if kind == 0x1 && answered.insert(id) {
            let mut headers = vec![0x88]; // :status 200, indexed
            header(&mut headers, "content-type", "application/grpc");
            let mut message = vec![0u8];
            let junk = [0xffu8; 64];
            message.extend_from_slice(&(junk.len() as u32).to_be_bytes());
            message.extend_from_slice(&junk);
            let mut trailers = Vec::new();
            header(&mut trailers, "grpc-status", "0");
            let mut out = frame(0x1, 0x4, id, &headers);
            out.extend(frame(0x0, 0, id, &message));
            out.extend(frame(0x1, 0x5, id, &trailers));
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
    }
}

/// The peak resident set size of process `pid`, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
