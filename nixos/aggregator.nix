# services.tally.aggregator: follow and re-verify logs, keep evidence, witness, answer
# queries, serve the dashboard (`tally aggregate serve`).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkIf mkOption types;
  common = import ./common.nix { inherit lib; };
  cfg = config.services.tally.aggregator;

  stateDir = "/var/lib/tally-aggregator";

  logModule =
    { name, ... }:
    {
      options = {
        origin = mkOption {
          type = common.keyNameType;
          example = "builder1.example.org/tally";
          description = "The log's origin, as its checkpoints name it.";
        };
        vkey = mkOption {
          type = types.strMatching "[^[:space:]+]+(\\+[0-9a-f]{8}\\+[A-Za-z0-9+/]+=*|:[A-Za-z0-9+/]+=*)";
          example = "builder1.example.org/tally+4596fa37+AZx05ZFgVj5LsROwtdwlhE0vw56itUBGI6PO4Dso0t1R";
          description = ''
            The log's public key: the verifier key (`name+id+base64`) or the Nix public key
            (`name:base64`) that `tally key public` prints. Its name must be the origin.
          '';
        };
        urls = mkOption {
          type = types.nonEmptyListOf (types.strMatching "(https?://|unix:/).+");
          example = [ "http://builder1.example.org:7420" ];
          description = "Where to reach the log, tried in order. Every URL must serve the same log.";
        };
        name = mkOption {
          type = types.str;
          default = name;
          defaultText = lib.literalExpression "<name>";
          description = "A display name for the dashboard.";
        };
      };
    };
