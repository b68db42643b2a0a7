//! C2SP tlog-tiles: tile paths, widths and entry bundles.
//!
//! ```text
//! tile/0/x001/x234/067        level-0 hash tile 1234067: 256 hashes (8,192 bytes)
//! tile/1/000.p/7              level-1 partial tile 0: its first 7 hashes
//! tile/entries/x001/234.p/3   entry bundle 1234, partial: 3 entries
//! ```
//!
//! A tile at level `L` holds the hashes of tree level `8·L`: tile `N` holds nodes
//! `256·N .. 256·N + W`. An entry bundle holds the leaves under the level-0 tile of the same
//! index, each as a big-endian `u16` length and the leaf bytes.

use std::fmt;

/// The height of a tile: tree levels per tile level.
pub const TILE_HEIGHT: u8 = 8;

/// Hashes in a full tile, entries in a full bundle.
pub const TILE_WIDTH: u64 = 256;

/// The highest tile level the spec allows.
pub const MAX_LEVEL: u8 = 63;

/// A tile or entry bundle, as named by its URL path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TilePath {
    /// What the tile holds.
    pub kind: TileKind,
    /// Index within its level.
    pub index: u64,
    /// `Some(w)` for a partial tile of `w` (1..=255) items; `None` for a full one.
    pub partial: Option<u8>,
}

/// Hash tile or entry bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TileKind {
    /// Hashes of tree level `8 · level`.
    Hash {
        /// The tile level.
        level: u8,
    },
    /// Log entries.
    Entries,
}

impl TileKind {
    /// The tree level whose hashes the tile holds (0 for entry bundles).
    pub fn tree_level(self) -> u32 {
        match self {
            TileKind::Hash { level } => u32::from(level) * u32::from(TILE_HEIGHT),
            TileKind::Entries => 0,
        }
    }
}

/// Why a path is not a tile path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a tlog-tiles path (tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>])")]
pub struct TilePathError(pub String);

impl TilePath {
    /// Parses the part of a URL after the log prefix, e.g. `tile/0/x001/234.p/5`.
    pub fn parse(path: &str) -> Result<TilePath, TilePathError> {
        let err = || TilePathError(path.to_owned());
        let rest = path.strip_prefix("tile/").ok_or_else(err)?;
        let (first, rest) = rest.split_once('/').ok_or_else(err)?;
        let kind = if first == "entries" {
            TileKind::Entries
        } else {
            let level = canonical_decimal(first)
                .filter(|&l| l <= u64::from(MAX_LEVEL))
                .ok_or_else(err)?;
            TileKind::Hash { level: level as u8 }
        };
        let (index, partial) = match rest.split_once(".p/") {
            Some((index, width)) => {
                let w = canonical_decimal(width)
                    .filter(|w| (1..TILE_WIDTH).contains(w))
                    .ok_or_else(err)?;
                (index, Some(w as u8))
            }
            None => (rest, None),
        };
        let index = parse_index(index).ok_or_else(err)?;
        Ok(TilePath {
            kind,
            index,
            partial,
        })
    }

    /// The number of items the tile holds.
    pub fn width(&self) -> u64 {
        self.partial.map_or(TILE_WIDTH, u64::from)
    }

    /// The tree level whose hashes a hash tile holds.
    pub fn tree_level(&self) -> u32 {
        self.kind.tree_level()
    }

    /// The path of the full or partial tile at this position for a tree of `size` leaves, or
    /// `None` if the tree has no such tile yet.
    pub fn for_tree(kind: TileKind, index: u64, size: u64) -> Option<TilePath> {
        let nodes = size.checked_shr(kind.tree_level()).unwrap_or(0);
        let start = index.checked_mul(TILE_WIDTH)?;
        let width = nodes.checked_sub(start).filter(|&w| w > 0)?.min(TILE_WIDTH);
        Some(TilePath {
            kind,
            index,
            partial: (width < TILE_WIDTH).then_some(width as u8),
        })
    }
}

