#!/usr/bin/env python3
"""The Debian packages this host needs, held to `requirements/debian-host.lock`.

The same policy as the images' `images/debian.lock`, for the packages the project asks for on
the host (apt picks their dependencies):
- a package is satisfied when its installed version is the locked one, or the version a
  re-resolve already recorded for it (the drift file) while the lock still says what it said;
- a missing locked version installs from the `.deb` cache (`$FXSTACK_CACHE/debs/<sha256>.deb`,
  shared with the image builder) when the file is there, else from the mirror, held to the
  locked sha256 and kept in the cache;
- a locked version the mirror no longer serves and the cache lacks is re-resolved to the
  mirror's candidate with a table of what moved, recorded in the drift file; under `--frozen`
  (or FXSTACK_FROZEN=1) the same table stops the bootstrap instead;
- `update` takes the mirror's candidates into the lock and forgets the drift.

scripts/bootstrap.sh checks the lock in bash (one dpkg-query) and runs this only when
something is not satisfied, so a warm `./fx` never calls apt. Standard library only: it runs
before the harness's virtual environment exists.

Settings: FXSTACK_HOST_LOCK (the lock), FXSTACK_HOST_STATE (the machine-wide drift file's
directory, /var/lib/fxstack: installed packages belong to the machine, not to a checkout),
FXSTACK_CACHE / FXSTACK_STATE (the .deb cache, as for images), FXSTACK_HOST_APT_SOURCES (a
sources.list to resolve against instead of the system's, e.g. a snapshot mirror; its index is
kept under the cache).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DRIFT_NAME = "host-debian.drift"
# The packaged services must not hold the ports the stack publishes or tests use.
SERVICES_TO_STOP = ("redis-server", "postgresql")


class HostError(Exception):
    """What went wrong, where, and what to do (printed as the bootstrap's last lines)."""

    def __init__(self, message: str, where: str = "", hint: str = ""):
        super().__init__(message)
        self.message, self.where, self.hint = message, where, hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return text + (f"\n  hint: {self.hint}" if self.hint else "")


def say(text: str) -> None:
    for line in text.splitlines():
        print(f"[bootstrap] {line}", file=sys.stderr)


# -- settings ---------------------------------------------------------------------------------

def lock_path() -> Path:
    return Path(os.environ.get("FXSTACK_HOST_LOCK") or ROOT / "requirements" / "debian-host.lock")


def drift_path() -> Path:
    return Path(os.environ.get("FXSTACK_HOST_STATE") or "/var/lib/fxstack") / DRIFT_NAME


def cache_dir() -> Path:
    if os.environ.get("FXSTACK_CACHE"):
        return Path(os.environ["FXSTACK_CACHE"])
    return Path(os.environ.get("FXSTACK_STATE") or ROOT / ".fxstack") / "cache"


def frozen_env() -> bool:
    return os.environ.get("FXSTACK_FROZEN", "") not in ("", "0")


# -- the lock and the drift file ------------------------------------------------------------------

@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    arch: str
    sha256: str


_SHA256 = re.compile(r"[0-9a-f]{64}")


def read_lock(path: Path) -> list[Pin]:
    """`name version arch sha256` per line; `#` lines say why a package is there."""
    pins = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise HostError("no host lock", where=str(path), hint="restore it from git") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 4 or not _SHA256.fullmatch(fields[3]):
            raise HostError("expected `name version arch sha256` (64 hex digits)", where=f"{path}:{number}",
                            hint="restore the line from git, or rewrite the lock with `./fx host-packages --update`")
        pins.append(Pin(*fields))
    return pins


def write_lock(path: Path, pins: dict[str, Pin]) -> None:
    """Rewrite the entries in place; comments and order stay as committed."""
    out = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields and not line.lstrip().startswith("#") and fields[0] in pins:
            p = pins[fields[0]]
            line = f"{p.name} {p.version} {p.arch} {p.sha256}"
        out.append(line)
    atomic_write(path, "\n".join(out) + "\n")


@dataclass(frozen=True)
class Drift:
    name: str
    locked: str
    now: str
    suite: str
    recorded: str


def read_drift(path: Path) -> dict[str, Drift]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    rows = {}
    for line in lines:
        fields = line.split("\t")
        if len(fields) == 5 and not line.startswith("#"):
            rows[fields[0]] = Drift(*fields)
    return rows


def write_drift(path: Path, rows: dict[str, Drift]) -> None:
    # Tab-separated so that bootstrap.sh reads it with `read` and no parser.
    body = "# package\tlocked\tinstalled instead\tfrom\trecorded (written by scripts/host_packages.py)\n"
    body += "".join(f"{d.name}\t{d.locked}\t{d.now}\t{d.suite}\t{d.recorded}\n" for d in sorted(rows.values(), key=lambda d: d.name))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, body)


def atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def drift_table(rows: list[Drift]) -> str:
    width = max([len(r.name) for r in rows] + [7])
    lines = [f"  {'package':{width}}  {'locked':28}  {'now':28}  from"]
    lines += [f"  {r.name:{width}}  {r.locked:28}  {r.now:28}  {r.suite}" for r in rows]
    return "\n".join(lines)


