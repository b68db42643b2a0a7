//! `/path/<hash part>`: what every followed log says about one output, with the proofs.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;
use tally_core::answer::Verified;
use tally_core::evidence::BundleFile;
use tally_core::policy::Verdict;
use tally_core::report::Reproducibility;
use tally_core::tiles::{TILE_WIDTH, TileKind, TilePath};
use tally_core::{AttestationFields, StorePathHash};

use super::html::{self, Html, esc, w};
use super::{attachment, blocking, problem, respond};
use crate::query;
use crate::service::Shared;

#[derive(Serialize)]
struct PathPage {
    hash: String,
    /// The output path, when some log attests it.
    path: Option<String>,
    reproducibility: Reproducibility,
    policy: String,
    verdict: Verdict,
    logs: Vec<PathLog>,
    /// Every log's proof, for `tally verify`.
    proofs: BundleFile,
}

#[derive(Serialize)]
struct PathLog {
    origin: String,
    vote: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    reason: String,
    /// The checkpoint size the vote is proven against.
    checkpoint_size: Option<u64>,
    /// The entry's index in the log.
    index: Option<u64>,
    /// The log's entry bundle holding it, when the log serves HTTP.
    entries_url: Option<String>,
    attestation: Option<AttestationFields>,
}

/// The hash part of `<hash>` or `<hash>-<name>`.
fn hash_of(segment: &str) -> Option<StorePathHash> {
    segment
        .get(..32)?
        .parse()
        .ok()
        .filter(|_| segment.len() == 32 || segment.as_bytes().get(32) == Some(&b'-'))
}

/// Errors here are only ever shown, so a string carries them.
fn model(s: &Shared, hash: StorePathHash) -> Result<PathPage, String> {
    let verdicts = query::answer(
        &s.store,
        &s.statuses,
        &s.origins(),
        &s.policy,
        &[hash.to_string()],
        true,
    )
    .map_err(|e| e.to_string())?;
    let v = verdicts.first().ok_or("no answer")?;
    let mut path = None;
    let mut logs = Vec::new();
    for l in &v.votes {
        let vote = l.vote.name();
        // Shown only as verified with the log's key, like any client would check it.
        let key = s
            .logs
            .iter()
            .find(|c| c.origin == l.origin)
            .map(|c| &c.vkey);
        let verified = match (&l.proof, key) {
            (Some(p), Some(key)) => Some(
                p.verify(key, &hash)
                    .map_err(|e| format!("{}: {e}", l.origin))?,
            ),
            _ => None,
        };
        let checkpoint_size = verified.as_ref().map(|v| v.checkpoint().tree.size);
        let (index, attestation) = match verified {
            Some(Verified::Present {
                index, attestation, ..
            }) => (Some(index), Some(attestation)),
            _ => (None, None),
        };
        if let Some(a) = &attestation {
            path.get_or_insert_with(|| a.output_path().to_string());
        }
        let entries_url = match (index, checkpoint_size) {
            (Some(index), Some(size)) => s
                .logs
                .iter()
                .find(|c| c.origin == l.origin)
                .and_then(|c| c.urls.iter().find(|u| u.starts_with("http")))
                .and_then(|base| {
                    let tile = TilePath::for_tree(TileKind::Entries, index / TILE_WIDTH, size)?;
                    Some(format!("{}/{tile}", base.trim_end_matches('/')))
                }),
            _ => None,
        };
        logs.push(PathLog {
            origin: l.origin.to_string(),
            vote,
            reason: l.reason.clone(),
            checkpoint_size,
            index,
            entries_url,
            attestation: attestation.map(|a| a.fields().clone()),
        });
    }
    Ok(PathPage {
        hash: hash.to_string(),
        path,
        reproducibility: v.reproducibility,
        policy: s.policy.to_string(),
        verdict: v.verdict.clone(),
        logs,
        proofs: BundleFile::new(tally_core::evidence::Bundle::Query(
            v.bundle(s.policy.clone()),
        )),
    })
}

fn render(m: &PathPage) -> String {
    let mut h = Html::default();
    let class = m.reproducibility;
    w!(
        h,
        "<p><code>{}</code></p><table>\
         <tr><th>reproducibility</th><td class=\"{class}\">{class}</td></tr>\
         <tr><th>verdict under policy <code>{}</code></th><td class=\"{2}\">{2}</td></tr></table>",
        esc(m.path.as_deref().unwrap_or(&m.hash)),
        esc(&m.policy),
        m.verdict.status()
    );
    w!(
        h,
        "<table><tr><th>log</th><th>vote</th><th>NAR hash</th><th>NAR size</th>\
         <th>references</th><th>derivation</th><th>entry</th></tr>"
    );
    for l in &m.logs {
        w!(
            h,
            "<tr><td><code>{}</code></td><td class=\"{1}\">{1}",
            esc(&l.origin),
            l.vote
        );
        if !l.reason.is_empty() {
            w!(h, "<br><small>{}</small>", esc(&l.reason));
        }
        if l.vote == "absent" {
            w!(
                h,
                "<br><small>proven absent at size {}</small>",
                l.checkpoint_size.unwrap_or(0)
            );
        }
        w!(h, "</td>");
        match &l.attestation {
            Some(a) => {
                let refs: Vec<String> = a.references.iter().map(|r| r.basename()).collect();
                let drv = a.drv_path.as_ref().map_or("unknown".into(), |d| {
                    format!(
                        "{}!{}",
                        d.basename(),
                        a.output_name.as_deref().unwrap_or("unknown")
                    )
                });
                let entry = match (&l.entries_url, l.index) {
                    (Some(url), Some(i)) => format!("<a href=\"{}\">#{i}</a>", esc(url)),
                    (None, Some(i)) => format!("#{i}"),
                    _ => String::new(),
                };
                w!(
                    h,
                    "<td><code>{}</code></td><td class=\"n\">{}</td><td><small>{}</small></td><td><small>{}</small></td><td>{entry}</td>",
                    esc(&a.nar_hash.to_string()),
                    a.nar_size,
                    esc(&refs.join(" ")),
                    esc(&drv)
                );
            }
            None => w!(h, "<td></td><td></td><td></td><td></td><td></td>"),
        }
        w!(h, "</tr>");
    }
    w!(
        h,
        "</table><p><a href=\"/path/{0}/proofs.json\" download>Download the proofs</a>: every \
         log's signed checkpoint and inclusion or absence proof. Decide it yourself, offline, \
         under your own trust policy: <code>tally verify proofs.json --policy-file \
         trust.policy</code>.</p>",
        esc(&m.hash)
    );
    html::page("Path", "", &h)
}

async fn load(s: &Shared, segment: &str, headers: &HeaderMap) -> Result<PathPage, Response> {
    let Some(hash) = hash_of(segment) else {
        return Err(problem(
            headers,
            StatusCode::BAD_REQUEST,
            format!(
                "{segment:?} is not a store path hash part: use /path/<32 nixbase32 characters>"
            ),
        ));
    };
    blocking(headers, s, move |s| model(s, hash)).await
}

pub(super) async fn page(
    State(s): State<Shared>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Response {
    match load(&s, &segment, &headers).await {
        Ok(m) => respond(&headers, &m, render),
        Err(r) => r,
    }
}

pub(super) async fn proofs(
    State(s): State<Shared>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Response {
    match load(&s, &segment, &headers).await {
        Ok(m) => attachment(
            &format!("tally-proofs-{}.json", m.hash),
            serde_json::to_string_pretty(&m.proofs).unwrap_or_default(),
        ),
        Err(r) => r,
    }
}
