//! Bearer tokens that guard write APIs (TCP submits to a log, report uploads to an
//! aggregator).

use subtle::ConstantTimeEq as _;

use crate::Hash;

/// A configured bearer token. Holds only its SHA-256: comparing digests in constant time
/// hides the token's length as well as its bytes.
#[derive(Clone)]
pub struct RequiredToken(Hash);

impl RequiredToken {
    /// The token, as read from its file (trimmed).
    pub fn new(token: &str) -> RequiredToken {
        RequiredToken(Hash::of(token.as_bytes()))
    }

    /// Whether an `authorization` header value is `Bearer <this token>` (the scheme's case
    /// does not matter, as RFC 9110 says).
    pub fn authorizes(&self, header: Option<&str>) -> bool {
        let Some(given) = header
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
        else {
            return false;
        };
        bool::from(Hash::of(given.as_bytes()).0.ct_eq(&self.0.0))
    }
}

impl std::fmt::Debug for RequiredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequiredToken(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_authorizes() {
        let t = RequiredToken::new("s3cret");
        assert!(t.authorizes(Some("Bearer s3cret")));
        assert!(t.authorizes(Some("bearer s3cret")));
        assert!(!t.authorizes(Some("Basic s3cret")));
        assert!(!t.authorizes(Some("Bearer s3cre")));
        assert!(!t.authorizes(Some("Bearer s3cret ")));
        assert!(!t.authorizes(Some("s3cret")));
        assert!(!t.authorizes(None));
    }
}