impl fmt::Display for TilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TileKind::Hash { level } => write!(f, "tile/{level}/")?,
            TileKind::Entries => f.write_str("tile/entries/")?,
        }
        f.write_str(&format_index(self.index))?;
        if let Some(w) = self.partial {
            write!(f, ".p/{w}")?;
        }
        Ok(())
    }
}

/// `1234067` → `x001/x234/067`.
pub fn format_index(mut n: u64) -> String {
    let mut s = format!("{:03}", n % 1000);
    while n >= 1000 {
        n /= 1000;
        s = format!("x{:03}/{s}", n % 1000);
    }
    s
}

fn parse_index(s: &str) -> Option<u64> {
    let elements: Vec<&str> = s.split('/').collect();
    let (last, init) = elements.split_last()?;
    let mut n: u64 = 0;
    for (i, e) in init.iter().enumerate() {
        let digits = e.strip_prefix('x')?;
        // The first element may not be x000: that would be a second spelling of the index.
        if i == 0 && digits == "000" {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(three_digits(digits)?)?;
    }
    n.checked_mul(1000)?.checked_add(three_digits(last)?)
}

fn three_digits(s: &str) -> Option<u64> {
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn canonical_decimal(s: &str) -> Option<u64> {
    let ok =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse().ok()).flatten()
}

/// Why bytes are not an entry bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry bundle is truncated at byte {0}")]
pub struct BundleError(pub usize);

/// Appends one entry, length-prefixed, to a bundle. Entries are at most 65,535 bytes, which
/// [`crate::Attestation`] guarantees.
pub fn push_entry(bundle: &mut Vec<u8>, entry: &[u8]) {
    let len = u16::try_from(entry.len()).unwrap_or(u16::MAX);
    bundle.extend_from_slice(&len.to_be_bytes());
    bundle.extend_from_slice(&entry[..usize::from(len)]);
}

/// The entries of a bundle.
pub fn bundle_entries(bundle: &[u8]) -> Result<Vec<&[u8]>, BundleError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bundle.len() {
        let len = bundle
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or(BundleError(at))?;
        out.push(bundle.get(at + 2..at + 2 + len).ok_or(BundleError(at))?);
        at += 2 + len;
    }
    Ok(out)
}