# -- what dpkg has and what apt offers --------------------------------------------------------------

def installed(names: list[str]) -> dict[str, str]:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Version}\t${db:Status-Abbrev}\n", *names],
                          capture_output=True, text=True)
    have = {}
    for line in proc.stdout.splitlines():
        name, version, status = (line.split("\t") + ["", ""])[:3]
        if status.startswith("ii"):
            have[name] = version
    return have


def satisfied(pin: Pin, have: dict[str, str], drift: dict[str, Drift], frozen: bool) -> bool:
    """The rule bootstrap.sh applies in bash, kept equal to it by tests/host/."""
    now = have.get(pin.name)
    if now == pin.version:
        return True
    d = drift.get(pin.name)
    return not frozen and d is not None and d.locked == pin.version and d.now == now


class Apt:
    """apt-get and apt-cache against the system's sources, or FXSTACK_HOST_APT_SOURCES' (with
    an index of their own, so the system's lists are neither read nor replaced)."""

    def __init__(self, cache: Path):
        self.opts: list[str] = []
        sources = os.environ.get("FXSTACK_HOST_APT_SOURCES")
        if sources:
            state = cache / "host-apt"
            (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
            (state / "archives" / "partial").mkdir(parents=True, exist_ok=True)
            self.opts = [f"-oDir::Etc::SourceList={Path(sources).resolve()}", "-oDir::Etc::SourceParts=-",
                         f"-oDir::State::Lists={state / 'lists'}", f"-oDir::Cache={state}",
                         f"-oDir::Cache::Archives={state / 'archives'}"]
        self.updated = False

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        proc = subprocess.run([tool, *self.opts, *args], capture_output=True, text=True, env=env)
        if check and proc.returncode != 0:
            raise HostError(f"`{tool} {' '.join(args)}` failed:\n{proc.stderr.strip()[-2000:]}",
                            hint="see the message above; a network or mirror problem clears on a later ./fx")
        return proc

    def update(self) -> None:
        if not self.updated:
            say("apt-get update")
            self.run("apt-get", "update", "-q")
            self.updated = True

    def offers(self, name: str) -> list[tuple[str, str]]:
        """(version, suite) the sources serve, newest first."""
        proc = self.run("apt-cache", "madison", name, check=False)
        rows = []
        for line in proc.stdout.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) >= 3 and parts[0] == name and "Packages" in parts[2]:
                rows.append((parts[1], parts[2].split()[1] if len(parts[2].split()) > 1 else parts[2]))
        return rows

    def candidate(self, name: str) -> str | None:
        proc = self.run("apt-cache", "policy", name, check=False)
        m = re.search(r"Candidate:\s*(\S+)", proc.stdout)
        return m.group(1) if m and m.group(1) != "(none)" else None

    def fetch(self, name: str, version: str, into: Path) -> Path:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        proc = subprocess.run(["apt-get", *self.opts, "download", "-q", f"{name}={version}"],
                              capture_output=True, text=True, cwd=into, env=env)
        files = list(into.glob("*.deb"))
        if proc.returncode != 0 or len(files) != 1:
            raise HostError(f"could not download {name} {version}: {proc.stderr.strip()[-1000:]}",
                            hint="run ./fx again once the mirror answers")
        return files[0]

    def install(self, targets: list[str]) -> None:
        say("apt-get install " + " ".join(Path(t).name if t.startswith("/") else t for t in targets))
        log = Path(tempfile.gettempdir()) / "fx-apt.log"
        proc = self.run("apt-get", "install", "-y", "-q", "--no-install-recommends", "--allow-downgrades",
                        *targets, check=False)
        log.write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise HostError(f"apt-get install failed:\n{proc.stderr.strip()[-2000:]}", where=str(log))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def deb_field(path: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "--field", str(path), field], capture_output=True, text=True,
                          check=True).stdout.strip()


class DebCache:
    """`<sha256>.deb`, the layout the image builder's cache uses, so either can fill it."""

    def __init__(self, root: Path):
        self.root = root / "debs"

    def path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.deb"

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file() and sha256_file(self.path(sha256)) == sha256

    def add(self, file: Path) -> str:
        digest = sha256_file(file)
        target = self.path(digest)
        if not target.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{digest}.tmp")
            shutil.copyfile(file, tmp)
            os.replace(tmp, target)
        return digest


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# -- the commands -------------------------------------------------------------------------------------

