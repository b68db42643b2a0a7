//! `/disagreements` and `/evidence/<id>`: what the aggregator caught, and how to check it.

use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use tally_core::StorePath;
use tally_store::EvidenceSummary;

use super::html::{self, Html, esc, w};
use super::{ListQuery, PER_PAGE, attachment, blocking, problem, respond};
use crate::service::Shared;

/// Evidence kinds, in the order the page offers them.
const KINDS: [&str; 5] = [
    "disagreement",
    "contradiction",
    "fork",
    "bad_entries",
    "bad_map_root",
];

#[derive(Serialize)]
struct EvidenceRow {
    id: u64,
    kind: String,
    origins: Vec<String>,
    summary: String,
    created_unix: u64,
    /// The output path the evidence is about, if any.
    path: Option<String>,
}

impl EvidenceRow {
    fn of(r: &EvidenceSummary) -> EvidenceRow {
        EvidenceRow {
            id: r.id,
            kind: r.kind.clone(),
            origins: r.origins.clone(),
            summary: r.summary.clone(),
            created_unix: r.created,
            path: mentioned_path(&r.summary).map(|p| p.to_string()),
        }
    }
}

/// The first store path a summary names.
fn mentioned_path(summary: &str) -> Option<StorePath> {
    let start = summary.find("/nix/store/")?;
    let rest = &summary[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ':' || c == ',' || c == ';')
        .unwrap_or(rest.len());
    StorePath::parse(&rest[..end]).ok()
}

#[derive(Serialize)]
struct EvidenceList {
    kind: String,
    counts: Vec<(String, usize)>,
    page: usize,
    pages: usize,
    evidence: Vec<EvidenceRow>,
}

fn render_list(m: &EvidenceList) -> String {
    let mut h = Html::default();
    w!(h, "<p>Show: ");
    for (kind, count) in &m.counts {
        if *kind == m.kind {
            w!(h, "<b>{kind} ({count})</b> ");
        } else {
            w!(
                h,
                "<a href=\"/disagreements?kind={kind}\">{kind} ({count})</a> "
            );
        }
    }
    w!(h, "</p>");
    if m.evidence.is_empty() {
        w!(h, "<p>None found.</p>");
    } else {
        w!(
            h,
            "<table><tr><th>#</th><th>kind</th><th>logs</th><th>what</th><th>path</th><th>found</th></tr>"
        );
        for e in &m.evidence {
            let path = e
                .path
                .as_deref()
                .and_then(|p| StorePath::parse(p).ok())
                .map_or(String::new(), |p| {
                    format!("<a href=\"/path/{}\">{}</a>", p.hash(), esc(p.name()))
                });
            w!(
                h,
                "<tr><td><a href=\"/evidence/{0}\">{0}</a></td><td class=\"disputed\">{1}</td>\
                 <td>{2}</td><td>{3}</td><td>{path}</td><td>{4}</td></tr>",
                e.id,
                esc(&e.kind),
                esc(&e.origins.join(", ")),
                esc(&e.summary),
                html::utc(e.created_unix)
            );
        }
        w!(h, "</table>");
    }
    html::pager(
        &mut h,
        "/disagreements",
        &format!("kind={}&", m.kind),
        m.page,
        m.pages,
    );
    html::page("Disagreements and evidence", "/disagreements", &h)
}

pub(super) async fn list(
    State(s): State<Shared>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let kind = q.kind.clone().unwrap_or_else(|| "disagreement".into());
    if kind != "all" && !KINDS.contains(&kind.as_str()) {
        return problem(
            &headers,
            StatusCode::BAD_REQUEST,
            format!("kind {kind:?}: use all or one of {}", KINDS.join(", ")),
        );
    }
    let page = q.page();
    let model = blocking(&headers, &s, move |s| {
        let all = s.store.list_evidence()?;
        let mut counts: Vec<(String, usize)> = KINDS
            .iter()
            .map(|k| (k.to_string(), all.iter().filter(|r| r.kind == *k).count()))
            .collect();
        counts.push(("all".into(), all.len()));
        let chosen: Vec<&EvidenceSummary> = all
            .iter()
            .rev()
            .filter(|r| kind == "all" || r.kind == kind)
            .collect();
        let pages = chosen.len().div_ceil(PER_PAGE).max(1);
        let page = page.min(pages);
        Ok::<_, tally_store::StoreError>(EvidenceList {
            kind,
            counts,
            page,
            pages,
            evidence: chosen
                .into_iter()
                .skip((page - 1) * PER_PAGE)
                .take(PER_PAGE)
                .map(EvidenceRow::of)
                .collect(),
        })
    })
    .await;
    match model {
        Ok(m) => respond(&headers, &m, render_list),
        Err(r) => r,
    }
}