in
{
  options.services.tally.aggregator = {
    enable = lib.mkEnableOption "a Tally aggregator (`tally aggregate serve`)";

    package = common.packageOption pkgs "aggregator";

    logs = mkOption {
      type = types.attrsOf (types.submodule logModule);
      default = { };
      example = lib.literalExpression ''
        {
          "Builder 1" = {
            origin = "builder1.example.org/tally";
            vkey = "builder1.example.org/tally+4596fa37+AZx05ZFgVj5LsROwtdwlhE0vw56itUBGI6PO4Dso0t1R";
            urls = [ "http://builder1.example.org:7420" ];
          };
        }
      '';
      description = ''
        The logs to follow, by display name; they become the `[[logs]]` tables of the config.
        Either this or {option}`services.tally.aggregator.policyFile` lists them, not both.
      '';
    };

    policyFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = lib.literalExpression "./trust.policy";
      description = ''
        A trust policy file (C2SP tlog-policy; examples/trust.policy) whose logs to follow,
        instead of {option}`services.tally.aggregator.logs`: each `log` line (with its URL,
        which the aggregator needs) and `mirror` line. Its `attest` line is the default
        query policy unless `settings.policy` is set. The same file can be a cache's
        {option}`services.tally.cache.policyFile`.

        It holds only public keys, so it belongs in the Nix store: give a Nix path
        (`./trust.policy`, copied there) or a store path (`pkgs.writeText …`), which the
        build-time check reads. Sets `settings.policy_file`.
      '';
    };

    witnessKeyFile = mkOption {
      type = types.nullOr common.secretFileType;
      default = null;
      example = "/run/secrets/tally-witness.key";
      description = ''
        The witness's signing key (Nix format; `tally keygen --name NAME --secret-key-file
        FILE`). With it the aggregator cosigns each checkpoint it verified and accepts C2SP
        `add-checkpoint` requests; without it, it verifies but cosigns nothing. Loaded with
        `LoadCredential=`, never copied into the Nix store.
      '';
    };

    adminTokenFile = mkOption {
      type = types.nullOr common.secretFileType;
      default = null;
      example = "/run/secrets/tally-admin.token";
      description = ''
        A file holding the bearer token that may define and delete named reports on the
        dashboard (`head -c 32 /dev/urandom | base64`). Loaded with `LoadCredential=`.
        Without it, reports are read-only.
      '';
    };

    settings = mkOption {
      description = ''
        The aggregator's configuration, written to a TOML file: every option of
        [examples/aggregator.toml](https://github.com/tally-transparency/tally/blob/main/examples/aggregator.toml)
        can be set here. `logs`, `policy_file`, `witness_key_file` and `admin_token_file` come
        from the options above.
      '';
      default = { };
      example = lib.literalExpression ''
        {
          listen = "[::]:7421";
          poll_interval_secs = 30;
        }
      '';
      type = types.submodule {
        freeformType = (pkgs.formats.toml { }).type;
        options = {
          listen = mkOption {
            type = common.listenType;
            default = "127.0.0.1:7421";
            example = "[::]:7421";
            description = ''
              The aggregator's one port: gRPC (`tally query`, `tally check`, the cache) and
              HTTP: the dashboard (`/`, `/disagreements`, `/reports`, …), `/metrics`,
              `/healthz` and the witness endpoints.
            '';
          };
          data_dir = mkOption {
            type = common.absolutePathType;
            default = "${stateDir}/data";
            description = "Where the aggregator's database lives; inside ${stateDir}, the service's only writable place.";
          };
          policy = mkOption {
            type = types.nullOr common.policyType;
            default = null;
            example = "2-of-3,dissent=1";
            description = ''
              The trust policy queries use unless they name one: `majority`, `all` or
              `N-of-M` (M must be the number of logs), then optionally `,dissent=K` and
              `,require=ORIGIN+ORIGIN`. If null, the `attest` line of
              {option}`services.tally.aggregator.policyFile`, or else `majority`.
            '';
          };
        };
      };
    };

    openFirewall = common.openFirewallOption "the dashboard, gRPC and witness port";

    checkConfig = common.checkConfigOption "aggregator";

    configFile = mkOption {
      type = types.path;
      readOnly = true;
      description = "The generated (and, with `checkConfig`, checked) config file the aggregator runs with; also at /etc/tally/aggregator.toml.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.logs != { } || cfg.settings ? logs || cfg.settings ? policy_file;
        message = "services.tally.aggregator: no logs to follow: set services.tally.aggregator.logs or services.tally.aggregator.policyFile.";
      }
      {
        assertion = !(cfg.settings ? logs && cfg.settings ? policy_file);
        message = "services.tally.aggregator: both logs and policyFile are set: give the logs in one of them, not both.";
      }
      {
        assertion = cfg.checkConfig && cfg.settings ? policy_file -> common.inStore cfg.settings.policy_file;
        message = ''
          services.tally.aggregator.policyFile (${toString (cfg.settings.policy_file or "")}) is not in
          the Nix store, so the build-time check cannot read it: give a Nix path
          (./trust.policy) or a store path (pkgs.writeText "trust.policy" "…"; it holds only
          public keys), or set services.tally.aggregator.checkConfig = false.
        '';
      }
      {
        assertion = common.isUnder stateDir cfg.settings.data_dir;
        message = "services.tally.aggregator.settings.data_dir must be inside ${stateDir} (the service cannot write anywhere else), not ${cfg.settings.data_dir}.";
      }
    ];

    warnings = lib.optional (cfg.openFirewall && common.isLoopback cfg.settings.listen) ''
      services.tally.aggregator.openFirewall is set, but the aggregator listens on
      ${cfg.settings.listen}, a loopback address: set services.tally.aggregator.settings.listen.
    '';

    services.tally.aggregator.settings = {
      logs = mkIf (cfg.logs != { }) (
        lib.mapAttrsToList (_: log: { inherit (log) origin vkey urls name; }) cfg.logs
      );
      policy_file = mkIf (cfg.policyFile != null) cfg.policyFile;
      witness_key_file = mkIf (cfg.witnessKeyFile != null) (
        common.credential "tally-aggregator" "witness-key"
      );
      admin_token_file = mkIf (cfg.adminTokenFile != null) (
        common.credential "tally-aggregator" "admin-token"
      );
    };

    services.tally.aggregator.configFile = common.configFile {
      inherit pkgs;
      inherit (cfg) package;
      # TOML has no null: an unset policy is left out.
      settings = lib.filterAttrs (_: v: v != null) cfg.settings;
      command = "aggregate";
      name = "tally-aggregator";
      check = cfg.checkConfig;
    };

    environment.etc."tally/aggregator.toml".source = cfg.configFile;
    environment.systemPackages = [ cfg.package ];

    systemd.services.tally-aggregator = {
      description = "Tally aggregator";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [
        "network-online.target"
      ]
      ++ lib.optional (config.services.tally.log.enable or false) "tally-log.service";
      serviceConfig = common.hardening // {
        ExecStart = "${cfg.package}/bin/tally aggregate serve --config ${cfg.configFile}";
        DynamicUser = true;
        User = "tally-aggregator";
        Group = "tally-aggregator";
        PrivateUsers = true;
        StateDirectory = "tally-aggregator";
        StateDirectoryMode = "0700";
        UMask = "0077";
        LoadCredential =
          lib.optional (cfg.witnessKeyFile != null) "witness-key:${cfg.witnessKeyFile}"
          ++ lib.optional (cfg.adminTokenFile != null) "admin-token:${cfg.adminTokenFile}";
        # Logs are reached over TCP, or a Unix socket (a `unix:` URL).
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
        ];
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
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