def ensure(frozen: bool) -> int:
    lock, dfile = lock_path(), drift_path()
    pins = read_lock(lock)
    drift = read_drift(dfile)
    have = installed([p.name for p in pins])
    todo = [p for p in pins if not satisfied(p, have, drift, frozen)]
    if not todo:
        return 0
    if os.geteuid() != 0:
        raise HostError("need root to install " + ", ".join(f"{p.name}={p.version}" for p in todo),
                        where=str(lock), hint="run ./fx as root once")
    cache, apt = DebCache(cache_dir()), Apt(cache_dir())
    targets: list[str] = []
    moved: list[Drift] = []
    with tempfile.TemporaryDirectory(prefix="fx-host-debs-") as tmp:
        for pin in todo:
            if cache.has(pin.sha256):
                say(f"{pin.name} {pin.version}: from the .deb cache")
                targets.append(str(cache.path(pin.sha256)))
                continue
            apt.update()
            if pin.version in {v for v, _ in apt.offers(pin.name)}:
                targets.append(str(take(apt, cache, pin, Path(tmp), lock)))
                continue
            now = apt.candidate(pin.name)
            if now is None:
                raise HostError(f"{pin.name}: the mirror serves no version of it", where=str(lock),
                                hint="check the package name, or point FXSTACK_HOST_APT_SOURCES at a mirror that has it")
            suite = dict(apt.offers(pin.name)).get(now, "")
            moved.append(Drift(pin.name, pin.version, now, suite, utc_now()))
            if have.get(pin.name) != now:
                targets.append(f"{pin.name}={now}")
        if moved:
            table = drift_table(moved)
            if frozen:
                raise HostError(f"the mirror no longer serves {len(moved)} locked package(s) and the .deb cache "
                                f"lacks them:\n{table}", where=str(lock),
                                hint="run without --frozen / FXSTACK_FROZEN=1 to re-resolve, or `./fx host-packages "
                                     "--update` to take the mirror's versions into the lock")
            say(f"the mirror moved: {len(moved)} locked package(s) re-resolved (recorded in {dfile}):\n{table}\n"
                f"`./fx host-packages --update` writes them into {lock.name}")
        if targets:
            apt.install(targets)
            stop_services()
    for pin in todo:
        drift.pop(pin.name, None)
    drift.update({d.name: d for d in moved})
    write_drift(dfile, drift)
    return 0


def take(apt: Apt, cache: DebCache, pin: Pin, tmp: Path, lock: Path) -> Path:
    """Download the locked file, hold it to the lock's sha256, keep it in the cache."""
    into = tmp / pin.name
    into.mkdir()
    file = apt.fetch(pin.name, pin.version, into)
    digest = sha256_file(file)
    if digest != pin.sha256:
        raise HostError(f"{pin.name} {pin.version}: the mirror served sha256 {digest}, the lock pins {pin.sha256}",
                        where=str(lock), hint="the file changed under the same version: find out why before "
                                              "trusting it; `./fx host-packages --update` re-resolves")
    cache.add(file)
    return cache.path(digest)


def stop_services() -> None:
    for svc in SERVICES_TO_STOP:
        if subprocess.run(["systemctl", "disable", "--now", svc], capture_output=True).returncode != 0:
            subprocess.run(["service", svc, "stop"], capture_output=True)


def update() -> int:
    """Take the mirror's candidate of every locked package into the lock (installing it)."""
    lock, dfile = lock_path(), drift_path()
    pins = read_lock(lock)
    cache, apt = DebCache(cache_dir()), Apt(cache_dir())
    apt.update()
    new: dict[str, Pin] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="fx-host-debs-") as tmp:
        for pin in pins:
            now = apt.candidate(pin.name) or pin.version
            if now == pin.version and cache.has(pin.sha256):
                continue
            into = Path(tmp) / pin.name
            into.mkdir()
            file = apt.fetch(pin.name, now, into)
            digest = cache.add(file)
            new[pin.name] = Pin(pin.name, now, deb_field(file, "Architecture"), digest)
            if (now, digest) != (pin.version, pin.sha256):
                rows.append(Drift(pin.name, pin.version, now, dict(apt.offers(pin.name)).get(now, ""), ""))
        have = installed([p.name for p in pins])
        targets = [str(cache.path(p.sha256)) for p in new.values() if have.get(p.name) != p.version]
        if targets:
            apt.install(targets)
            stop_services()
    if rows:
        write_lock(lock, new)
        say(f"{lock} rewritten:\n{drift_table(rows)}")
    else:
        say(f"{lock}: every package is the mirror's candidate already")
    drift = {n: d for n, d in read_drift(dfile).items() if n not in {p.name for p in pins}}
    write_drift(dfile, drift)
    return 0


def status() -> int:
    pins, drift = read_lock(lock_path()), read_drift(drift_path())
    have = installed([p.name for p in pins])
    width = max(len(p.name) for p in pins)
    print(f"{'package':{width}}  {'locked':28}  {'installed':28}  state")
    for p in pins:
        state = ("ok" if have.get(p.name) == p.version else
                 f"drift recorded {drift[p.name].recorded}" if satisfied(p, have, drift, False) else "missing")
        print(f"{p.name:{width}}  {p.version:28}  {have.get(p.name, '-'):28}  {state}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="host-packages", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="status", choices=("ensure", "status"),
                        help="ensure: install what the lock asks for and is missing; status: a table (default)")
    parser.add_argument("--update", action="store_true", help="take the mirror's versions into the lock")
    parser.add_argument("--frozen", action="store_true", help="refuse to re-resolve (also FXSTACK_FROZEN=1)")
    args = parser.parse_args(argv)
    try:
        if args.update:
            return update()
        if args.command == "ensure":
            return ensure(args.frozen or frozen_env())
        return status()
    except HostError as exc:
        say(str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
