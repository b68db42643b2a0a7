# services.tally.log: a builder's attester log (`tally log serve`).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkIf mkOption types;
  common = import ./common.nix { inherit lib; };
  cfg = config.services.tally.log;

  stateDir = "/var/lib/tally-log";
  runtimeDir = "/run/tally-log";
  keyDir = "tally-log-key";
  generatedKey = "/var/lib/${keyDir}/log.key";
  keyFile = if cfg.secretKeyFile != null then cfg.secretKeyFile else generatedKey;
in
{
  options.services.tally.log = {
    enable = lib.mkEnableOption "the Tally attester log of this builder (`tally log serve`)";

    package = common.packageOption pkgs "log";

    settings = mkOption {
      description = ''
        The log's configuration, written to a TOML file: every option of
        [examples/log.toml](https://github.com/tally-transparency/tally/blob/main/examples/log.toml)
        can be set here. The module sets `secret_key_file` and `submit_token_file` from
        {option}`services.tally.log.secretKeyFile` and
        {option}`services.tally.log.submitTokenFile`.
      '';
      default = { };
      example = lib.literalExpression ''
        {
          origin = "builder1.example.org/tally";
          listen = "[::]:7420";
          batch_period_ms = 500;
        }
      '';
      type = types.submodule {
        freeformType = (pkgs.formats.toml { }).type;
        options = {
          origin = mkOption {
            type = common.keyNameType;
            default = "${config.networking.fqdnOrHostName}/tally";
            defaultText = lib.literalExpression ''"''${config.networking.fqdnOrHostName}/tally"'';
            example = "builder1.example.org/tally";
            description = ''
              The log's identity, carried by every checkpoint, and the name of its signing key.
              Aggregators follow the log by this name, so it should be globally unique and
              must never change.
            '';
          };
          listen = mkOption {
            type = common.listenType;
            default = "127.0.0.1:7420";
            example = "[::]:7420";
            description = ''
              Public address of the log: gRPC reads and HTTP (C2SP tlog-tiles `/checkpoint`
              and `/tile/…`, `/metrics`, `/healthz`). Aggregators must reach it: listen on a
              public address and set {option}`services.tally.log.openFirewall`, or put a
              reverse proxy or CDN in front of it.
            '';
          };
          data_dir = mkOption {
            type = common.absolutePathType;
            default = "${stateDir}/data";
            description = "Where the log database lives; inside ${stateDir}, the service's only writable place.";
          };
          submit_socket = mkOption {
            type = common.absolutePathType;
            default = "${runtimeDir}/log.sock";
            description = ''
              The Unix socket that takes submits from the post-build hook. It is created with
              `submit_socket_mode` (0660) and the group `tally-log`; root (the hook, run by the
              Nix daemon) can always connect.
            '';
          };
          spool_dir = mkOption {
            type = common.absolutePathType;
            default = "${stateDir}/spool";
            description = ''
              Where the post-build hook leaves attestations the log could not take in time;
              the daemon drains it. The directory is `tally-log:tally-log`, mode 2770, so the
              files the hook writes as root belong to group `tally-log` and the daemon can
              read and remove them. {option}`services.tally.hook.spoolDir` must be the same.
            '';
          };
          secret_key_file = mkOption {
            type = types.str;
            readOnly = true;
            description = "Set by the module: the credential systemd loads from {option}`services.tally.log.secretKeyFile`.";
          };
        };
      };
    };

    secretKeyFile = mkOption {
      type = types.nullOr common.secretFileType;
      default = null;
      example = "/run/secrets/tally-log.key";
      description = ''
        The log's signing key, in Nix's secret key format, named after
        {option}`services.tally.log.settings.origin` (`tally keygen --name ORIGIN
        --secret-key-file FILE` writes one). It is given to the daemon with systemd's
        `LoadCredential=`, so it may belong to root with mode 0600 and is never copied into
        the Nix store.

        If null, a key is generated on the first start, in ${generatedKey}, and its public
        halves are written to ${generatedKey}.pub (the second line, the verifier key, is what
        aggregators need: `cat ${generatedKey}.pub`).
      '';
    };

    submitTokenFile = mkOption {
      type = types.nullOr common.secretFileType;
      default = null;
      example = "/run/secrets/tally-submit.token";
      description = ''
        A file holding a bearer token that allows submits over TCP as well as on the Unix
        socket (for example from builders that are not this machine). Loaded with
        `LoadCredential=`. If null, TCP is read-only.
      '';
    };

    openFirewall = common.openFirewallOption "the log's gRPC and HTTP port";

    checkConfig = common.checkConfigOption "log";

    configFile = mkOption {
      type = types.path;
      readOnly = true;
      description = "The generated (and, with `checkConfig`, checked) config file the daemon runs with; also at /etc/tally/log.toml.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = common.isUnder stateDir cfg.settings.data_dir;
        message = "services.tally.log.settings.data_dir must be inside ${stateDir} (the service cannot write anywhere else), not ${cfg.settings.data_dir}.";
      }
      {
        assertion = common.isUnder stateDir cfg.settings.spool_dir && cfg.settings.spool_dir != stateDir;
        message = "services.tally.log.settings.spool_dir must be a directory inside ${stateDir}, not ${cfg.settings.spool_dir}.";
      }
      {
        assertion = lib.hasPrefix "${runtimeDir}/" cfg.settings.submit_socket;
        message = "services.tally.log.settings.submit_socket must be inside ${runtimeDir}, the service's runtime directory, not ${cfg.settings.submit_socket}.";
      }
    ];

    warnings = lib.optional (cfg.openFirewall && common.isLoopback cfg.settings.listen) ''
      services.tally.log.openFirewall is set, but the log listens on ${cfg.settings.listen},
      a loopback address: set services.tally.log.settings.listen (e.g. "[::]:${toString (common.portOf cfg.settings.listen)}").
    '';

    services.tally.log.settings = {
      secret_key_file = common.credential "tally-log" "secret-key";
      submit_token_file = mkIf (cfg.submitTokenFile != null) (
        common.credential "tally-log" "submit-token"
      );
    };

    services.tally.log.configFile = common.configFile {
      inherit pkgs;
      inherit (cfg) package settings;
      command = "log";
      name = "tally-log";
      check = cfg.checkConfig;
    };

    environment.etc."tally/log.toml".source = cfg.configFile;
    environment.systemPackages = [ cfg.package ];

    users.users.tally-log = {
      isSystemUser = true;
      group = "tally-log";
      description = "Tally attester log";
    };
    users.groups.tally-log = { };

    # The spool contract with the post-build hook (run as root by the Nix daemon): group
    # tally-log owns the spool, and the setgid bit hands that group to every file the hook
    # writes (mode 0640), so the daemon can read and remove them.
    systemd.tmpfiles.settings."10-tally-log" = {
      ${stateDir}.d = {
        user = "tally-log";
        group = "tally-log";
        mode = "0750";
      };
      ${cfg.settings.spool_dir}.d = {
        user = "tally-log";
        group = "tally-log";
        mode = "2770";
      };
    };

    systemd.services.tally-log-keygen = mkIf (cfg.secretKeyFile == null) (
      common.keygenService {
        inherit pkgs;
        inherit (cfg) package;
        stateDir = keyDir;
        file = "log.key";
        keyName = cfg.settings.origin;
        what = "Tally log";
      }
    );

    systemd.services.tally-log = {
      description = "Tally attester log";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ] ++ lib.optional (cfg.secretKeyFile == null) "tally-log-keygen.service";
      requires = lib.optional (cfg.secretKeyFile == null) "tally-log-keygen.service";
      serviceConfig = common.hardening // {
        ExecStart = "${cfg.package}/bin/tally log serve --config ${cfg.configFile}";
        # A static user, not DynamicUser: the hook, run as root, writes into the spool for
        # this user's group, and the spool outlives any one run.
        User = "tally-log";
        Group = "tally-log";
        StateDirectory = "tally-log";
        StateDirectoryMode = "0750";
        RuntimeDirectory = "tally-log";
        RuntimeDirectoryMode = "0750";
        UMask = "0027";
        LoadCredential = [
          "secret-key:${keyFile}"
        ]
        ++ lib.optional (cfg.submitTokenFile != null) "submit-token:${cfg.submitTokenFile}";
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
        ];
        # Not ~@privileged: with settings.submit_socket_group the daemon chowns its socket.
        SystemCallFilter = [
          "@system-service"
          "~@resources"
        ];
        LimitNOFILE = 65536;
      };
    };

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall (
      common.portOf cfg.settings.listen
    );
  };
}
