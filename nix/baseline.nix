# What every Nix image has besides its spec's packages.nixpkgs: the counterpart of the Debian
# essential set every portable image has (its root filesystem always has bash and coreutils).
# Compose and the harness rely on it (docs/contracts.md: health checks use bash /dev/tcp,
# airflow-init runs `bash -ec`). Appended after the spec's own packages, skipping duplicates.
[ "bashInteractive" "coreutils" ]
