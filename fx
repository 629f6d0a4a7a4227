#!/usr/bin/env bash
# Entry point on a fresh Debian 12 machine: bootstrap what is missing, then run the command.
#   ./fx up            build what is missing, load it into Docker, start the CPU stack, wait until healthy
#   ./fx check         the default test suite (unit + integration; not slow, not gpu, not cluster)
#   ./fx check-cluster   a real three-node Docker Swarm on this machine (tests/cluster)
#   ./fx check-nix-real  the flake with the real nix2container/poetry2nix (after ./fx nix-seed DIR...)
#   ./fx bench | bench-stack | bench-bsopt | bench-cluster   the benchmarks (builder vs Dockerfiles; the
#                      running stack; bsopt; the FX stack on a three-node Swarm)
#   ./fx host-packages [--update]   the host's Debian packages against requirements/debian-host.lock
#   ./fx <anything>    any other fxstack command (build, load, status, logs, down, test, specs ...)
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in check*) export FX_WITH_TESTS=1 ;; esac
"$root/scripts/bootstrap.sh"
export PATH="$root/.venv/bin:$PATH"
export FXSTACK_CLI="${FXSTACK_CLI:-$0}"
cd "$root"
case "${1:-}" in
  # Under check, a test whose prerequisite is missing fails rather than skips (tests/conftest.py).
  # Two test processes on two or three cores, three on four or more (FX_TEST_PROCESSES=N sets
  # another number, 1 for one): the tests of shared machine state in one, those of Docker
  # projects of their own in another, the rest beside them (tests/parallel.py).
  check) shift; cores=$(nproc 2>/dev/null || echo 1)
    procs=${FX_TEST_PROCESSES:-$(( cores < 2 ? 1 : cores < 4 ? 2 : 3 ))}
    if [ "$procs" != 1 ]; then set -- -n "$procs" --dist loadgroup --no-loadscope-reorder "$@"; fi
    FX_CHECK_STRICT=1 exec "$root/.venv/bin/python" -m pytest -m "not slow and not gpu and not cluster" "$@" ;;
  check-cluster) shift; FX_CHECK_STRICT=1 exec "$root/.venv/bin/python" -m pytest -m cluster tests/cluster "$@" ;;
  check-slow) shift; exec "$root/.venv/bin/python" -m pytest -m "slow" "$@" ;;
  check-gpu) shift; exec "$root/.venv/bin/python" -m pytest -m "gpu" "$@" ;;
  check-nix-real) shift; exec "$root/.venv/bin/python" -m pytest -m nixreal tests/nix "$@" ;;
  nix-seed) shift; exec "$root/.venv/bin/python" "$root/tests/nix/realinputs.py" seed "$@" ;;
  host-packages) shift; exec python3 "$root/scripts/host_packages.py" "$@" ;;
  bench) shift; exec "$root/.venv/bin/python" "$root/bench/bench.py" "$@" ;;
  bench-stack) shift; exec "$root/.venv/bin/python" "$root/bench/stack_bench.py" "$@" ;;
  bench-bsopt) shift; exec "$root/.venv/bin/python" "$root/bench/bsopt_bench.py" "$@" ;;
  bench-cluster) shift; exec "$root/.venv/bin/python" "$root/bench/cluster_bench.py" "$@" ;;
  *) exec "$root/.venv/bin/fxstack" "$@" ;;
esac
