//! Nix's base-32 encoding ("nixbase32").
//!
//! Nix prints store path hashes and `sha256:` NAR hashes in base 32 with its own alphabet
//! (no `e`, `o`, `u` or `t`) and its own bit order: the *last* character encodes the *lowest*
//! five bits of the first byte. A 20-byte store path hash is 32 characters; a 32-byte
//! SHA-256 is 52 characters, whose top four unused bits must be zero.
//!
//! ```
//! use tally_core::nixbase32;
//! let bytes = nixbase32::decode("0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73", 32).unwrap();
//! assert_eq!(nixbase32::encode(&bytes), "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
//! ```

/// The 32 digits, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// The length of the encoding of `bytes` bytes.
pub const fn encoded_len(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        (bytes * 8 - 1) / 5 + 1
    }
}

/// Encodes `bytes` the way Nix prints hashes.
pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let bit = n * 5;
        let (i, j) = (bit / 8, bit % 8);
        let low = u16::from(bytes[i]) >> j;
        let high = bytes.get(i + 1).map_or(0, |&b| u16::from(b) << (8 - j));
        out.push(char::from(ALPHABET[usize::from((low | high) & 0x1f)]));
    }
    out
}

/// Why a string is not the nixbase32 encoding of a given number of bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The string has the wrong length for the expected number of bytes.
    #[error("expected {expected} nixbase32 characters, found {found}")]
    Length {
        /// Characters a value of this size encodes to.
        expected: usize,
        /// Characters given.
        found: usize,
    },
    /// A character outside Nix's alphabet (which has no `e`, `o`, `u` or `t`).
    #[error("{0:?} is not a nixbase32 character (alphabet: 0-9 a-z without e, o, u, t)")]
    Character(char),
    /// The unused high bits of the first character are set, so the text is not canonical.
    #[error("the first nixbase32 character sets bits beyond the value's length")]
    Overflow,
}

/// Each byte's digit value, or 0xff for bytes outside the alphabet.
const DIGITS: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

fn digit(c: u8) -> Option<u8> {
    Some(DIGITS[usize::from(c)]).filter(|&d| d != 0xff)
}

/// Whether every byte of `s` is a nixbase32 digit.
pub fn is_valid(s: &str) -> bool {
    s.bytes().all(|b| digit(b).is_some())
}

/// Decodes exactly `len` bytes from `s`, rejecting any other length and non-canonical text.
pub fn decode(s: &str, len: usize) -> Result<Vec<u8>, DecodeError> {
    if let Some(bad) = s
        .chars()
        .find(|&c| !c.is_ascii() || digit(c as u8).is_none())
    {
        return Err(DecodeError::Character(bad));
    }
    let expected = encoded_len(len);
    if s.len() != expected {
        return Err(DecodeError::Length {
            expected,
            found: s.len(),
        });
    }
    let mut out = vec![0u8; len];
    for (n, c) in s.bytes().rev().enumerate() {
        // Every byte is in the alphabet: checked above.
        let d = digit(c).unwrap_or(0);
        let bit = n * 5;
        let (i, j) = (bit / 8, bit % 8);
        let shifted = u16::from(d) << j;
        out[i] |= shifted as u8;
        let carry = (shifted >> 8) as u8;
        match out.get_mut(i + 1) {
            Some(next) => *next |= carry,
            None if carry != 0 => return Err(DecodeError::Overflow),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        // `nix hash to-base32 sha256:<hex of SHA-256("")>` prints this.
        let empty_sha256 =
            hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .unwrap();
        assert_eq!(
            encode(&empty_sha256),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
        assert_eq!(encode(&[0u8; 20]), "0".repeat(32));
        assert_eq!(encode(&[0x1f]), "0z");
        assert_eq!(encode(&[0xff]), "7z");
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!(
            decode("0e", 1),
            Err(DecodeError::Character('e')),
            "e is not in the alphabet"
        );
        assert_eq!(decode("8z", 1), Err(DecodeError::Overflow));
        assert_eq!(
            decode("000", 1),
            Err(DecodeError::Length {
                expected: 2,
                found: 3
            })
        );
        assert_eq!(decode("0é", 1), Err(DecodeError::Character('é')));
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = encode(&bytes);
            prop_assert_eq!(text.len(), encoded_len(bytes.len()));
            prop_assert_eq!(decode(&text, bytes.len()).unwrap(), bytes);
        }
    }
}
