//! The C2SP tlog-witness `add-checkpoint` request.
//!
//! ```text
//! old 20852014
//! PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=
//! jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=
//!
//! example.com/behind-the-sofa
//! 20852163
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=
//!
//! — example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=
//! ```
//!
//! An `old <size>` line, up to 63 consistency proof hashes, an empty line, then the signed
//! checkpoint.

use crate::hash::Hash;

/// The most consistency proof lines a request may carry.
pub const MAX_PROOF_LINES: usize = 63;

/// Seconds after which a checkpoint that is still a log's latest is cosigned again: an idle
/// log's cosignatures stay younger than this plus one witness round, so consumers whose
/// `max-age` is above that (two hours is safe) keep counting its answers.
pub const COSIGNATURE_REFRESH_SECS: u64 = 3600;

/// A parsed `add-checkpoint` request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the client believes the witness last cosigned.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub checkpoint: Vec<u8>,
}

/// Why a request body is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed add-checkpoint request: {0}")]
pub struct AddCheckpointError(pub String);

impl AddCheckpoint {
    /// Parses a request body.
    pub fn parse(body: &[u8]) -> Result<AddCheckpoint, AddCheckpointError> {
        let err = |m: &str| AddCheckpointError(m.to_owned());
        let text = std::str::from_utf8(body).map_err(|_| err("not UTF-8"))?;
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| err("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or_else(|| err("the first line must be `old <size>`"))?;
        let canonical = !old.is_empty()
            && old.bytes().all(|b| b.is_ascii_digit())
            && (old == "0" || !old.starts_with('0'));
        let old_size = canonical
            .then(|| old.parse().ok())
            .flatten()
            .ok_or_else(|| err("the old size is not a decimal number without leading zeros"))?;
        let proof = lines
            .map(|l| {
                Hash::from_base64(l)
                    .map_err(|_| err(&format!("proof line {l:?} is not a base64 SHA-256 hash")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(err("more than 63 proof lines"));
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            checkpoint: checkpoint.as_bytes().to_vec(),
        })
    }

    /// The request body.
    pub fn to_body(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size);
        for h in &self.proof {
            out.push_str(&format!("{h}\n"));
        }
        out.push('\n');
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.checkpoint);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

    #[test]
    fn parses_the_spec_example() {
        let r = AddCheckpoint::parse(SPEC.as_bytes()).unwrap();
        assert_eq!(r.old_size, 20852014);
        assert_eq!(r.proof.len(), 2);
        assert!(
            r.checkpoint
                .starts_with(b"example.com/behind-the-sofa\n20852163\n")
        );
        assert_eq!(r.to_body(), SPEC.as_bytes());
        let empty = AddCheckpoint::parse(b"old 0\n\nx\n").unwrap();
        assert!(empty.proof.is_empty());
    }

    #[test]
    fn rejects_malformed_bodies() {
        for bad in [
            "old 007\n\nx",
            "old x\n\nx",
            "new 5\n\nx",
            "old 5\nnot-a-hash\n\nx",
            "old 5\nx",
        ] {
            assert!(AddCheckpoint::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let many = format!(
            "old 5\n{}\nx",
            "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n".repeat(64)
        );
        assert!(AddCheckpoint::parse(many.as_bytes()).is_err());
    }
}
