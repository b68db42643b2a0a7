//! `tally keygen`: make a new signing key.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tally_core::KeyName;

use crate::output;
use crate::output::outln;

/// Create an Ed25519 signing key in Nix's secret key format
///
/// The key file is written with mode 0600 and is never overwritten. For a log, the name is the
/// log's origin; for a binary cache proxy, the name Nix users will see in trusted-public-keys.
///
/// Examples:
///
///   tally keygen --name builder1.example.org/tally --secret-key-file /var/lib/tally/log.key
///
///   tally keygen --name cache.example.org-1 --secret-key-file cache.key --json
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// The key's name: a log origin (e.g. builder1.example.org/tally) or a cache key name.
    #[arg(long)]
    name: String,
    /// Where to write the secret key (must not exist).
    #[arg(long)]
    secret_key_file: PathBuf,
}

pub(crate) fn run(args: Args, json: bool) -> anyhow::Result<ExitCode> {
    let name = KeyName::new(&args.name).with_context(|| format!("--name {:?}", args.name))?;
    let key = tally_store::generate_signing_key(name)?;
    tally_store::write_signing_key(&args.secret_key_file, &key)?;
    let public = super::key::PublicKeys::of(&key);
    if json {
        output::json(&serde_json::json!({
            "secret_key_file": args.secret_key_file,
            "name": public.name,
            "public_key": public.public_key,
            "verifier_key": public.verifier_key,
            "cosigner_key": public.cosigner_key,
        }))?;
    } else {
        outln!("wrote {}", args.secret_key_file.display());
        outln!("public key (Nix):     {}", public.public_key);
        outln!("verifier key (note):  {}", public.verifier_key);
        outln!("as a witness:         {}", public.cosigner_key);
    }
    Ok(ExitCode::SUCCESS)
}
