//! Ed25519 keys, in the text forms Nix and C2SP signed notes use.
//!
//! ```text
//! secret (Nix)     builder1.example.org/tally:<base64(32-byte seed ‖ 32-byte public key)>
//! public (Nix)     builder1.example.org/tally:<base64(32-byte public key)>
//! verifier (note)  builder1.example.org/tally+0ebe49a9+<base64(0x01 ‖ public key)>
//! ```
//!
//! One key pair serves both worlds: a log signs checkpoints as a signed-note signer named by
//! its origin, and a cache proxy signs narinfos as a Nix binary cache key. The secret form
//! is the one `nix-store --generate-binary-cache-key` writes.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;
use zeroize::Zeroizing;

use crate::hash::Hash;

/// A key name: a log origin or a Nix cache key name.
///
/// Non-empty, printable, no whitespace, and neither `+` (which the signed-note verifier key
/// format uses as its separator) nor `:` (which Nix key files use).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyName(Box<str>);

/// Why text is not a valid key or key name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The name is empty.
    #[error("key name is empty")]
    EmptyName,
    /// The name has a character key names may not have.
    #[error(
        "key name {name:?} contains {bad:?}; names may not contain whitespace, '+', ':' or control characters"
    )]
    NameCharacter {
        /// The offending name.
        name: String,
        /// The first bad character.
        bad: char,
    },
    /// The text is not `name:base64`.
    #[error("expected <name>:<base64>, found no ':'")]
    NixFormat,
    /// The base64 part is not standard base64.
    #[error("key data for {name:?} is not standard base64")]
    KeyBase64 {
        /// The key's name.
        name: String,
    },
    /// The base64 part decodes to the wrong number of bytes.
    #[error(
        "key data for {name:?} is {found} bytes, a key holds {expected}: is it truncated or pasted incompletely?"
    )]
    KeyData {
        /// The key's name.
        name: String,
        /// The number of bytes expected.
        expected: usize,
        /// The number found.
        found: usize,
    },
    /// A secret key was given where a public one belongs. The key itself is never repeated.
    #[error(
        "the key named {name:?} is a SECRET key (never share it); give its public key instead, which `tally key public --secret-key-file FILE` prints"
    )]
    SecretGiven {
        /// The key's name.
        name: String,
    },
    /// The public half of a Nix secret key does not belong to its seed.
    #[error("secret key {0:?} is corrupt: its public half does not match its seed")]
    Mismatch(String),
    /// The text is not `name+hexid+base64`.
    #[error("verifier key {0:?} is not <name>+<8 hex digits>+<base64>")]
    VerifierFormat(String),
    /// The verifier key's data is not 33 bytes (a type byte and a 32-byte key).
    #[error(
        "verifier key {name:?} holds {found} bytes of key data, not 33 (a type byte and the 32-byte key): is it truncated?"
    )]
    VerifierLength {
        /// The key's name.
        name: String,
        /// The number of bytes found.
        found: usize,
    },
    /// The verifier key's type byte is not the expected one.
    #[error("verifier key {name:?} has type 0x{found:02x}, expected 0x{expected:02x}")]
    VerifierType {
        /// The key's name.
        name: String,
        /// The type byte expected.
        expected: u8,
        /// The type byte found.
        found: u8,
    },
    /// The verifier key's ID does not match its name and key.
    #[error("verifier key {0:?} has the wrong key ID for its name and key")]
    VerifierId(String),
    /// The public key bytes are not a valid Ed25519 point.
    #[error("key {0:?} is not a valid Ed25519 public key")]
    InvalidPoint(String),
}

