"""Golden digests for the portable builder: a tiny spec, lock and wheel (all written by this
test, the wheel stored uncompressed so its bytes depend on nothing installed) built into an
image by the builder's own package-layer, app-layer and OCI code; its layer, config and
manifest digests are written below, per version of the builder.

Image bytes may change only together with the builder's version constants
(src/fxstack/image/settings.py: BUILDER_VERSION, TREE_VERSION), which key every layer cache:
bytes that change under unchanged constants would leave old cache entries in use, and two
machines would build different images from one lock. A change to how images are made
therefore fails here until the constants are bumped AND a new entry is added to GOLDEN for
them (the failure prints it). Entries are never edited: a new pair of constants, a new entry.

Only the Debian root filesystem is stood in for (a fixed one-file layer: mmdebstrap needs the
mirror); .pyc files are compiled as in images, by this interpreter (CPython 3.11, as CI's).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import pytest

from fxstack.image import oci, settings
from fxstack.image.builder import Builder
from fxstack.image.tarball import Entry, bytes_opener, write_tar
from fxstack.lock.pyproject import content_hash

pytestmark = pytest.mark.unit

# (BUILDER_VERSION, TREE_VERSION) -> the fixture image's digests with those constants.
GOLDEN: dict[tuple[str, str], dict[str, object]] = {
    ("2", "5"): {
        "layers": [
            "sha256:f9c0ba2db2e1a762dfdd967a99bd32df52ece07dce6218abb50931070218855b",  # packages
            "sha256:a4fd4d8e17dce284f668daa40b06c59c01c8b958bd6217d566c523c7ca6bcbd6",  # app
        ],
        "config": "sha256:ede35503a9f3ff39bb58893a3654c6c5289ad8f9afa6e22adc038fd39a0c6fae",
        "manifest": "sha256:0a3f2a895ed727e984ba74fbaaf3cfb8d5a5bc93bec39b840a617fe4942a56e1",
    },
}

WHEEL_FILES = {
    "goldpkg/__init__.py": b'"""A package for the golden-digest test."""\n\nVALUE = 42\n',
    "goldpkg/tests/test_it.py": b"def test_value():\n    assert True\n",
    "goldpkg/_native.c": b"int gold(void) { return 42; }\n",
    "goldpkg-1.0.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: goldpkg\nVersion: 1.0.0\n",
    "goldpkg-1.0.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: fxstack-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    "goldpkg-1.0.0.dist-info/entry_points.txt": b"[console_scripts]\ngold = goldpkg:VALUE\n",
}


def _wheel() -> bytes:
    """A valid wheel (RECORD with every file's hash), stored, fixed times: the same bytes
    everywhere."""
    records = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in WHEEL_FILES.items():
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{name},sha256={digest},{len(data)}")
            z.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
        records.append("goldpkg-1.0.0.dist-info/RECORD,,")
        z.writestr(zipfile.ZipInfo("goldpkg-1.0.0.dist-info/RECORD", (2020, 1, 1, 0, 0, 0)),
                   "\n".join(records) + "\n")
    return buf.getvalue()


WHEEL_NAME = "goldpkg-1.0.0-py3-none-any.whl"

SPEC = """\
name = "golden"
description = "the golden-digest fixture"
kind = "python"
groups = ["gold"]
user = "fxuser"
uid = 1000
workdir = "/app"
app = [{ src = "app", dest = "/app/golden" }]
cmd = ["python3", "-m", "golden"]
ports = [8000]

[packages]
debian = ["python3"]
nixpkgs = ["python311"]

[env]
PYTHONPATH = "/app"
"""


def _fixture(root: Path, wheel: bytes) -> None:
    (root / "images").mkdir(parents=True)
    (root / "images" / "golden.toml").write_text(SPEC)
    (root / "app").mkdir()
    (root / "app" / "__main__.py").write_text("from goldpkg import VALUE\nprint(VALUE)\n")
    poetry = {"name": "golden", "version": "0", "description": "", "authors": [],
              "dependencies": {"python": "~3.11"},
              "group": {"gold": {"dependencies": {"goldpkg": "1.0.0"}}}}
    (root / "pyproject.toml").write_text(
        '[tool.poetry]\nname = "golden"\nversion = "0"\ndescription = ""\nauthors = []\n\n'
        '[tool.poetry.dependencies]\npython = "~3.11"\n\n'
        '[tool.poetry.group.gold.dependencies]\ngoldpkg = "1.0.0"\n')
    sha = hashlib.sha256(wheel).hexdigest()
    (root / "poetry.lock").write_text(
        '[[package]]\nname = "goldpkg"\nversion = "1.0.0"\ndescription = ""\noptional = false\n'
        'python-versions = ">=3.8"\nfiles = [\n'
        f'    {{file = "{WHEEL_NAME}", hash = "sha256:{sha}"}},\n]\n\n'
        '[metadata]\nlock-version = "2.0"\npython-versions = "~3.11"\n'
        f'content-hash = "{content_hash(poetry)}"\n')


def build_fixture(tmp: Path) -> dict[str, object]:
    root, state = tmp / "repo", tmp / "state"
    wheel = _wheel()
    _fixture(root, wheel)
    builder = Builder(root=root, state=state, log=lambda _: None)
    spec = builder.specs["golden"]
    files = builder.lock.files_for(spec.groups)
    for f in files:  # the distribution cache as a download would leave it
        target = builder.dists.path(f)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(wheel)
    buf = io.BytesIO()
    os_release = b"ID=debian\n"
    write_tar([Entry("etc", "dir", 0o755),
               Entry("etc/os-release", "file", 0o644, size=len(os_release), opener=bytes_opener(os_release))], buf)
    rootfs = builder.store.put_bytes(buf.getvalue())
    packages, _ = builder._package_layer(files)
    app = builder._app_layer(spec)
    layers = [oci.Layer(rootfs[0], rootfs[1], "debian: python3"), packages, app]
    manifest, _ = oci.write_image(builder.store, spec, layers)
    config = oci.read_manifest(builder.store, manifest)["config"]["digest"]
    return {"layers": [l.digest for l in layers[1:]], "config": config, "manifest": manifest}


def test_fixture_image_has_the_golden_digests(tmp_path):
    if sys.version_info[:2] != (3, 11):
        pytest.skip("the golden .pyc bytes are CPython 3.11's (the images' and CI's Python)")
    got = build_fixture(tmp_path)
    constants = (settings.BUILDER_VERSION, settings.TREE_VERSION)
    entry = json.dumps({"layers": got["layers"], "config": got["config"], "manifest": got["manifest"]}, indent=4)
    if constants not in GOLDEN:
        pytest.fail(f"settings.py has BUILDER_VERSION={constants[0]!r}, TREE_VERSION={constants[1]!r}, which"
                    f" GOLDEN does not record: add\n    {constants!r}: {entry},\nto {__file__}")
    assert got == GOLDEN[constants], (
        f"the builder makes different bytes with unchanged BUILDER_VERSION={constants[0]!r} and"
        f" TREE_VERSION={constants[1]!r}: bump the one for what changed (settings.py), then add an entry"
        f" for the new constants to GOLDEN (never edit an existing one). This build gave:\n{entry}")


def test_same_fixture_same_digests_twice(tmp_path):
    assert build_fixture(tmp_path / "a") == build_fixture(tmp_path / "b")
