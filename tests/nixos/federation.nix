# NixOS VM test (flake: checks.<system>.federation, with pkgs.testers.runNixOSTest):
# three builders, each with a log and the post-build hook, an aggregator following them
# under a 2-of-3 policy, and a client whose Nix substitutes only through the Tally cache,
# which checks every answer against its own trust policy: the three builders' log keys,
# `quorum none` (no witnesses required) and `attest 2-of-3`.
#
#   - All three builders build the same derivation; the client substitutes it (from
#     builder1's plain binary cache, re-signed by its Tally cache).
#   - Only builder1 builds another; the client cannot substitute it, and
#     `tally cache explain` says why.
#   - builder2 builds a third while its log is stopped: the hook spools it (as root, into
#     the log's group), the restarted log drains it, and the path becomes trusted.
#
# The keys in ./keys are test keys, public in this repository: the only keys that may be
# in the Nix store. The test deploys them outside it (/etc, mode 0400), as an operator would.
{ lib, ... }:
let
  builders = [
    "builder1"
    "builder2"
    "builder3"
  ];
  # `tally key public --secret-key-file keys/<name>.key`, second line: the logs' signed-note
  # verifier keys, for the aggregator's `logs` and the client's trust policy.
  vkeys = {
    builder1 = "builder1.test/tally+aa371107+Ac88LPNFOwyucNI09Ei1bGiCtLPHlIcHO8l/wX6LufYG";
    builder2 = "builder2.test/tally+a73f050a+AS5vmFXqRWVpy3WyVEVK/o8YVyxJLAdhxX5pSTE2sWi/";
    builder3 = "builder3.test/tally+f8f7795e+AYHwfpjvhE6TaP4m9dMRwDPpGhYiv1WSi0twV46sBnJc";
  };
  cachePublicKey = "client.test-tally-1:j6tHiY7g276M5xeM3UcRI7pQYD9vlQP3injRCxEZR4k=";

  secret = file: {
    source = file;
    mode = "0400";
  };

  # What the builders build: trivial, reproducible, and buildable offline in the sandbox.
  payload = ''
    let
      mk = name: derivation {
        inherit name;
        system = builtins.currentSystem;
        builder = "/bin/sh";
        args = [ "-c" "echo ''${name} is reproducible > $out" ];
      };
    in
    {
      agreed = mk "tally-vm-agreed";
      solo = mk "tally-vm-solo";
      late = mk "tally-vm-late";
    }
  '';

  builder =
    name:
    { pkgs, ... }:
    {
      services.tally.log = {
        enable = true;
        secretKeyFile = "/etc/tally-test/log.key";
        openFirewall = true;
        settings = {
          origin = "${name}.test/tally";
          listen = "[::]:7420";
          batch_period_ms = 20;
          spool_drain_interval_secs = 1;
        };
      };
      services.tally.hook.enable = true;

      environment.etc."tally-test/log.key" = secret ./keys/${name}.key;
      environment.etc."tally-test/payload.nix".text = payload;
      nix.settings = {
        substituters = lib.mkForce [ ];
        experimental-features = [ "nix-command" ];
      };
      networking.firewall.allowedTCPPorts = [ 8080 ];

      # builder1 also serves what it built as a plain HTTP binary cache: the upstream of the
      # client's Tally cache. It signs nothing; the Tally cache signs what a quorum attests.
      systemd.services.upstream-cache = lib.mkIf (name == "builder1") {
        wantedBy = [ "multi-user.target" ];
        serviceConfig = {
          ExecStart = "${pkgs.python3}/bin/python3 -m http.server 8080 --directory /var/lib/upstream-cache";
          # A fixture, not a Tally service: it runs as root so that the files `nix copy`
          # writes there as root are simply readable.
          StateDirectory = "upstream-cache";
        };
      };
    };
