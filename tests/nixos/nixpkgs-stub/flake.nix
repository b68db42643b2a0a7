# Stands in for nixpkgs when the evaluation harness evaluates Tally's flake with Nix 2.8:
# it has nixpkgs' `lib` (from the nixpkgs-lib input, which the harness overrides with
# `--override-input nixpkgs/nixpkgs-lib path:…/shared/nixpkgs-lib`) and no packages, so
# only the flake's nixosModules and overlays can be evaluated through it.
{
  description = "nixpkgs' lib only, for evaluating Tally's flake without nixpkgs";

  inputs.nixpkgs-lib.url = "path:/nonexistent/override/nixpkgs/nixpkgs-lib";

  outputs =
    { self, nixpkgs-lib }:
    {
      inherit (nixpkgs-lib) lib;
      legacyPackages = { };
    };
}
