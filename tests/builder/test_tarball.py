"""Layer tars are byte-identical whatever the host's clock, umask and paths."""

import io
import os
import tarfile

import pytest

from fxstack.image.settings import SOURCE_DATE_EPOCH
from fxstack.image.tarball import merge_entries, tree_entries, write_tar

pytestmark = pytest.mark.unit


def make_tree(root, mtime, umask):
    old = os.umask(umask)
    try:
        (root / "pkg" / "sub").mkdir(parents=True)
        (root / "pkg" / "b.py").write_text("print('b')\n")
        (root / "pkg" / "a.py").write_text("print('a')\n")
        (root / "pkg" / "sub" / "tool").write_text("#!/bin/sh\n")
        os.chmod(root / "pkg" / "sub" / "tool", 0o750)
        os.symlink("a.py", root / "pkg" / "link.py")
    finally:
        os.umask(old)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (mtime, mtime), follow_symlinks=False)


def tar_bytes(root):
    buf = io.BytesIO()
    write_tar(merge_entries([tree_entries(root / "pkg", "/app/pkg")]), buf)
    return buf.getvalue()


def test_same_content_same_bytes(tmp_path):
    one, two = tmp_path / "host-one", tmp_path / "elsewhere" / "two"
    one.mkdir(), two.mkdir(parents=True)
    make_tree(one, 1_000_000, 0o022)
    make_tree(two, 2_000_000_000, 0o077)
    assert tar_bytes(one) == tar_bytes(two)


def test_entries_sorted_owned_by_root_fixed_mtime(tmp_path):
    make_tree(tmp_path, 123, 0o022)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(tmp_path))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names[:2] == ["app", "app/pkg"]  # parents are present
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    assert all(m.mtime == SOURCE_DATE_EPOCH for m in members)
    modes = {m.name: m.mode for m in members}
    assert modes["app/pkg/sub/tool"] == 0o755 and modes["app/pkg/a.py"] == 0o644
    assert str(tmp_path) not in tar_bytes(tmp_path).decode("latin-1")


def test_content_change_changes_bytes(tmp_path):
    make_tree(tmp_path, 123, 0o022)
    before = tar_bytes(tmp_path)
    (tmp_path / "pkg" / "a.py").write_text("print('A')\n")
    assert tar_bytes(tmp_path) != before
