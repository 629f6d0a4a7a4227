#!/usr/bin/env bash
# Make this machine able to build and run the stack: Debian packages (pinned), the harness's
# virtual environment (hash-checked from poetry.lock), and a running Docker daemon.
# Idempotent: each step is skipped when already done. Run as root on Debian 12.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Debian 12 versions this project is tested with (see README, "Pins").
APT_PACKAGES=(
  docker.io=20.10.24+dfsg1-1+deb12u1+b6
  mmdebstrap=1.3.5-7
  eatmydata=130-2
  shellcheck=0.9.0-1
  docker-registry=2.8.2+ds1-1
  nix-bin=2.8.0-1.1+b1
  postgresql-15=15.18-0+deb12u1
  redis-server=5:7.0.15-1~deb12u10
  wrk=4.1.0-3+b2
  binutils=2.40-2
  # bsopt's scraper tests drive Debian's Chromium on the host too (the image has its own)
  chromium=156.0.8078.108-1~deb12u1
)

say() { printf '[bootstrap] %s\n' "$*" >&2; }

missing=()
for spec in "${APT_PACKAGES[@]}"; do
  name=${spec%%=*}; want=${spec#*=}
  have=$(dpkg-query -W -f='${Version}' "$name" 2>/dev/null || true)
  [ "$have" = "$want" ] || missing+=("$spec")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { say "need root to apt-get install: ${missing[*]}"; exit 1; }
  say "installing Debian packages: ${missing[*]}"
  apt-get update -q >/dev/null
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/fx-apt.log 2>&1; then
    # The mirror may have moved past a pinned version: fall back to its current one, loudly.
    say "pinned versions unavailable (see /tmp/fx-apt.log); installing the mirror's current versions"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]%%=*}" >>/tmp/fx-apt.log 2>&1
  fi
  # The packaged services must not hold the ports the stack publishes or tests use.
  for svc in redis-server postgresql; do systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true; done
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
  tsum=$(cat requirements/tests.txt requirements/tests-torch.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$tstamp" 2>/dev/null)" != "$tsum" ]; then
    say "installing the services' test dependencies into .venv"
    pipi -r requirements/tests-torch.txt
    pipi --no-deps --require-hashes -r requirements/tests.txt
    echo "$tsum" > "$tstamp"
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
