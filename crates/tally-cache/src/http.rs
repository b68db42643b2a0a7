//! The Nix binary cache protocol: `/nix-cache-info`, `/<hash>.narinfo` and `/nar/<file>`
//! (GET and HEAD), plus `/metrics` and `/healthz`.
//!
//! A narinfo is served only when the gate in [`crate::decision`] admits it; every other
//! outcome is a 404 (Nix then builds the path or asks the next substituter) or, when an
//! upstream or the aggregator failed, a 502, because a 404 would be remembered by Nix as
//! "absent" for an hour (`narinfo-cache-negative-ttl`) and an error must never read as an
//! answer.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tally_core::{SigningKey, StorePathHash};
use tally_nix::narinfo::NarInfo;
use tokio_stream::StreamExt as _;

use crate::decision::{Decisions, admit};
use crate::metrics::Metrics;
use crate::upstream::{NarFile, Upstreams};

const NARINFO_TYPE: &str = "text/x-nix-narinfo";
const NAR_TYPE: &str = "application/x-nix-nar";
const CACHE_INFO_TYPE: &str = "text/x-nix-cache-info";

/// What the handlers share.
#[derive(Clone)]
pub struct CacheState {
    /// The upstream caches.
    pub upstreams: Upstreams,
    /// Verdicts.
    pub decisions: Arc<Decisions>,
    /// The re-signing key.
    pub key: Arc<SigningKey>,
    /// `/nix-cache-info`'s priority.
    pub priority: u32,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// The routes.
pub fn router(state: CacheState) -> Router {
    Router::new()
        .route("/nix-cache-info", get(cache_info))
        .route("/nar/{file}", get(nar))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/{file}", get(narinfo))
        .with_state(state)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body + "\n",
    )
        .into_response()
}

async fn cache_info(State(s): State<CacheState>) -> Response {
    (
        [(header::CONTENT_TYPE, CACHE_INFO_TYPE)],
        format!(
            "StoreDir: {}\nWantMassQuery: 1\nPriority: {}\n",
            tally_core::store_path::STORE_DIR,
            s.priority
        ),
    )
        .into_response()
}

async fn metrics(State(s): State<CacheState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn narinfo(State(s): State<CacheState>, Path(file): Path<String>) -> Response {
    let start = Instant::now();
    let (outcome, response) = match file.strip_suffix(".narinfo") {
        None => (
            "bad_request",
            text(StatusCode::NOT_FOUND, format!("no such file: {file}")),
        ),
        Some(hash) => match hash.parse::<StorePathHash>() {
            Err(e) => (
                "bad_request",
                text(StatusCode::NOT_FOUND, format!("{file}: {e}")),
            ),
            Ok(hash) => answer_narinfo(&s, &hash).await,
        },
    };
    s.metrics.narinfo(outcome);
    s.metrics
        .narinfo_latency
        .observe(start.elapsed().as_secs_f64());
    response
}

/// Fetches the upstream narinfo and the verdict at once, and serves the re-signed narinfo
/// only if the gate admits it.
async fn answer_narinfo(s: &CacheState, hash: &StorePathHash) -> (&'static str, Response) {
    let (found, decision) = tokio::join!(s.upstreams.narinfo(hash), s.decisions.decide(hash));
    let found = match found {
        Ok(Some(found)) => found,
        Ok(None) => {
            return (
                "not_upstream",
                text(StatusCode::NOT_FOUND, format!("{hash}: no upstream has it")),
            );
        }
        Err(e) => {
            tracing::warn!(%hash, "upstream failed: {e}");
            return (
                "upstream_error",
                text(StatusCode::BAD_GATEWAY, e.to_string()),
            );
        }
    };
    let mut info = match NarInfo::parse(&found.text) {
        Ok(info) if info.store_path.hash() == *hash => info,
        Ok(info) => {
            let problem = format!(
                "{} served a narinfo for {} when asked for {hash}",
                found.cache, info.store_path
            );
            tracing::warn!("{problem}");
            return (
                "bad_upstream_narinfo",
                text(StatusCode::BAD_GATEWAY, problem),
            );
        }
        Err(e) => {
            let problem = format!("{} served a bad narinfo for {hash}: {e}", found.cache);
            tracing::warn!("{problem}");
            return (
                "bad_upstream_narinfo",
                text(StatusCode::BAD_GATEWAY, problem),
            );
        }
    };
    let verdict = match decision {
        Ok((verdict, cached)) => {
            s.metrics.decision(cached);
            verdict
        }
        Err(e) => {
            tracing::warn!(%hash, "no decision: {e}");
            return ("no_decision", text(StatusCode::BAD_GATEWAY, e.to_string()));
        }
    };
    if let Err(refusal) = admit(&info, &verdict) {
        let path = &info.store_path;
        if let crate::decision::Refusal::Mismatch(fields) = &refusal {
            for m in fields {
                s.metrics.mismatch(m.field);
                tracing::warn!(
                    %path,
                    upstream = %found.cache,
                    field = m.field,
                    narinfo = %m.narinfo,
                    attested = %m.attested,
                    "refused: upstream narinfo differs from the trusted attestation"
                );
            }
        } else {
            tracing::info!(%path, "refused: {refusal}");
        }
        return (
            refusal.kind(),
            text(StatusCode::NOT_FOUND, format!("{path}: {refusal}")),
        );
    }
    info.sign(&s.key);
    (
        "served",
        ([(header::CONTENT_TYPE, NARINFO_TYPE)], info.to_string()).into_response(),
    )
}

async fn nar(State(s): State<CacheState>, method: Method, Path(file): Path<String>) -> Response {
    let file = match file.parse::<NarFile>() {
        Ok(f) => f,
        Err(e) => {
            s.metrics.nar("bad_request");
            return text(StatusCode::NOT_FOUND, e.to_string());
        }
    };
    let head = method == Method::HEAD;
    match s.upstreams.nar(&file, head).await {
        Ok(Some(nar)) => {
            s.metrics.nar("served");
            let counter = s.metrics.nar_bytes.clone();
            let body = nar.body.map(move |chunk| {
                if let Ok(bytes) = &chunk {
                    counter.inc_by(bytes.len() as u64);
                }
                chunk
            });
            let mut response = Response::new(Body::from_stream(body));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(NAR_TYPE));
            if let Some(length) = nar.length {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            }
            response
        }
        Ok(None) => {
            s.metrics.nar("not_upstream");
            text(
                StatusCode::NOT_FOUND,
                format!("nar/{file}: no upstream has it"),
            )
        }
        Err(e) => {
            s.metrics.nar("upstream_error");
            tracing::warn!("nar/{file}: {e}");
            text(StatusCode::BAD_GATEWAY, e.to_string())
        }
    }
}
