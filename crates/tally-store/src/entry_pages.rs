//! Log entries, lz4-compressed in page-sized runs.
//!
//! Key: the index of the first entry in the run. Value: `lz4(entry bundle)`, with the
//! uncompressed length prepended, where the bundle is the tlog-tiles entry bundle format
//! (`u16` big-endian length, entry bytes, repeated). Runs are packed to at most
//! [`PAGE_BUDGET`] bytes, so each fills one 4 KiB redb page: realistic attestations
//! compress from about 430 to 285 bytes, and a full page wastes nothing. Only the last run
//! is ever rewritten, as it fills.

use redb::{ReadableTable, Table, TableDefinition};
use tally_core::tiles;

use crate::StoreError;

/// The largest compressed run, in bytes.
pub(crate) const PAGE_BUDGET: usize = 4064;

/// The table type.
pub(crate) type EntryTable<'a> = TableDefinition<'a, u64, &'static [u8]>;

fn decode(first: u64, blob: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out = Vec::new();
    decode_into(first, blob, 0..u64::MAX, &mut out)?;
    Ok(out)
}

/// Decompresses a run starting at entry `first` and copies out the entries in `wanted`.
fn decode_into(
    first: u64,
    blob: &[u8],
    wanted: std::ops::Range<u64>,
    out: &mut Vec<Vec<u8>>,
) -> Result<(), StoreError> {
    let raw = lz4_flex::decompress_size_prepended(blob)
        .map_err(|e| StoreError::corrupt("entry page", format!("page {first}: {e}")))?;
    let entries = tiles::bundle_entries(&raw)
        .map_err(|e| StoreError::corrupt("entry page", format!("page {first}: {e}")))?;
    for (i, entry) in entries.into_iter().enumerate() {
        if wanted.contains(&(first + i as u64)) {
            out.push(entry.to_vec());
        }
    }
    Ok(())
}

fn encode(entries: &[impl AsRef<[u8]>]) -> (Vec<u8>, usize) {
    let mut raw = Vec::new();
    for e in entries {
        tiles::push_entry(&mut raw, e.as_ref());
    }
    (lz4_flex::compress_prepend_size(&raw), raw.len())
}

/// Entries `[start, end)`; the caller checks that `end` is within the log.
pub(crate) fn read<T: ReadableTable<u64, &'static [u8]>>(
    table: &T,
    start: u64,
    end: u64,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
    if start >= end {
        return Ok(out);
    }
    // The run holding `start` begins at or before it; later runs follow in key order.
    let (first, blob) = table
        .range(..=start)?
        .next_back()
        .transpose()?
        .map(|(k, v)| (k.value(), v))
        .ok_or_else(|| StoreError::corrupt("entry page", format!("no page holds entry {start}")))?;
    decode_into(first, blob.value(), start..end, &mut out)?;
    if (out.len() as u64) < end - start {
        for page in table.range(first + 1..end)? {
            let (k, v) = page?;
            decode_into(k.value(), v.value(), start..end, &mut out)?;
        }
    }
    if out.len() as u64 != end - start {
        return Err(StoreError::corrupt(
            "entry page",
            format!("found {} of entries {start}..{end}", out.len()),
        ));
    }
    Ok(out)
}

/// Appends `new` entries to a log of `size` entries.
pub(crate) fn append(
    table: &mut Table<'_, u64, &'static [u8]>,
    size: u64,
    new: &[&[u8]],
) -> Result<(), StoreError> {
    if new.is_empty() {
        return Ok(());
    }
    // Reopen the last run, and pack it together with the new entries.
    let last = table.last()?.map(|(k, v)| (k.value(), v.value().to_vec()));
    let (first, mut entries) = match last {
        Some((first, blob)) => (first, decode(first, &blob)?),
        None => (0, Vec::new()),
    };
    if first + entries.len() as u64 != size {
        return Err(StoreError::corrupt(
            "entry page",
            format!(
                "last page ends at {}, log size is {size}",
                first + entries.len() as u64
            ),
        ));
    }
    entries.extend(new.iter().map(|e| e.to_vec()));
    for (start, blob) in pack(&entries) {
        table.insert(first + start as u64, blob.as_slice())?;
    }
    Ok(())
}

/// Splits entries into runs of at most [`PAGE_BUDGET`] compressed bytes (a single larger
/// entry gets a run of its own). Returns each run's offset and compressed bytes.
fn pack(entries: &[Vec<u8>]) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut ratio = 0.7;
    let mut i = 0;
    while i < entries.len() {
        // Guess from the last run's compression ratio, then correct.
        let mut k = 0;
        let mut raw = 0;
        while i + k < entries.len() {
            let next = raw + 2 + entries[i + k].len();
            if next as f64 * ratio > PAGE_BUDGET as f64 * 0.97 && k > 0 {
                break;
            }
            raw = next;
            k += 1;
        }
        let (mut blob, mut raw_len) = encode(&entries[i..i + k]);
        while blob.len() > PAGE_BUDGET && k > 1 {
            k = ((k * PAGE_BUDGET) / blob.len()).clamp(1, k - 1);
            (blob, raw_len) = encode(&entries[i..i + k]);
        }
        ratio = blob.len() as f64 / raw_len.max(1) as f64;
        out.push((i, blob));
        i += k;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_respects_the_budget_and_keeps_order() {
        let entries: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| format!("entry {i} {}", "x".repeat((i % 400) as usize)).into_bytes())
            .collect();
        let runs = pack(&entries);
        let mut all = Vec::new();
        for (start, blob) in &runs {
            assert!(blob.len() <= PAGE_BUDGET);
            assert_eq!(*start, all.len());
            all.extend(decode(0, blob).unwrap());
        }
        assert_eq!(all, entries);
        let big = vec![vec![7u8; 60_000]];
        assert_eq!(
            pack(&big).len(),
            1,
            "an oversized entry gets a run of its own"
        );
    }
}
