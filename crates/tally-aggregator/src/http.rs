//! HTTP on the aggregator's port: health, metrics and the witness. The dashboard's pages
//! (`crate::dashboard`) share the port.
//!
//! ```text
//! GET  /healthz                       "ok"
//! GET  /metrics                       Prometheus text
//! POST /add-checkpoint                C2SP tlog-witness
//! GET  /witness/checkpoint/<origin>   the latest cosigned checkpoint of a log
//! GET  /<hex SHA-256 of origin>/checkpoint   the same, at the tlog-witness monitoring path
//! ```

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tally_core::KeyName;

use crate::service::Shared;

/// The router.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/witness/checkpoint/{*origin}", get(cosigned))
        .route("/{origin_hash}/checkpoint", get(monitored))
        .with_state(state)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

async fn metrics(State(s): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn add_checkpoint(State(s): State<Shared>, body: Bytes) -> Response {
    let Some(witness) = s.witness.clone() else {
        return text(
            StatusCode::NOT_FOUND,
            "this aggregator runs no witness (set witness_key_file)\n",
        );
    };
    match witness.add_checkpoint(body.to_vec()).await {
        Ok((code, content_type, body)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, content_type)],
            body,
        )
            .into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// `/<hex SHA-256 of the origin>/checkpoint`, the C2SP tlog-witness monitoring path.
async fn monitored(State(s): State<Shared>, Path(hash): Path<String>) -> Response {
    let origin = s
        .logs
        .iter()
        .map(|l| &l.origin)
        .find(|o| crate::gossip::checkpoint_path(o) == format!("{hash}/checkpoint"));
    match origin {
        Some(o) => cosigned_note(&s, o.clone()),
        None => text(
            StatusCode::NOT_FOUND,
            "no followed log with this origin hash\n",
        ),
    }
}

async fn cosigned(State(s): State<Shared>, Path(origin): Path<String>) -> Response {
    let Ok(origin) = KeyName::new(&origin) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("{origin:?} is not an origin\n"),
        );
    };
    cosigned_note(&s, origin)
}

fn cosigned_note(s: &Shared, origin: KeyName) -> Response {
    match s.store.cosigned(&origin) {
        Ok(Some(c)) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            c.note,
        )
            .into_response(),
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            format!("no cosigned checkpoint of {origin}\n"),
        ),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}
