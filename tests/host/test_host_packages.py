"""The host's Debian packages against requirements/debian-host.lock, through the real
scripts/bootstrap.sh, real apt and real dpkg.

A local apt repository (`FXSTACK_HOST_APT_SOURCES`, with an index of its own) serves a probe
package built here in two versions; the test changes what it serves, as a mirror moves. apt-get
and apt-cache are reached through a PATH entry that logs each call and runs the real tool, so
"a warm bootstrap calls no apt" is observed, not assumed. The probe is installed on this host
and purged afterwards.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = "fxstack-host-probe"
sys.path.insert(0, str(ROOT / "scripts"))
import host_packages  # noqa: E402


# -------------------------------------------------------------------------------- unit: the lock

@pytest.mark.unit
def test_committed_lock_parses_and_names_each_package_once():
    pins = host_packages.read_lock(ROOT / "requirements" / "debian-host.lock")
    names = [p.name for p in pins]
    assert len(names) == len(set(names)) and {"docker.io", "mmdebstrap", "chromium"} <= set(names)
    assert all(p.arch in ("amd64", "all") for p in pins)


@pytest.mark.unit
def test_a_malformed_lock_line_names_the_file_and_line(tmp_path):
    lock = tmp_path / "host.lock"
    lock.write_text("# why\nwrk 4.1.0-3+b2 amd64\n")
    with pytest.raises(host_packages.HostError) as err:
        host_packages.read_lock(lock)
    assert f"{lock}:2" in str(err.value) and "sha256" in str(err.value)


@pytest.mark.unit
def test_recorded_drift_counts_only_for_the_version_locked_when_it_was_recorded():
    pin = host_packages.Pin("p", "1.0", "all", "0" * 64)
    drift = {"p": host_packages.Drift("p", "1.0", "1.1", "./", "t")}
    assert host_packages.satisfied(pin, {"p": "1.1"}, drift, frozen=False)
    assert not host_packages.satisfied(pin, {"p": "1.1"}, drift, frozen=True)
    assert not host_packages.satisfied(host_packages.Pin("p", "0.9", "all", "0" * 64), {"p": "1.1"}, drift, False)
    assert not host_packages.satisfied(pin, {}, drift, frozen=False)


# ---------------------------------------------------------------- integration: real apt and dpkg

def _build_deb(work: Path, version: str) -> Path:
    tree = work / f"tree-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {PROBE}\nVersion: {version}\nArchitecture: all\nMaintainer: fxstack tests <tests@invalid>\n"
        "Description: probe for the host package lock tests\n")
    (tree / "usr" / "share" / PROBE).mkdir(parents=True)
    (tree / "usr" / "share" / PROBE / "version").write_text(version + "\n")
    out = work / f"{PROBE}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(out)], check=True,
                   capture_output=True)
    return out


class Mirror:
    """A flat apt repository whose served versions the test sets."""

    def __init__(self, root: Path, debs: dict[str, Path]):
        self.root, self.debs = root, debs
        root.mkdir()
        self.sources = root.parent / "sources.list"
        self.sources.write_text(f"deb [trusted=yes] file:{root} ./\n")

    def serve(self, *versions: str) -> None:
        for old in self.root.glob("*.deb"):
            old.unlink()
        paragraphs = []
        for version in versions:
            src = self.debs[version]
            shutil.copyfile(src, self.root / src.name)
            control = subprocess.run(["dpkg-deb", "--field", str(src)], check=True, capture_output=True,
                                     text=True).stdout.rstrip("\n")
            paragraphs.append(f"{control}\nFilename: ./{src.name}\nSize: {src.stat().st_size}\n"
                              f"SHA256: {sha256(src)}\n")
        packages = "\n".join(paragraphs).encode()
        (self.root / "Packages").write_bytes(packages)
        (self.root / "Release").write_text(
            f"Suite: probe\nCodename: probe\nArchitectures: all\nSHA256:\n"
            f" {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def probe_version() -> str | None:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Version} ${db:Status-Abbrev}", PROBE],
                          capture_output=True, text=True)
    version, _, status = proc.stdout.partition(" ")
    return version if status.startswith("ii") else None


def purge_probe() -> None:
    subprocess.run(["dpkg", "--purge", PROBE], capture_output=True)


@pytest.fixture
def host(tmp_path):
    """(run, mirror, lock, debs): run() is scripts/bootstrap.sh with this test's lock, drift
    file, .deb cache and mirror; it returns the process and the apt calls it made."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("needs root and apt (Debian) to install the probe package")
    purge_probe()
    debs = {v: _build_deb(tmp_path, v) for v in ("1.0", "1.1")}
    mirror = Mirror(tmp_path / "mirror", debs)
    lock = tmp_path / "debian-host.lock"
    lock.write_text(f"# the probe\n{PROBE} 1.0 all {sha256(debs['1.0'])}\n")
    spy, log = tmp_path / "spy", tmp_path / "apt-calls.log"
    spy.mkdir()
    for tool in ("apt-get", "apt-cache"):
        real = shutil.which(tool)
        (spy / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexec {real} "$@"\n')
        (spy / tool).chmod(0o755)
    env = dict(os.environ, FXSTACK_HOST_LOCK=str(lock), FXSTACK_HOST_STATE=str(tmp_path / "state"),
               FXSTACK_CACHE=str(tmp_path / "cache"), FXSTACK_HOST_APT_SOURCES=str(mirror.sources),
               PATH=f"{spy}:{os.environ['PATH']}")
    env.pop("FXSTACK_FROZEN", None)

    def run(*args: str, frozen: bool = False, script: str = "scripts/bootstrap.sh"):
        log.write_text("")
        e = dict(env, FXSTACK_FROZEN="1") if frozen else env
        argv = [str(ROOT / script), *args] if script.endswith(".sh") else ["python3", str(ROOT / script), *args]
        proc = subprocess.run(argv, env=e, capture_output=True, text=True, timeout=300)
        return proc, [line for line in log.read_text().splitlines() if line]

    yield run, mirror, lock, debs
    purge_probe()


@pytest.mark.integration
def test_the_locked_version_installs_once_and_then_no_apt_runs(host, tmp_path):
    run, mirror, lock, debs = host
    mirror.serve("1.0", "1.1")   # the candidate is 1.1; the lock says 1.0
    proc, calls = run()
    assert proc.returncode == 0, proc.stderr
    assert probe_version() == "1.0" and any("install" in c for c in calls)
    assert (tmp_path / "cache" / "debs" / f"{sha256(debs['1.0'])}.deb").is_file()
    proc, calls = run()
    assert proc.returncode == 0, proc.stderr
    assert calls == [] and PROBE not in proc.stderr


@pytest.mark.integration
def test_a_moved_mirror_is_re_resolved_once_recorded_refused_when_frozen_and_taken_by_update(host, tmp_path):
    run, mirror, lock, debs = host
    mirror.serve("1.1")          # 1.0 is gone and no cache has it
    proc, calls = run(frozen=True)
    assert proc.returncode != 0 and PROBE in proc.stderr and "1.1" in proc.stderr
    assert "FXSTACK_FROZEN" in proc.stderr and probe_version() is None

    proc, calls = run()
    assert proc.returncode == 0, proc.stderr
    assert "the mirror moved" in proc.stderr
    table_row = next(line for line in proc.stderr.splitlines() if PROBE in line and "1.0" in line)
    assert "1.1" in table_row
    assert probe_version() == "1.1"
    drift = (tmp_path / "state" / "host-debian.drift").read_text()
    assert f"{PROBE}\t1.0\t1.1\t" in drift

    proc, calls = run()          # recorded: nothing to do
    assert proc.returncode == 0 and calls == [] and PROBE not in proc.stderr
    proc, calls = run(frozen=True)   # recorded drift is not the lock: frozen still refuses
    assert proc.returncode != 0 and PROBE in proc.stderr

    proc, calls = run("--update", script="scripts/host_packages.py")
    assert proc.returncode == 0, proc.stderr
    assert f"{PROBE} 1.1 all {sha256(debs['1.1'])}" in lock.read_text()
    assert lock.read_text().startswith("# the probe\n")
    assert PROBE not in (tmp_path / "state" / "host-debian.drift").read_text()
    proc, calls = run(frozen=True)
    assert proc.returncode == 0 and calls == [], proc.stderr


@pytest.mark.integration
def test_the_deb_cache_installs_a_version_the_mirror_dropped(host, tmp_path):
    run, mirror, lock, debs = host
    mirror.serve("1.0")
    assert run()[0].returncode == 0 and probe_version() == "1.0"
    purge_probe()
    mirror.serve("1.1")
    proc, calls = run(frozen=True)   # frozen: the cache is enough, nothing is re-resolved
    assert proc.returncode == 0, proc.stderr
    assert probe_version() == "1.0" and "the mirror moved" not in proc.stderr
    assert not any("update" in c for c in calls)


@pytest.mark.integration
def test_a_changed_file_under_the_locked_version_stops_the_install(host, tmp_path):
    run, mirror, lock, debs = host
    mirror.serve("1.0")
    lock.write_text(f"{PROBE} 1.0 all {'0' * 64}\n")
    proc, _ = run()
    assert proc.returncode != 0 and "the lock pins" in proc.stderr and str(lock) in proc.stderr
    assert probe_version() is None
