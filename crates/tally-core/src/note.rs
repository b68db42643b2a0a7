//! C2SP signed notes: a text, a blank line, and signature lines.
//!
//! ```text
//! tally.example/test-log
//! 70
//! UKvK8Sai4WKd30qm3U7wXJMCzREUTdKcYUn8jtkHVl0=
//!
//! — tally.example/test-log Dr5JqZkk3//PsJmV3BX09REP+01UsOZJ8xOYUfwNfbr9KitX1B5AV8zeiqfbpaDtOUyg1Xx+Bx6/yyZ7YqgEXMZfDwU=
//! ```
//!
//! A signature line is an em dash, a space, the key name, a space, and
//! `base64(key ID ‖ signature)`. Parsing follows Go's `golang.org/x/mod/sumdb/note`: UTF-8
//! with no control characters but newline, text and signatures split at the last blank
//! line, any malformed signature line rejects the note, at most 100 signatures. Verification
//! follows the spec: signatures from other keys are ignored, the first signature from the
//! given key decides, and a failed one rejects the note.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::keys::{KeyName, SigningKey, VerifyingKey};

/// The most signature lines a note may carry.
pub const MAX_SIGNATURES: usize = 100;

/// A signed note, parsed but not verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

/// One signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The signer's name.
    pub name: KeyName,
    /// The signer's key ID.
    pub key_id: u32,
    /// The signature bytes after the key ID.
    pub signature: Vec<u8>,
}

/// Why bytes are not a signed note, or a note does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// Not UTF-8.
    #[error("signed note is not UTF-8")]
    NotUtf8,
    /// A control character other than newline.
    #[error("signed note contains control character {0:?}")]
    ControlCharacter(char),
    /// The text does not end in a newline.
    #[error("note text must end in a newline")]
    TextNewline,
    /// No blank line separates the text from signatures.
    #[error("signed note has no blank line before its signatures")]
    NoSeparator,
    /// Nothing follows the blank line, or the signatures do not end in a newline.
    #[error("signed note has no signature lines, or they do not end in a newline")]
    NoSignatureLines,
    /// A signature line is malformed.
    #[error("malformed signature line {0:?}")]
    SignatureLine(String),
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("signed note has {0} signatures; the limit is {MAX_SIGNATURES}")]
    TooManySignatures(usize),
    /// The note carries no signature by the key.
    #[error("no signature by {0}")]
    NotSignedBy(String),
    /// The note is signed under the key's name, but by another key.
    #[error(
        "signed by {name} with key ID {found:08x}, but the key given has ID {expected:08x}: the key you gave (--vkey, a policy or config file) may be stale, or the log's key changed"
    )]
    OtherKey {
        /// The key name.
        name: String,
        /// The key ID of the signature found.
        found: u32,
        /// The key ID of the key given.
        expected: u32,
    },
    /// The key's signature is present but invalid.
    #[error("the signature by {0} is invalid")]
    InvalidSignature(String),
}

fn check_characters(text: &str) -> Result<(), NoteError> {
    match text.chars().find(|&c| c < ' ' && c != '\n') {
        Some(c) => Err(NoteError::ControlCharacter(c)),
        None => Ok(()),
    }
}

impl Note {
    /// Parses a signed note.
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        let msg = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
        check_characters(msg)?;
        let split = msg.rfind("\n\n").ok_or(NoteError::NoSeparator)?;
        let (text, sigs) = (&msg[..=split], &msg[split + 2..]);
        let Some(sigs) = sigs.strip_suffix('\n').filter(|s| !s.is_empty()) else {
            return Err(NoteError::NoSignatureLines);
        };
        let lines: Vec<&str> = sigs.split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures(lines.len()));
        }
        let signatures = lines
            .into_iter()
            .map(parse_signature_line)
            .collect::<Result<_, _>>()?;
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Signs `text` (which must end in a newline) with `key`.
    pub fn sign(text: &str, key: &SigningKey) -> Result<Note, NoteError> {
        let mut note = Note {
            text: text.to_owned(),
            signatures: Vec::new(),
        };
        if !text.ends_with('\n') {
            return Err(NoteError::TextNewline);
        }
        check_characters(text)?;
        note.add_signature(NoteSignature {
            name: key.name().clone(),
            key_id: key.verifying_key().note_key_id(),
            signature: key.sign(text.as_bytes()).to_vec(),
        });
        Ok(note)
    }

    /// Adds the signature lines of `other` (the same text signed by others) that this note
    /// does not have yet; with another text, nothing. Returns whether any was added.
    pub fn merge(&mut self, other: &Note) -> bool {
        if other.text != self.text {
            return false;
        }
        let mut added = false;
        for sig in &other.signatures {
            if self.signature_by(&sig.name, sig.key_id).is_none()
                && self.signatures.len() < MAX_SIGNATURES
            {
                self.signatures.push(sig.clone());
                added = true;
            }
        }
        added
    }

    /// Adds a signature line, replacing any from the same key.
    pub fn add_signature(&mut self, sig: NoteSignature) {
        self.signatures
            .retain(|s| !(s.name == sig.name && s.key_id == sig.key_id));
        self.signatures.push(sig);
    }

    /// The signed text, with its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// The first signature by (`name`, `key_id`).
    pub fn signature_by(&self, name: &KeyName, key_id: u32) -> Option<&NoteSignature> {
        self.signatures
            .iter()
            .find(|s| s.name == *name && s.key_id == key_id)
    }

    /// Checks the note's Ed25519 signature by `key`. Signatures by other keys are ignored.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), NoteError> {
        let sig = self
            .signature_by(key.name(), key.note_key_id())
            .ok_or_else(
                || match self.signatures.iter().find(|s| s.name == *key.name()) {
                    Some(other) => NoteError::OtherKey {
                        name: key.name().to_string(),
                        found: other.key_id,
                        expected: key.note_key_id(),
                    },
                    None => NoteError::NotSignedBy(key.to_note_vkey()),
                },
            )?;
        if key.verify(self.text.as_bytes(), &sig.signature) {
            Ok(())
        } else {
            Err(NoteError::InvalidSignature(key.to_note_vkey()))
        }
    }

    /// The note as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.to_line());
        }
        out.into_bytes()
    }
}

