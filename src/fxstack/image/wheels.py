"""Locked distribution files: fetched once into a content-addressed cache, verified, installed.

Downloads go through pip (the client this machine is configured for) restricted by hash
to exactly the file the lock names; the file is verified again here before it enters the
cache, so a mismatch stops the build with the package named and nothing installed.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ..errors import FxError
from .settings import INTERPRETER, SCRIPTS, SITE_PACKAGES, SOURCE_DATE_EPOCH, TREE_VERSION
from .store import sha256_file

if TYPE_CHECKING:  # the lock's modules import `packaging`: a rebuild from known layers needs neither
    from ..lock.poetry_lock import LockedFile


class DistCache:
    """`<root>/<sha256>/<filename>`: one directory per verified file."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, f: LockedFile) -> Path:
        return self.root / f.sha256 / f.filename

    def has(self, f: LockedFile) -> bool:
        return self.path(f).is_file()

    def fetch(self, files: Iterable[LockedFile], log: Callable[[str], None],
              lock_path: Path) -> None:
        missing = sorted({f for f in files if not self.has(f)})
        if not missing:
            return
        log(f"downloading {len(missing)} locked files")
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=self.root) as tmp:
            req = Path(tmp) / "requirements.txt"
            req.write_text("".join(f"{f.name}=={f.version} --hash=sha256:{f.sha256}\n" for f in missing))
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "off",
                   "--disable-pip-version-check", "--dest", str(Path(tmp) / "out"),
                   "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                   "--abi", "abi3", "--abi", "none", "-r", str(req)]
            from ..lock.target import platforms

            for plat in platforms():
                cmd += ["--platform", plat]
            cmd += ["--platform", "any"]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            output = []
            assert proc.stdout is not None
            for line in proc.stdout:
                output.append(line.rstrip())
                if line.startswith(("Collecting", "  Downloading", "Saved")):
                    log("  " + line.strip())
            if proc.wait() != 0:
                tail = "\n".join(l for l in output[-20:] if "WARNING: Location" not in l)
                hint = ("a file's hash differs from poetry.lock: the index serves different bytes "
                        "than were locked; investigate before re-locking"
                        if "do not match the hashes" in tail.lower() or "hash" in tail.lower()
                        else "check the network to the package index")
                raise FxError(f"downloading locked files failed:\n{tail}", where=str(lock_path), hint=hint)
            for f in missing:
                got = Path(tmp) / "out" / f.filename
                if not got.is_file():
                    raise FxError(f"pip did not deliver {f.filename}", where=f"{lock_path}: {f.name}")
                actual = sha256_file(got)
                if actual != f.sha256:
                    raise FxError(f"{f.filename} has sha256 {actual}, the lock says {f.sha256}",
                                  where=f"{lock_path}: {f.name}",
                                  hint="the file differs from what was locked; nothing was installed")
                final = self.path(f)
                staged = Path(tmp) / f.sha256
                staged.mkdir()
                os.replace(got, staged / f.filename)
                if not final.parent.exists():
                    os.replace(staged, final.parent)


def build_pure_wheel(sdist: Path, f: LockedFile, out_root: Path, log: Callable[[str], None]) -> Path:
    """Turn a pure-Python sdist into a wheel on the host (cached by the sdist's hash).

    Only pure-Python results are accepted: the images carry no compilers and we do not ship
    host-compiled binaries.
    """
    final_dir = out_root / f.sha256
    if final_dir.is_dir():
        found = list(final_dir.glob("*.whl"))
        if found:
            return found[0]
    log(f"building wheel from sdist {f.filename} (pure Python)")
    out_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".sdist-", dir=out_root) as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
                               "--wheel-dir", str(Path(tmp) / "out"), str(sdist)],
                              capture_output=True, text=True,
                              env={**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)})
        wheels = list((Path(tmp) / "out").glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise FxError(f"building a wheel from {f.filename} failed:\n{proc.stdout[-1500:]}",
                          where=f.name, hint="pin a version of it that ships a wheel")
        if not wheels[0].name.endswith("-none-any.whl"):
            raise FxError(f"{f.filename} builds a platform wheel ({wheels[0].name})", where=f.name,
                          hint="pin a version that ships a manylinux wheel; images never compile")
        staged = Path(tmp) / "final"
        staged.mkdir()
        os.replace(wheels[0], staged / wheels[0].name)
        out_root.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final_dir)
    return next(final_dir.glob("*.whl"))


def install_tree(wheel: Path, key: str, trees_root: Path, *, compile_bytecode: bool) -> Path:
    """Install one wheel into its own tree (laid out as the image's /), cached by `key`.

    Scripts get the image's interpreter in their shebang; byte-code, when compiled, uses
    hash-based .pyc files, whose bytes do not depend on file times.
    """
    final = trees_root / key
    if final.is_dir():
        return final
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    trees_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tree-", dir=trees_root) as tmp:
        root = Path(tmp) / "root"
        site = root / SITE_PACKAGES
        scheme = {"purelib": site, "platlib": site, "scripts": root / SCRIPTS,
                  "headers": root / "usr/local/include/python3.11" / wheel.name.split("-")[0],
                  "data": root / "usr/local"}
        dest = SchemeDictionaryDestination({k: str(v) for k, v in scheme.items()},
                                           interpreter=INTERPRETER, script_kind="posix",
                                           bytecode_optimization_levels=())
        with WheelFile.open(wheel) as source:
            install(source, dest, {"INSTALLER": b"fxstack\n"})
        _prune_tests(site)
        if not as_shipped(wheel.name):
            _prune_build_files(site)
            _strip_shared_objects(root)
        if compile_bytecode:
            _compile(site)
        os.replace(root, final)
    return final


