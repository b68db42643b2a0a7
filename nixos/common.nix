# Helpers shared by Tally's NixOS modules. This file is not a module: each module imports it
# with `import ./common.nix { inherit lib; }`, so every module can still be imported alone.
{ lib }:
let
  inherit (lib) mkOption types;
in
rec {
  # The package every service runs unless told otherwise: `pkgs.tally-transparency` when an
  # overlay (this flake's overlays.default) provides it, otherwise built from the source tree
  # this file is in. Not `pkgs.tally`: in nixpkgs that is an unrelated GNOME counter app.
  packageOption =
    pkgs: role:
    mkOption {
      type = types.package;
      default = pkgs.tally-transparency or (pkgs.callPackage ./package.nix { });
      defaultText = lib.literalExpression ''pkgs.tally-transparency or (pkgs.callPackage "''${tally}/nixos/package.nix" { })'';
      description = "The `tally` package the ${role} runs.";
    };

  # `listen` addresses as tally parses them: an IP address and a port, no host names.
  listenType =
    types.strMatching "([0-9]{1,3}([.][0-9]{1,3}){3}|[[][0-9a-fA-F:.]+[]]):[0-9]{1,5}"
    // {
      description = "IP socket address (`IPv4:port` or `[IPv6]:port`)";
    };

  # A key name or log origin, as tally checks it: no white space, control characters, `+` or `:`.
  keyNameType = types.strMatching "[^[:space:][:cntrl:]+:]+" // {
    description = "key name (no white space, `+` or `:`)";
  };

  # A trust policy, as tally parses it (`majority`, `all` or `N-of-M`, then `,dissent=K` and
  # `,require=A+B` clauses). Whether N-of-M fits the logs is checked at build time.
  policyType =
    types.strMatching "(majority|all|[0-9]+-of-[0-9]+)(,dissent=[0-9]+|,require=[^,+[:space:]]+(\\+[^,+[:space:]]+)*)*"
    // {
      description = "trust policy (`majority`, `all` or `N-of-M`, then optional `,dissent=K` and `,require=A+B`)";
    };

  # A signed-note verifier key (`name+id+base64`), the second line of `tally key public`:
  # what a trust policy's `log` and `witness` lines take.
  noteVkeyType = types.strMatching "[^[:space:][:cntrl:]+:]+[+][0-9a-f]{8}[+][A-Za-z0-9+/]+=*" // {
    description = "signed-note verifier key (`name+id+base64`)";
  };

  # Where a log is reached: http(s):// or a Unix socket; no white space (a policy line's words).
  logUrlType = types.strMatching "(https?://|unix:/)[^[:space:]]+" // {
    description = "log URL (`http://…`, `https://…` or `unix:/…`)";
  };

  # A file a build-time check must read: a Nix path value (copied into the store) or a store
  # path. A path elsewhere (`"/etc/…"`) is not there when the system is built.
  inStore = v: builtins.isPath v || lib.hasPrefix "${builtins.storeDir}/" (toString v);

  # A consumer's trust policy, written as Nix and rendered into the file `tally` reads (a
  # C2SP tlog-policy plus Tally's `attest` and `mirror` lines; docs/formats.md). It holds
  # only public keys, so it may be in the Nix store.
  trustPolicyModule = {
    options = {
      logs = mkOption {
        type = types.attrsOf (
          types.submodule {
            options = {
              vkey = mkOption {
                type = noteVkeyType;
                example = "builder1.example.org/tally+4596fa37+AZx05ZFgVj5LsROwtdwlhE0vw56itUBGI6PO4Dso0t1R";
                description = ''
                  The log's signed-note verifier key: the second line of `tally key public
                  --secret-key-file KEY` (or of the log's generated `log.key.pub`). Its name is
                  the log's origin.
                '';
              };
              urls = mkOption {
                type = types.listOf logUrlType;
                default = [ ];
                example = [
                  "http://builder1.example.org:7420"
                  "http://mirror.example.org/builder1"
                ];
                description = ''
                  Where to reach the log, tried in order (the first on its `log` line, the
                  others as `mirror` lines). Needed when the logs are asked directly (no
                  aggregator); an aggregator ignores them.
                '';
              };
            };
          }
        );
        example = lib.literalExpression ''
          {
            builder1 = {
              vkey = "builder1.example.org/tally+4596fa37+AZx05ZFgVj5LsROwtdwlhE0vw56itUBGI6PO4Dso0t1R";
              urls = [ "http://builder1.example.org:7420" ];
            };
          }
        '';
        description = "The logs whose answers count, by a label of your choice (written as a comment).";
      };
      witnesses = mkOption {
        type = types.attrsOf (
          types.submodule {
            options = {
              vkey = mkOption {
                type = noteVkeyType;
                description = "The witness's cosignature verifier key (`name+id+base64` of 0x04 and the public key).";
              };
              url = mkOption {
                type = types.nullOr logUrlType;
                default = null;
                description = "The witness's tlog-witness submission prefix, if any.";
              };
            };
          }
        );
        default = { };
        description = "Witnesses, by name (`witness` lines), for `groups` and `quorum`.";
      };
      groups = mkOption {
        type = types.listOf (
          types.submodule {
            options = {
              name = mkOption {
                type = types.strMatching "[^[:space:][:cntrl:]]+";
                description = "The group's name.";
              };
              threshold = mkOption {
                type = types.either (types.enum [
                  "all"
                  "any"
                ]) types.ints.positive;
                description = "How many members must have cosigned: `all`, `any` or a number.";
              };
              members = mkOption {
                type = types.nonEmptyListOf (types.strMatching "[^[:space:][:cntrl:]]+");
                description = "Witnesses and groups defined before this group.";
              };
            };
          }
        );
        default = [ ];
        example = lib.literalExpression ''[ { name = "two-of-three"; threshold = 2; members = [ "w1" "w2" "w3" ]; } ]'';
        description = "Groups of witnesses (`group` lines), in order: a group names only what is above it.";
      };
      quorum = mkOption {
        type = types.strMatching "[^[:space:][:cntrl:]]+";
        default = "none";
        example = "two-of-three";
        description = ''
          The witness quorum a log's checkpoint must carry: a witness, a group, or `none`
          (no cosignatures required).
        '';
      };
      attest = mkOption {
        type = policyType;
        default = "majority";
        example = "2-of-3,dissent=1";
        description = ''
          How many logs must attest the same NAR: `majority`, `all` or `N-of-M` (M is the
          number of logs), then optionally `,dissent=K` and `,require=ORIGIN+ORIGIN`.
        '';
      };
    };
  };

  # The text of a trust policy given as trustPolicyModule.
  renderTrustPolicy =
    p:
    let
      originOf = vkey: builtins.head (lib.splitString "+" vkey);
      label = name: builtins.replaceStrings [ "
" "
" ] [ " " " " ] name;
      log =
        name: l:
        "# ${label name}
log ${l.vkey}${lib.optionalString (l.urls != [ ]) " ${builtins.head l.urls}"}
"
        + lib.concatMapStrings (u: "mirror ${originOf l.vkey} ${u}
") (lib.drop 1 l.urls);
      witness =
        name: w: "witness ${name} ${w.vkey}${lib.optionalString (w.url != null) " ${w.url}"}
";
      group = g: "group ${g.name} ${toString g.threshold} ${lib.concatStringsSep " " g.members}
";
    in
    ''
      # A Tally trust policy (C2SP tlog-policy, plus Tally's attest and mirror lines),
      # generated by NixOS. It holds only public keys.

    ''
    + lib.concatStrings (lib.mapAttrsToList log p.logs)
    + "
"
    + lib.concatStrings (lib.mapAttrsToList witness p.witnesses)
    + lib.concatMapStrings group p.groups
    + "quorum ${p.quorum}
"
    + "attest ${p.attest}
";

  # Files holding secrets are named by a string, never a Nix path value: a path value such as
  # `./log.key` would copy the secret into the world-readable Nix store.
  secretFileType =
    types.addCheck (types.strMatching "/.+") (p: !lib.hasPrefix "${builtins.storeDir}/" p)
    // {
      description = "absolute path outside the Nix store, as a string";
    };

  absolutePathType = types.strMatching "/.*" // {
    description = "absolute path";
  };

  # "127.0.0.1:7420" → 7420; "[::]:7420" → 7420.
  portOf = listen: lib.toInt (lib.last (lib.splitString ":" listen));

  # The host part of a listen address, and an address a client on this machine can connect
  # to (a wildcard address is reached through loopback).
  hostOf = listen: lib.removeSuffix ":${toString (portOf listen)}" listen;
  localAddress =
    listen:
    let
      host = hostOf listen;
      local =
        if host == "0.0.0.0" then
          "127.0.0.1"
        else if host == "[::]" then
          "[::1]"
        else
          host;
    in
    "${local}:${toString (portOf listen)}";
  isLoopback =
    listen:
    let
      host = hostOf listen;
    in
    lib.hasPrefix "127." host || host == "[::1]";

  # Where systemd puts a credential loaded with LoadCredential= (`$CREDENTIALS_DIRECTORY`).
  credential = unit: id: "/run/credentials/${unit}.service/${id}";

  # `path` is `dir` or inside it.
  isUnder = dir: path: path == dir || lib.hasPrefix "${dir}/" path;

  # The generated config, checked at build time with `tally <command> check-config
  # --build-time` (everything but secret files and listen ports), so a bad option fails
  # `nixos-rebuild` instead of the service's start.
  configFile =
    {
      pkgs,
      package,
      command,
      name,
      settings,
      check,
    }:
    let
      file = (pkgs.formats.toml { }).generate "${name}-unchecked.toml" settings;
    in
    if !check then
      file
    else
      pkgs.runCommand "${name}.toml"
        {
          unchecked = file;
          preferLocalBuild = true;
          allowSubstitutes = false;
        }
        ''
          ${package}/bin/tally ${command} check-config --build-time --config "$unchecked"
          cat "$unchecked" > "$out"
        '';

  checkConfigOption =
    role:
    mkOption {
      type = types.bool;
      default = true;
      description = ''
        Check the generated config at build time with `tally … check-config --build-time`,
        so that a bad setting fails `nixos-rebuild` rather than the ${role}'s start. Secret
        files and listen ports are not checked then: the service checks them when it starts.
        Turn this off only if the build machine cannot run the host's `tally` (cross builds).
      '';
    };

  openFirewallOption =
    what:
    mkOption {
      type = types.bool;
      default = false;
      description = "Open the TCP port of `settings.listen` (${what}) in the firewall.";
    };

  # The sandbox every Tally daemon runs in. Each module adds its user, directories,
  # credentials, address families and system call filter.
  hardening = {
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    PrivateMounts = true;
    NoNewPrivileges = true;
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectProc = "invisible";
    ProcSubset = "pid";
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    RemoveIPC = true;
    DevicePolicy = "closed";
    SystemCallArchitectures = "native";
    SystemCallErrorNumber = "EPERM";
    Restart = "on-failure";
    RestartSec = 5;
  };

  # A oneshot unit that creates a signing key on first start, if the user gave none:
  #   /var/lib/<stateDir>/<file>      the secret key, root's, mode 0600
  #   /var/lib/<stateDir>/<file>.pub  its public halves (Nix key, then verifier key), 0644
  # It runs before the daemon, which gets the key through LoadCredential=. The key stays
  # root's, so no change of user (a DynamicUser's uid changes, a module update renames a
  # user) can ever leave the daemon unable to read it. On every start it also checks that
  # the key is named as expected, and stops the daemon from starting if not.
  keygenService =
    {
      pkgs,
      package,
      stateDir,
      file,
      keyName,
      what,
    }:
    {
      description = "Create the ${what} signing key if it does not exist";
      serviceConfig = removeAttrs hardening [
        "Restart"
        "RestartSec"
      ]
      // {
        Type = "oneshot";
        User = "root";
        StateDirectory = stateDir;
        StateDirectoryMode = "0755";
        UMask = "0077";
        ExecStart = "${pkgs.writeShellScript "${stateDir}-generate" ''
          set -eu
          key="$STATE_DIRECTORY/${file}"
          name=${lib.escapeShellArg keyName}
          if [ ! -e "$key" ]; then
            ${package}/bin/tally keygen --name "$name" --secret-key-file "$key"
          fi
          public=$(${package}/bin/tally key public --secret-key-file "$key")
          # The Nix public key (name:base64), the verifier key, the key as a witness.
          set -- $public
          nix_key=$1
          if [ "''${nix_key%:*}" != "$name" ]; then
            echo "$key is the key of ''${nix_key%:*}, not of $name (${what})." >&2
            echo "A key's name cannot change. Set the old name again, or move $key away to start over with a new key." >&2
            exit 1
          fi
          (umask 022 && printf '%s\n' "$public" > "$key.pub")
          echo "${what} public key: $nix_key (also in $key.pub)"
        ''}";
        # Nothing but the key directory is writable; no network, no capabilities.
        PrivateNetwork = true;
        RestrictAddressFamilies = "none";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
          "~@resources"
        ];
      };
    };
}
