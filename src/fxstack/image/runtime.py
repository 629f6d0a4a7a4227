"""What a root filesystem keeps for run time: Debian's install tools go once the install is done.

mmdebstrap's essential set is what it takes to *install* Debian packages: dpkg, perl-base and
debconf for maintainer scripts, util-linux, login, PAM and the libraries they pull in. None of
it runs in a container of ours, whose processes are tini, the service (python3, postgres,
redis-server, ...), the shell and coreutils their entrypoints and health checks use, and
whatever Airflow or Celery start through `sh`/`bash`.

So after the locked install a customize hook (`python -m fxstack.image.runtime ROOT POLICY`)
- purges the policy's candidate packages with the image's own dpkg, so the dpkg status the SBOM
  reads lists exactly what is left. A candidate stays when a package that stays depends on it
  (Depends/Pre-Depends, any alternative of a group), except through dependencies that only
  maintainer scripts use (debconf, dpkg, init-system-helpers, adduser, ucf) or edges the
  policy voids by pruning what needed them (libpython3.11-stdlib's `_dbm` and `nis` modules
  are the only users of libdb5.3 and libnsl2/libtirpc3/Kerberos). Essential packages are
  never declared as dependencies, so tools like perl-base and util-linux go unless a package
  that stays names them (EXCEPTIONS voids the few declared dependencies an image never loads:
  postgres' LLVM and Perl, prometheus' web UI assets);
- removes the policy's paths: files of packages that stay which nothing runs (glibc's iconv
  modules, the stdlib's test package, the openssl command line, tini-static, ...), and the
  dpkg database's maintainer scripts, symbols and triggers, which only dpkg reads.

The order of the purge matters (see LATE): dpkg and what its own maintainer scripts and start
need go after everything else.
Everything here is a pure function of the root filesystem, so two builds stay byte-identical.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

from .deb822 import paragraphs

# Dependencies that only maintainer scripts (install, upgrade, purge) use.
INSTALL_TIME = frozenset({"debconf", "debconf-2.0", "cdebconf", "dpkg", "init-system-helpers",
                          "adduser", "ucf"})
# Purged after the rest, each group in a dpkg run of its own and in this order: the maintainer
# scripts of the rest call debconf, perl and update-rc.d; tar's and diff's call dpkg's
# update-alternatives; dpkg goes in the last run with the libraries it runs on (it is loaded
# by then; --force-bad-path lets that run start without tar and diff on PATH).
LATE = (("init-system-helpers",), ("debconf",), ("perl-base", "tar", "diffutils"),
        ("libmd0", "libzstd1", "dpkg"))
LAST = tuple(p for group in LATE for p in group)

# Tools for installing and administering a system, and libraries only they link.
COMMON_DROP = (
    # install and administration tools (essential, so nothing declares a dependency on them)
    "util-linux", "util-linux-extra", "bsdutils", "login", "passwd", "adduser", "tar",
    "diffutils", "findutils", "ncurses-bin", "sysvinit-utils", "hostname",
    # PAM, audit and account databases (login, su, passwd)
    "libpam-modules", "libpam-modules-bin", "libpam-runtime", "libpam0g", "libaudit1",
    "libaudit-common", "libcap-ng0", "libsemanage2", "libsemanage-common", "libsepol2", "libdb5.3",
    # util-linux's mount, block-device and table libraries; systemd's and udev's client libraries
    "libmount1", "libblkid1", "libsmartcols1", "libsystemd0", "libudev1", "libgcrypt20",
    "libgpg-error0", "liblz4-1", "libzstd1", "libcap2", "libmd0",
    # NIS and Kerberos (only libnsl2, which only Python's `nis` module links)
    "libnsl2", "libtirpc3", "libtirpc-common", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3",
    "libkrb5support0", "libkeyutils1", "libcom-err2",
    # the package tools themselves, last
    "init-system-helpers", "debconf", "perl-base", "dpkg",
)

# Files of packages that stay, which nothing in an image runs. Globs, relative to the root.
COMMON_PRUNE = (
    # glibc's iconv modules: the UTF-8, UTF-16/32, UCS and ISO-8859-1 converters are built into
    # libc; Python, PostgreSQL, Redis and Go programs convert text themselves
    "usr/lib/x86_64-linux-gnu/gconv",
    # libc-bin's locale compiler, iconv and time-zone compilers (ldconfig, ldd, getent, locale stay)
    "usr/bin/localedef", "usr/bin/iconv", "usr/sbin/iconvconfig", "usr/sbin/zic", "usr/bin/zdump",
    "usr/bin/pldd",
    # the openssl command line and its Perl helpers (libssl3 and /usr/lib/ssl's paths stay)
    "usr/bin/openssl", "usr/bin/c_rehash", "usr/lib/ssl/misc",
    # entrypoints use the dynamically linked /usr/bin/tini
    "usr/bin/tini-static",
    # only dpkg reads these; the status, file lists and md5sums stay for scanners and the SBOM
    "var/lib/dpkg/info/*.preinst", "var/lib/dpkg/info/*.postinst", "var/lib/dpkg/info/*.prerm",
    "var/lib/dpkg/info/*.postrm", "var/lib/dpkg/info/*.config", "var/lib/dpkg/info/*.templates",
    "var/lib/dpkg/info/*.symbols", "var/lib/dpkg/info/*.shlibs", "var/lib/dpkg/info/*.triggers",
    "var/cache/debconf",
)

PY = "usr/lib/python3.11"
PYTHON_PRUNE = COMMON_PRUNE + (
    # CPython's own test support and extension modules built for its tests
    f"{PY}/test", f"{PY}/lib-dynload/_test*.so", f"{PY}/lib-dynload/_ctypes_test*.so",
    f"{PY}/lib-dynload/xxlimited*.so", f"{PY}/lib-dynload/_xxtestfuzz*.so",
    # help()'s topic texts, turtle graphics, the pure-Python decimal (the C _decimal is used)
    f"{PY}/pydoc_data", f"{PY}/turtle.py", f"{PY}/__pycache__/turtle.*", f"{PY}/_pydecimal.py",
    f"{PY}/__pycache__/_pydecimal.*",
    # Berkeley DB and NIS bindings: dbm falls back to dbm.dumb; NIS is deprecated since 3.11
    f"{PY}/lib-dynload/_dbm.*.so", f"{PY}/lib-dynload/nis.*.so",
)
# Dependencies the prune above voids (the modules that linked these libraries are gone).
PYTHON_VOID = (("libpython3.11-stdlib", "libdb5.3"), ("libpython3.11-stdlib", "libnsl2"),
               ("libpython3.11-stdlib", "libtirpc3"))


@dataclass(frozen=True)
class RuntimePolicy:
    """Which packages may go and which files go, after the locked install."""

    drop: tuple[str, ...] = ()
    prune: tuple[str, ...] = ()
    void: tuple[tuple[str, str], ...] = ()   # (package, dependency) edges to ignore

    def as_json(self) -> str:
        return json.dumps({"drop": self.drop, "prune": self.prune, "void": self.void}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RuntimePolicy":
        d = json.loads(text)
        return cls(tuple(d["drop"]), tuple(d["prune"]), tuple(tuple(e) for e in d["void"]))


NONE = RuntimePolicy()
PYTHON = RuntimePolicy(COMMON_DROP, PYTHON_PRUNE, PYTHON_VOID)
SERVICE = RuntimePolicy(COMMON_DROP, COMMON_PRUNE)


@dataclass(frozen=True)
class Exemption:
    """Declared Debian dependencies of one package that its image never loads: the edges
    voided, the packages that may then go (each still stays if anything else needs it), the
    files that would load them, and why. tests/builder/test_runtime_policy.py holds each one,
    and the image's integration test shows the service running without them."""

    declared: str       # the package an image spec names, which brings `package` in
    package: str
    void: tuple[str, ...]
    drop: tuple[str, ...]
    prune: tuple[str, ...]
    why: str


