"""Trim rules (fxstack.image.trim): which files of installed packages an image leaves out,
and the spec field that declares them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fxstack.errors import FxError
from fxstack.image.settings import SITE_PACKAGES
from fxstack.image.tarball import tree_entries
from fxstack.image.trim import Trim, read_profile, source_of
from fxstack.specs import load_specs

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit

SO = "cpython-311-x86_64-linux-gnu.so"


def make_trim(tmp_path: Path, profile: list[str], drop: list[dict]) -> Trim:
    (tmp_path / "profile").write_text("# comment\n" + "".join(f"{p}\n" for p in profile))
    return Trim.from_spec({"profile": "profile", "drop": drop}, tmp_path)


def test_a_pyc_stands_for_its_source():
    assert source_of("pkg/sub/__pycache__/mod.cpython-311.pyc") == "pkg/sub/mod.py"
    assert source_of("__pycache__/six.cpython-311.pyc") == "six.py"
    assert source_of("pkg/__pycache__/mod.cpython-311.opt-1.pyc") == "pkg/mod.py"
    assert source_of(f"pkg/_ext.{SO}") == f"pkg/_ext.{SO}"


def test_rules_drop_what_they_match_and_keep_what_the_profile_names(tmp_path):
    trim = make_trim(tmp_path, ["pkg/used.py", f"lib/_loaded.{SO}"], [
        {"files": ["__pycache__/*.pyc", "*/__pycache__/*.pyc"], "reason": "r", "unless_imported": True},
        {"files": [f"lib/*.{SO}"], "reason": "r", "unless_imported": True},
        {"files": ["pyarrow/libarrow_flight.so*"], "reason": "r", "unless_imported": False},
    ])
    assert not trim.drops("pkg/__pycache__/used.cpython-311.pyc")
    assert trim.drops("pkg/__pycache__/unused.cpython-311.pyc")
    assert trim.drops("__pycache__/six.cpython-311.pyc")
    assert not trim.drops("pkg/unused.py")                      # the source always stays
    assert not trim.drops(f"lib/_loaded.{SO}")
    assert trim.drops(f"lib/deep/_never.{SO}")                  # `*` crosses `/`
    assert trim.drops("pyarrow/libarrow_flight.so.1700")
    assert not trim.drops("pyarrow/libarrow.so.1700")


def test_the_key_follows_the_rules_and_the_profile(tmp_path):
    drop = [{"files": ["*/__pycache__/*.pyc"], "reason": "r", "unless_imported": True}]
    one = make_trim(tmp_path, ["a.py"], drop).key
    assert make_trim(tmp_path, ["a.py"], drop).key == one
    assert make_trim(tmp_path, ["a.py", "b.py"], drop).key != one
    assert make_trim(tmp_path, ["a.py"], [dict(drop[0], unless_imported=False)]).key != one
    # the reason documents a rule; it does not change the bytes
    assert make_trim(tmp_path, ["a.py"], [dict(drop[0], reason="other")]).key == one


def test_a_trimmed_tree_lists_every_directory_and_only_the_kept_files(tmp_path):
    tree = tmp_path / "tree"
    site = tree / SITE_PACKAGES
    for rel in ["pkg/__init__.py", "pkg/__pycache__/__init__.cpython-311.pyc", "pkg/cold.py",
                "pkg/__pycache__/cold.cpython-311.pyc", f"pkg/_hot.{SO}", f"pkg/_cold.{SO}",
                "pkg/ui/build/index.js", "pkg-1.0.dist-info/RECORD"]:
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(rel)
    (tree / "usr/local/bin").mkdir(parents=True)
    (tree / "usr/local/bin/tool").write_text("#!/usr/bin/python3.11\n")
    trim = make_trim(tmp_path, ["pkg/__init__.py", f"pkg/_hot.{SO}"], [
        {"files": ["*/__pycache__/*.pyc"], "reason": "r", "unless_imported": True},
        {"files": [f"pkg/*.{SO}"], "reason": "r", "unless_imported": True},
        {"files": ["pkg/ui/build/*"], "reason": "r"},
    ])
    kept = {e.path[len(SITE_PACKAGES) + 1:] if e.path.startswith(SITE_PACKAGES + "/") else e.path: e.kind
            for e in tree_entries(tree, "", skip=trim.skipper(tree))}
    assert {p for p, k in kept.items() if k == "file"} == {
        "pkg/__init__.py", "pkg/__pycache__/__init__.cpython-311.pyc", "pkg/cold.py",
        f"pkg/_hot.{SO}", "pkg-1.0.dist-info/RECORD", "usr/local/bin/tool"}
    assert kept["pkg/ui/build"] == "dir"                        # a directory is never dropped whole


def test_fx_fastapi_declares_each_drop_with_a_reason_and_a_current_profile():
    spec = load_specs(ROOT)["fx-fastapi"]
    assert spec.trim and spec.trim["profile"] == "images/profiles/fx-fastapi.imports"
    assert all(len(d["reason"]) > 20 for d in spec.trim["drop"])
    imported = read_profile(ROOT / spec.trim["profile"])
    # what every request runs is in it: the app's libraries, the model's, the features'
    for path in ["fastapi/applications.py", "uvicorn/workers.py", "gunicorn/arbiter.py",
                 "xgboost/core.py", "mlflow/xgboost/__init__.py", "feast/feature_store.py",
                 f"pyarrow/lib.{SO}", "redis/client.py", "prometheus_client/multiprocess.py"]:
        assert path in imported, path
    trim = Trim.from_spec(spec.trim, ROOT)
    # nothing the profile names is ever dropped
    assert not [p for p in imported if trim.drops(p)]
    assert trim.drops("pyarrow/_flight." + SO) and trim.drops("pyarrow/libarrow_flight.so.1700")
    assert load_specs(ROOT)["fx-mlflow"].trim is None


@pytest.mark.parametrize("trim, message", [
    ({"drop": [{"files": ["x/*"]}]}, "must be a table"),
    ({"drop": [{"files": ["x/*"], "reason": " "}]}, "must be a table"),
    ({"drop": [{"files": [], "reason": "r"}]}, "must be a table"),
    ({"profile": "images/profiles/nowhere.imports"}, "does not exist"),
    ({"drop": [{"files": ["x/*"], "reason": "r", "unless_imported": True}]}, "needs `profile`"),
])
def test_a_bad_trim_table_names_the_spec_and_what_to_fix(tmp_path, trim, message):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "images", repo / "images")
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    (repo / "src").symlink_to(ROOT / "src")
    path = repo / "images" / "fx-mlflow.toml"
    lines = [f"[trim]"]
    if "profile" in trim:
        lines.append(f'profile = "{trim["profile"]}"')
    for d in trim.get("drop", []):
        lines.append("[[trim.drop]]")
        lines += [f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v).replace(chr(39), chr(34))}"
                  for k, v in d.items()]
    path.write_text(path.read_text() + "\n" + "\n".join(lines) + "\n")
    with pytest.raises(FxError) as exc:
        load_specs(repo)
    assert message in str(exc.value) and "fx-mlflow.toml" in str(exc.value)
