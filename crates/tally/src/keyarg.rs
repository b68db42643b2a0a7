//! Public keys on the command line: parsed without ever echoing a secret key back.
//!
//! clap repeats a value it cannot parse in its error. A secret key pasted where a public key
//! belongs (`--vkey "$(cat log.key)"`) must not end up in a terminal log, so the value is
//! shown only when it is not a secret.

use std::ffi::OsStr;

use tally_core::{KeyError, VerifyingKey};

/// `--vkey`, `--trusted-public-key`: a note verifier key or a Nix public key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PublicKeyParser;

impl clap::builder::TypedValueParser for PublicKeyParser {
    type Value = VerifyingKey;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<VerifyingKey, clap::Error> {
        let flag = arg.map_or_else(|| "the key".to_owned(), |a| format!("--{}", a.get_id()));
        let text = value.to_string_lossy();
        VerifyingKey::parse(&text).map_err(|e| {
            let shown = match e {
                KeyError::SecretGiven { .. } => "<a secret key, not repeated here>".to_owned(),
                _ => format!("{text:?}"),
            };
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value {shown} for {flag}: {e}\n"),
            )
            .with_cmd(cmd)
        })
    }
}
