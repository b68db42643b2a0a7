//! A real browser, for the dashboard tests: headless Chromium (Debian's `chromium`).
//!
//! With `TALLY_BROWSER_TESTS=1` (as CI sets after `apt-get install -y chromium`) a missing
//! browser is a test failure. Without it, browser tests skip and say so.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The browser binary, if there is one. Panics if browser tests are required but there is
/// none; prints a skip notice and returns `None` if they are not required.
pub fn available(test: &str) -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .map(PathBuf::from)
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let required = std::env::var("TALLY_BROWSER_TESTS").is_ok_and(|v| v == "1");
    match (found, required) {
        (Some(b), _) => Some(b),
        (None, true) => {
            panic!("TALLY_BROWSER_TESTS=1 but no chromium is runnable: apt-get install -y chromium")
        }
        (None, false) => {
            eprintln!(
                "skipping {test}: chromium is not installed (set TALLY_BROWSER_TESTS=1 to require it)"
            );
            None
        }
    }
}

/// A headless browser with its own profile directory.
pub struct Browser {
    binary: PathBuf,
    profile: PathBuf,
}

impl Browser {
    /// A browser keeping its profile under `dir`.
    pub fn new(binary: PathBuf, dir: &Path) -> Browser {
        Browser {
            binary,
            profile: dir.join("chromium-profile"),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args([
            "--no-first-run",
            "--disable-extensions",
            "--window-size=1280,1600",
        ])
        .arg(format!("--user-data-dir={}", self.profile.display()));
        cmd
    }

    /// The page's DOM after the browser rendered it.
    pub fn dom(&self, url: &str) -> String {
        let out = self.command().arg("--dump-dom").arg(url).output().unwrap();
        assert!(out.status.success(), "chromium --dump-dom {url}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Saves a screenshot of the page as PNG.
    pub fn screenshot(&self, url: &str, file: &Path) {
        let out = self
            .command()
            .arg(format!("--screenshot={}", file.display()))
            .arg(url)
            .output()
            .unwrap();
        assert!(out.status.success(), "chromium --screenshot {url}: {out:?}");
        let png = std::fs::read(file).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{} is not a real screenshot",
            file.display()
        );
    }
}

/// The marker [`Browser::widths`] writes its measurement under.
const WIDTHS: &str = "tally-measured-widths";

impl Browser {
    /// How wide `page` (a whole HTML document) lays out in the browser's 1280 px window:
    /// the document's scroll width and the window's client width, in CSS pixels. A scroll
    /// width above the client width means the reader scrolls sideways. The page is loaded
    /// from a file with a measuring script added: dashboard pages forbid scripts in their
    /// CSP header, which a file does not have.
    pub fn widths(&self, page: &str) -> (u32, u32) {
        let script = format!(
            "<script>const d = document.documentElement; \
             document.body.insertAdjacentHTML('beforeend', \
             '<pre id=\"{WIDTHS}\">' + d.scrollWidth + ' ' + d.clientWidth + '</pre>');</script>"
        );
        let (head, tail) = page.rsplit_once("</body>").expect("a whole HTML document");
        let file = self.profile.with_file_name("measure-widths.html");
        std::fs::write(&file, format!("{head}{script}</body>{tail}")).unwrap();
        let dom = self.dom(&format!("file://{}", file.display()));
        // The last one: the script's own text names the marker too.
        let measured = dom
            .rsplit_once(&format!("id=\"{WIDTHS}\">"))
            .and_then(|(_, rest)| rest.split_once('<'))
            .map(|(m, _)| m.to_owned())
            .unwrap_or_else(|| panic!("the measuring script did not run:\n{dom}"));
        let mut n = measured.split(' ').map(|x| x.parse::<u32>().unwrap());
        (n.next().unwrap(), n.next().unwrap())
    }
}

/// The text a reader sees in a rendered DOM: the body without tags, `<head>`, or the
/// contents of closed `<details>`, with entities decoded and whitespace collapsed.
pub fn visible_text(dom: &str) -> String {
    let body = dom.split_once("<body").map_or(dom, |(_, b)| b);
    let mut text = String::new();
    let mut rest = body;
    let mut hidden = 0usize;
    while let Some(open) = rest.find('<') {
        if hidden == 0 {
            text.push_str(&rest[..open]);
        }
        let close = rest[open..].find('>').map_or(rest.len(), |c| open + c + 1);
        let tag = &rest[open..close];
        if tag.starts_with("<details") && !tag.contains(" open") {
            hidden += 1;
        } else if tag.starts_with("</details") {
            hidden = hidden.saturating_sub(1);
        }
        text.push(' ');
        rest = &rest[close..];
        // A closed <details> still shows its summary.
        if hidden > 0 && tag.starts_with("<summary") {
            let end = rest.find("</summary").unwrap_or(rest.len());
            text.push_str(&rest[..end]);
            rest = &rest[end..];
        }
    }
    text.push_str(rest);
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
