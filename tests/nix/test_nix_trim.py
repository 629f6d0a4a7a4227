"""An image spec's `trim` on the Nix path (nix/trim.nix) drops the same files as the portable
builder (fxstack.image.trim): the script the flake gives every package of fx-fastapi's
environments, run with bash over a site-packages tree, leaves exactly what Trim keeps."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import fxnix

sys.path.insert(0, str(fxnix.ROOT / "src"))
from fxstack.image.trim import Trim, read_profile  # noqa: E402
from fxstack.specs import load_specs  # noqa: E402

pytestmark = [pytest.mark.unit, fxnix.needs_nix]

SO = "cpython-311-x86_64-linux-gnu.so"
NOT_IMPORTED = ["pygments/__pycache__/lexer.cpython-311.pyc", "pygments/lexer.py",
                "pyarrow/libarrow_flight.so.1700", "pyarrow/_flight." + SO, "pyarrow/libarrow.so.1700",
                "pyarrow/libarrow_python_flight.so", "feast/ui/build/index.html",
                "feast/ui/build/static/js/main.js", "mlflow/pypi_package_index.json",
                "sklearn/tree/_tree." + SO, "scipy/odr/__odrpack." + SO, "numpy/core/_simd." + SO,
                "pkg/__pycache__/mod.cpython-311.opt-1.pyc", "pkg-1.0.dist-info/RECORD"]


def trim_scripts(flake, package: str) -> dict[tuple[str, ...], str]:
    """{groups: postFixup} of `package` in every environment that trims it."""
    found = {}
    for drv in flake.drvs.values():
        if drv["fn"] != "poetry2nix.mkPoetryPackages":
            continue
        for overlay in drv["args"]["overrides"]:
            for o in overlay["overridden"]:
                if o.get("package") == package and "find . -type f" in json.dumps(o.get("values", {})):
                    found[tuple(drv["args"]["groups"])] = o["values"]["postFixup"]
    return found


def test_the_nix_trim_drops_what_the_portable_builder_drops(flake, snapshot, tmp_path):
    spec = load_specs(snapshot)["fx-fastapi"]
    profile_path = snapshot / spec.trim["profile"]
    trim = Trim.from_spec(spec.trim, snapshot)
    scripts = trim_scripts(flake, "numpy")
    # fx-fastapi's own environments (its base's groups and its own), and only those
    assert set(scripts) == {("base",), ("base", "fastapi")}, set(scripts)
    assert set(trim_scripts(flake, "pyarrow")) == {("base", "fastapi")}
    imported = sorted(read_profile(profile_path))
    paths = set(NOT_IMPORTED)
    for p in imported[::7]:  # imported modules, their byte-code, and a neighbour not imported
        paths.add(p)
        if p.endswith(".py"):
            head, _, name = p.rpartition("/")
            paths.add(f"{head + '/' if head else ''}__pycache__/{name[:-3]}.cpython-311.pyc")
            paths.add(f"{head + '/' if head else ''}__pycache__/{name[:-3]}_never.cpython-311.pyc")
    out = tmp_path / "out"
    site = out / "lib/python3.11/site-packages"
    for p in paths:
        (site / p).parent.mkdir(parents=True, exist_ok=True)
        (site / p).write_text(p)
    script = scripts[("base", "fastapi")]
    store_profile = next(w for w in script.split() if w.endswith("-fx-fastapi.imports"))
    subprocess.run(["bash", "-euc", script.replace(store_profile, str(profile_path))],
                   env={"out": str(out), "PATH": "/usr/bin:/bin"}, check=True)
    left = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    assert left == {p for p in paths if not trim.drops(p)}
    assert "pyarrow/libarrow.so.1700" in left and "pygments/lexer.py" in left
    assert "pyarrow/libarrow_flight.so.1700" not in left and "feast/ui/build/index.html" not in left
