//! `tally key`: inspect keys.

use std::path::PathBuf;
use std::process::ExitCode;

use tally_core::SigningKey;

use crate::output;
use crate::output::outln;

/// Inspect signing keys
#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    Public(PublicArgs),
}

/// Print the public halves of a secret key
///
/// Prints three lines: the Nix public key (name:base64, as in trusted-public-keys), the
/// signed-note verifier key (name+id+base64, as trust policies, aggregators and `--vkey` take
/// it), and, labelled, the key's C2SP cosignature verifier key (name+id+base64 of 0x04 and
/// the key): what clients put on a `witness` line when this key is a witness's (an
/// aggregator's witness_key_file).
///
/// Example:
///
///   tally key public --secret-key-file /var/lib/tally/log.key
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct PublicArgs {
    /// The secret key file (Nix format; must not be readable by group or others).
    #[arg(long)]
    secret_key_file: PathBuf,
}

/// The public forms of a key.
#[derive(serde::Serialize)]
pub(crate) struct PublicKeys {
    pub(crate) name: String,
    pub(crate) public_key: String,
    pub(crate) verifier_key: String,
    pub(crate) cosigner_key: String,
}

impl PublicKeys {
    pub(crate) fn of(key: &SigningKey) -> PublicKeys {
        let public = key.verifying_key();
        PublicKeys {
            name: key.name().to_string(),
            public_key: public.to_nix_public(),
            verifier_key: public.to_note_vkey(),
            cosigner_key: tally_core::cosignature::Cosigner::new(key.clone())
                .verifier()
                .to_vkey(),
        }
    }
}

pub(crate) fn run(cmd: Command, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Public(args) => {
            let key = tally_store::read_signing_key(&args.secret_key_file)?;
            let public = PublicKeys::of(&key);
            if json {
                output::json(&public)?;
            } else {
                outln!("{}", public.public_key);
                outln!("{}", public.verifier_key);
                outln!("as a witness (cosigner key): {}", public.cosigner_key);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