impl KeyName {
    /// Validates a key name.
    pub fn new(name: &str) -> Result<KeyName, KeyError> {
        if name.is_empty() {
            return Err(KeyError::EmptyName);
        }
        if let Some(bad) = name
            .chars()
            .find(|&c| c.is_whitespace() || c.is_control() || c == '+' || c == ':')
        {
            return Err(KeyError::NameCharacter {
                name: name.to_owned(),
                bad,
            });
        }
        Ok(KeyName(name.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyName {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyName::new(s)
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl serde::Serialize for KeyName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for KeyName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        KeyName::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The signed-note signature type of plain Ed25519 signatures.
pub const NOTE_ED25519: u8 = 0x01;

/// The signed-note signature type of timestamped Ed25519 cosignatures (C2SP
/// tlog-cosignature).
pub const NOTE_COSIGNATURE: u8 = 0x04;

/// A signed-note key ID: `SHA-256(name ‖ "\n" ‖ type ‖ public key)[:4]`, big-endian.
pub fn key_id(name: &KeyName, key_type: u8, public: &[u8; 32]) -> u32 {
    let h = Hash::of_parts(&[name.as_str().as_bytes(), b"\n", &[key_type], public]);
    u32::from_be_bytes([h.0[0], h.0[1], h.0[2], h.0[3]])
}

/// An Ed25519 signing key with its name.
#[derive(Clone)]
pub struct SigningKey {
    name: KeyName,
    key: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// The key with this name and 32-byte seed.
    pub fn from_seed(name: KeyName, seed: [u8; 32]) -> SigningKey {
        SigningKey {
            name,
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// Parses Nix's secret key format, `name:base64(seed ‖ public key)`. Surrounding
    /// whitespace (a trailing newline) is ignored.
    pub fn from_nix_secret(text: &str) -> Result<SigningKey, KeyError> {
        let (name, data) = split_nix(text.trim())?;
        let bytes = Zeroizing::new(BASE64.decode(data).map_err(|_| KeyError::KeyBase64 {
            name: name.to_string(),
        })?);
        if bytes.len() != 64 {
            return Err(KeyError::KeyData {
                name: name.to_string(),
                expected: 64,
                found: bytes.len(),
            });
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&bytes[..32]);
        let key = SigningKey::from_seed(name, *seed);
        if key.key.verifying_key().as_bytes()[..] != bytes[32..] {
            return Err(KeyError::Mismatch(key.name.to_string()));
        }
        Ok(key)
    }

    /// Nix's secret key format, without a trailing newline (as Nix writes it).
    pub fn to_nix_secret(&self) -> Zeroizing<String> {
        let mut bytes = Zeroizing::new([0u8; 64]);
        bytes[..32].copy_from_slice(self.key.as_bytes());
        bytes[32..].copy_from_slice(self.key.verifying_key().as_bytes());
        Zeroizing::new(format!("{}:{}", self.name, BASE64.encode(&bytes[..])))
    }

    /// The key's name.
    pub fn name(&self) -> &KeyName {
        &self.name
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// An Ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, <secret>)", self.name)
    }
}

/// An Ed25519 public key with its name.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    name: KeyName,
    key: ed25519_dalek::VerifyingKey,
}

impl VerifyingKey {
    /// The key from its name and 32 bytes.
    pub fn from_bytes(name: KeyName, bytes: &[u8; 32]) -> Result<VerifyingKey, KeyError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| KeyError::InvalidPoint(name.to_string()))?;
        Ok(VerifyingKey { name, key })
    }

    /// Parses Nix's public key format, `name:base64(public key)`.
    pub fn from_nix_public(text: &str) -> Result<VerifyingKey, KeyError> {
        let (name, data) = split_nix(text.trim())?;
        let bytes = BASE64.decode(data).map_err(|_| KeyError::KeyBase64 {
            name: name.to_string(),
        })?;
        if bytes.len() == 64 {
            return Err(KeyError::SecretGiven {
                name: name.to_string(),
            });
        }
        let found = bytes.len();
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::KeyData {
            name: name.to_string(),
            expected: 32,
            found,
        })?;
        VerifyingKey::from_bytes(name, &bytes)
    }

    /// Parses a signed-note verifier key, `name+hexid+base64(0x01 ‖ public key)`.
    pub fn from_note_vkey(text: &str) -> Result<VerifyingKey, KeyError> {
        parse_vkey(text.trim(), NOTE_ED25519)
    }

    /// Parses either form: a note verifier key or a Nix public key.
    pub fn parse(text: &str) -> Result<VerifyingKey, KeyError> {
        let text = text.trim();
        if text.contains('+') && !text.contains(':') {
            VerifyingKey::from_note_vkey(text)
        } else {
            VerifyingKey::from_nix_public(text)
        }
    }

    /// The key's name.
    pub fn name(&self) -> &KeyName {
        &self.name
    }

    /// The 32 public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Nix's public key format, `name:base64(public key)`.
    pub fn to_nix_public(&self) -> String {
        format!("{}:{}", self.name, BASE64.encode(self.key.as_bytes()))
    }

    /// The signed-note key ID for plain Ed25519 signatures.
    pub fn note_key_id(&self) -> u32 {
        key_id(&self.name, NOTE_ED25519, self.key.as_bytes())
    }

    /// The signed-note verifier key, `name+hexid+base64(0x01 ‖ public key)`.
    pub fn to_note_vkey(&self) -> String {
        format_vkey(&self.name, NOTE_ED25519, self.key.as_bytes())
    }

    /// Whether `signature` is this key's Ed25519 signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(message, &sig).is_ok()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.to_note_vkey())
    }
}

impl fmt::Display for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_note_vkey())
    }
}

