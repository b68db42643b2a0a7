//! `/reports` and `/reports/<name>`: named reproducibility reports, and the self-contained
//! page `tally report --html` writes.

use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tally_core::StorePath;
use tally_core::report::{PathList, Reproducibility, Source, Summary};

use super::html::{self, Html, esc, w};
use super::{ListQuery, MAX_UPLOAD, PER_PAGE, blocking, problem, respond};
use crate::reports::{Page, Report, ReportError, Row};
use crate::service::Shared;

/// Disputed paths listed on a report's first screen.
const DISPUTED_SHOWN: usize = 50;

#[derive(Serialize)]
struct ReportsPage {
    reports: Vec<ReportLine>,
    /// Whether reports can be defined here (an admin token is configured).
    uploads: bool,
}

#[derive(Serialize)]
struct ReportLine {
    name: String,
    source: Source,
    summary: Summary,
    computed_unix: u64,
}

fn render_list(m: &ReportsPage) -> String {
    let mut h = Html::default();
    if m.reports.is_empty() {
        w!(h, "<p>No reports yet.</p>");
    } else {
        w!(
            h,
            "<table><tr><th>report</th><th>from</th><th>paths</th><th>reproduced</th>\
             <th>disputed</th><th>single</th><th>unknown</th><th>updated</th></tr>"
        );
        for r in &m.reports {
            w!(
                h,
                "<tr><td><a href=\"/reports/{0}\">{0}</a></td><td>{1}</td><td class=\"n\">{2}</td>",
                esc(&r.name),
                source_name(r.source),
                r.summary.total()
            );
            for c in Reproducibility::ALL {
                w!(
                    h,
                    "<td class=\"n\"><span class=\"{c}\">{:.1}%</span> ({})</td>",
                    r.summary.percent(c),
                    r.summary.count(c)
                );
            }
            w!(h, "<td>{}</td></tr>", html::utc(r.computed_unix));
        }
        w!(h, "</table>");
    }
    w!(
        h,
        "<h2>Define a report</h2><p>Upload a closure (<code>nix-store -qR</code> output) or a \
         CycloneDX JSON SBOM{}:</p><pre>nix-store -qR /run/current-system &gt; closure.txt\n\
         curl -X PUT -H \"Authorization: Bearer $(cat admin.token)\" \\\n    \
         --data-binary @closure.txt http://AGGREGATOR/reports/my-system</pre>",
        if m.uploads {
            ""
        } else {
            " (this aggregator has no <code>admin_token_file</code>, so uploads are off)"
        }
    );
    html::page("Reports", "/reports", &h)
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Closure => "closure",
        Source::CycloneDx => "CycloneDX SBOM",
    }
}

pub(super) async fn list(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let model = ReportsPage {
        reports: s
            .reports
            .all()
            .iter()
            .map(|r| ReportLine {
                name: r.name.clone(),
                source: r.source,
                summary: r.summary,
                computed_unix: r.computed_unix,
            })
            .collect(),
        uploads: s.admin.is_some(),
    };
    respond(&headers, &model, render_list)
}

#[derive(Serialize)]
struct ReportPage<'a> {
    #[serde(flatten)]
    report: &'a Report,
    class: Option<Reproducibility>,
    disputed: Vec<&'a Row>,
    #[serde(flatten)]
    rows: Page<'a>,
}

/// A path's cell: a link to its page at `base` (the aggregator's URL, "/" on the
/// dashboard), or plain text when `base` is empty.
fn path_cell(h: &mut Html, base: &str, path: &str) {
    match StorePath::parse(path).ok().filter(|_| !base.is_empty()) {
        Some(p) => w!(
            h,
            "<a href=\"{}/path/{}\"><code>{}</code></a>",
            esc(base.trim_end_matches('/')),
            p.hash(),
            esc(path)
        ),
        None => w!(h, "<code>{}</code>", esc(path)),
    }
}

fn rows_table(h: &mut Html, base: &str, rows: &[&Row]) {
    w!(
        h,
        "<table><tr><th>path</th><th>class</th><th>attested by</th></tr>"
    );
    for r in rows {
        w!(h, "<tr><td>");
        path_cell(h, base, &r.path);
        w!(
            h,
            "</td><td class=\"{0}\">{0}</td><td>{1}",
            r.class,
            esc(&r.attested_by.join(", "))
        );
        for c in &r.candidates {
            w!(
                h,
                "<br><small><code>{}</code> ({} bytes, {}): {}</small>",
                esc(&c.nar_hash),
                c.nar_size,
                html::count(c.references.len(), "reference", "references"),
                esc(&c.origins.join(", "))
            );
        }
        w!(h, "</td></tr>");
    }
    w!(h, "</table>");
}

fn header_table(h: &mut Html, r: &Report) {
    w!(
        h,
        "<p>{} from a {}{}, checked against {} ({}); computed {}.</p>",
        html::count(r.summary.total(), "path", "paths"),
        source_name(r.source),
        if r.skipped_derivations > 0 {
            format!(
                " ({} skipped)",
                html::count(r.skipped_derivations, "derivation path", "derivation paths")
            )
        } else {
            String::new()
        },
        html::count(r.logs.len(), "log", "logs"),
        esc(&r.logs.join(", ")),
        html::utc(r.computed_unix)
    );
}

fn disputed_section(h: &mut Html, base: &str, all: usize, shown: &[&Row], more: Option<&str>) {
    w!(h, "<h2>Disputed paths ({all})</h2>");
    if shown.is_empty() {
        w!(
            h,
            "<p>No followed logs disagree about any path in this report.</p>"
        );
        return;
    }
    rows_table(h, base, shown);
    if let Some(link) = more.filter(|_| all > shown.len()) {
        w!(
            h,
            "<p><a href=\"{}\">All {all} disputed paths</a></p>",
            esc(link)
        );
    }
}

