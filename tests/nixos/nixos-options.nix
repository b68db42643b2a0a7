# The NixOS options Tally's modules set, declared as NixOS declares them, for the evaluation
# harness (eval.nix). This is not NixOS: it declares only these options, with NixOS's types
# and defaults where they matter to the modules (nix.settings' substituters and keys, the
# merging of systemd's list-valued settings) and no implementation behind them. An option a
# module sets that is not declared here fails evaluation, as it would on NixOS if misspelt.
{
  lib,
  config,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;

  # systemd unit settings: an atom, or a list whose definitions are concatenated
  # (NixOS: nixos/lib/systemd-unit-options.nix, unitOption).
  unitAtom = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
  ];
  unitOption = lib.mkOptionType {
    name = "systemd option";
    description = "systemd unit setting";
    check = v: unitAtom.check v || (builtins.isList v && lib.all unitAtom.check v);
    merge =
      loc: defs:
      if lib.any (d: builtins.isList d.value) defs then
        lib.concatMap (d: lib.toList d.value) defs
      else
        lib.mergeEqualOption loc defs;
  };
  units = types.listOf types.str;
  unitList =
    description:
    mkOption {
      type = units;
      default = [ ];
      inherit description;
    };

  service = types.submodule {
    options = {
      description = mkOption {
        type = types.str;
        default = "";
        description = "Unit description.";
      };
      wantedBy = unitList "Units that want this one.";
      requiredBy = unitList "Units that require this one.";
      wants = unitList "Wants=.";
      requires = unitList "Requires=.";
      after = unitList "After=.";
      before = unitList "Before=.";
      environment = mkOption {
        type = types.attrsOf (types.nullOr (types.either types.str types.path));
        default = { };
        description = "Environment=.";
      };
      path = mkOption {
        type = types.listOf (types.either types.package types.str);
        default = [ ];
        description = "Packages on the unit's PATH.";
      };
      script = mkOption {
        type = types.lines;
        default = "";
        description = "Shell commands run as the service's ExecStart.";
      };
      unitConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
        description = "[Unit] settings.";
      };
      serviceConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
        description = "[Service] settings.";
      };
    };
  };

  # systemd.tmpfiles.settings.<name>.<path>.<type> (NixOS: systemd/tmpfiles.nix).
  tmpfilesEntry = types.submodule {
    options = {
      mode = mkOption {
        type = types.str;
        default = "-";
        description = "Mode.";
      };
      user = mkOption {
        type = types.str;
        default = "-";
        description = "Owner.";
      };
      group = mkOption {
        type = types.str;
        default = "-";
        description = "Group.";
      };
      age = mkOption {
        type = types.str;
        default = "-";
        description = "Age.";
      };
      argument = mkOption {
        type = types.str;
        default = "";
        description = "Argument.";
      };
    };
  };

  # nix.settings values (NixOS: config/nix.nix, semanticConfType).
  nixAtom = types.nullOr (
    types.oneOf [
      types.bool
      types.int
      types.float
      types.str
      types.path
      types.package
    ]
  );
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
      description = "Checks that must hold (`{ assertion; message; }`).";
    };
    warnings = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Warnings shown when the system is built.";
    };

    networking = {
      hostName = mkOption {
        type = types.strMatching "[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?";
        default = "nixos";
        description = "The host name.";
      };
      domain = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "The domain.";
      };
      fqdnOrHostName = mkOption {
        type = types.str;
        readOnly = true;
        default =
          if config.networking.domain == null then
            config.networking.hostName
          else
            "${config.networking.hostName}.${config.networking.domain}";
        description = "The FQDN if the domain is set, otherwise the host name.";
      };
      firewall.allowedTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
        description = "TCP ports open in the firewall.";
      };
    };

    environment = {
      etc = mkOption {
        type = types.attrsOf (
          types.submodule (
            { name, config, ... }:
            {
            config.source = lib.mkIf (config.text != null) (pkgs.writeText "etc-${baseNameOf name}" config.text);
            options = {
              source = mkOption {
                type = types.path;
                description = "The file /etc/<name> is.";
              };
              text = mkOption {
                type = types.nullOr types.lines;
                default = null;
                description = "The text of /etc/<name> (NixOS then sets `source` to a file holding it).";
              };
              mode = mkOption {
                type = types.str;
                default = "symlink";
                description = "`symlink`, or the mode of a copy.";
              };
            };
            }
          )
        );
        default = { };
        description = "Files in /etc.";
      };
      systemPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
        description = "Packages in the system profile.";
      };
    };

    users = {
      users = mkOption {
        type = types.attrsOf (
          types.submodule {
            options = {
              isSystemUser = mkOption {
                type = types.bool;
                default = false;
                description = "A system user.";
              };
              group = mkOption {
                type = types.str;
                default = "";
                description = "Primary group.";
              };
              description = mkOption {
                type = types.str;
                default = "";
                description = "GECOS.";
              };
            };
          }
        );
        default = { };
        description = "Users.";
      };
      groups = mkOption {
        type = types.attrsOf (types.submodule { });
        default = { };
        description = "Groups.";
      };
    };

    nix = {
      package = mkOption {
        type = types.package;
        default = pkgs.nix;
        description = "The Nix package.";
      };
      settings = mkOption {
        type = types.submodule {
          freeformType = types.attrsOf (types.either nixAtom (types.listOf nixAtom));
          options = {
            substituters = mkOption {
              type = types.listOf types.str;
              description = "Binary caches.";
            };
            trusted-public-keys = mkOption {
              type = types.listOf types.str;
              description = "Keys a substitute must be signed with.";
            };
          };
        };
        default = { };
        description = "nix.conf.";
      };
    };

    systemd = {
      services = mkOption {
        type = types.attrsOf service;
        default = { };
        description = "systemd services.";
      };
      tmpfiles.settings = mkOption {
        type = types.attrsOf (types.attrsOf (types.attrsOf tmpfilesEntry));
        default = { };
        description = "systemd-tmpfiles entries.";
      };
    };
  };

  # What NixOS sets itself (config/nix.nix).
  config.nix.settings = {
    substituters = lib.mkAfter [ "https://cache.nixos.org/" ];
    trusted-public-keys = [ "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
  };
}
