#!/usr/bin/env bash
# Make this machine able to build and run the stack: Debian packages (pinned), the harness's
# virtual environment (hash-checked from poetry.lock), and a running Docker daemon.
# Idempotent: each step is skipped when already done. Run as root on Debian 12.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

say() { printf '[bootstrap] %s\n' "$*" >&2; }

# Debian packages, held to requirements/debian-host.lock by the rule of scripts/host_packages.py:
# the installed version is the locked one, or the one a re-resolve recorded in the drift file
# for this locked version (not under FXSTACK_FROZEN=1). Checked here with one dpkg-query, so a
# warm ./fx starts no Python and no apt; anything else goes to host_packages.py, under a lock
# so that two ./fx started together do not both run apt.
host_lock=${FXSTACK_HOST_LOCK:-$root/requirements/debian-host.lock}
host_drift=${FXSTACK_HOST_STATE:-/var/lib/fxstack}/host-debian.drift
host_packages_ok() {
  local -A want=() accept=() have=()
  local name version _rest locked now status
  while read -r name version _rest; do
    [[ -z $name || $name == \#* ]] && continue
    want[$name]=$version
  done <"$host_lock"
  if [[ ${FXSTACK_FROZEN:-} == "" || ${FXSTACK_FROZEN:-} == 0 ]] && [[ -r $host_drift ]]; then
    while IFS=$'\t' read -r name locked now _rest; do
      [[ $name == \#* ]] && continue
      [[ ${want[$name]:-} == "$locked" ]] && accept[$name]=$now
    done <"$host_drift"
  fi
  while IFS=$'\t' read -r name version status; do
    [[ $status == ii* ]] && have[$name]=$version
  done < <(dpkg-query -W -f='${Package}\t${Version}\t${db:Status-Abbrev}\n' "${!want[@]}" 2>/dev/null)
  for name in "${!want[@]}"; do
    [[ ${have[$name]:-} == "${want[$name]}" ]] && continue
    [[ -n ${have[$name]:-} && ${have[$name]} == "${accept[$name]:-}" ]] && continue
    return 1
  done
}
if ! host_packages_ok; then
  mkdir -p /run/lock 2>/dev/null || true
  flock /run/lock/fxstack-host-packages.lock python3 "$root/scripts/host_packages.py" ensure
fi

venv="$root/.venv"
pipi() { "$venv/bin/pip" install -q --disable-pip-version-check "$@"; }
stamp="$venv/.harness.sha256"
want_sum=$(cat requirements/harness.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want_sum" ]; then
  say "creating the harness virtual environment in .venv"
  python3 -m venv "$venv"
  pipi --require-hashes -r requirements/harness.txt
  pipi --no-deps -e .
  echo "$want_sum" > "$stamp"
fi
# The services' own dependencies, for the tests that run their code on this host. torch is
# the CPU build (this machine's local file); everything else is hash-checked from poetry.lock.
if [ "${FX_WITH_TESTS:-0}" = 1 ]; then
  tstamp="$venv/.tests.sha256"
  tsum=$(cat requirements/tests.txt requirements/tests-torch.txt requirements/cluster.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$tstamp" 2>/dev/null)" != "$tsum" ]; then
    say "installing the services' test dependencies into .venv"
    pipi -r requirements/tests-torch.txt
    pipi --no-deps --require-hashes -r requirements/tests.txt
    pipi --no-deps --require-hashes -r requirements/cluster.txt
    echo "$tsum" > "$tstamp"
  fi
  # schemathesis for the contract tier, in its own environment: it needs pytest>=8.4 and
  # Werkzeug 3, the harness and the services pin older ones (requirements/contract.txt)
  cvenv="$venv/contract"; cstamp="$cvenv/.contract.sha256"
  csum=$(sha256sum requirements/contract.txt | cut -d' ' -f1)
  if [ "$(cat "$cstamp" 2>/dev/null)" != "$csum" ]; then
    say "installing schemathesis into .venv/contract"
    python3 -m venv "$cvenv"
    "$cvenv/bin/pip" install -q --disable-pip-version-check --require-hashes -r requirements/contract.txt
    echo "$csum" > "$cstamp"
  fi
fi

if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { say "the Docker daemon is not running and I am not root to start it"; exit 1; }
  # --userland-proxy=false: published ports are forwarded by iptables alone. Otherwise every
  # connection to 127.0.0.1:<port> goes through a docker-proxy process, which took 44% of a
  # core at 4,000 req/s on the inference API and was most of its p99 latency on 2 cores.
  # A daemon.json that sets the option itself wins (dockerd refuses it twice).
  flags=()
  grep -qs '"userland-proxy"' /etc/docker/daemon.json || flags+=(--userland-proxy=false)
  say "starting dockerd ${flags[*]} (log: /var/log/fx-dockerd.log)"
  (setsid dockerd "${flags[@]}" >/var/log/fx-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { say "dockerd did not start: tail /var/log/fx-dockerd.log"; tail -20 /var/log/fx-dockerd.log >&2; exit 1; }
fi