fn render_page(m: &ReportPage<'_>) -> String {
    let r = m.report;
    let base = format!("/reports/{}", r.name);
    let mut h = Html::default();
    header_table(&mut h, r);
    html::summary(&mut h, &r.summary, Some(&base));
    disputed_section(
        &mut h,
        "/",
        r.summary.count(Reproducibility::Disputed) as usize,
        &m.disputed,
        Some(&format!("{base}?class=disputed")),
    );
    w!(h, "<h2>Paths</h2><p>Show: ");
    let all = std::iter::once(None).chain(Reproducibility::ALL.map(Some));
    for c in all {
        let label = c.map_or("all", Reproducibility::name);
        let href = c.map_or(base.clone(), |c| format!("{base}?class={c}"));
        if c == m.class {
            w!(h, "<b>{label}</b> ");
        } else {
            w!(h, "<a href=\"{}\">{label}</a> ", esc(&href));
        }
    }
    w!(h, "</p>");
    rows_table(&mut h, "/", &m.rows.rows);
    let query = m.class.map_or(String::new(), |c| format!("class={c}&"));
    html::pager(&mut h, &base, &query, m.rows.page, m.rows.pages);
    html::page(&format!("Report {}", r.name), "/reports", &h)
}

/// A whole report as one self-contained page, linking paths to the aggregator at `base`.
pub fn report_document(r: &Report, base: &str) -> String {
    let mut h = Html::default();
    header_table(&mut h, r);
    html::summary(&mut h, &r.summary, None);
    let disputed: Vec<&Row> = r
        .rows
        .iter()
        .filter(|x| x.class == Reproducibility::Disputed)
        .collect();
    disputed_section(&mut h, base, disputed.len(), &disputed, None);
    for class in [
        Reproducibility::Single,
        Reproducibility::Unknown,
        Reproducibility::Reproduced,
    ] {
        let rows: Vec<&Row> = r.rows.iter().filter(|x| x.class == class).collect();
        if !rows.is_empty() {
            w!(
                h,
                "<details><summary><b>{class}</b>: {}</summary>",
                html::count(rows.len(), "path", "paths")
            );
            rows_table(&mut h, base, &rows);
            w!(h, "</details>");
        }
    }
    html::document(&format!("Report {}", r.name), &h)
}

pub(super) async fn page(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(report) = s.reports.get(&name) else {
        return problem(
            &headers,
            StatusCode::NOT_FOUND,
            format!("no report named {name:?}"),
        );
    };
    let class = match q.class.as_deref().filter(|c| !c.is_empty() && *c != "all") {
        None => None,
        Some(c) => match c.parse::<Reproducibility>() {
            Ok(c) => Some(c),
            Err(e) => return problem(&headers, StatusCode::BAD_REQUEST, e.to_string()),
        },
    };
    let model = ReportPage {
        report: &report,
        class,
        disputed: report
            .rows
            .iter()
            .filter(|r| r.class == Reproducibility::Disputed)
            .take(DISPUTED_SHOWN)
            .collect(),
        rows: report.page(class, q.page(), PER_PAGE),
    };
    respond(&headers, &model, render_page)
}

/// An error answer of the report API (PUT, DELETE): short JSON, like its successes, never a
/// page.
fn api_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// Checks the admin token: the refusal to send, if any.
fn refusal(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &s.admin else {
        return Some(api_error(
            StatusCode::FORBIDDEN,
            "reports cannot be changed here: set admin_token_file in the aggregator's config",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    (!token.authorizes(given)).then(|| {
        api_error(
            StatusCode::UNAUTHORIZED,
            "changing reports needs `Authorization: Bearer <admin token>`",
        )
    })
}

fn report_error(e: ReportError) -> Response {
    let status = match e {
        ReportError::Name(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    api_error(status, e.to_string())
}

pub(super) async fn put(
    State(s): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // Refuse before reading the body: only the admin may make the server hold an upload.
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    if let Err(e) = crate::reports::check_name(&name) {
        return report_error(e);
    }
    let body = match axum::body::to_bytes(body, MAX_UPLOAD).await {
        Ok(b) => b,
        Err(e) => {
            return problem(
                &headers,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("reading the upload (at most {} MiB): {e}", MAX_UPLOAD >> 20),
            );
        }
    };
    let n = name.clone();
    let s2 = s.clone();
    let defined = tokio::task::spawn_blocking(move || {
        let text = std::str::from_utf8(&body).map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("the body is not UTF-8 text (byte {})", e.valid_up_to()),
            )
        })?;
        let list = PathList::parse(text).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        s2.define_report(&n, &list).map_err(|e| match e {
            ReportError::Name(_) => (StatusCode::BAD_REQUEST, e.to_string()),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        })
    })
    .await;
    let (report, new) = match defined {
        Ok(Ok(r)) => r,
        Ok(Err((status, message))) => return api_error(status, message),
        Err(e) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    tracing::info!(
        report = name,
        paths = report.summary.total(),
        "report defined"
    );
    let url = format!("/reports/{}", report.name);
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        [(header::VARY, "Accept"), (header::LOCATION, url.as_str())],
        axum::Json(serde_json::json!({
            "name": report.name,
            "url": url,
            "skipped_derivations": report.skipped_derivations,
            "summary": report.summary,
        })),
    )
        .into_response()
}

pub(super) async fn delete(
    State(s): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    let n = name.clone();
    match blocking(&headers, &s, move |s| s.delete_report(&n)).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => api_error(StatusCode::NOT_FOUND, format!("no report named {name:?}")),
        Err(r) => r,
    }
}