in
{
  name = "tally-federation";

  nodes = lib.genAttrs builders builder // {
    aggregator = {
      services.tally.aggregator = {
        enable = true;
        logs = lib.genAttrs builders (name: {
          origin = "${name}.test/tally";
          vkey = vkeys.${name};
          urls = [ "http://${name}:7420" ];
        });
        witnessKeyFile = "/etc/tally-test/witness.key";
        openFirewall = true;
        settings = {
          listen = "[::]:7421";
          policy = "2-of-3";
          poll_interval_secs = 1;
        };
      };
      environment.etc."tally-test/witness.key" = secret ./keys/witness.key;
    };

    client =
      { pkgs, ... }:
      {
        services.tally.cache = {
          enable = true;
          secretKeyFile = "/etc/tally-test/cache.key";
          publicKey = cachePublicKey;
          # The client's own trust policy (/etc/tally/trust.policy): the aggregator's answers
          # count only as far as the builders' keys and proofs check out under it.
          trustPolicy = {
            logs = lib.genAttrs builders (name: {
              vkey = vkeys.${name};
              urls = [ "http://${name}:7420" ];
            });
            quorum = "none";
            attest = "2-of-3";
          };
          settings = {
            upstreams = [ "http://builder1:8080" ];
            aggregator.url = "http://aggregator:7421";
            decision_ttl_secs = 1;
          };
        };
        environment.etc."tally-test/cache.key" = secret ./keys/cache.key;
        environment.systemPackages = [ pkgs.curl ];
      };
  };

  testScript = ''
    builders = [builder1, builder2, builder3]
    vkeys = {"builder1": "${vkeys.builder1}", "builder2": "${vkeys.builder2}", "builder3": "${vkeys.builder3}"}
    # Run on the client, under its cache's trust policy.
    trusted = "tally check --aggregator http://aggregator:7421 --policy-file /etc/tally/trust.policy"

    def build(machine, attr):
        return machine.succeed(f"nix-build --no-out-link /etc/tally-test/payload.nix -A {attr}").strip()

    def attests(machine, path):
        return f"tally log lookup --log http://127.0.0.1:7420 --vkey '{vkeys[machine.name]}' {path} | grep -q ' attests {path} '"

    start_all()
    for b in builders:
        b.wait_for_unit("tally-log.service")
        b.wait_for_open_port(7420)
    builder1.wait_for_unit("upstream-cache.service")
    aggregator.wait_for_unit("tally-aggregator.service")
    aggregator.wait_for_open_port(7421)
    client.wait_for_unit("tally-cache.service")
    client.wait_for_open_port(7422)

    with subtest("the modules' files, sockets and Nix settings"):
        for b in builders:
            b.succeed("test \"$(stat -c '%U:%G %a' /var/lib/tally-log/spool)\" = 'tally-log:tally-log 2770'")
            b.succeed("test \"$(stat -c '%G %a' /run/tally-log/log.sock)\" = 'tally-log 660'")
            b.succeed("grep -q '^post-build-hook = /nix/store/.*-tally-post-build-hook$' /etc/nix/nix.conf")
        client.succeed("grep -q '^substituters = http://127.0.0.1:7422?priority=30$' /etc/nix/nix.conf")
        client.succeed("grep -q '^trusted-public-keys = ${cachePublicKey}$' /etc/nix/nix.conf")
        client.succeed("curl -sf http://127.0.0.1:7422/nix-cache-info | grep -q 'Priority: 30'")
        client.succeed("curl -sf http://aggregator:7421/ | grep -q builder3.test/tally")
        client.succeed("grep -q '^attest 2-of-3$' /etc/tally/trust.policy")
        client.succeed("grep -q '^quorum none$' /etc/tally/trust.policy")
        client.succeed("grep -q '^policy_file = \"/nix/store/.*-tally-trust.policy\"$' /etc/tally/cache.toml")

    with subtest("every builder builds the same path, and its hook attests it"):
        agreed = {b.name: build(b, "agreed") for b in builders}
        assert len(set(agreed.values())) == 1, agreed
        agreed = agreed["builder1"]
        for b in builders:
            b.wait_until_succeeds(attests(b, agreed), timeout=30)
        solo = build(builder1, "solo")
        builder1.wait_until_succeeds(attests(builder1, solo), timeout=30)
        builder1.succeed(f"nix copy --to file:///var/lib/upstream-cache {agreed} {solo}")
        client.wait_until_succeeds(f"{trusted} {agreed}", timeout=60)
        client.fail(f"{trusted} {solo}")

    with subtest("the client substitutes only what a quorum attests"):
        client.succeed(f"nix-store --realise {agreed}")
        client.succeed(f"grep -q 'tally-vm-agreed is reproducible' {agreed}")
        client.fail(f"nix-store --realise {solo}")
        code = client.succeed(f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:7422/{solo[11:43]}.narinfo")
        assert code == "404", code
        # Why: the cache's /explain/<hash>, through tally cache explain (exit 0 served, 1 refused).
        client.succeed(f"tally cache explain --cache http://127.0.0.1:7422 {agreed}")
        client.fail(f"tally cache explain --cache http://127.0.0.1:7422 {solo}")
        why = client.succeed(f"curl -sf http://127.0.0.1:7422/explain/{solo[11:43]}")
        assert "3 logs, attest 2-of-3, witness quorum none" in why, why

    with subtest("with its log stopped, a build succeeds and the hook spools; the log drains it"):
        builder2.succeed("systemctl stop tally-log.service")
        late = build(builder2, "late")
        builder2.succeed("test \"$(stat -c '%G %a' /var/lib/tally-log/spool/*.jsonl)\" = 'tally-log 640'")
        builder2.succeed("systemctl start tally-log.service")
        builder2.wait_until_succeeds("! ls /var/lib/tally-log/spool/*.jsonl", timeout=30)
        builder2.wait_until_succeeds(attests(builder2, late), timeout=30)
        build(builder1, "late")
        builder1.succeed(f"nix copy --to file:///var/lib/upstream-cache {late}")
        client.wait_until_succeeds(f"{trusted} {late}", timeout=60)
        client.succeed(f"nix-store --realise {late}")

    with subtest("a reboot keeps the log and its key"):
        builder3.shutdown()
        builder3.start()
        builder3.wait_for_unit("tally-log.service")
        builder3.wait_for_open_port(7420)
        builder3.succeed(attests(builder3, agreed))
  '';
}
