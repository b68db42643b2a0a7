//! Who may submit: everyone on the Unix socket (its file mode and group decide who can
//! connect), bearer-token holders over TCP, and nobody else.

use subtle::ConstantTimeEq as _;
use tally_core::Hash;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::metrics::Reason;

/// Write access on one listener.
#[derive(Clone)]
pub enum WriteAccess {
    /// The Unix socket: connecting is the authorisation.
    Socket,
    /// TCP with a bearer token. Holds the token's SHA-256, compared in constant time.
    Token(Hash),
    /// TCP without a configured token: submits are refused.
    Closed,
}

impl WriteAccess {
    /// Access by bearer token.
    pub fn token(token: &str) -> WriteAccess {
        WriteAccess::Token(Hash::of(token.as_bytes()))
    }

    /// Checks a request's credentials.
    pub(crate) fn check(&self, metadata: &MetadataMap) -> Result<(), (Reason, Status)> {
        match self {
            WriteAccess::Socket => Ok(()),
            WriteAccess::Closed => Err((
                Reason::PermissionDenied,
                Status::permission_denied(
                    "submits over TCP are disabled on this log: use its Unix socket, or set \
                     submit_token_file in its config",
                ),
            )),
            WriteAccess::Token(expected) => {
                let given = metadata
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                let Some(given) = given else {
                    return Err((
                        Reason::Unauthenticated,
                        Status::unauthenticated(
                            "submits over TCP need `authorization: Bearer <token>`",
                        ),
                    ));
                };
                // Comparing digests hides the token's length as well as its bytes.
                let given = Hash::of(given.as_bytes());
                if bool::from(given.0.ct_eq(&expected.0)) {
                    Ok(())
                } else {
                    Err((
                        Reason::Unauthenticated,
                        Status::unauthenticated("wrong bearer token"),
                    ))
                }
            }
        }
    }
}
