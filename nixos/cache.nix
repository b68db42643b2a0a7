# services.tally.cache: a binary cache that serves a narinfo only when a quorum of logs
# attests it, re-signed with its own key (`tally cache serve`); and Nix configured to use it.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkIf mkOption types;
  common = import ./common.nix { inherit lib; };
  cfg = config.services.tally.cache;

  keyDir = "tally-cache-key";
  generatedKey = "/var/lib/${keyDir}/cache.key";
  keyFile = if cfg.secretKeyFile != null then cfg.secretKeyFile else generatedKey;

  aggregatorCfg = config.services.tally.aggregator or { };
  localAggregator = aggregatorCfg.enable or false;

  # What Nix on this machine is told: the cache's URL, tried before cache.nixos.org (40).
  substituter = "http://${common.localAddress cfg.settings.listen}?priority=${toString cfg.settings.priority}";
in
{
  options.services.tally.cache = {
    enable = lib.mkEnableOption "the Tally binary cache proxy, which passes on only what a quorum of builders attests (`tally cache serve`)";

    package = common.packageOption pkgs "cache";

    settings = mkOption {
      description = ''
        The cache's configuration, written to a TOML file: every option of
        [examples/cache.toml](https://github.com/tally-transparency/tally/blob/main/examples/cache.toml)
        can be set here. `secret_key_file` and `policy_file` come from the options below.
      '';
      default = { };
      example = lib.literalExpression ''
        {
          upstreams = [ "https://cache.nixos.org" ];
          aggregator.url = "http://aggregator.example.org:7421";
          policy = "2-of-3";
        }
      '';
      type = types.submodule {
        freeformType = (pkgs.formats.toml { }).type;
        options = {
          listen = mkOption {
            type = common.listenType;
            default = "127.0.0.1:7422";
            description = "Where Nix reaches the cache (HTTP). Listen on a public address to serve other machines.";
          };
          upstreams = mkOption {
            type = types.nonEmptyListOf (types.strMatching "(https?|file)://.+");
            default = [ "https://cache.nixos.org" ];
            description = ''
              The binary caches narinfos and NARs come from, tried in order. Put every cache
              Nix should use here rather than in {option}`nix.settings.substituters`: here
              their paths pass the quorum.
            '';
          };
          priority = mkOption {
            type = types.ints.unsigned;
            default = 30;
            description = "`Priority` in /nix-cache-info; Nix tries lower numbers first (cache.nixos.org is 40).";
          };
          aggregator = mkOption {
            default = { };
            description = ''
              Where verdicts come from: exactly one of `url` (a running aggregator) and
              `config` (an aggregator config file, run inside the cache's process; its
              `data_dir` must then be inside /var/lib/tally-cache).
            '';
            type = types.submodule {
              freeformType = (pkgs.formats.toml { }).type;
              options.url = mkOption {
                type = types.nullOr (types.strMatching "(https?://|unix:/).+");
                default =
                  if localAggregator && !(cfg.settings.aggregator ? config) then
                    "http://${common.localAddress aggregatorCfg.settings.listen}"
                  else
                    null;
                defaultText = lib.literalExpression ''
                  if config.services.tally.aggregator.enable then "http://''${config.services.tally.aggregator.settings.listen}" else null
                '';
                example = "http://aggregator.example.org:7421";
                description = ''
                  The aggregator the verdicts come from (`http://host:port` or `unix:/path`).
                  It defaults to {option}`services.tally.aggregator` when that runs on this
                  machine.
                '';
              };
            };
          };
          secret_key_file = mkOption {
            type = types.str;
            readOnly = true;
            description = "Set by the module: the credential systemd loads from {option}`services.tally.cache.secretKeyFile`.";
          };
        };
      };
    };

    policyFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      description = ''
        The cache's own trust policy: a C2SP tlog-policy file listing the logs' verifier keys
        and URLs and Tally's `attest N-of-M` line. It holds only public keys, so it may be in
        the Nix store. Sets `settings.policy_file`.
      '';
    };

    secretKeyFile = mkOption {
      type = types.nullOr common.secretFileType;
      default = null;
      example = "/run/secrets/tally-cache.key";
      description = ''
        The key narinfos are re-signed with (Nix format: `tally keygen` or
        `nix-store --generate-binary-cache-key` writes one). Loaded with `LoadCredential=`,
        never copied into the Nix store.

        If null, a key named {option}`services.tally.cache.keyName` is generated on the
        first start in ${generatedKey}. Its public key is the first line of
        ${generatedKey}.pub (`head -1 ${generatedKey}.pub`), and the journal of
        `tally-cache-keygen.service` shows it too.
      '';
    };

    keyName = mkOption {
      type = common.keyNameType;
      default = "${config.networking.fqdnOrHostName}-tally-1";
      defaultText = lib.literalExpression ''"''${config.networking.fqdnOrHostName}-tally-1"'';
      description = "The name of the generated key, which Nix shows in `trusted-public-keys`. Used only when `secretKeyFile` is null.";
    };

    publicKey = mkOption {
      type = types.nullOr (types.strMatching "[^[:space:][:cntrl:]+:]+:[A-Za-z0-9+/]{43}=");
      default = null;
      example = "cache.example.org-1:bp+CbeLDUbVfM1LCVh6uDm62lNM97xqgEw6c+JPI0qU=";
      description = ''
        The cache key's public half (`name:base64`), for Nix's `trusted-public-keys`.

        Nix needs it when the system is built, and a key generated on the first start does
        not exist then. So either generate the key beforehand (`tally keygen --name NAME
        --secret-key-file FILE`, deploy FILE as a secret, set `secretKeyFile`, and paste the
        first line of `tally key public --secret-key-file FILE` here), or let the first start
        generate it, read it with `head -1 ${generatedKey}.pub`, paste it here and rebuild.
        Until it is set, Nix does not trust what this cache serves (a warning says so).
      '';
    };

    configureNix = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Make Nix on this machine substitute through the cache: add its URL to
        {option}`nix.settings.substituters` (with `?priority=` set to `settings.priority`,
        before cache.nixos.org's 40) and {option}`services.tally.cache.publicKey` to
        {option}`nix.settings.trusted-public-keys`.
      '';
    };

    onlySubstituter = mkOption {
      type = types.bool;
      default = true;
      description = ''
        With `configureNix`, make the cache the *only* substituter and its key the *only*
        trusted key (the lists are set with `lib.mkForce`, replacing cache.nixos.org and any
        other module's entries). This is what enforces the quorum: Nix falls back to the
        next substituter when this one answers 404, so any other substituter or trusted key
        is a way around it. Put other caches in `settings.upstreams` instead. Set it to false
        to only prefer the cache.
      '';
    };

    openFirewall = common.openFirewallOption "the binary cache port, for other machines";

    checkConfig = common.checkConfigOption "cache";

    configFile = mkOption {
      type = types.path;
      readOnly = true;
      description = "The generated (and, with `checkConfig`, checked) config file the cache runs with; also at /etc/tally/cache.toml.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.settings.aggregator.url != null || cfg.settings.aggregator ? config;
        message = ''
          services.tally.cache.settings.aggregator.url is not set: name the aggregator the
          verdicts come from (e.g. "http://aggregator.example.org:7421"), or enable
          services.tally.aggregator on this machine.
        '';
      }
      {
        assertion =
          cfg.secretKeyFile == null && cfg.publicKey != null
          -> lib.hasPrefix "${cfg.keyName}:" cfg.publicKey;
        message = ''
          services.tally.cache.publicKey (${toString cfg.publicKey}) is not named
          services.tally.cache.keyName (${cfg.keyName}), the name of the generated key.
        '';
      }
    ];

    warnings =
      lib.optional (cfg.openFirewall && common.isLoopback cfg.settings.listen) ''
        services.tally.cache.openFirewall is set, but the cache listens on ${cfg.settings.listen},
        a loopback address: set services.tally.cache.settings.listen.
      ''
      ++ lib.optional (cfg.configureNix && cfg.publicKey == null) ''
        services.tally.cache.publicKey is not set, so Nix on this machine will not trust what
        the Tally cache serves${lib.optionalString cfg.onlySubstituter ", and with onlySubstituter it trusts no other cache either"}.
        ${
          if cfg.secretKeyFile == null then
            "After the cache's first start, read the key with `head -1 ${generatedKey}.pub`"
          else
            "Read the key with `tally key public --secret-key-file ${cfg.secretKeyFile} | head -1`"
        }, set services.tally.cache.publicKey to it and rebuild.
      '';

    services.tally.cache.settings = {
      secret_key_file = common.credential "tally-cache" "secret-key";
      policy_file = mkIf (cfg.policyFile != null) cfg.policyFile;
    };

    services.tally.cache.configFile = common.configFile {
      inherit pkgs;
      inherit (cfg) package;
      # TOML has no null: an unset aggregator.url is left out.
      settings = lib.filterAttrsRecursive (_: v: v != null) cfg.settings;
      command = "cache";
      name = "tally-cache";
      check = cfg.checkConfig;
    };

    environment.etc."tally/cache.toml".source = cfg.configFile;
    environment.systemPackages = [ cfg.package ];

    nix.settings = mkIf cfg.configureNix (
      if cfg.onlySubstituter then
        {
          substituters = lib.mkForce [ substituter ];
          trusted-public-keys = lib.mkForce (lib.optional (cfg.publicKey != null) cfg.publicKey);
        }
      else
        {
          substituters = [ substituter ];
          trusted-public-keys = lib.optional (cfg.publicKey != null) cfg.publicKey;
        }
    );

    systemd.services.tally-cache-keygen = mkIf (cfg.secretKeyFile == null) (
      common.keygenService {
        inherit pkgs;
        inherit (cfg) package;
        stateDir = keyDir;
        file = "cache.key";
        keyName = cfg.keyName;
        what = "Tally cache";
      }
    );

    systemd.services.tally-cache = {
      description = "Tally binary cache proxy";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ] ++ lib.optional localAggregator "tally-aggregator.service";
      after = [
        "network-online.target"
      ]
      ++ lib.optional localAggregator "tally-aggregator.service"
      ++ lib.optional (cfg.secretKeyFile == null) "tally-cache-keygen.service";
      requires = lib.optional (cfg.secretKeyFile == null) "tally-cache-keygen.service";
      serviceConfig = common.hardening // {
        ExecStart = "${cfg.package}/bin/tally cache serve --config ${cfg.configFile}";
        DynamicUser = true;
        User = "tally-cache";
        Group = "tally-cache";
        PrivateUsers = true;
        # Used when settings.aggregator.config runs an aggregator in the cache's process.
        StateDirectory = "tally-cache";
        StateDirectoryMode = "0700";
        UMask = "0077";
        LoadCredential = [ "secret-key:${keyFile}" ];
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
