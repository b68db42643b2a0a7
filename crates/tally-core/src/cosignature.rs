//! C2SP tlog-cosignature (Ed25519): a witness's timestamped signature on a checkpoint.
//!
//! ```text
//! signed message:  cosignature/v1\n
//!                  time 1679315147\n
//!                  <the checkpoint's note text>
//! signature line:  — <witness name> base64(key ID ‖ timestamp (u64, big-endian) ‖ signature)
//! key ID:          SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4]
//! verifier key:    <name>+<hex key ID>+base64(0x04 ‖ public key)
//! ```
//!
//! A cosignature says: as of `time`, this is the largest checkpoint of the log the witness
//! has seen that is consistent with everything it saw before.

use crate::keys::{self, KeyError, NOTE_COSIGNATURE, SigningKey, VerifyingKey};
use crate::note::{Note, NoteSignature};

/// The message a cosignature signs.
pub fn message(checkpoint_text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}")
}

/// The origin, size and root lines of a checkpoint body.
fn first_three_lines(body: &str) -> String {
    body.split_inclusive('\n').take(3).collect()
}

/// A witness signing key.
#[derive(Clone, Debug)]
pub struct Cosigner {
    key: SigningKey,
}

impl Cosigner {
    /// The witness with this key.
    pub fn new(key: SigningKey) -> Cosigner {
        Cosigner { key }
    }

    /// The witness's verifier: its public key as a cosigner.
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            key: self.key.verifying_key(),
        }
    }

    /// The cosignature line for a checkpoint's note text at `timestamp` (seconds since 1970).
    pub fn cosign(&self, checkpoint_text: &str, timestamp: u64) -> NoteSignature {
        let sig = self
            .key
            .sign(message(checkpoint_text, timestamp).as_bytes());
        let mut signature = timestamp.to_be_bytes().to_vec();
        signature.extend_from_slice(&sig);
        NoteSignature {
            name: self.key.name().clone(),
            key_id: self.verifier().key_id(),
            signature,
        }
    }
}

/// A witness's public key, for checking cosignatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier {
    key: VerifyingKey,
}

/// Why a cosignature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignatureError {
    /// The note has no cosignature by this witness.
    #[error("no cosignature by {0}")]
    Missing(String),
    /// The cosignature is malformed or does not verify.
    #[error("the cosignature by {0} is invalid")]
    Invalid(String),
}

impl CosignatureVerifier {
    /// Parses `name+hexid+base64(0x04 ‖ public key)`.
    pub fn parse(text: &str) -> Result<CosignatureVerifier, KeyError> {
        keys::parse_vkey(text.trim(), NOTE_COSIGNATURE).map(|key| CosignatureVerifier { key })
    }

    /// The witness's name.
    pub fn name(&self) -> &keys::KeyName {
        self.key.name()
    }

    /// The witness's public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The key ID cosignatures carry.
    pub fn key_id(&self) -> u32 {
        keys::key_id(self.key.name(), NOTE_COSIGNATURE, self.key.as_bytes())
    }

    /// The verifier key string.
    pub fn to_vkey(&self) -> String {
        keys::format_vkey(self.key.name(), NOTE_COSIGNATURE, self.key.as_bytes())
    }

    /// Checks this witness's cosignature on `note`; returns its timestamp.
    ///
    /// The spec signs the whole note body, extension lines included, and so does Tally's own
    /// witness. Some deployed witnesses (torchwood's litewitness v0.5.0, measured) sign only
    /// the first three lines: origin, size and root. A cosignature over those is accepted
    /// too: it is the part a cosigner vouches for (the spec: "no semantic statement is made
    /// about any extension lines"), and the log's own signature covers the rest.
    pub fn verify(&self, note: &Note) -> Result<u64, CosignatureError> {
        let sig = note
            .signature_by(self.key.name(), self.key_id())
            .ok_or_else(|| CosignatureError::Missing(self.to_vkey()))?;
        let invalid = || CosignatureError::Invalid(self.to_vkey());
        let (ts, ed) = sig.signature.split_at_checked(8).ok_or_else(invalid)?;
        let timestamp = u64::from_be_bytes(ts.try_into().map_err(|_| invalid())?);
        let signed = |body: &str| self.key.verify(message(body, timestamp).as_bytes(), ed);
        if signed(note.text()) || signed(&first_three_lines(note.text())) {
            Ok(timestamp)
        } else {
            Err(invalid())
        }
    }
}

impl std::fmt::Display for CosignatureVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

impl std::str::FromStr for CosignatureVerifier {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        CosignatureVerifier::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for CosignatureVerifier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        CosignatureVerifier::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The signature lines of `lines` (a witness's `add-checkpoint` answer) that are valid
/// cosignatures by `witness` on `note`. Anything else in the answer is ignored, as the spec
/// asks of clients.
pub fn valid_lines(note: &Note, lines: &str, witness: &CosignatureVerifier) -> Vec<NoteSignature> {
    lines
        .lines()
        .filter_map(|line| NoteSignature::parse_line(line).ok())
        .filter(|sig| {
            let mut one = note.clone();
            one.add_signature(sig.clone());
            witness.verify(&one).is_ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyName;

    #[test]
    fn cosign_and_verify() {
        let log = SigningKey::from_seed(KeyName::new("log.example/a").unwrap(), [1; 32]);
        let note = Note::sign(
            "log.example/a\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            &log,
        )
        .unwrap();
        let witness = Cosigner::new(SigningKey::from_seed(
            KeyName::new("witness.example/w1").unwrap(),
            [2; 32],
        ));
        let mut cosigned = note.clone();
        cosigned.add_signature(witness.cosign(note.text(), 1_679_315_147));
        let v = CosignatureVerifier::parse(&witness.verifier().to_vkey()).unwrap();
        assert_eq!(v.verify(&cosigned), Ok(1_679_315_147));
        // The log's own signature still verifies, and the cosignature parses as a note line.
        let reparsed = Note::parse(&cosigned.to_bytes()).unwrap();
        reparsed.verify(&log.verifying_key()).unwrap();
        assert_eq!(v.verify(&reparsed), Ok(1_679_315_147));
        // The cosigner key ID uses type 0x04, so it differs from the plain note key ID.
        assert_ne!(v.key_id(), witness.key.verifying_key().note_key_id());
        assert!(matches!(v.verify(&note), Err(CosignatureError::Missing(_))));
        let tampered = Note::parse(
            &cosigned
                .to_bytes()
                .iter()
                .map(|&b| if b == b'5' { b'6' } else { b })
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert!(matches!(
            v.verify(&tampered),
            Err(CosignatureError::Invalid(_))
        ));
    }

    #[test]
    fn spec_example_line_decodes() {
        // From C2SP tlog-cosignature: the example witness line's timestamp is 1679315147.
        use base64::Engine as _;
        let b64 = "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(raw.len(), 76);
        assert_eq!(
            u64::from_be_bytes(raw[4..12].try_into().unwrap()),
            1_679_315_147
        );
    }
}
