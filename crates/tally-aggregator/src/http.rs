//! HTTP on the aggregator's port: health, metrics and the witness. The dashboard's pages
//! (`crate::dashboard`) share the port.
//!
//! ```text
//! GET  /healthz                       "ok"
//! GET  /metrics                       Prometheus text
//! POST /add-checkpoint                C2SP tlog-witness
//! GET  /witness/checkpoint/<origin>   the latest cosigned checkpoint of a log
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
    match tokio::task::spawn_blocking(move || witness.add_checkpoint(&body)).await {
        Ok(Ok((code, content_type, body))) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, content_type)],
            body,
        )
            .into_response(),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn cosigned(State(s): State<Shared>, Path(origin): Path<String>) -> Response {
    let Ok(origin) = KeyName::new(&origin) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("{origin:?} is not an origin\n"),
        );
    };
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