impl NoteSignature {
    /// Parses one signature line, without its newline.
    pub fn parse_line(line: &str) -> Result<NoteSignature, NoteError> {
        parse_signature_line(line)
    }

    /// `— <name> <base64(key ID ‖ signature)>\n`.
    pub fn to_line(&self) -> String {
        let mut data = self.key_id.to_be_bytes().to_vec();
        data.extend_from_slice(&self.signature);
        format!("— {} {}\n", self.name, BASE64.encode(data))
    }
}

fn parse_signature_line(line: &str) -> Result<NoteSignature, NoteError> {
    let bad = || NoteError::SignatureLine(line.to_owned());
    let rest = line.strip_prefix("— ").ok_or_else(bad)?;
    let (name, b64) = rest.split_once(' ').ok_or_else(bad)?;
    let name = KeyName::new(name).map_err(|_| bad())?;
    let data = BASE64.decode(b64).map_err(|_| bad())?;
    if data.len() < 5 {
        return Err(bad());
    }
    Ok(NoteSignature {
        name,
        key_id: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
        signature: data[4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_key_under_the_same_name_is_named_as_such() {
        let old = SigningKey::from_seed(KeyName::new("log.example/x").unwrap(), [1; 32]);
        let new = SigningKey::from_seed(KeyName::new("log.example/x").unwrap(), [2; 32]);
        let note = Note::sign("log.example/x\n1\nAAAA\n", &new).unwrap();
        let err = note.verify(&old.verifying_key()).unwrap_err();
        assert!(
            matches!(err, NoteError::OtherKey { found, expected, .. }
                if found == new.verifying_key().note_key_id() && expected == old.verifying_key().note_key_id()),
            "{err}"
        );
        assert!(err.to_string().contains("stale"), "{err}");
    }

    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n\
                           \n\
                           — PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn verifies_go_example() {
        let key = VerifyingKey::from_note_vkey(GO_VKEY).unwrap();
        let note = Note::parse(GO_NOTE.as_bytes()).unwrap();
        note.verify(&key).unwrap();
        assert_eq!(note.to_bytes(), GO_NOTE.as_bytes());
    }

    #[test]
    fn ignores_unknown_and_rejects_bad_signatures() {
        let key = VerifyingKey::from_note_vkey(GO_VKEY).unwrap();
        let other = SigningKey::from_seed(KeyName::new("other").unwrap(), [1; 32]);
        let mut note = Note::parse(GO_NOTE.as_bytes()).unwrap();
        let extra = Note::sign(note.text(), &other).unwrap().signatures[0].clone();
        note.add_signature(extra);
        note.verify(&key).unwrap();
        note.verify(&other.verifying_key()).unwrap();

        let tampered = GO_NOTE.replace("cryptography", "cryptographie");
        let note = Note::parse(tampered.as_bytes()).unwrap();
        assert!(matches!(
            note.verify(&key),
            Err(NoteError::InvalidSignature(_))
        ));
        assert!(matches!(
            note.verify(&other.verifying_key()),
            Err(NoteError::NotSignedBy(_))
        ));
    }

    #[test]
    fn rejects_malformed_notes() {
        let cases: &[(&str, NoteError)] = &[
            ("text\n— a AAAAAAA=\n", NoteError::NoSeparator),
            ("text\n\n", NoteError::NoSignatureLines),
            ("text\n\n— a AAAAAAA=", NoteError::NoSignatureLines),
            (
                "text\n\n- a AAAAAAA=\n",
                NoteError::SignatureLine("- a AAAAAAA=".into()),
            ),
            (
                "text\n\n— a AAAA\n",
                NoteError::SignatureLine("— a AAAA".into()),
            ),
            (
                "text\n\n— a+b AAAAAAA=\n",
                NoteError::SignatureLine("— a+b AAAAAAA=".into()),
            ),
            (
                "te\rxt\n\n— a AAAAAAA=\n",
                NoteError::ControlCharacter('\r'),
            ),
            (
                "te\txt\n\n— a AAAAAAA=\n",
                NoteError::ControlCharacter('\t'),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                Note::parse(input.as_bytes()).as_ref(),
                Err(want),
                "{input:?}"
            );
        }
        assert_eq!(Note::parse(b"\xff\n\n").unwrap_err(), NoteError::NotUtf8);
        let many = format!("t\n\n{}", "— a AAAAAAA=\n".repeat(101));
        assert_eq!(
            Note::parse(many.as_bytes()).unwrap_err(),
            NoteError::TooManySignatures(101)
        );
        let key = SigningKey::from_seed(KeyName::new("a").unwrap(), [1; 32]);
        assert_eq!(
            Note::sign("no newline", &key).unwrap_err(),
            NoteError::TextNewline
        );
    }
}