impl FromStr for VerifyingKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VerifyingKey::parse(s)
    }
}

impl serde::Serialize for VerifyingKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_note_vkey())
    }
}

impl<'de> serde::Deserialize<'de> for VerifyingKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        VerifyingKey::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn split_nix(text: &str) -> Result<(KeyName, &str), KeyError> {
    let (name, data) = text.split_once(':').ok_or(KeyError::NixFormat)?;
    Ok((KeyName::new(name)?, data))
}

/// `name+hexid+base64(type ‖ public key)`.
pub(crate) fn format_vkey(name: &KeyName, key_type: u8, public: &[u8; 32]) -> String {
    let mut data = [0u8; 33];
    data[0] = key_type;
    data[1..].copy_from_slice(public);
    format!(
        "{name}+{:08x}+{}",
        key_id(name, key_type, public),
        BASE64.encode(data)
    )
}

/// Parses `name+hexid+base64(type ‖ public key)` for the given type.
pub(crate) fn parse_vkey(text: &str, key_type: u8) -> Result<VerifyingKey, KeyError> {
    // A Nix secret key (`name:base64` of 64 bytes) must not be echoed in an error.
    if let Some((name, data)) = text.split_once(':')
        && BASE64.decode(data).is_ok_and(|b| b.len() == 64)
    {
        return Err(KeyError::SecretGiven {
            name: name.to_owned(),
        });
    }
    let format_err = || KeyError::VerifierFormat(text.to_owned());
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format_err());
    };
    let name = KeyName::new(name)?;
    if id.len() != 8 {
        return Err(format_err());
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| format_err())?;
    let data = BASE64.decode(data).map_err(|_| format_err())?;
    let length = data.len();
    let [found, key @ ..]: [u8; 33] = data.try_into().map_err(|_| KeyError::VerifierLength {
        name: name.to_string(),
        found: length,
    })?;
    if found != key_type {
        return Err(KeyError::VerifierType {
            name: name.to_string(),
            expected: key_type,
            found,
        });
    }
    if key_id(&name, key_type, &key) != id {
        return Err(KeyError::VerifierId(text.to_owned()));
    }
    VerifyingKey::from_bytes(name, &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(KeyName::new("builder1.example.org/tally").is_ok());
        assert_eq!(KeyName::new(""), Err(KeyError::EmptyName));
        for bad in ["a b", "a+b", "a:b", "a\tb", "a\u{7}b", "a\u{2003}b"] {
            assert!(
                matches!(KeyName::new(bad), Err(KeyError::NameCharacter { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn nix_secret_round_trip_and_public_forms() {
        let key =
            SigningKey::from_seed(KeyName::new("tally.example/test-log").unwrap(), [0x42; 32]);
        let text = key.to_nix_secret();
        let back = SigningKey::from_nix_secret(&format!("{}\n", *text)).unwrap();
        assert_eq!(back.verifying_key(), key.verifying_key());
        let public = key.verifying_key();
        // These are the public key and verifier key in the shared test vectors.
        assert_eq!(
            public.to_nix_public(),
            "tally.example/test-log:IVL40Zt5HSRFMkLhXy6rbLfP+ntqXtMAl5YOBpiB2xI="
        );
        assert_eq!(
            public.to_note_vkey(),
            "tally.example/test-log+0ebe49a9+ASFS+NGbeR0kRTJC4V8uq2y3z/p7al7TAJeWDgaYgdsS"
        );
        assert_eq!(
            VerifyingKey::parse(&public.to_note_vkey()),
            Ok(public.clone())
        );
        assert_eq!(VerifyingKey::parse(&public.to_nix_public()), Ok(public));
    }

    #[test]
    fn rejects_bad_keys() {
        assert_eq!(
            SigningKey::from_nix_secret("nocolon").unwrap_err(),
            KeyError::NixFormat
        );
        assert!(matches!(
            SigningKey::from_nix_secret("k:AAAA"),
            Err(KeyError::KeyData { expected: 64, .. })
        ));
        // A real 64-byte secret with its public half changed.
        let key = SigningKey::from_seed(KeyName::new("k").unwrap(), [7; 32]);
        let mut bytes = BASE64
            .decode(key.to_nix_secret().split_once(':').unwrap().1)
            .unwrap();
        bytes[40] ^= 1;
        let corrupt = format!("k:{}", BASE64.encode(&bytes));
        assert_eq!(
            SigningKey::from_nix_secret(&corrupt).unwrap_err(),
            KeyError::Mismatch("k".into())
        );
        let vkey = key.verifying_key().to_note_vkey();
        let (name, rest) = vkey.split_once('+').unwrap();
        let wrong_id = format!("{name}+00000000{}", &rest[8..]);
        assert_eq!(
            VerifyingKey::from_note_vkey(&wrong_id),
            Err(KeyError::VerifierId(wrong_id.clone()))
        );
        let renamed = vkey.replacen("k+", "j+", 1);
        assert_eq!(
            VerifyingKey::from_note_vkey(&renamed),
            Err(KeyError::VerifierId(renamed.clone()))
        );
    }

    #[test]
    fn a_secret_key_is_recognised_and_never_repeated() {
        let key = SigningKey::from_seed(KeyName::new("log.example/s").unwrap(), [5; 32]);
        let secret = key.to_nix_secret();
        for err in [
            VerifyingKey::parse(&secret).unwrap_err(),
            VerifyingKey::from_note_vkey(&secret).unwrap_err(),
        ] {
            assert!(matches!(err, KeyError::SecretGiven { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains("tally key public"), "{text}");
            assert!(!text.contains(secret.split_once(':').unwrap().1), "{text}");
        }
        // A truncated key says its length.
        let vkey = key.verifying_key().to_note_vkey();
        let err = VerifyingKey::from_note_vkey(&vkey[..vkey.len() - 8]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let nix = key.verifying_key().to_nix_public();
        let err = VerifyingKey::from_nix_public(&nix[..nix.len() - 8]).unwrap_err();
        assert!(
            err.to_string().contains("truncated") || err.to_string().contains("base64"),
            "{err}"
        );
    }

    #[test]
    fn go_note_vector_key() {
        // golang.org/x/mod/sumdb/note's documented example key.
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let key = VerifyingKey::from_note_vkey(vkey).unwrap();
        assert_eq!(key.note_key_id(), 0xc74f20a3);
        assert_eq!(key.to_note_vkey(), vkey);
    }
}
