//! The dashboard on the aggregator's HTTP port: server-rendered pages about the followed
//! logs, the evidence, single paths and named reproducibility reports.
//!
//! ```text
//! GET    /                      the logs: size, lag, checkpoint age, state, cosignature
//! GET    /disagreements         evidence, disagreements first (?kind=…&page=N)
//! GET    /evidence/<id>         one piece of evidence, with the `tally verify` command
//! GET    /evidence/<id>.json    its bundle, as a download
//! GET    /path/<hash part>      who attests what for one output, with proofs
//! GET    /path/<hash>/proofs.json  those proofs as a bundle for `tally verify`
//! GET    /reports               the named reports
//! GET    /reports/<name>        one report (?class=…&page=N)
//! PUT    /reports/<name>        define it: a closure list or a CycloneDX SBOM (admin token)
//! DELETE /reports/<name>        delete it (admin token)
//! ```
//!
//! Every page has a JSON twin, served for `Accept: application/json`. Pages never run a
//! script or load anything from elsewhere.

mod evidence;
pub(crate) mod html;
mod logs;
mod path;
mod reports;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::service::Shared;

pub use reports::report_document;

/// Rows per page of a long list.
const PER_PAGE: usize = 100;

/// The largest report upload: a closure of a million paths is about 70 MiB.
const MAX_UPLOAD: usize = 128 << 20;

/// The dashboard's routes.
pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(logs::page))
        .route("/disagreements", get(evidence::list))
        .route("/evidence/{file}", get(evidence::one))
        .route("/path/{hash}", get(path::page))
        .route("/path/{hash}/proofs.json", get(path::proofs))
        .route("/reports", get(reports::list))
        .route(
            "/reports/{name}",
            get(reports::page)
                .put(reports::put)
                .delete(reports::delete)
                .layer(DefaultBodyLimit::disable()),
        )
        .with_state(state)
}

/// Pages load nothing and run nothing; only their inline style applies.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'";

/// A file to save, as `name`.
fn attachment(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// Anything else: 404, or gRPC's "unimplemented" for a gRPC call.
pub(crate) async fn not_found(uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented(format!("no method {}", uri.path())).into_http();
    }
    problem(
        &headers,
        StatusCode::NOT_FOUND,
        format!("nothing at {}: start from /", uri.path()),
    )
}

/// Whether the client asked for the JSON twin.
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

/// The page, or its JSON twin.
fn respond<T: Serialize>(
    headers: &HeaderMap,
    model: &T,
    render: impl FnOnce(&T) -> String,
) -> Response {
    if wants_json(headers) {
        ([(header::VARY, "Accept")], axum::Json(model)).into_response()
    } else {
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
                (header::VARY, "Accept"),
                (header::CONTENT_SECURITY_POLICY, CSP),
            ],
            render(model),
        )
            .into_response()
    }
}

/// An error, as a page or as `{"error": …}`.
fn problem(headers: &HeaderMap, status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    if wants_json(headers) {
        return (
            status,
            [(header::VARY, "Accept")],
            axum::Json(serde_json::json!({ "error": message })),
        )
            .into_response();
    }
    use std::fmt::Write as _;
    let mut body = html::Html::default();
    html::w!(body, "<p>{}</p>", html::esc(&message));
    let title = status.canonical_reason().unwrap_or("Error");
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::VARY, "Accept"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        html::page(title, "", &body),
    )
        .into_response()
}

/// Runs blocking store work off the async threads; failures become a 500 response.
async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    headers: &HeaderMap,
    s: &Shared,
    f: impl FnOnce(&Shared) -> Result<T, E> + Send + 'static,
) -> Result<T, Response> {
    let s = s.clone();
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!("dashboard: {e}");
            Err(problem(
                headers,
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
            ))
        }
        Err(e) => Err(problem(
            headers,
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}

/// A list page's query string: `page` (from 1) and a filter.
#[derive(serde::Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    class: Option<String>,
}

impl ListQuery {
    /// The page asked for; anything that is not a page number means the first.
    fn page(&self) -> usize {
        self.page
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or(1)
            .max(1)
    }
}
