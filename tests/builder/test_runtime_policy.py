"""Which packages the runtime policy purges from a root filesystem: candidates go unless a
package that stays needs them, install-time-only dependencies and voided edges aside."""

from __future__ import annotations

import pytest

from fxstack.image import runtime
from fxstack.image.runtime import RuntimePolicy, parse_status, to_purge

pytestmark = pytest.mark.unit


def para(name, depends="", pre="", provides="", status="install ok installed"):
    lines = [f"Package: {name}", f"Status: {status}", "Version: 1", "Architecture: amd64"]
    if pre:
        lines.append(f"Pre-Depends: {pre}")
    if depends:
        lines.append(f"Depends: {depends}")
    if provides:
        lines.append(f"Provides: {provides}")
    return "\n".join(lines)


STATUS = "\n\n".join([
    para("python3.11", depends="libpython3.11-stdlib (= 1), libexpat1 (>= 2.1)"),
    para("libpython3.11-stdlib", depends="libdb5.3, libnsl2 (>= 1.0), libssl3 (>= 3)"),
    para("libnsl2", depends="libtirpc3 (>= 1.0.2)"),
    para("libtirpc3", depends="libgssapi-krb5-2 (>= 1.17)"),
    para("libgssapi-krb5-2"),
    para("libdb5.3"),
    para("libssl3"),
    para("libexpat1"),
    # needs debconf only for its maintainer scripts
    para("ca-certificates", depends="openssl (>= 1.1.1), debconf (>= 0.5) | debconf-2.0"),
    para("openssl", depends="libssl3 (>= 3.0.9)"),
    para("debconf", pre="perl-base (>= 5.20.1-3~)", provides="debconf-2.0"),
    para("perl-base"),
    para("dpkg", pre="libmd0 (>= 0.0.0), libzstd1 (>= 1.5.2)", depends="tar (>= 1.28-1)"),
    para("libmd0"), para("libzstd1"), para("tar"),
    # a service that needs systemd's client library keeps it, and what it needs
    para("redis-server", depends="libsystemd0, lsb-base (>= 3.2-14) | sysvinit-utils (>= 3.05-4~)"),
    para("libsystemd0", depends="libzstd1 (>= 1.5.2), libgcrypt20 (>= 1.10.0)"),
    para("libgcrypt20"),
    para("sysvinit-utils"),
    para("util-linux"),
    para("gone", status="deinstall ok config-files"),
])


def test_status_parser_reads_groups_and_skips_removed():
    installed = parse_status(STATUS)
    assert "gone" not in installed
    assert installed["ca-certificates"].depends == (("openssl",), ("debconf", "debconf-2.0"))
    assert installed["dpkg"].depends == (("libmd0",), ("libzstd1",), ("tar",))
    assert installed["debconf"].provides == ("debconf-2.0",)


def test_python_policy_purges_the_tools_and_the_libraries_only_they_and_pruned_modules_need():
    installed = parse_status("\n\n".join(p for p in STATUS.split("\n\n") if "redis" not in p))
    purged = to_purge(installed, runtime.PYTHON)
    assert set(purged) == {"libdb5.3", "libnsl2", "libtirpc3", "libgssapi-krb5-2", "debconf", "perl-base",
                           "dpkg", "libmd0", "libzstd1", "tar", "libsystemd0", "libgcrypt20",
                           "sysvinit-utils", "util-linux"}
    # dpkg and what it runs on go in the last dpkg run, dpkg at its very end
    assert purged[-3:] == ["libmd0", "libzstd1", "dpkg"]
    assert purged.index("debconf") < purged.index("perl-base")
    # what python3 and its ssl module need stays
    assert not {"libssl3", "libexpat1", "openssl", "ca-certificates"} & set(purged)


def test_a_package_that_stays_keeps_what_it_depends_on():
    purged = set(to_purge(parse_status(STATUS), runtime.SERVICE))
    # redis-server links libsystemd0, which needs libzstd1 and libgcrypt20; sysvinit-utils is
    # one alternative of a group whose other one (lsb-base) is not installed
    assert not {"libsystemd0", "libzstd1", "libgcrypt20", "sysvinit-utils"} & purged
    # without the Python policy's voided edges, libpython3.11-stdlib keeps Berkeley DB and NIS
    assert not {"libdb5.3", "libnsl2", "libtirpc3", "libgssapi-krb5-2"} & purged
    assert {"dpkg", "perl-base", "debconf", "tar", "libmd0", "util-linux"} <= purged


def test_nothing_outside_the_candidates_is_purged():
    assert to_purge(parse_status(STATUS), RuntimePolicy()) == []
    assert to_purge(parse_status(STATUS), RuntimePolicy(drop=("libssl3", "not-installed"))) == []


def test_policy_round_trips_through_its_json():
    for policy in (runtime.PYTHON, runtime.SERVICE, runtime.NONE):
        assert RuntimePolicy.from_json(policy.as_json()) == policy
