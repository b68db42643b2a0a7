# services.tally.cache: a binary cache that serves a narinfo only when a quorum of logs
# attests it, re-signed with its own key (`tally cache serve`); and Nix configured to use it.
# Every log's answer is checked against the cache's own trust policy (policyFile, or
# trustPolicy written as Nix), which is also linked to /etc/tally/trust.policy for the
# machine's users (`tally check --policy-file /etc/tally/trust.policy …`).
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
  # The answers come from the aggregator on this machine (aggregator.url's default then).
  usesLocalAggregator = localAggregator && cfg.settings.aggregator.url != null;
  # No aggregator at all: the cache asks the logs themselves, at the trust policy's URLs.
  asksLogs = cfg.settings.aggregator.url == null && !(cfg.settings.aggregator ? config);

  # trustPolicy, rendered (only evaluated when trustPolicy is set).
  generatedPolicy = pkgs.writeText "tally-trust.policy" (common.renderTrustPolicy cfg.trustPolicy);
  policyPath = cfg.settings.policy_file;
  etcPolicy = "/etc/tally/trust.policy";
  logsWithoutUrls =
    if cfg.trustPolicy == null then
      [ ]
    else
      lib.attrNames (lib.filterAttrs (_: l: l.urls == [ ]) cfg.trustPolicy.logs);

  # TOML has no null: unset options (aggregator.url, ca_file, …) are left out, and so is an
  # [aggregator] table left empty, which tally would read as "neither url nor config".
  # Not into derivations (`policyFile = pkgs.writeText …`): they are written as their path.
  dropNulls =
    v:
    if builtins.isAttrs v && !lib.isDerivation v then
      lib.mapAttrs (_: dropNulls) (lib.filterAttrs (_: x: x != null) v)
    else
      v;
  tomlSettings =
    let
      s = dropNulls cfg.settings;
    in
    if s.aggregator or { } == { } then removeAttrs s [ "aggregator" ] else s;

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
        There is no `policy`: the attestation quorum is the trust policy's `attest` line.
      '';
      default = { };
      example = lib.literalExpression ''
        {
          upstreams = [ "https://cache.nixos.org" ];
          aggregator.url = "http://aggregator.example.org:7421";
          decision_ttl_secs = 30;
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
          mode = mkOption {
            type = types.enum [
              "enforce"
              "report-only"
            ];
            default = "enforce";
            description = ''
              `enforce` serves only what the trust policy admits. `report-only`, for rolling
              out, also serves what it would refuse, as the upstreams have it (with their
              signatures, not re-signed), and logs and counts it
              (`tally_cache_report_only_refusals` on /metrics). Nix must then trust the
              upstreams' keys as well: set {option}`services.tally.cache.onlySubstituter` to
              false while rolling out.
            '';
          };
          ca_file = mkOption {
            type = types.nullOr types.path;
            default = null;
            example = lib.literalExpression "./internal-ca.pem";
            description = ''
              Extra CA certificates (PEM) to trust for `https://` upstreams, aggregators and
              logs, besides the system's roots. They are public: give a Nix path or a store
              path, which the build-time check reads (a file elsewhere needs
              `checkConfig = false`, and must be readable by the service's dynamic user).
            '';
          };
          policy_file = mkOption {
            type = types.nullOr types.path;
            default = cfg.policyFile;
            defaultText = lib.literalExpression "config.services.tally.cache.policyFile";
            description = "The trust policy file: set {option}`services.tally.cache.policyFile` or {option}`services.tally.cache.trustPolicy`.";
          };
          aggregator = mkOption {
            default = { };
            description = ''
              Where the logs' answers come from: `url` (a running aggregator), or `config` (an
              aggregator config file, run inside the cache's process; its `data_dir` must then
              be inside /var/lib/tally-cache), or neither: then the cache asks the logs
              themselves, at the URLs of its trust policy's `log` and `mirror` lines (every
              log needs one). The answers carry proofs, which the cache checks against its
              trust policy: no aggregator is taken on its word.
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
                  The aggregator the answers come from (`http://host:port`, `https://…` or
                  `unix:/path`). It defaults to {option}`services.tally.aggregator` when that
                  runs on this machine; null (the default otherwise) asks the logs directly.
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
      default = if cfg.trustPolicy != null then generatedPolicy else null;
      defaultText = lib.literalExpression ''
        if config.services.tally.cache.trustPolicy != null then <trustPolicy, rendered into the store> else null
      '';
      example = lib.literalExpression "./trust.policy";
      description = ''
        Required, unless {option}`services.tally.cache.trustPolicy` is set: the cache's own
        trust policy, a C2SP tlog-policy file (examples/trust.policy, docs/formats.md). Its
        `log` lines are the logs whose answers count (their signed-note verifier keys, and
        the URLs to ask them at when there is no aggregator), `witness`, `group` and `quorum`
        lines the cosignatures a checkpoint needs (`quorum none` for none), `attest N-of-M`
        how many logs must attest the same NAR, and `mirror` lines more URLs for a log.
        Every answer is checked against it.

        It holds only public keys, so it may be in the Nix store: a Nix path such as
        `./trust.policy` is copied there, and the build-time check reads it. A file
        elsewhere (a string) must be readable by the service's dynamic user; it is checked
        when the service starts. Sets `settings.policy_file`; /etc/tally/trust.policy links
        to it.
      '';
    };

    trustPolicy = mkOption {
      type = types.nullOr (types.submodule common.trustPolicyModule);
      default = null;
      example = lib.literalExpression ''
        {
          logs = {
            builder1 = {
              vkey = "builder1.example.org/tally+4596fa37+AZx05ZFgVj5LsROwtdwlhE0vw56itUBGI6PO4Dso0t1R";
              urls = [ "http://builder1.example.org:7420" ];
            };
            builder2 = {
              vkey = "builder2.example.org/tally+8ebebb6f+AW6fgm3iw1G1XzNSwlYerg5utpTTPe8aoBMOnPiTyNKl";
              urls = [ "http://builder2.example.org:7420" ];
            };
            builder3 = {
              vkey = "builder3.example.org/tally+43154245+Af1xpV9ws6KXGSKzTnXcdeg6ex18Bm/wUgN3A+BulN6z";
              urls = [ "http://builder3.example.org:7420" ];
            };
          };
          quorum = "none"; # no witness cosignatures required
          attest = "2-of-3";
        }
      '';
      description = ''
        The trust policy written as Nix, instead of a
        {option}`services.tally.cache.policyFile`: `logs` (`log` and `mirror` lines),
        `witnesses`, `groups`, `quorum` (default `none`) and `attest` (default `majority`).
        It is rendered into a file in the Nix store, which becomes `policyFile`.
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
        to only prefer the cache, as while rolling out with `settings.mode = "report-only"`.
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
        assertion = policyPath != null;
        message = ''
          services.tally.cache: no trust policy. Set services.tally.cache.policyFile to a
          C2SP tlog-policy file (`log` lines with the logs' verifier keys, a `quorum` line
          and an `attest N-of-M` line; see examples/trust.policy), or write it as Nix in
          services.tally.cache.trustPolicy = { logs = { … }; attest = "2-of-3"; }.
        '';
      }
      {
        assertion = cfg.trustPolicy != null -> toString cfg.policyFile == toString generatedPolicy;
        message = ''
          services.tally.cache: both trustPolicy and policyFile (${toString cfg.policyFile}) are
          set; set only one of them.
        '';
      }
      {
        assertion = cfg.trustPolicy != null -> cfg.trustPolicy.logs != { };
        message = "services.tally.cache.trustPolicy.logs is empty: list the logs whose answers count.";
      }
      {
        assertion = asksLogs -> logsWithoutUrls == [ ];
        message = ''
          services.tally.cache has no aggregator (settings.aggregator.url is null), so it asks
          the logs themselves, but these have no urls: ${
            lib.concatMapStringsSep ", " (n: "trustPolicy.logs.${n}.urls") logsWithoutUrls
          }. Give each log's URL, or set services.tally.cache.settings.aggregator.url.
        '';
      }
      {
        assertion = !(cfg.settings ? policy);
        message = ''
          services.tally.cache.settings.policy is no longer an option of the cache: the
          attestation quorum is the `attest` line of its trust policy
          (services.tally.cache.trustPolicy.attest, or the policyFile's `attest` line).
        '';
      }
      {
        assertion =
          cfg.checkConfig && cfg.settings.ca_file != null -> common.inStore cfg.settings.ca_file;
        message = ''
          services.tally.cache.settings.ca_file (${toString cfg.settings.ca_file}) is not in
          the Nix store, so the build-time check cannot read it: give a Nix path (./ca.pem)
          or a store path (CA certificates are public), or set
          services.tally.cache.checkConfig = false.
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
      ''
      ++ lib.optional (cfg.settings.mode == "report-only" && cfg.configureNix && cfg.onlySubstituter) ''
        services.tally.cache.settings.mode is "report-only": what the trust policy refuses is
        passed on with the upstreams' signatures only, but with onlySubstituter Nix on this
        machine trusts no key but the cache's, so it still refuses those paths. While rolling
        out, set services.tally.cache.onlySubstituter = false.
      '';

    services.tally.cache.settings.secret_key_file = common.credential "tally-cache" "secret-key";

    services.tally.cache.configFile = common.configFile {
      inherit pkgs;
      inherit (cfg) package;
      settings = tomlSettings;
      command = "cache";
      name = "tally-cache";
      check = cfg.checkConfig;
    };

    environment.etc."tally/cache.toml".source = cfg.configFile;
    # The machine's trust policy, for its users: tally check --policy-file /etc/tally/trust.policy
    environment.etc."tally/trust.policy" = mkIf (policyPath != null && toString policyPath != etcPolicy) {
      source = lib.mkDefault policyPath;
    };
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
      wants = [ "network-online.target" ] ++ lib.optional usesLocalAggregator "tally-aggregator.service";
      after = [
        "network-online.target"
      ]
      ++ lib.optional usesLocalAggregator "tally-aggregator.service"
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
        # Upstreams, the aggregator or the logs: over TCP, or a Unix socket (`unix:` URLs).
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
