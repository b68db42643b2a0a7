# All of Tally's NixOS modules. Each can also be imported on its own:
#   ./log.nix         services.tally.log         a builder's attester log
#   ./hook.nix        services.tally.hook        Nix's post-build hook, feeding the log
#   ./aggregator.nix  services.tally.aggregator  follows and verifies logs; the dashboard
#   ./cache.nix       services.tally.cache       the quorum-gated binary cache, and Nix using it
# docs/nixos.md has an example for each.
{
  imports = [
    ./log.nix
    ./hook.nix
    ./aggregator.nix
    ./cache.nix
  ];
}