PG_LIB = "usr/lib/postgresql/15/lib"
EXCEPTIONS = (
    Exemption(
        "postgresql-15", "postgresql-15", void=("libllvm14",),
        drop=("libllvm14", "libz3-4", "libedit2", "libffi8", "libbsd0"),
        prune=(f"{PG_LIB}/llvmjit.so", f"{PG_LIB}/llvmjit_types.bc", f"{PG_LIB}/bitcode"),
        why="LLVM is loaded only by the JIT provider (llvmjit.so); the image runs postgres with "
            "jit=off, and without the provider PostgreSQL plans without JIT (133 MB)"),
    Exemption(
        "postgresql-15", "postgresql-common", void=("perl", "libjson-perl"),
        drop=("perl", "libperl5.36", "perl-modules-5.36", "libjson-perl", "libgdbm-compat4", "libgdbm6"),
        prune=(),
        why="Perl runs only the pg_ctlcluster/pg_wrapper cluster tools; the image's entrypoint calls "
            "initdb, pg_ctl, postgres and psql from /usr/lib/postgresql/15/bin, which are C (53 MB)"),
    Exemption(
        "postgresql-15", "postgresql-client-common", void=("perl",), drop=(), prune=(),
        why="its /usr/bin wrappers are Perl; PATH puts the C clients of /usr/lib/postgresql/15/bin first"),
    Exemption(
        "prometheus", "prometheus",
        void=("fonts-glyphicons-halflings", "libjs-bootstrap4", "libjs-eonasdan-bootstrap-datetimepicker",
              "libjs-jquery", "libjs-jquery-hotkeys", "libjs-moment", "libjs-moment-timezone",
              "libjs-mustache", "libjs-popper.js", "libjs-rickshaw"),
        drop=("fonts-glyphicons-halflings", "libjs-bootstrap4", "libjs-bootstrap",
              "libjs-eonasdan-bootstrap-datetimepicker", "libjs-jquery", "libjs-jquery-hotkeys",
              "libjs-moment", "libjs-moment-timezone", "libjs-mustache", "libjs-popper.js", "libjs-rickshaw",
              "libjs-d3", "javascript-common"),
        prune=(),
        why="the browser assets of Prometheus' classic web UI; the stack reads Prometheus through its "
            "HTTP API (Grafana, health checks) and serves dashboards from Grafana (225 MB)"),
)


