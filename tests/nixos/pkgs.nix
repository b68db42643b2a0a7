# The `pkgs` of the evaluation harness: only what Tally's modules use, each a real
# derivation built with the host's /bin/sh and tools (PATH=/usr/bin:/bin) rather than with
# nixpkgs' stdenv, which this machine does not have. Build them as root with sandbox = false
# (tests/src/nix.rs, NIX_CONFIG).
{
  lib,
  # The tally binary under test (a string, so the binary is not copied into the store).
  tallyBin,
  system ? builtins.currentSystem,
}:
let
  toTOML = import ./toml.nix { inherit lib; };

  # nixpkgs' runCommand runs its script with stdenv's bash under `set -eu -o pipefail`.
  build =
    name: env: script:
    derivation (
      {
        inherit name system;
        builder = "/bin/sh";
        args = [
          "-c"
          ''
            set -eu
            ${script}
          ''
        ];
        PATH = "/usr/bin:/bin";
      }
      // env
    );

  # A package whose bin/ holds links to host programs: { name = "/path/to/program"; }.
  hostPackage =
    name: programs:
    build name { } ''
      mkdir -p "$out/bin"
      ${lib.concatStrings (
        lib.mapAttrsToList (n: p: ''
          ln -s ${lib.escapeShellArg p} "$out/bin/${n}"
        '') programs
      )}
    '';
in
{
  runCommand = name: env: script: build name env script;

  writeShellScript =
    name: text:
    build name { inherit text; } ''
      printf '#!/bin/sh\n%s' "$text" > "$out"
      chmod +x "$out"
      /bin/sh -n "$out"
    '';

  writeText =
    name: text:
    build name { inherit text; } ''
      printf '%s' "$text" > "$out"
    '';

  formats.toml =
    { }:
    {
      # As nixpkgs' pkgs-lib/formats.nix declares it: TOML has no null.
      type =
        let
          valueType =
            lib.types.oneOf [
              lib.types.bool
              lib.types.int
              lib.types.float
              lib.types.str
              lib.types.path
              (lib.types.attrsOf valueType)
              (lib.types.listOf valueType)
            ]
            // {
              description = "TOML value";
            };
        in
        valueType;
      generate =
        name: value:
        build name { text = toTOML value; } ''
          printf '%s' "$text" > "$out"
        '';
    };

  # The host's tools, standing in for nixpkgs' packages of them.
  coreutils = hostPackage "coreutils" { timeout = "/usr/bin/timeout"; };
  nix = hostPackage "nix" (
    lib.genAttrs [ "nix" "nix-build" "nix-instantiate" "nix-store" ] (p: "/usr/bin/${p}")
  );

  # As the flake's overlay names it. nixpkgs' own `tally` is an unrelated program, which
  # the modules must never pick up.
  tally-transparency = hostPackage "tally" { tally = tallyBin; };
  tally = throw "pkgs.tally is nixpkgs' GNOME counter app, not Tally: use pkgs.tally-transparency";

  # Only named by the VM test's nodes (tests/nixos/federation.nix), never built here.
  python3 = hostPackage "python3" { python3 = "/usr/bin/python3"; };
  curl = hostPackage "curl" { curl = "/usr/bin/curl"; };
}
