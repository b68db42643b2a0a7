//! Who may submit: everyone on the Unix socket (its file mode and group decide who can
//! connect), bearer-token holders over TCP, and nobody else.

use tally_core::bearer::RequiredToken;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::metrics::Reason;

/// Write access on one listener.
#[derive(Clone)]
pub enum WriteAccess {
    /// The Unix socket: connecting is the authorisation.
    Socket,
    /// TCP with a bearer token.
    Token(RequiredToken),
    /// TCP without a configured token: submits are refused.
    Closed,
}

impl WriteAccess {
    /// Access by bearer token.
    pub fn token(token: &str) -> WriteAccess {
        WriteAccess::Token(RequiredToken::new(token))
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
            WriteAccess::Token(token) => {
                let header = metadata.get("authorization").and_then(|v| v.to_str().ok());
                if token.authorizes(header) {
                    Ok(())
                } else if header.is_some() {
                    Err((
                        Reason::Unauthenticated,
                        Status::unauthenticated("wrong bearer token"),
                    ))
                } else {
                    Err((
                        Reason::Unauthenticated,
                        Status::unauthenticated(
                            "submits over TCP need `authorization: Bearer <token>`",
                        ),
                    ))
                }
            }
        }
    }
}
