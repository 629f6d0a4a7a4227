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


# ---------------------------------------------------------------- exceptions to declared dependencies

PG_STATUS = "\n\n".join([
    para("postgresql-15", depends="postgresql-common (>= 241~), libllvm14, libxml2 (>= 2.7.4), libicu72"),
    para("postgresql-common", depends="libjson-perl, perl:any, ucf"),
    para("postgresql-client-common", depends="netbase, perl:any"),
    para("libjson-perl", depends="perl:any"),
    para("perl", pre="perl-base (= 5.36.0-7)", depends="perl-modules-5.36, libperl5.36"),
    para("perl-modules-5.36"), para("libperl5.36", depends="libgdbm6, libgdbm-compat4"),
    para("libgdbm6"), para("libgdbm-compat4", depends="libgdbm6"), para("perl-base"),
    para("libllvm14", depends="libz3-4, libedit2, libffi8, libxml2"),
    para("libz3-4"), para("libedit2", depends="libbsd0"), para("libbsd0"), para("libffi8"),
    para("libxml2", depends="libicu72"), para("libicu72"), para("netbase"), para("ucf"),
])


def test_postgres_exceptions_drop_llvm_and_perl_but_not_what_postgres_links():
    policy = runtime.service_policy(("postgresql-15", "tini"))
    purged = set(to_purge(parse_status(PG_STATUS), policy))
    assert {"libllvm14", "libz3-4", "libedit2", "libbsd0", "libffi8", "perl", "libperl5.36",
            "perl-modules-5.36", "libjson-perl", "perl-base", "libgdbm6", "libgdbm-compat4"} <= purged
    assert not {"postgresql-15", "postgresql-common", "libxml2", "libicu72", "netbase"} & purged
    # the JIT provider and its bitcode go with LLVM; the image runs postgres with jit=off
    assert "usr/lib/postgresql/15/lib/llvmjit.so" in policy.prune


def test_without_its_exception_postgres_keeps_llvm_and_perl():
    purged = set(to_purge(parse_status(PG_STATUS), runtime.SERVICE))
    assert not {"libllvm14", "perl", "libperl5.36"} & purged


def test_prometheus_exception_drops_only_the_web_ui_assets():
    status = "\n\n".join([
        para("prometheus", depends="adduser, libjs-moment-timezone, libjs-rickshaw, libjs-jquery (>= 3.5.1~), "
                                   "fonts-glyphicons-halflings, libc6 (>= 2.34)"),
        para("libjs-moment-timezone", depends="libjs-moment"), para("libjs-moment"),
        para("libjs-rickshaw", depends="libjs-d3"), para("libjs-d3"), para("libjs-jquery"),
        para("fonts-glyphicons-halflings"), para("libc6"), para("adduser")])
    purged = set(to_purge(parse_status(status), runtime.service_policy(["prometheus", "tini"])))
    assert {"libjs-moment-timezone", "libjs-moment", "libjs-rickshaw", "libjs-d3", "libjs-jquery",
            "fonts-glyphicons-halflings"} <= purged
    assert "libc6" not in purged and "prometheus" not in purged


def test_every_exception_names_a_reason_and_only_its_declared_package_gets_it():
    for e in runtime.EXCEPTIONS:
        assert e.why and e.void and e.declared
        assert all((e.package, dep) in runtime.service_policy([e.declared]).void for dep in e.void)
    assert runtime.service_policy(["redis-server", "tini"]) == runtime.SERVICE
    assert runtime.service_policy(["prometheus-redis-exporter", "tini"]) == runtime.SERVICE


def test_postgres_spec_runs_without_jit():
    from pathlib import Path

    from fxstack.specs import load_specs

    spec = load_specs(Path(__file__).resolve().parents[2])["postgres"]
    assert list(spec.cmd) == ["-c", "jit=off"]
