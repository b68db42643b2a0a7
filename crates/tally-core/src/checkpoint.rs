//! Tally checkpoints: C2SP tlog-checkpoints with one extension line for the map root.
//!
//! ```text
//! builder1.example.org/tally
//! 70
//! UKvK8Sai4WKd30qm3U7wXJMCzREUTdKcYUn8jtkHVl0=
//! map 2p9r2dV6ZmYdYxMRwIqbP1FoJx8vrZk4g+XWYH0kzbQ=
//!
//! — builder1.example.org/tally Dr5JqZkk3//PsJmV3BX0…
//! ```
//!
//! The lines are the origin, the tree size (decimal, no leading zeros), the RFC 6962 root,
//! and `map <root>`, which binds the sparse Merkle map root to this tree size. The note is
//! signed by the log's key, whose name is the origin.

use std::fmt;

use crate::hash::Hash;
use crate::keys::{KeyName, SigningKey, VerifyingKey};
use crate::note::{Note, NoteError};
use crate::tlog::TreeHead;

/// What a log commits to at one size.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The log's identity; also its key's name.
    pub origin: KeyName,
    /// The tree size and log root.
    pub tree: TreeHead,
    /// The root of the map after replaying entries `[0, tree.size)`.
    pub map_root: Hash,
}

/// Why a checkpoint does not parse or verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The signed note is malformed or its signature does not verify.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The body does not have the four lines a Tally checkpoint has.
    #[error("checkpoint has {0} lines; expected origin, size, root and map root")]
    LineCount(usize),
    /// The origin line is not a valid key name.
    #[error("checkpoint origin {0:?} is not a valid origin")]
    Origin(String),
    /// The size line is not canonical decimal.
    #[error("checkpoint size {0:?} is not a decimal number without leading zeros")]
    Size(String),
    /// The root line is not a base64 SHA-256 hash.
    #[error("checkpoint root {0:?} is not a base64 SHA-256 hash")]
    Root(String),
    /// The fourth line is not `map <base64 hash>`.
    #[error("checkpoint line 4 {0:?} is not `map <base64 hash>`")]
    MapRoot(String),
    /// The checkpoint is for another log.
    #[error("checkpoint origin is {found:?}, expected {expected:?}")]
    WrongOrigin {
        /// The origin the key is for.
        expected: String,
        /// The origin in the checkpoint.
        found: String,
    },
}

impl Checkpoint {
    /// The note text.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\nmap {}\n",
            self.origin, self.tree.size, self.tree.root, self.map_root
        )
    }

    /// Parses note text strictly: exactly the four lines [`Checkpoint::to_text`] writes.
    pub fn from_text(text: &str) -> Result<Checkpoint, CheckpointError> {
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .unwrap_or(text)
            .split('\n')
            .collect();
        let [origin, size, root, map] = lines[..] else {
            return Err(CheckpointError::LineCount(lines.len()));
        };
        if !text.ends_with('\n') {
            return Err(NoteError::TextNewline.into());
        }
        let origin = KeyName::new(origin).map_err(|_| CheckpointError::Origin(origin.into()))?;
        let canonical = size.bytes().all(|b| b.is_ascii_digit())
            && !size.is_empty()
            && (size == "0" || !size.starts_with('0'));
        let size = canonical
            .then(|| size.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| CheckpointError::Size(size.into()))?;
        let root = Hash::from_base64(root).map_err(|_| CheckpointError::Root(root.into()))?;
        let map_root = map
            .strip_prefix("map ")
            .and_then(|m| Hash::from_base64(m).ok())
            .ok_or_else(|| CheckpointError::MapRoot(map.into()))?;
        Ok(Checkpoint {
            origin,
            tree: TreeHead { size, root },
            map_root,
        })
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// A checkpoint and its signed note, verified against its log's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    note: Note,
}

/// A checkpoint whose note parsed but whose signature is not yet checked.
///
/// Only the origin can be read, to pick the key to verify with.
#[derive(Clone, Debug)]
pub struct UnverifiedCheckpoint {
    checkpoint: Checkpoint,
    note: Note,
}

impl UnverifiedCheckpoint {
    /// Parses a signed checkpoint without checking signatures.
    pub fn parse(bytes: &[u8]) -> Result<UnverifiedCheckpoint, CheckpointError> {
        let note = Note::parse(bytes)?;
        let checkpoint = Checkpoint::from_text(note.text())?;
        Ok(UnverifiedCheckpoint { checkpoint, note })
    }

    /// The origin the checkpoint claims.
    pub fn origin(&self) -> &KeyName {
        &self.checkpoint.origin
    }

    /// The tree size the checkpoint claims.
    pub fn size(&self) -> u64 {
        self.checkpoint.tree.size
    }

    /// Checks the log's signature and that the origin is the key's name.
    pub fn verify(self, key: &VerifyingKey) -> Result<SignedCheckpoint, CheckpointError> {
        if self.checkpoint.origin != *key.name() {
            return Err(CheckpointError::WrongOrigin {
                expected: key.name().to_string(),
                found: self.checkpoint.origin.to_string(),
            });
        }
        self.note.verify(key)?;
        Ok(SignedCheckpoint {
            checkpoint: self.checkpoint,
            note: self.note,
        })
    }
}

impl SignedCheckpoint {
    /// Signs `checkpoint` with the log's key, whose name must be the origin.
    pub fn sign(
        checkpoint: Checkpoint,
        key: &SigningKey,
    ) -> Result<SignedCheckpoint, CheckpointError> {
        if checkpoint.origin != *key.name() {
            return Err(CheckpointError::WrongOrigin {
                expected: key.name().to_string(),
                found: checkpoint.origin.to_string(),
            });
        }
        let note = Note::sign(&checkpoint.to_text(), key)?;
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// Parses and verifies a signed checkpoint from the log with key `key`.
    pub fn open(bytes: &[u8], key: &VerifyingKey) -> Result<SignedCheckpoint, CheckpointError> {
        UnverifiedCheckpoint::parse(bytes)?.verify(key)
    }

    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The signed note, with every signature it carries (the log's and any cosignatures).
    pub fn note(&self) -> &Note {
        &self.note
    }

    /// The signed note's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.note.to_bytes()
    }

    /// Adds another signer's signature line (a witness's cosignature). It cannot replace the
    /// log's own signature: a line in the origin's name is refused.
    pub fn add_cosignature(
        &mut self,
        sig: crate::note::NoteSignature,
    ) -> Result<(), CheckpointError> {
        if sig.name == self.checkpoint.origin {
            return Err(CheckpointError::WrongOrigin {
                expected: "a witness name".into(),
                found: sig.name.to_string(),
            });
        }
        self.note.add_signature(sig);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
