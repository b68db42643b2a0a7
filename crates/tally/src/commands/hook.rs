//! `tally hook`: the Nix post-build hook.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tally_nix::hook::{HookConfig, HookOutcome};
use tally_proto::client::Address;

use crate::output;

/// Attest a finished build, as Nix's post-build-hook
///
/// Reads DRV_PATH and OUT_PATHS from the environment (Nix sets them), takes each output's
/// NAR hash, size and references from the store, and submits them to the log. If the log
/// cannot take them within the time budget, they go to the spool, which the log daemon
/// drains. It always exits 0 and never takes more than the budget, so it never fails or
/// stalls a build.
///
/// Nix runs the hook without arguments, so point post-build-hook at a symlink named
/// tally-hook (tally acts as `tally hook` when called by that name), or at a wrapper script
/// that sets the options below:
///
///   ln -s "$(command -v tally)" /usr/local/bin/tally-hook
///
///   # /etc/nix/nix.conf
///   post-build-hook = /usr/local/bin/tally-hook
///
/// On NixOS, services.tally.hook sets post-build-hook to its own wrapper script, with the
/// log's socket and spool; set nothing by hand there.
///
/// Settings come from flags or the environment: TALLY_LOG, TALLY_TOKEN_FILE,
/// TALLY_ALLOW_PLAINTEXT_TOKEN, TALLY_SPOOL_DIR, TALLY_HOOK_BUDGET_MS.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// The log daemon.
    #[arg(long, env = "TALLY_LOG", default_value = "unix:/run/tally/log.sock")]
    log: String,
    /// A file holding the log's submit bearer token, for a log reached over http(s)://.
    #[arg(long, env = "TALLY_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Send the token over plaintext http:// to a host that is not loopback (anyone on the
    /// path can read it and submit as this builder).
    #[arg(long, env = "TALLY_ALLOW_PLAINTEXT_TOKEN")]
    allow_plaintext_token: bool,
    /// Where attestations wait when the log cannot take them.
    #[arg(long, env = "TALLY_SPOOL_DIR", default_value = "/var/lib/tally/spool")]
    spool_dir: PathBuf,
    /// The most the hook may take, in milliseconds.
    #[arg(long, env = "TALLY_HOOK_BUDGET_MS", default_value_t = 1500)]
    budget_ms: u64,
}

/// Runs the hook. Every failure is reported on stderr; the exit code is always success.
pub(crate) fn run(args: Args, json: bool) -> anyhow::Result<ExitCode> {
    let drv = std::env::var("DRV_PATH").unwrap_or_default();
    let outs = std::env::var("OUT_PATHS").unwrap_or_default();
    let outcome = if drv.is_empty() {
        HookOutcome::Failed("DRV_PATH is not set: run tally hook as Nix's post-build-hook".into())
    } else {
        match configure(&args) {
            Ok(config) => match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(tally_nix::hook::run(&config, &drv, &outs)),
                Err(e) => HookOutcome::Failed(format!("starting a runtime: {e}")),
            },
            Err(e) => HookOutcome::Failed(e),
        }
    };
    // Without DRV_PATH there is no derivation to name.
    let who = if drv.is_empty() {
        "tally hook:".to_owned()
    } else {
        format!("tally hook: {drv}:")
    };
    let line = match &outcome {
        HookOutcome::Submitted {
            attestations,
            log_size,
            drained,
        } => {
            let earlier = if *drained > 0 {
                format!("; {drained} spooled earlier also submitted")
            } else {
                String::new()
            };
            format!(
                "{who} {attestations} output{} attested; log size {log_size}{earlier}",
                if *attestations == 1 { "" } else { "s" }
            )
        }
        HookOutcome::Spooled {
            attestations,
            file,
            reason,
        } => {
            // After a configuration error, nothing is sent until the configuration is fixed.
            let when = if reason.starts_with("configuration error") {
                "to be submitted once the configuration is fixed"
            } else {
                "to be submitted when the log takes them"
            };
            format!(
                "{who} not attested yet ({reason}); {attestations} attestation{} spooled in {}, {when}",
                if *attestations == 1 { "" } else { "s" },
                file.display()
            )
        }
        HookOutcome::Refused(reason) | HookOutcome::Failed(reason) => {
            format!("{who} NOT attested: {reason}")
        }
    };
    if json {
        // No DRV_PATH: null, not an empty string.
        let drv_path = (!drv.is_empty()).then_some(&drv);
        let _ = output::json(&serde_json::json!({"drv_path": drv_path, "message": line}));
    } else {
        eprintln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn configure(args: &Args) -> Result<HookConfig, String> {
    let log: Address = args.log.parse().map_err(|e| format!("TALLY_LOG: {e}"))?;
    let token =
        super::submit::read_token(&log, args.token_file.as_deref(), args.allow_plaintext_token)
            .map_err(|e| format!("{e:#}"));
    Ok(HookConfig {
        log,
        token,
        spool_dir: args.spool_dir.clone(),
        budget: Duration::from_millis(args.budget_ms.clamp(200, 10_000)),
    })
}
