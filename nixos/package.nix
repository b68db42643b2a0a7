# The `tally` binary, for nixpkgs' callPackage: `pkgs.callPackage ./nixos/package.nix { }`.
# The flake's packages.<system>.default and overlays.default are this file.
{
  lib,
  rustPlatform,
  installShellFiles,
  stdenv,
}:
let
  root = ../.;
  workspace = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = "tally";
  inherit (workspace.workspace.package) version;

  # Only what cargo reads: the workspace, its crates, the gRPC contracts (compiled by protox,
  # in Rust, so no system protoc) and the tests crate, a workspace member.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../crates
      ../proto
      (lib.fileset.difference ../tests ../tests/nixos)
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  cargoBuildFlags = [
    "--package"
    "tally"
  ];

  # The tests start the real binary and real Nix as root (nix-bin, no daemon), and headless
  # Chromium: they cannot run in the build sandbox. CI runs them (`cargo test --workspace`);
  # the flake's checks run the NixOS VM test against this package.
  doCheck = false;

  nativeBuildInputs = [ installShellFiles ];

  # Nix runs its post-build-hook without arguments; called as tally-hook, tally is `tally hook`.
  postInstall = ''
    ln -s tally $out/bin/tally-hook
  ''
  + lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    installShellCompletion --cmd tally \
      --bash <($out/bin/tally completions bash) \
      --fish <($out/bin/tally completions fish) \
      --zsh <($out/bin/tally completions zsh)
  '';

  meta = {
    description = "Federation of transparency logs for Nix builds: n-of-m builders must agree before a binary is trusted";
    homepage = workspace.workspace.package.repository;
    license = with lib.licenses; [
      asl20
      mit
    ];
    mainProgram = "tally";
    platforms = lib.platforms.unix;
  };
}
