//! Writing HTML: escaping, the page frame, and the few pieces pages share. Pages are plain
//! server-rendered HTML with inline CSS: no scripts, no fonts, nothing fetched from elsewhere.

use std::fmt::{self, Write as _};

use tally_core::report::{Reproducibility, Summary};

/// Text escaped for HTML element content and quoted attribute values.
pub(crate) struct Esc<'a>(pub(crate) &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// Shorthand for [`Esc`].
pub(crate) fn esc(s: &str) -> Esc<'_> {
    Esc(s)
}

/// HTML being written. `write!` into it never fails.
#[derive(Default)]
pub(crate) struct Html(pub(crate) String);

impl fmt::Write for Html {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.push_str(s);
        Ok(())
    }
}

/// `write!` into an [`Html`], ignoring the infallible result.
macro_rules! w {
    ($html:expr, $($t:tt)*) => { { let _ = write!($html, $($t)*); } };
}
pub(crate) use w;

// Hashes, keys and store paths have no spaces: they wrap anywhere, so that a page fits a
// 1280 px screen without scrolling sideways. A row's name (its first cell) keeps its width.
const STYLE: &str = "
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#fafafa}
header{background:#1b1f24;color:#fff;padding:.6em 1.5em;display:flex;gap:1.5em;align-items:baseline}
header a{color:#cfd8e3;text-decoration:none}header a.here{color:#fff;font-weight:600}
header b{font-size:1.1em;margin-right:1em}
main{padding:1em 1.5em;max-width:80em}
table{border-collapse:collapse;margin:.5em 0 1em;background:#fff}
th,td{border:1px solid #d8dde3;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef1f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:13px ui-monospace,monospace}pre{background:#fff;border:1px solid #d8dde3;padding:.6em;overflow-x:auto}
.verified,.reproduced,.present,.trusted{color:#1a7f37}.disputed,.excluded{color:#cf222e;font-weight:600}
.syncing,.single{color:#9a6700}.unavailable,.unknown,.absent{color:#57606a}
.bar{display:flex;height:1.4em;width:40em;max-width:100%;border:1px solid #d8dde3;margin:.4em 0}
.bar div{height:100%}.bar .reproduced{background:#2da44e}.bar .disputed{background:#cf222e}
.bar .single{background:#d4a72c}.bar .unknown{background:#afb8c1}
nav.pages a,nav.pages b{margin-right:.5em}.muted{color:#57606a}
code,td small{overflow-wrap:anywhere}td pre{white-space:pre-wrap;overflow-wrap:anywhere}
td:first-child code{overflow-wrap:break-word}
";

/// A dashboard page: the frame around `body`, with the navigation. `here` is the entry to
/// highlight.
pub(crate) fn page(title: &str, here: &str, body: &Html) -> String {
    frame(title, Some(here), body)
}

/// A standalone page: the frame without the dashboard's navigation.
pub(crate) fn document(title: &str, body: &Html) -> String {
    frame(title, None, body)
}

fn frame(title: &str, nav: Option<&str>, body: &Html) -> String {
    let mut h = Html::default();
    w!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} · Tally</title><style>{STYLE}</style></head><body><header><b>Tally</b>",
        esc(title)
    );
    let links = if nav.is_some() { &NAV[..] } else { &[] };
    for (href, label) in links {
        let class = if Some(*href) == nav {
            " class=\"here\""
        } else {
            ""
        };
        w!(h, "<a href=\"{href}\"{class}>{label}</a>");
    }
    w!(
        h,
        "</header><main><h1>{}</h1>{}</main></body></html>\n",
        esc(title),
        body.0
    );
    h.0
}

const NAV: [(&str, &str); 3] = [
    ("/", "Logs"),
    ("/disagreements", "Disagreements"),
    ("/reports", "Reports"),
];

/// A report's summary: a stacked bar and a table of counts and percentages.
pub(crate) fn summary(h: &mut Html, s: &Summary, link: Option<&str>) {
    w!(h, "<div class=\"bar\" role=\"img\" aria-label=\"");
    for c in Reproducibility::ALL {
        w!(h, "{c} {:.1}% ", s.percent(c));
    }
    w!(h, "\">");
    for c in Reproducibility::ALL {
        let p = s.percent(c);
        if p > 0.0 {
            w!(
                h,
                "<div class=\"{c}\" style=\"width:{p:.3}%\" title=\"{c} {p:.1}%\"></div>"
            );
        }
    }
    w!(
        h,
        "</div><table><tr><th>class</th><th>paths</th><th>share</th></tr>"
    );
    for c in Reproducibility::ALL {
        let name = match link {
            Some(base) => format!("<a href=\"{}?class={c}\" class=\"{c}\">{c}</a>", esc(base)),
            None => format!("<span class=\"{c}\">{c}</span>"),
        };
        w!(
            h,
            "<tr><td>{name}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}%</td></tr>",
            s.count(c),
            s.percent(c)
        );
    }
    w!(
        h,
        "<tr><th>total</th><td class=\"n\">{}</td><td></td></tr></table>",
        s.total()
    );
}

/// Links to the other pages of a paginated list. `query` is the rest of the query string.
pub(crate) fn pager(h: &mut Html, base: &str, query: &str, page: usize, pages: usize) {
    if pages <= 1 {
        return;
    }
    w!(h, "<nav class=\"pages\">page {page} of {pages}: ");
    let mut shown: Vec<usize> = [1, page.saturating_sub(1), page, page + 1, pages]
        .into_iter()
        .filter(|p| (1..=pages).contains(p))
        .collect();
    shown.dedup();
    for p in shown {
        if p == page {
            w!(h, "<b>{p}</b>");
        } else {
            w!(
                h,
                "<a href=\"{}?{}page={p}\">{p}</a>",
                esc(base),
                esc(query)
            );
        }
    }
    w!(h, "</nav>");
}

/// `n` and the noun, singular or plural: "1 log", "3 logs".
pub(crate) fn count(n: impl fmt::Display, one: &str, many: &str) -> String {
    let n = n.to_string();
    let noun = if n == "1" { one } else { many };
    format!("{n} {noun}")
}

/// Seconds as "3 s", "4 min", "2 h" or "5 d".
pub(crate) fn age(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// A time as UTC `YYYY-MM-DD HH:MM:SS`.
pub(crate) fn utc(unix: u64) -> String {
    let (days, rem) = (unix / 86_400, unix % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>").to_string(),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(esc("plain").to_string(), "plain");
    }

    #[test]
    fn dates_and_ages() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(age(59), "59 s");
        assert_eq!(age(600), "10 min");
        assert_eq!(age(90_000), "25 h");
    }
}