#[derive(Serialize)]
struct EvidencePage {
    #[serde(flatten)]
    row: EvidenceRow,
    download: String,
    verify: String,
    bundle: serde_json::Value,
}

fn render_one(m: &EvidencePage) -> String {
    let e = &m.row;
    let mut h = Html::default();
    w!(
        h,
        "<table><tr><th>kind</th><td class=\"disputed\">{}</td></tr>\
         <tr><th>logs</th><td>{}</td></tr><tr><th>claim</th><td>{}</td></tr>\
         <tr><th>found</th><td>{}</td></tr>",
        esc(&e.kind),
        esc(&e.origins.join(", ")),
        esc(&e.summary),
        html::utc(e.created_unix)
    );
    if let Some(p) = e.path.as_deref().and_then(|p| StorePath::parse(p).ok()) {
        w!(
            h,
            "<tr><th>path</th><td><a href=\"/path/{}\">{}</a></td></tr>",
            p.hash(),
            esc(&p.to_string())
        );
    }
    w!(
        h,
        "</table><p><a href=\"{0}\" download>Download the bundle</a> and check it offline, \
         trusting nothing but the logs' public keys:</p><pre>{1}</pre>\
         <details><summary>The bundle</summary><pre>{2}</pre></details>",
        esc(&m.download),
        esc(&m.verify),
        esc(&serde_json::to_string_pretty(&m.bundle).unwrap_or_default())
    );
    html::page(&format!("Evidence #{}", e.id), "/disagreements", &h)
}

pub(super) async fn one(
    State(s): State<Shared>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (id, download) = match file.strip_suffix(".json") {
        Some(id) => (id, true),
        None => (file.as_str(), false),
    };
    let Ok(id) = id.parse::<u64>() else {
        return problem(
            &headers,
            StatusCode::NOT_FOUND,
            format!("{file:?} is not an evidence id: evidence is at /evidence/<number>"),
        );
    };
    let record = match blocking(&headers, &s, move |s| s.store.evidence(id)).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return problem(
                &headers,
                StatusCode::NOT_FOUND,
                format!("no evidence #{id}"),
            );
        }
        Err(r) => return r,
    };
    if download {
        return attachment(
            &format!("tally-evidence-{id}-{}.json", record.about.kind),
            record.bundle,
        );
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        // It goes into a command people copy: only a plain host[:port].
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(c))
        })
        .unwrap_or("AGGREGATOR");
    let keys: Vec<String> = s
        .logs
        .iter()
        .filter(|l| record.about.origins.iter().any(|o| o == l.origin.as_str()))
        .map(|l| format!(" \\\n    --vkey '{}'", l.vkey))
        .collect();
    let file = format!("tally-evidence-{id}.json");
    let model = EvidencePage {
        download: format!("/evidence/{id}.json"),
        verify: format!(
            "curl -o {file} http://{host}/evidence/{id}.json\ntally verify {file}{}",
            keys.concat()
        ),
        bundle: serde_json::from_str(&record.bundle).unwrap_or(serde_json::Value::Null),
        row: EvidenceRow::of(&record.about),
    };
    respond(&headers, &model, render_one)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_path_a_summary_names() {
        let p = "/nix/store/9ljmdv46sk8m8vxg70dgaxhgmbyqkjva-hello-2.12.1";
        let found = mentioned_path(&format!(
            "logs disagree about {p}: a attests x; b attests y"
        ));
        assert_eq!(found.unwrap().to_string(), p);
        assert!(mentioned_path("fork: log signed two checkpoints").is_none());
    }
}
