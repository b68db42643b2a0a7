{
  description = "Tally: a federation of transparency logs for Nix builds";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      linux = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      systems = linux ++ [
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forSystems = names: f: lib.genAttrs names (system: f nixpkgs.legacyPackages.${system});

      # A module as `nix flake check` wants one (a function or an attribute set, not a path),
      # still naming its file in error messages. Its package defaults to
      # `pkgs.tally-transparency` if the overlay provides it, otherwise to nixos/package.nix
      # built with the system's own nixpkgs (nixos/common.nix): one nixpkgs, not two.
      module = file: {
        _file = file;
        imports = [ file ];
      };
    in
    {
      # `tally-transparency`, because nixpkgs' `tally` is an unrelated GNOME counter app.
      overlays.default = final: _prev: {
        tally-transparency = final.callPackage ./nixos/package.nix { };
      };

      packages = forSystems systems (pkgs: rec {
        tally = pkgs.callPackage ./nixos/package.nix { };
        default = tally;
      });

      nixosModules = {
        default = module ./nixos/default.nix;
        log = module ./nixos/log.nix;
        hook = module ./nixos/hook.nix;
        aggregator = module ./nixos/aggregator.nix;
        cache = module ./nixos/cache.nix;
      };

      apps = forSystems systems (
        pkgs:
        let
          tally = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        in
        {
          default = {
            type = "app";
            program = "${tally}/bin/tally";
            meta.description = "The tally command";
          };
          # `nix run .#demo`: the README's three-builder federation on loopback.
          demo = {
            type = "app";
            program = "${pkgs.writeShellScript "tally-demo" ''exec ${tally}/bin/tally demo "$@"''}";
            meta.description = "A three-builder federation, an aggregator and a cache on loopback";
          };
        }
      );

      devShells = forSystems systems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = with pkgs; [
            cargo
            rustc
            clippy
            rustfmt
            rust-analyzer
            # What the end-to-end tests run for real (tests/src/nix.rs, tests/src/browser.rs).
            nix
            python3
          ];
        };
      });

      checks = forSystems linux (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        # Three builders, an aggregator and a client that substitutes through the cache.
        federation = pkgs.testers.runNixOSTest {
          imports = [ ./tests/nixos/federation.nix ];
          defaults.imports = [ self.nixosModules.default ];
        };
      });

      formatter = forSystems systems (pkgs: pkgs.nixfmt);
    };
}
