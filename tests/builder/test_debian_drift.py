"""The Debian lock against a mirror that moves: real mmdebstrap, real apt, a real local repository.

The repository is built here from real .deb files (the locked `hostname`, an Essential:yes
package like libpam, repacked with a higher version), with real Packages/Release indexes,
and layered over the real Debian mirror through FXSTACK_DEBIAN_MIRROR. Adding the repacked
file is Debian publishing a security update; emptying the repository is the mirror dropping
a version.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fxstack.errors import FxError
from fxstack.image.apt_mirror import HOST_SOURCES, configured_sources, state_dir_for
from fxstack.image.builder import cache_dir
from fxstack.image.deb_cache import DebCache
from fxstack.image.debian import RootfsBuilder, RootfsRecipe
from fxstack.image.debian_lock import DebianLock, LockedDeb
from fxstack.image.store import BlobStore, KeyedCache
from fxstack.paths import state_dir

pytestmark = pytest.mark.integration

RECIPE = RootfsRecipe(("tini",))
BUMP = "+fxtest1"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    if shutil.which("mmdebstrap") is None:
        pytest.fail("mmdebstrap is not installed: scripts/bootstrap.sh installs it")
    work = tmp_path_factory.mktemp("drift")
    seed_index(work, configured_sources()[0], configured_sources()[0])
    return work


def seed_index(work: Path, built_with: str, sources: str) -> None:
    """The mirror's index as this run's image builds fetched it (from `built_with`, one download
    per run), as the start of the index for `sources` here: apt then only asks the mirror whether
    its files changed (and reads the local repository in full). Without one (these tests alone on
    a new machine) apt downloads the index as it would anyway."""
    session = state_dir_for(cache_dir(state_dir()), built_with) / "lists"
    lists = state_dir_for(work / "apt", sources) / "lists"
    if not session.is_dir() or (lists.is_dir() and any(lists.glob("*InRelease"))):
        return
    lists.mkdir(parents=True, exist_ok=True)
    for entry in session.iterdir():
        if entry.is_file() and entry.name != "lock":
            shutil.copy2(entry, lists / entry.name)


def builder(work: Path, lock: Path, cache: str, logs: list[str], **kw) -> RootfsBuilder:
    """A machine with its own .deb cache and layer records (`cache`); the mirror's index is
    shared between them only to save downloading it again."""
    return RootfsBuilder(BlobStore(work / "oci"), KeyedCache(work / cache / "layers"), DebianLock(lock),
                         work / cache, log=logs.append, apt_root=work / "apt", **kw)


@pytest.fixture(scope="module")
def base(work):
    """One package set resolved against the real mirror as it is: (lock text, record)."""
    lock = work / "base.lock"
    record = builder(work, lock, "cache-base", []).build(RECIPE)
    return lock.read_text(), record


def repacked(original: Path, out_dir: Path, bump: str) -> Path:
    """The same package with a higher version: what a security update looks like to apt."""
    tree = out_dir / "tree"
    subprocess.run(["dpkg-deb", "-R", str(original), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    lines = [f"{line}{bump}" if line.startswith("Version:") else line for line in control.read_text().splitlines()]
    control.write_text("\n".join(lines) + "\n")
    out = out_dir / original.name.replace(".deb", f"{bump}.deb")
    subprocess.run(["dpkg-deb", "-b", str(tree), str(out)], check=True, capture_output=True)
    shutil.rmtree(tree)
    return out


def publish(repo: Path, debs: list[Path]) -> None:
    """A flat repository with real indexes; an empty list empties it."""
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    cache = DebCache(repo / ".cache")
    locked = []
    for deb in debs:
        digest, name, version, arch = cache.add(deb)
        locked.append(LockedDeb(name, version, arch, digest))
    cache.write_repo(locked, repo)
    shutil.rmtree(repo / ".cache")


@pytest.fixture()
def layered(work, monkeypatch):
    """FXSTACK_DEBIAN_MIRROR = the real mirror plus a local repository; returns the repo dir."""
    repo = work / "updates"
    publish(repo, [])
    sources = work / "layered.sources"
    sources.write_text(HOST_SOURCES.read_text().rstrip() + "\n\n"
                       f"Types: deb\nURIs: copy://{repo}\nSuites: ./\nTrusted: yes\n")
    built_with = configured_sources()[0]
    monkeypatch.setenv("FXSTACK_DEBIAN_MIRROR", str(sources))
    seed_index(work, built_with, configured_sources()[0])
    monkeypatch.setenv("FXSTACK_DEBIAN_INDEX_TTL", "0")
    return repo


def locked_hostname(work: Path, lock: Path, cache: str) -> tuple[LockedDeb, Path]:
    deb = DebianLock(lock).entry(RECIPE.lock_key).packages["hostname"]
    return deb, DebCache(work / cache / "debs").path(deb.sha256)


def test_a_newer_essential_package_on_the_mirror_changes_nothing_but_the_notice(work, base, layered):
    text, first = base
    lock = work / "a.lock"
    lock.write_text(text)
    hostname, original = locked_hostname(work, lock, "cache-base")
    assert first["packages"]["hostname"] == hostname.version and BUMP not in hostname.version

    publish(layered, [repacked(original, work, BUMP)])            # Debian publishes an update
    logs = []
    rb = builder(work, lock, "cache-a2", logs)                    # a new machine: no .deb cache
    again = rb.build(RECIPE)
    assert again["packages"]["hostname"] == hostname.version      # the locked one, no downgrade error
    assert again["digest"] == first["digest"]                     # same lock, same bytes
    assert lock.read_text() == text
    notice = rb.updates_notice()
    assert notice and f"hostname {hostname.version}{BUMP}" in notice and "--update-debian-lock" in notice


def test_a_locked_version_that_disappears(work, base, layered):
    lock = work / "b.lock"
    (work / "seed.lock").write_text(base[0])
    hostname0, original = locked_hostname(work, work / "seed.lock", "cache-base")
    # The lock is resolved while the mirror serves the update, so it pins the bumped version.
    publish(layered, [repacked(original, work, BUMP)])
    pinned = builder(work, lock, "cache-b1", []).build(RECIPE)
    assert pinned["packages"]["hostname"] == hostname0.version + BUMP
    pinned_text = lock.read_text()

    publish(layered, [])                                          # the mirror drops it

    # --frozen, no cache: stops, names the package, writes nothing.
    with pytest.raises(FxError) as err:
        builder(work, lock, "cache-b2", [], frozen=True).build(RECIPE)
    assert "hostname" in str(err.value) and hostname0.version + BUMP in str(err.value)
    assert "--frozen" in str(err.value)
    assert lock.read_text() == pinned_text

    # The machine that built before still has the file: it rebuilds the same bytes, frozen.
    cached = builder(work, lock, "cache-b1", [], frozen=True).build(RECIPE)
    assert cached["digest"] == pinned["digest"]

    # Default: re-resolve, print the table, rewrite the lock, go on.
    logs: list[str] = []
    moved = builder(work, lock, "cache-b3", logs).build(RECIPE)
    assert moved["packages"]["hostname"] == hostname0.version
    table = "\n".join(logs)
    assert f"hostname" in table and hostname0.version + BUMP in table and "bookworm" in table
    assert DebianLock(lock).entry(RECIPE.lock_key).packages["hostname"].version == hostname0.version


def test_a_lock_updating_build_equals_a_build_from_the_lock_it_wrote(work, base, monkeypatch):
    monkeypatch.delenv("FXSTACK_DEBIAN_MIRROR", raising=False)
    lock = work / "c.lock"
    lock.write_text(base[0])
    updated = builder(work, lock, "cache-c1", [], update_lock=True).build(RECIPE)
    from_lock = builder(work, lock, "cache-c2", []).build(RECIPE)
    assert updated["digest"] == from_lock["digest"]
    assert updated["packages"] == from_lock["packages"]