def service_policy(packages: tuple[str, ...] | list[str]) -> RuntimePolicy:
    """SERVICE plus the exceptions of the declared packages that have one."""
    chosen = [e for e in EXCEPTIONS if e.declared in packages]
    if not chosen:
        return SERVICE
    return RuntimePolicy(tuple(e2 for e in chosen for e2 in e.drop) + COMMON_DROP,
                         COMMON_PRUNE + tuple(p for e in chosen for p in e.prune),
                         tuple((e.package, dep) for e in chosen for dep in e.void))


@dataclass(frozen=True)
class Installed:
    name: str
    depends: tuple[tuple[str, ...], ...]   # groups of alternatives (Depends and Pre-Depends)
    provides: tuple[str, ...]


_VERSION = re.compile(r"\s*\(.*?\)|\s*\[.*?\]|:\w+")


def _names(field: str) -> list[tuple[str, ...]]:
    groups = []
    for group in field.split(","):
        alts = tuple(_VERSION.sub("", a).strip() for a in group.split("|"))
        if alts and all(alts):
            groups.append(alts)
    return groups


def parse_status(text: str) -> dict[str, Installed]:
    """Installed packages of a dpkg status file, with their dependency groups and provides."""
    found: dict[str, Installed] = {}
    for fields in paragraphs(text):
        name = fields.get("Package")
        if not name or not fields.get("Status", "").endswith(" installed"):
            continue
        depends = _names(fields.get("Pre-Depends", "")) + _names(fields.get("Depends", ""))
        provides = tuple(g[0] for g in _names(fields.get("Provides", "")))
        found[name] = Installed(name, tuple(depends), provides)
    return found


def to_purge(installed: dict[str, Installed], policy: RuntimePolicy) -> list[str]:
    """The candidates that no package staying needs, in the order they are to be purged."""
    purge = {c for c in policy.drop if c in installed}
    providers: dict[str, list[str]] = {}
    for pkg in sorted(installed):
        providers.setdefault(pkg, []).append(pkg)
        for virtual in installed[pkg].provides:
            providers.setdefault(virtual, []).append(pkg)
    void = set(policy.void)
    changed = True
    while changed:
        changed = False
        for pkg in sorted(set(installed) - purge):
            for group in installed[pkg].depends:
                if any(n in INSTALL_TIME or (pkg, n) in void for n in group):
                    continue
                offered = [p for n in group for p in providers.get(n, [])]
                if offered and all(p in purge for p in offered):
                    purge.discard(offered[0])
                    changed = True
    first = [c for c in policy.drop if c in purge and c not in LAST]
    return first + [c for c in LAST if c in purge]


def _dpkg_purge(root: str, names: list[str]) -> None:
    subprocess.run(["chroot", root, "dpkg", "--purge", "--force-remove-essential", "--force-depends",
                    "--force-remove-protected", "--force-bad-path", *names], check=True, stdout=subprocess.DEVNULL)


def apply(root: str, policy: RuntimePolicy) -> list[str]:
    """Purge and prune inside the root filesystem at `root`; returns the purged packages."""
    with open(os.path.join(root, "var/lib/dpkg/status"), encoding="utf-8") as fh:
        purge = to_purge(parse_status(fh.read()), policy)
    for group in [tuple(p for p in purge if p not in LAST), *LATE]:
        if names := [p for p in group if p in purge]:
            _dpkg_purge(root, names)
    for pattern in policy.prune:
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
    return purge


def main(argv: list[str]) -> int:
    root, policy_file = argv
    with open(policy_file, encoding="utf-8") as fh:
        purged = apply(root, RuntimePolicy.from_json(fh.read()))
    print(f"runtime: purged {len(purged)} packages: {' '.join(purged)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
