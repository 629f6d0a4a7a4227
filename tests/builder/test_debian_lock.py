"""images/debian.lock, the .deb cache and the mirror configuration, without the network."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fxstack.errors import FxError
from fxstack.image.apt_mirror import configured_sources
from fxstack.image.deb_cache import DebCache
from fxstack.image.debian_lock import (FORMAT, Change, DebianLock, LockedDeb, LockEntry, changes,
                                       drift_table)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SHA = "ab" * 32


def test_the_committed_lock_pins_every_package_by_version_arch_and_sha256():
    lock = DebianLock(ROOT / "images" / "debian.lock")
    assert json.loads((ROOT / "images" / "debian.lock").read_text())["format"] == FORMAT
    assert lock.entries
    for key, entry in lock.entries.items():
        assert entry.resolved, key
        unverified = [d.name for d in entry.debs() if not d.verified]
        assert not unverified, f"{key}: {unverified}"
        # Essential packages are locked like the rest (the libpam downgrade came from leaving them out).
        assert {"libpam0g", "libc6", "base-files", "dpkg"} <= set(entry.packages), key


def test_every_entry_of_the_committed_lock_belongs_to_a_spec():
    from fxstack.image.builder import Builder

    builder = Builder(root=ROOT, log=lambda _: None)
    in_use = {builder._recipe(s).lock_key for s in builder.specs.values() if s.portable}
    assert set(DebianLock(ROOT / "images" / "debian.lock").entries) == in_use


def test_retain_drops_the_entries_no_spec_uses(tmp_path):
    lock = DebianLock(tmp_path / "debian.lock")
    for key in ("a", "b"):
        lock.record(key, LockEntry({key: LockedDeb(key, "1", "all", SHA)}, "20261129T000000Z"))
    assert lock.retain({"a"}) == ["b"]
    assert set(DebianLock(tmp_path / "debian.lock").entries) == {"a"}


def test_a_format_1_lock_reads_as_pins_without_hashes_and_is_written_as_format_2(tmp_path):
    path = tmp_path / "debian.lock"
    path.write_text(json.dumps({"redis-server tini": {"tini": "0.19.0-1+b3", "libc6": "2.36-9+deb12u14"}}))
    lock = DebianLock(path)
    entry = lock.entry("redis-server tini")
    assert entry.versions() == {"tini": "0.19.0-1+b3", "libc6": "2.36-9+deb12u14"}
    assert not any(d.verified for d in entry.debs())
    lock.write()
    again = DebianLock(path)
    assert json.loads(path.read_text())["format"] == FORMAT
    assert again.entry("redis-server tini").versions() == entry.versions()


def test_round_trip_and_bad_entries_name_the_file_and_package(tmp_path):
    path = tmp_path / "debian.lock"
    lock = DebianLock(path)
    lock.record("tini", LockEntry({"tini": LockedDeb("tini", "0.19.0-1+b3", "amd64", SHA)}, "20261129T000000Z"))
    assert DebianLock(path).entry("tini") == lock.entry("tini")
    doc = json.loads(path.read_text())
    del doc["rootfs"]["tini"]["packages"]["tini"]["sha256"]
    path.write_text(json.dumps(doc))
    with pytest.raises(FxError, match=r"debian.lock: rootfs \[tini\]: tini.*needs version, arch and sha256"):
        DebianLock(path)
    doc["rootfs"]["tini"]["packages"]["tini"]["sha256"] = "not-a-hash"
    path.write_text(json.dumps(doc))
    with pytest.raises(FxError, match="is not 64 hex digits"):
        DebianLock(path)
    path.write_text("{")
    with pytest.raises(FxError, match="not valid JSON"):
        DebianLock(path)


def test_changes_and_the_drift_table():
    old = LockEntry({"libpam0g": LockedDeb("libpam0g", "1.5.2-6+deb12u2", "amd64", SHA),
                     "gone": LockedDeb("gone", "1", "all", SHA),
                     "same": LockedDeb("same", "2", "all", SHA)})
    new = LockEntry({"libpam0g": LockedDeb("libpam0g", "1.5.2-6+deb12u3", "amd64", SHA),
                     "fresh": LockedDeb("fresh", "3", "all", SHA),
                     "same": LockedDeb("same", "2", "all", SHA)})
    rows = changes(old, new, {("libpam0g", "1.5.2-6+deb12u3"): "bookworm-security"})
    assert rows == [Change("fresh", None, "3"), Change("gone", "1", None),
                    Change("libpam0g", "1.5.2-6+deb12u2", "1.5.2-6+deb12u3", "bookworm-security")]
    table = drift_table(rows).splitlines()
    assert table[0].split() == ["package", "locked", "now", "from"]
    assert table[3].split() == ["libpam0g", "1.5.2-6+deb12u2", "1.5.2-6+deb12u3", "bookworm-security"]
    assert "(removed)" in table[2] and "(none)" in table[1]


def tiny_deb(tmp_path: Path, name: str, version: str) -> Path:
    tree = tmp_path / f"{name}-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@t>\n"
        "Essential: yes\nDescription: test\n a test package\n")
    out = tmp_path / f"{name}.deb"
    subprocess.run(["dpkg-deb", "-b", str(tree), str(out)], check=True, capture_output=True)
    return out


def test_the_deb_cache_keeps_files_by_sha256_and_writes_a_repository_of_exactly_them(tmp_path):
    cache = DebCache(tmp_path / "debs")
    digest, name, version, arch = cache.add(tiny_deb(tmp_path, "demo", "1:2.0-1"))
    assert (name, version, arch) == ("demo", "1:2.0-1", "all")
    deb = LockedDeb(name, version, arch, digest)
    assert cache.has(deb) and deb.filename == "demo_1%3a2.0-1_all.deb"
    repo = tmp_path / "repo"
    cache.write_repo([deb], repo)
    packages = (repo / "Packages").read_text()
    assert "Essential: yes" in packages and f"SHA256: {digest}" in packages
    assert f"Filename: ./{deb.filename}" in packages and (repo / deb.filename).is_file()
    release = (repo / "Release").read_text()
    assert "Codename: bookworm" in release and "Packages" in release
    # A cached file that no longer has its hash is refused and dropped, never installed.
    cache.path(digest).write_bytes(b"tampered")
    with pytest.raises(FxError, match="no longer has its sha256"):
        cache.write_repo([deb], tmp_path / "repo2")
    assert not cache.has(deb)


def test_the_mirror_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("FXSTACK_DEBIAN_MIRROR",
                       "deb http://snapshot.debian.org/archive/debian/{snapshot} bookworm main; "
                       "deb http://snapshot.debian.org/archive/debian-security/{snapshot} bookworm-security main")
    text, suffix = configured_sources("20261129T000000Z")
    assert suffix == ".list" and text.splitlines() == [
        "deb http://snapshot.debian.org/archive/debian/20261129T000000Z bookworm main",
        "deb http://snapshot.debian.org/archive/debian-security/20261129T000000Z bookworm-security main"]
    with pytest.raises(FxError, match="FXSTACK_DEBIAN_SNAPSHOT"):
        configured_sources("")
    sources = tmp_path / "m.sources"
    sources.write_text("Types: deb\nURIs: http://example.invalid/debian\nSuites: bookworm\nComponents: main\n")
    monkeypatch.setenv("FXSTACK_DEBIAN_MIRROR", str(sources))
    assert configured_sources() == (sources.read_text(), ".sources")
