//! `/`: the followed logs.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use tally_core::report::Reproducibility;
use tally_store::StoreError;

use super::html::{self, Html, esc, w};
use super::{blocking, respond};
use crate::service::Shared;
use crate::status::now;

#[derive(Serialize)]
struct LogsPage {
    logs: Vec<LogRow>,
    witness: bool,
    /// This aggregator's witness key (C2SP cosignature verifier key, `name+id+base64`), when
    /// it witnesses: what consumers put on a `witness` line of their trust policy.
    witness_key: Option<String>,
    evidence: usize,
    disagreements: usize,
    reports: Vec<ReportLine>,
}

#[derive(Serialize)]
struct LogRow {
    origin: String,
    name: String,
    urls: Vec<String>,
    /// Each URL's state, in the order of `urls`: `ok`, `unreachable: …` or `faulty: …`.
    url_states: Vec<String>,
    state: String,
    detail: String,
    verified_size: u64,
    latest_size: u64,
    /// Newest checkpoint seen minus verified size.
    lag: u64,
    /// Seconds since the newest checkpoint was first seen.
    checkpoint_age_secs: Option<u64>,
    /// The size of the latest checkpoint the witness cosigned.
    cosigned_size: Option<u64>,
    /// That cosigned checkpoint.
    cosigned: Option<String>,
}

#[derive(Serialize)]
struct ReportLine {
    name: String,
    paths: u64,
    reproduced_percent: f64,
    disputed: u64,
}

fn model(s: &Shared) -> Result<LogsPage, StoreError> {
    let now = now();
    let mut logs = Vec::new();
    for l in s.logs.iter() {
        let status = s.log_status(l)?;
        let seen = s.statuses.get(&l.origin).and_then(|st| st.latest_seen);
        let cosigned = s.store.cosigned(&l.origin)?;
        logs.push(LogRow {
            origin: status.origin,
            name: status.name,
            urls: status.urls,
            url_states: status.url_states,
            state: status.state,
            detail: status.detail,
            verified_size: status.verified_size,
            latest_size: status.latest_size,
            lag: status.latest_size.saturating_sub(status.verified_size),
            checkpoint_age_secs: seen.map(|t| now.saturating_sub(t)),
            cosigned_size: cosigned.as_ref().map(|c| c.checkpoint.tree.size),
            cosigned: cosigned.map(|c| String::from_utf8_lossy(&c.note).into_owned()),
        });
    }
    let evidence = s.store.list_evidence()?;
    Ok(LogsPage {
        logs,
        witness: s.witness.is_some(),
        witness_key: s.witness.as_ref().map(|w| w.cosigner.verifier().to_vkey()),
        evidence: evidence.len(),
        disagreements: evidence.iter().filter(|r| r.kind == "disagreement").count(),
        reports: s
            .reports
            .all()
            .iter()
            .map(|r| ReportLine {
                name: r.name.clone(),
                paths: r.summary.total(),
                reproduced_percent: r.summary.percent(Reproducibility::Reproduced),
                disputed: r.summary.count(Reproducibility::Disputed),
            })
            .collect(),
    })
}

/// Each URL and its state, when one is not fine: a mirror serving data that does not match
/// the log's signatures is shown, not blamed on the log.
fn urls(l: &LogRow) -> String {
    if l.url_states.iter().all(|s| s == "ok") {
        return String::new();
    }
    l.urls
        .iter()
        .zip(&l.url_states)
        .map(|(u, s)| {
            let class = s.split(':').next().unwrap_or_default();
            format!(
                "<br><small><code>{}</code> <span class=\"{}\">{}</span></small>",
                esc(u),
                esc(class),
                esc(s)
            )
        })
        .collect()
}

fn render(m: &LogsPage) -> String {
    let mut h = Html::default();
    w!(
        h,
        "<table><tr><th>log</th><th>origin</th><th>state</th><th>verified size</th>\
         <th>lag</th><th>latest checkpoint seen</th><th>witness cosignature</th></tr>"
    );
    for l in &m.logs {
        let name = if l.name.is_empty() {
            &l.origin
        } else {
            &l.name
        };
        let age = l
            .checkpoint_age_secs
            .map_or("never".into(), |a| format!("{} ago", html::age(a)));
        let cosigned = match (&l.cosigned_size, &l.cosigned, m.witness) {
            (Some(size), Some(note), _) => format!(
                "<details><summary>cosigned at size {size}</summary><pre>{}</pre></details>",
                esc(note)
            ),
            (_, _, true) => "not yet cosigned".into(),
            (_, _, false) => "<span class=\"muted\">no witness configured</span>".into(),
        };
        w!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td><span class=\"{}\">{}</span>{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{age}</td><td>{cosigned}</td></tr>",
            esc(name),
            esc(&l.origin),
            esc(&l.state),
            esc(&l.state),
            if l.detail.is_empty() {
                String::new()
            } else {
                format!("<br><small>{}</small>", esc(&l.detail))
            } + &urls(l),
            l.verified_size,
            l.lag,
        );
    }
    w!(h, "</table>");
    w!(
        h,
        "<p><a href=\"/disagreements\">{}</a> between logs; {} of evidence in all.</p>",
        html::count(m.disagreements, "disagreement", "disagreements"),
        html::count(m.evidence, "piece", "pieces")
    );
    if let Some(key) = &m.witness_key {
        w!(
            h,
            "<h2>This aggregator's witness</h2><p><code>{}</code></p>\
             <p>Give this key to consumers as a <code>witness</code> line of their trust \
             policy; it cosigns only checkpoints this aggregator verified.</p>",
            esc(key)
        );
    }
    if !m.reports.is_empty() {
        w!(
            h,
            "<h2>Reports</h2><table><tr><th>report</th><th>paths</th><th>reproduced</th><th>disputed</th></tr>"
        );
        for r in &m.reports {
            w!(
                h,
                "<tr><td><a href=\"/reports/{0}\">{0}</a></td><td class=\"n\">{1}</td>\
                 <td class=\"n\">{2:.1}%</td><td class=\"n\">{3}</td></tr>",
                esc(&r.name),
                r.paths,
                r.reproduced_percent,
                r.disputed
            );
        }
        w!(h, "</table>");
    }
    html::page("Followed logs", "/", &h)
}

pub(super) async fn page(State(s): State<Shared>, headers: HeaderMap) -> Response {
    match blocking(&headers, &s, model).await {
        Ok(m) => respond(&headers, &m, render),
        Err(r) => r,
    }
}
