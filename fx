#!/usr/bin/env bash
# Entry point on a fresh Debian 12 machine: bootstrap what is missing, then run the command.
#   ./fx up            build what is missing, load it into Docker, start the CPU stack, wait until healthy
#   ./fx check         the default test suite (unit + integration; not slow, not gpu)
#   ./fx bench | bench-stack   the benchmarks (builder vs Dockerfiles; the running stack)
#   ./fx <anything>    any other fxstack command (build, load, status, logs, down, test, specs ...)
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in check*) export FX_WITH_TESTS=1 ;; esac
"$root/scripts/bootstrap.sh"
export PATH="$root/.venv/bin:$PATH"
cd "$root"
case "${1:-}" in
  check) shift; exec "$root/.venv/bin/python" -m pytest -m "not slow and not gpu" "$@" ;;
  check-slow) shift; exec "$root/.venv/bin/python" -m pytest -m "slow" "$@" ;;
  check-gpu) shift; exec "$root/.venv/bin/python" -m pytest -m "gpu" "$@" ;;
  bench) shift; exec "$root/.venv/bin/python" "$root/bench/bench.py" "$@" ;;
  bench-stack) shift; exec "$root/.venv/bin/python" "$root/bench/stack_bench.py" "$@" ;;
  *) exec "$root/.venv/bin/fxstack" "$@" ;;
esac
