//! The Nix binary cache protocol: `/nix-cache-info`, `/<hash>.narinfo` and `/nar/<file>`
//! (GET and HEAD), plus `/explain/<hash>` (why a path is served or refused, as text or, for
//! `Accept: application/json`, JSON), `/metrics` and `/healthz`.
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
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tally_core::{SigningKey, StorePathHash};
use tokio_stream::StreamExt as _;

use crate::config::Mode;
use crate::decision::Decisions;
use crate::explain::{Evaluation, Explanation, Outcome, evaluate};
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
    /// Whether refusals are enforced or only reported.
    pub mode: Mode,
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
        .route("/explain/{hash}", get(explain))
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
            Ok(hash) => {
                let e = evaluate(&s, &hash).await;
                record(&s, &e);
                (e.outcome.kind(), respond(e.outcome))
            }
        },
    };
    s.metrics.narinfo(outcome);
    s.metrics
        .narinfo_latency
        .observe(start.elapsed().as_secs_f64());
    response
}

/// Logs and counts what an evaluation found.
fn record(s: &CacheState, e: &Evaluation) {
    let hash = &e.hash;
    if let Some(d) = &e.decision {
        s.metrics.decision(e.cached);
        if !e.cached {
            for v in &d.votes {
                if let tally_core::decision::Counted::Rejected(why) = &v.counted {
                    s.metrics.rejected(v.origin.as_str());
                    tracing::warn!(%hash, origin = %v.origin, "answer rejected: {why}");
                }
            }
        }
    }
    match &e.outcome {
        Outcome::Served(_) => {}
        Outcome::Refused { kind, reason } if *kind == "mismatch" => {
            let agreed = e.decision.as_ref().and_then(|d| match &d.verdict {
                tally_core::policy::Verdict::Trusted { agreed, .. } => Some(agreed),
                _ => None,
            });
            if let (Some((upstream, info)), Some(agreed)) = (&e.upstream, agreed) {
                for m in crate::decision::compare(info, agreed)
                    .into_iter()
                    .filter(|m| m.narinfo != m.attested)
                {
                    s.metrics.mismatch(m.field);
                    tracing::warn!(
                        path = %info.store_path,
                        %upstream,
                        field = m.field,
                        narinfo = %m.narinfo,
                        attested = %m.attested,
                        "refused: upstream narinfo differs from the trusted attestation"
                    );
                }
            } else {
                tracing::info!("refused: {reason}");
            }
        }
        Outcome::Refused { reason, .. } => tracing::info!("refused: {reason}"),
        Outcome::Failed { reason, .. } => tracing::warn!(%hash, "502: {reason}"),
        Outcome::PassedOn { kind, reason, .. } => {
            s.metrics.would_refuse(kind);
            tracing::warn!(%hash, "report-only: served what the gate would refuse ({kind}): {reason}");
        }
    }
}

/// The HTTP answer for an outcome.
fn respond(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Served(info) => {
            ([(header::CONTENT_TYPE, NARINFO_TYPE)], info.to_string()).into_response()
        }
        Outcome::PassedOn { text, .. } => {
            ([(header::CONTENT_TYPE, NARINFO_TYPE)], text).into_response()
        }
        Outcome::Refused { reason, .. } => text(StatusCode::NOT_FOUND, reason),
        Outcome::Failed { reason, .. } => text(StatusCode::BAD_GATEWAY, reason),
    }
}

/// `/explain/<hash>`: the evaluation a narinfo request would get, explained.
async fn explain(
    State(s): State<CacheState>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Response {
    let hash = match hash
        .trim_end_matches(".narinfo")
        .get(..32)
        .unwrap_or(&hash)
        .parse::<StorePathHash>()
    {
        Ok(h) => h,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{hash}: {e}")),
    };
    let e = evaluate(&s, &hash).await;
    let explained = Explanation::of(&s, &e);
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&explained).unwrap_or_default(),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            explained.to_text(),
        )
            .into_response()
    }
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
