# services.tally.hook: Nix's post-build hook attests every build to a Tally log.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkIf mkOption types;
  common = import ./common.nix { inherit lib; };
  cfg = config.services.tally.hook;

  # The log on this machine, if services.tally.log is imported and enabled.
  logCfg = config.services.tally.log or { };
  localLog = logCfg.enable or false;
  localSocket = "unix:${logCfg.settings.submit_socket}";
  toLocalLog = localLog && cfg.log == localSocket;

  # At most budgetMs (tally clamps it to 10 s), plus a margin: `timeout` only ever acts if
  # tally itself hangs.
  timeoutSecs = (cfg.budgetMs + 999) / 1000 + 5;

  wrapper = pkgs.writeShellScript "tally-post-build-hook" ''
    # Nix runs this after every build, with DRV_PATH and OUT_PATHS set. It always exits 0:
    # a failing post-build hook would fail the build, and with it nixos-rebuild. If the log
    # cannot take the attestations in time, tally hook leaves them in the spool.
    PATH=${lib.makeBinPath [ config.nix.package ]}''${PATH:+:$PATH}
    export PATH
    ${pkgs.coreutils}/bin/timeout --kill-after=2 ${toString timeoutSecs} \
      ${cfg.package}/bin/tally hook \
        --log ${lib.escapeShellArg cfg.log} \
        --spool-dir ${lib.escapeShellArg cfg.spoolDir} \
        --budget-ms ${toString cfg.budgetMs}${
          lib.optionalString (cfg.tokenFile != null) " --token-file ${lib.escapeShellArg cfg.tokenFile}"
        } \
      || echo "tally-post-build-hook: tally hook ended with status $?; the build is not affected" >&2
    exit 0
  '';
in
{
  options.services.tally.hook = {
    enable = lib.mkEnableOption ''
      the Tally post-build hook: every build's outputs are attested to a Tally log. It sets
      {option}`nix.settings.post-build-hook`, which holds one program, so it cannot be combined
      with another post-build hook
    '';

    package = common.packageOption pkgs "hook";

    log = mkOption {
      type = types.strMatching "(unix:/|https?://).+";
      default = if localLog then localSocket else "unix:/run/tally-log/log.sock";
      defaultText = lib.literalExpression ''"unix:''${config.services.tally.log.settings.submit_socket}"'';
      example = "http://tally.example.org:7420";
      description = ''
        The log to submit to: the Unix socket of {option}`services.tally.log` on this
        machine (the default), or `http(s)://host:port` with
        {option}`services.tally.hook.tokenFile`.
      '';
    };

    spoolDir = mkOption {
      type = common.absolutePathType;
      default = if localLog then logCfg.settings.spool_dir else "/var/lib/tally-hook/spool";
      defaultText = lib.literalExpression "config.services.tally.log.settings.spool_dir";
      description = ''
        Where the hook leaves attestations the log could not take in time. With the log on
        this machine it must be the log's `spool_dir`, which the daemon drains. For a log
        elsewhere the spool is root's and nothing drains it: submit it with
        `tally submit --log URL --token-file FILE --jsonl SPOOL_FILE`.
      '';
    };

    tokenFile = mkOption {
      type = types.nullOr common.secretFileType;
      default = null;
      example = "/run/secrets/tally-submit.token";
      description = ''
        For a log reached over HTTP: a file holding its submit bearer token. The hook runs as
        root, so the file should be root's, mode 0600.
      '';
    };

    budgetMs = mkOption {
      type = types.ints.between 200 10000;
      default = 1500;
      description = ''
        The most the hook may add to a build, in milliseconds. Nix waits for the hook before
        it goes on, so this bounds the delay per build; what is not submitted in time is spooled.
      '';
    };

    wrapper = mkOption {
      type = types.path;
      readOnly = true;
      description = "The script set as {option}`nix.settings.post-build-hook`.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = toLocalLog -> cfg.spoolDir == logCfg.settings.spool_dir;
        message = ''
          services.tally.hook.spoolDir (${cfg.spoolDir}) must be the spool_dir of the log on this
          machine (${logCfg.settings.spool_dir or ""}), or nothing will drain it.
        '';
      }
      {
        assertion = (localLog && !toLocalLog) -> cfg.spoolDir != logCfg.settings.spool_dir;
        message = ''
          services.tally.hook submits to ${cfg.log}, not to the log on this machine, so its
          spoolDir must not be that log's spool_dir: the local log would drain the spool into
          itself.
        '';
      }
    ];

    services.tally.hook.wrapper = wrapper;
    nix.settings.post-build-hook = wrapper;

    # Without a log on this machine, the spool is root's alone.
    systemd.tmpfiles.settings."10-tally-hook" = mkIf (!localLog) {
      ${cfg.spoolDir}.d = {
        user = "root";
        group = "root";
        mode = "0700";
      };
    };
  };
}
