//! The HTTP read API: C2SP tlog-tiles, `/metrics` and `/healthz`.
//!
//! ```text
//! GET /checkpoint                  the published checkpoint, with its cosignatures
//! GET /tile/<L>/<N>[.p/<W>]        hash tiles
//! GET /tile/entries/<N>[.p/<W>]    entry bundles
//! GET /metrics                     Prometheus text
//! GET /healthz                     "ok" once the log has a checkpoint
//! ```
//!
//! Tiles never change once the tree covers them: a full tile, and the first `W` items of a
//! partial one, are fixed by the append-only tree. So every tile the tree covers is served
//! with immutable cache headers, including partial widths of tiles that have since filled.
//! Tiles the tree does not cover are 404, and `/checkpoint` is never cached for long.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tally_core::tiles::{TileKind, TilePath};
use tally_store::LogStore;

use crate::metrics::Metrics;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    pub(crate) store: Arc<LogStore>,
    pub(crate) published: Arc<crate::publish::Published>,
    pub(crate) metrics: Arc<Metrics>,
}

/// The router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("HTTP read failed: {e}");
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("storage error: {e}\n"),
    )
}

async fn checkpoint(State(s): State<HttpState>) -> Response {
    match s.published.view() {
        Ok(view) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            view.note.clone(),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

async fn tile(State(s): State<HttpState>, Path(path): Path<String>) -> Response {
    let Ok(tile) = TilePath::parse(&format!("tile/{path}")) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "tile/{path} is not a tlog-tiles path: tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>]\n"
            ),
        );
    };
    let reader = match s.store.read() {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    // The tile as the current tree has it: it must be at least as wide as the request.
    let available = TilePath::for_tree(tile.kind, tile.index, reader.size());
    if available.is_none_or(|a| a.width() < tile.width()) {
        return text(
            StatusCode::NOT_FOUND,
            format!("{tile} is beyond the tree (size {})\n", reader.size()),
        );
    }
    let body = match tile.kind {
        TileKind::Hash { level } => reader.hash_tile(level, tile.index, tile.width()),
        TileKind::Entries => reader.entry_bundle(tile.index, tile.width()),
    };
    match body {
        Ok(bytes) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn healthz(State(s): State<HttpState>) -> Response {
    match s.store.read().and_then(|r| r.checkpoint()) {
        Ok(Some(_)) => text(StatusCode::OK, "ok\n"),
        Ok(None) => text(StatusCode::SERVICE_UNAVAILABLE, "no checkpoint yet\n"),
        Err(e) => internal(e),
    }
}