/// The tiles and entry bundles a tree of `size` leaves has that a tree of `old` leaves did
/// not: every tile completed since, and the partial tiles at `size` that differ from
/// those at `old`. Publishing these for each new checkpoint publishes the whole tree.
pub fn new_tiles(old: u64, size: u64) -> Vec<TilePath> {
    let mut out = Vec::new();
    if size <= old {
        return out;
    }
    let mut kinds = vec![TileKind::Entries];
    let mut level = 0u8;
    while level <= MAX_LEVEL && size.checked_shr(u32::from(level) * 8).unwrap_or(0) > 0 {
        kinds.push(TileKind::Hash { level });
        level += 1;
    }
    for kind in kinds {
        let shift = kind.tree_level();
        let (was, now) = (
            old.checked_shr(shift).unwrap_or(0),
            size.checked_shr(shift).unwrap_or(0),
        );
        for index in was / TILE_WIDTH..now / TILE_WIDTH {
            out.push(TilePath {
                kind,
                index,
                partial: None,
            });
        }
        let width = now % TILE_WIDTH;
        if width > 0 && now != was {
            out.push(TilePath {
                kind,
                index: now / TILE_WIDTH,
                partial: Some(width as u8),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_encoding_matches_the_spec() {
        assert_eq!(format_index(0), "000");
        assert_eq!(format_index(5), "005");
        assert_eq!(format_index(1000), "x001/000");
        assert_eq!(format_index(1234067), "x001/x234/067");
        for n in [0, 7, 999, 1000, 1234067, u64::MAX] {
            assert_eq!(parse_index(&format_index(n)), Some(n), "{n}");
        }
    }

    #[test]
    fn paths_round_trip_and_reject_other_spellings() {
        for p in [
            "tile/0/000",
            "tile/0/x001/x234/067",
            "tile/3/012.p/7",
            "tile/entries/x001/234.p/255",
            "tile/63/000",
        ] {
            assert_eq!(TilePath::parse(p).unwrap().to_string(), p);
        }
        for bad in [
            "tile/00/000",
            "tile/64/000",
            "tile/0/00",
            "tile/0/0000",
            "tile/0/x000/001",
            "tile/0/001/002",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/07",
            "tile/entries/abc",
            "tiles/0/000",
            "tile/0/",
            "tile/-1/000",
            "tile/0/x01/000",
        ] {
            assert!(TilePath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn widths_follow_the_tree_size() {
        let h0 = TileKind::Hash { level: 0 };
        let h1 = TileKind::Hash { level: 1 };
        // The spec's example: a tree of 70,000 leaves.
        assert_eq!(TilePath::for_tree(h0, 272, 70_000).unwrap().partial, None);
        assert_eq!(
            TilePath::for_tree(h0, 273, 70_000).unwrap().partial,
            Some(112)
        );
        assert_eq!(TilePath::for_tree(h0, 274, 70_000), None);
        assert_eq!(TilePath::for_tree(h1, 0, 70_000).unwrap().partial, None);
        assert_eq!(TilePath::for_tree(h1, 1, 70_000).unwrap().partial, Some(17));
        assert_eq!(
            TilePath::for_tree(TileKind::Hash { level: 2 }, 0, 70_000)
                .unwrap()
                .partial,
            Some(1)
        );
        assert_eq!(
            TilePath::for_tree(TileKind::Hash { level: 3 }, 0, 70_000),
            None
        );
        assert_eq!(TilePath::for_tree(TileKind::Entries, 0, 0), None);
        assert_eq!(
            TilePath::for_tree(TileKind::Hash { level: 63 }, u64::MAX, u64::MAX),
            None
        );
    }

    #[test]
    fn bundles() {
        let mut b = Vec::new();
        push_entry(&mut b, b"one");
        push_entry(&mut b, b"");
        push_entry(&mut b, b"three");
        assert_eq!(bundle_entries(&b).unwrap(), [&b"one"[..], b"", b"three"]);
        assert_eq!(bundle_entries(&b[..b.len() - 1]), Err(BundleError(7)));
        assert_eq!(bundle_entries(&[0]), Err(BundleError(0)));
    }

    #[test]
    fn new_tiles_cover_the_tree_once() {
        // Growing 0 → 70,000 in uneven steps publishes every tile a 70,000 tree has, full
        // ones once, and each step's partial tiles.
        let mut all = std::collections::BTreeSet::new();
        let mut old = 0;
        for size in [1, 255, 256, 257, 65_535, 65_536, 65_537, 70_000] {
            for t in new_tiles(old, size) {
                assert!(
                    TilePath::for_tree(t.kind, t.index, size) == Some(t),
                    "{t} at {size}"
                );
                if t.partial.is_none() {
                    assert!(all.insert(t.to_string()), "{t} twice");
                }
            }
            old = size;
        }
        let full = |kind, nodes: u64| {
            (0..nodes / 256).map(move |i| TilePath {
                kind,
                index: i,
                partial: None,
            })
        };
        let expected: std::collections::BTreeSet<String> = full(TileKind::Entries, 70_000)
            .chain(full(TileKind::Hash { level: 0 }, 70_000))
            .chain(full(TileKind::Hash { level: 1 }, 70_000 >> 8))
            .map(|t| t.to_string())
            .collect();
        assert_eq!(all, expected);
        assert_eq!(
            new_tiles(256, 300)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["tile/entries/001.p/44", "tile/0/001.p/44"]
        );
        assert!(new_tiles(300, 300).is_empty());
    }
}