def _prune_tests(site: Path) -> None:
    """Drop packages' own test suites (`<pkg>/**/tests/`): never imported at run time, and
    a quarter of the bytes of the scientific stack. Their RECORD lines stay; nothing in an
    image uninstalls packages."""
    if not site.is_dir():
        return
    for top in site.iterdir():
        if not top.is_dir() or top.name.endswith((".dist-info", ".data")):
            continue
        for tests in sorted(top.rglob("tests"), reverse=True):
            if tests.is_dir() and not tests.is_symlink():
                shutil.rmtree(tests)


# Files only a compiler reads: C/C++ headers and sources, Cython sources and declarations,
# static archives. An image runs code; it never builds an extension against these.
BUILD_ONLY_SUFFIXES = (".h", ".hh", ".hpp", ".hxx", ".c", ".cc", ".cpp", ".cxx", ".pxd", ".pyx",
                       ".pxi", ".a")
# Wheels installed exactly as shipped: they compile code at run time with their own headers
# (torch.utils.cpp_extension, Triton's kernel JIT, cffi), and the CUDA libraries are not
# ours to rewrite, nor testable on this machine.
AS_SHIPPED = ("torch-", "triton-", "nvidia_", "nvidia-", "cffi-", "bitsandbytes-")


def as_shipped(wheel_name: str) -> bool:
    return wheel_name.lower().startswith(AS_SHIPPED)


def _prune_build_files(site: Path) -> None:
    if not site.is_dir():
        return
    for path in sorted(site.rglob("*")):
        if path.suffix in BUILD_ONLY_SUFFIXES and path.is_file() and not path.is_symlink() \
                and ".dist-info" not in path.parts[len(site.parts)]:
            path.unlink()


def _is_elf64(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == b"\x7fELF\x02\x01"  # 64-bit little-endian: the only target


def _segments_aligned(path: Path) -> bool:
    """glibc's check before it maps a library: every PT_LOAD segment's file offset and
    address agree modulo its alignment ("ELF load command address/offset not page-aligned")."""
    with open(path, "rb") as f:
        data = f.read()
    _, _, _, _, _, phoff, _, _, _, phentsize, phnum = struct.unpack_from("<16sHHIQQQIHHH", data)
    for i in range(phnum):
        p_type, _, offset, vaddr, _, _, _, align = struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type == 1 and align > 1 and (vaddr - offset) % align:
            return False
    return True


def _strip_shared_objects(root: Path) -> None:
    """`strip --strip-unneeded` on every ELF file, as Debian's dh_strip does for shared
    libraries: it drops the static symbol table and debug sections, never what the dynamic
    loader reads. uvloop ships 12 MB of debug info, pyarrow 25 MB of symbol tables.

    Libraries that auditwheel grafted in with patchelf (numpy.libs, scipy.libs, ...) can come
    out of strip with load segments glibc refuses to map; each stripped file is checked the
    way glibc checks it, and one that fails is put back as shipped.
    The output depends only on the input and the pinned binutils."""
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink() or not _is_elf64(path):
            continue
        original = path.read_bytes()
        proc = subprocess.run(["strip", "--strip-unneeded", "--remove-section=.comment",
                               "--remove-section=.note", str(path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise FxError(f"strip failed on {path.relative_to(root)}: {proc.stderr.strip()}",
                          hint="is binutils installed? (scripts/bootstrap.sh installs it)")
        if not _segments_aligned(path):
            path.write_bytes(original)


_COMPILE = """
import py_compile, sys, warnings
from pathlib import Path
warnings.filterwarnings("ignore", category=SyntaxWarning)
site, prefix = Path(sys.argv[1]), sys.argv[2]
for path in sorted(site.rglob("*.py")):
    try:
        py_compile.compile(str(path), dfile=prefix + str(path.relative_to(site)), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except (py_compile.PyCompileError, SyntaxError, ValueError):
        pass  # e.g. Python-2-only test fixtures shipped in a wheel: left as source
"""


def _compile(site: Path) -> None:
    """Byte-compile one tree in a fresh interpreter. marshal writes a back-reference only for
    objects that something else still references, so compiled in the builder's own process the
    .pyc bytes depended on what it had done before (which trees it compiled, what it imported):
    sklearn's _spectral_embedding.pyc came out 27,911 bytes in one clean build and 27,896 in
    another. A new process per tree, with a fixed hash seed, makes them a function of the tree."""
    subprocess.run([sys.executable, "-s", "-c", _COMPILE, str(site), "/" + SITE_PACKAGES + "/"],
                   check=True, env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0",
                                    "LC_ALL": "C.UTF-8"})


def tree_key(f: LockedFile, wheel: Path, compile_bytecode: bool) -> str:
    return f"{f.sha256[:32]}-{wheel.stem[:60]}-t{TREE_VERSION}{'c' if compile_bytecode else ''}"


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
