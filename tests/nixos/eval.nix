# The evaluation harness for Tally's NixOS modules: the real module system (nixpkgs' lib,
# lib.evalModules), the modules under test, declarations of the NixOS options they set
# (nixos-options.nix) and a small `pkgs` (pkgs.nix). It is not NixOS and builds no system;
# tests/nixos_modules.rs drives it, and docs/nixos.md says what it does and does not cover.
#
#   nix-instantiate --eval --strict --json tests/nixos/eval.nix \
#     --arg nixpkgsLib ../shared/nixpkgs-lib --argstr tallyBin /path/to/tally \
#     --arg modules '[ ./my-test-config.nix ]' -A summary
{
  # nixpkgs' lib: a directory holding lib/ (CI keeps it in ../shared/nixpkgs-lib).
  nixpkgsLib,
  # The tally binary under test.
  tallyBin,
  # Which of Tally's modules to import: "default" (all of them), "log", "hook",
  # "aggregator" or "cache"; or module values (e.g. the flake's nixosModules).
  import ? [ "default" ],
  # The configuration under test: a list of modules.
  modules ? [ ],
  # Or a NixOS VM test (as pkgs.testers.runNixOSTest takes it, written as a function of
  # `lib`): each node is evaluated as a configuration, and the `test` output has them.
  test ? null,
  system ? builtins.currentSystem,
}:
let
  libDir = "${toString nixpkgsLib}/lib";
  lib =
    if builtins.pathExists "${libDir}/default.nix" then
      builtins.import libDir
    else
      throw "eval.nix: nixpkgs' lib is not at ${libDir} (pass --arg nixpkgsLib /path/to/nixpkgs-lib)";

  pkgs = builtins.import ./pkgs.nix { inherit lib tallyBin system; };

  tallyModules = map (m: if builtins.isString m then ../../nixos/${m}.nix else m) import;

  evalConfig =
    extra:
    lib.evalModules {
      class = "nixos";
      modules = [
        ./nixos-options.nix
        { _module.args.pkgs = pkgs; }
      ]
      ++ tallyModules
      ++ extra;
    };
  inherit (evalConfig modules) config;

  # A VM test's nodes, evaluated as runNixOSTest would (with `defaults` from the flake: all
  # of Tally's modules), its test script, and each node's derivations (as `drvs` below).
  vmTest =
    let
      t = (if builtins.isPath test then builtins.import test else test) { inherit lib; };
      nodes = lib.mapAttrs (_: node: (evalConfig [ node ]).config) t.nodes;
    in
    {
      inherit (t) name;
      nodes = lib.mapAttrs (_: summarize) nodes;
      testScript = if builtins.isFunction t.testScript then t.testScript { inherit nodes; } else t.testScript;
      drvs = lib.mapAttrs (_: drvsOf) nodes;
    };

  # As NixOS does before it builds a system.
  failedAssertions =
    config: map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  checkedBy =
    config: x:
    let
      failed = failedAssertions config;
    in
    if failed != [ ] then
      throw "\nFailed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failed}"
    else
      x;
  enabledIn = config: lib.filterAttrs (_: c: c.enable or false) (config.services.tally or { });

  summarize =
    config:
    checkedBy config {
      inherit (config) warnings;
      services = config.systemd.services;
      tmpfiles = config.systemd.tmpfiles.settings;
      users = config.users.users;
      groups = builtins.attrNames config.users.groups;
      nixSettings = config.nix.settings;
      firewall = config.networking.firewall.allowedTCPPorts;
      etc = lib.mapAttrs (_: e: e.source) config.environment.etc;
      settings = lib.mapAttrs (_: c: c.settings) (removeAttrs (enabledIn config) [ "hook" ]);
    };

  # The .drv behind a string (run with --read-write-mode so that it is written).
  drvOf =
    s:
    let
      drvs = builtins.attrNames (builtins.getContext "${s}");
    in
    assert builtins.length drvs == 1;
    builtins.head drvs;

  # Derivations to build with nix-store --realise: each service's config file, the hook's
  # wrapper, every ExecStart that is a script of its own (the keygen units'), and every
  # file in /etc/tally (the cache's trust policy).
  drvsOf =
    config:
    let
      enabled = enabledIn config;
    in
    checkedBy config (
      lib.mapAttrs (_: c: drvOf c.configFile) (removeAttrs enabled [ "hook" ])
      // lib.optionalAttrs (enabled ? hook) { hook = drvOf enabled.hook.wrapper; }
      // lib.mapAttrs' (n: s: lib.nameValuePair "unit:${n}" (drvOf s.serviceConfig.ExecStart)) (
        lib.filterAttrs (
          _: s: builtins.match "${builtins.storeDir}/[^ ]+" s.serviceConfig.ExecStart or "" != null
        ) config.systemd.services
      )
      // lib.mapAttrs' (n: e: lib.nameValuePair "etc:${n}" (drvOf e.source)) (
        lib.filterAttrs (
          n: e: lib.hasPrefix "tally/" n && builtins.getContext "${e.source}" != { }
        ) config.environment.etc
      )
    );
in
{
  inherit config lib pkgs;

  summary = summarize config;
  test = vmTest;
  drvs = drvsOf config;
}
