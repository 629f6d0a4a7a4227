"""Hardening is a policy of every Compose configuration we ship, not a habit of one file: each
configuration (the FX stack, with its GPU override, bsopt, and bsopt with its development
override), read the way Compose reads it (`docker-compose config`, anchors and overrides merged),
holds every service to the same rules. The configurations come from the stack registry
(fxstack.stacks.registry: each stack's Compose files, and each variant's on top), so a new stack
is checked by being a stack.

An exception passes only where the file says so, inside the service it concerns, with a reason:

    # fxstack-policy: allow <rule> because <why>

and an exception that is no longer needed fails too, so none outlives its reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from fxstack.stack import compose
from fxstack.stacks.registry import STACKS

pytestmark = pytest.mark.unit
COMPOSE_DIR = Path(__file__).resolve().parents[2] / "compose"



def configurations() -> dict[str, tuple[tuple[str, ...], tuple[str, ...], object]]:
    """{name: (files in compose/, profiles, the stack's secret files)}: every stack alone and with
    each of its variants."""
    out = {}
    for stack in STACKS.values():
        out[stack.name] = (tuple(stack.compose_files), (), stack.secret_files)
        for vname, variant in stack.variants.items():
            out[f"{stack.name}+{vname}"] = (tuple(stack.compose_files) + tuple(variant.files),
                                            tuple(variant.profiles), stack.secret_files)
    return out


CONFIGS = configurations()
SECRET_KEYS = tuple(k for s in STACKS.values() for k in (*s.secret_keys, *s.generated))
RULES = ("cap-drop", "no-new-privileges", "seccomp", "read-only", "tmpfs-size", "memory", "pids", "logging",
         "loopback-ports", "secret-env", "bind-read-only", "secrets-as-files")
EXCEPTION = re.compile(r"#\s*fxstack-policy:\s*allow\s+(\S+)(?:\s+because\s+(\S.*))?")
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^@\s]+@")
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY|CREDENTIAL)", re.I)


def marker(key: str) -> str:
    return f"policy-secret-{key.lower()}"


def resolved(files: tuple[str, ...], profiles: tuple[str, ...]) -> dict:
    """Compose's own merged configuration, each secret key set to a value the test can look for."""
    text = "".join((COMPOSE_DIR / f).read_text() for f in files)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FX", "BSOPT", "COMPOSE_"))}
    env.update({var: "policy-value" for var in re.findall(r"\$\{(\w+):\?", text)})
    env.update({key: marker(key) for key in SECRET_KEYS})
    cmd = compose.find_compose() + ["-p", "policy", "--project-directory", str(COMPOSE_DIR)]
    for f in files:
        cmd += ["-f", str(COMPOSE_DIR / f)]
    for p in profiles:
        cmd += ["--profile", p]
    proc = subprocess.run(cmd + ["config", "--format", "json"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def exceptions(files: tuple[str, ...], root: Path = COMPOSE_DIR) -> dict[tuple[str, str], str]:
    """{(service, rule): where} from the files' `# fxstack-policy: allow` comments. A comment in a
    service covers that service; one in an `x-` block with an anchor covers the services of the
    same file that use the anchor (`*name`)."""
    found: dict[tuple[str, str], str] = {}
    for name in files:
        lines = (root / name).read_text().splitlines()
        service_text: dict[str, list[str]] = {}
        owner: list[tuple[str, str]] = []          # per line: ("service", svc) / ("anchor", name) / ("", "")
        section, current = "", ("", "")
        for line in lines:
            if re.match(r"^\S", line) and not line.startswith("#"):
                section = line.split(":")[0]
                anchor = re.search(r"&([\w-]+)", line)
                current = ("anchor", anchor.group(1)) if section.startswith("x-") and anchor else ("", "")
            elif section == "services" and (m := re.match(r"^  ([\w.-]+):\s*$", line)):
                current = ("service", m.group(1))
            owner.append(current)
            if current[0] == "service":
                service_text.setdefault(current[1], []).append(line)
        for n, line in enumerate(lines, 1):
            if not (m := EXCEPTION.search(line)):
                continue
            rule, reason = m.group(1), (m.group(2) or "").strip()
            assert rule in RULES, f"{name}:{n}: no policy rule {rule!r} (rules: {', '.join(RULES)})"
            assert len(reason) >= 10, f"{name}:{n}: the exception for {rule} gives no reason (`because ...`)"
            kind, what = owner[n - 1]
            if kind == "service":
                covered = [what]
            else:
                assert kind == "anchor", f"{name}:{n}: a policy exception outside a service or an x- anchor block"
                covered = [s for s, text in service_text.items() if f"*{what}" in "\n".join(text)]
            for svc in covered:
                found[(svc, rule)] = f"{name}:{n}"
    return found


def size_of(value) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    s = str(value).strip().lower().rstrip("b")
    return int(float(s[:-1]) * units[s[-1]]) if s and s[-1] in units else int(s or 0)


def violations(svc: dict) -> dict[str, str]:
    """{rule: what is wrong} for one resolved service."""
    bad: dict[str, str] = {}
    if svc.get("cap_drop") != ["ALL"] or svc.get("cap_add") or svc.get("privileged"):
        bad["cap-drop"] = f"cap_drop {svc.get('cap_drop')}, cap_add {svc.get('cap_add')}"
    opts = [o.replace(":", "=", 1) if o.startswith("seccomp:") else o for o in svc.get("security_opt") or []]
    if "no-new-privileges:true" not in opts:
        bad["no-new-privileges"] = f"security_opt {opts}"
    if any(o in ("seccomp=unconfined", "apparmor=unconfined", "apparmor:unconfined") for o in opts):
        bad["seccomp"] = f"security_opt {opts}"
    if svc.get("read_only") is not True:
        bad["read-only"] = "read_only is not true"
    unsized = [t for t in svc.get("tmpfs") or [] if "size=" not in t]
    unsized += [v["target"] for v in svc.get("volumes") or [] if v["type"] == "tmpfs" and
                not (v.get("tmpfs") or {}).get("size")]
    if unsized:
        bad["tmpfs-size"] = f"tmpfs without a size: {unsized}"
    limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    if not size_of(svc.get("mem_limit") or limits.get("memory") or 0) > 0:
        bad["memory"] = "no mem_limit"
    if not int(svc.get("pids_limit") or limits.get("pids") or 0) > 0:
        bad["pids"] = "no pids_limit"
    log = svc.get("logging") or {}
    rotated = log.get("driver") == "local" or (
        log.get("driver") == "json-file" and {"max-size", "max-file"} <= set(log.get("options") or {}))
    if not rotated:
        bad["logging"] = f"logging {log} (json-file with max-size and max-file, or local)"
    open_ports = [p for p in svc.get("ports") or [] if p.get("published") and p.get("host_ip") != "127.0.0.1"]
    if open_ports:
        bad["loopback-ports"] = f"published beyond 127.0.0.1: {open_ports}"
    env = svc.get("environment") or {}
    # a secret's name, even with an empty value (the user fills it in), unless it names a file or
    # a command (*_FILE, *_CMD); and any URL with a password in it
    leaked = [k for k, v in env.items() if URL_WITH_PASSWORD.search(str(v or "")) or
              (SECRET_NAME.search(k) and not k.endswith(("_FILE", "_CMD")))]
    # every secret key of every stack is set to a marker: none may reach a service's settings
    exposed = json.dumps({k: svc.get(k) for k in ("environment", "command", "entrypoint", "healthcheck",
                                                   "labels", "extra_hosts")})
    leaked += [key for key in SECRET_KEYS if marker(key) in exposed]
    if leaked:
        bad["secret-env"] = f"secrets in the environment or on a command line: {sorted(set(leaked))}"
    writable = [v["source"] for v in svc.get("volumes") or [] if v["type"] == "bind" and not v.get("read_only")]
    if writable:
        bad["bind-read-only"] = f"host paths mounted writable: {writable}"
    return bad


@pytest.mark.parametrize("config", CONFIGS)
def test_every_service_meets_the_policy(config):
    files, profiles, _ = CONFIGS[config]
    services = resolved(files, profiles)["services"]
    allowed = exceptions(files)
    found = {(name, rule): why for name, svc in services.items() for rule, why in violations(svc).items()}
    unexcused = {k: v for k, v in found.items() if k not in allowed}
    assert not unexcused, "\n".join(f"{config}: service {s}: {r}: {why}" for (s, r), why in sorted(unexcused.items()))
    stale = {k: where for k, where in allowed.items() if k not in found and k[0] in services}
    assert not stale, f"exceptions no longer needed (remove them): {stale}"


@pytest.mark.parametrize("config", CONFIGS)
def test_secrets_are_files_the_stack_writes(config):
    files, profiles, secret_files = CONFIGS[config]
    cfg = resolved(files, profiles)
    declared = cfg.get("secrets") or {}
    for name, entry in declared.items():
        assert name in secret_files, f"{config}: secret {name} is not one the stack writes (its SECRET_FILES)"
        assert set(entry) == {"name", "file"} and Path(entry["file"]).name == name, (config, name, entry)
        assert Path(entry["file"]).parent == COMPOSE_DIR / "secrets", (config, name, entry["file"])
    for raw_name in files:
        raw = yaml.safe_load((COMPOSE_DIR / raw_name).read_text()).get("secrets") or {}
        for name, entry in raw.items():
            assert entry == {"file": f"${{FXSTACK_SECRETS_DIR:-./secrets}}/{name}"}, (raw_name, name, entry)
    for svc_name, svc in cfg["services"].items():
        for ref in svc.get("secrets") or []:
            assert ref["source"] in declared, (config, svc_name, ref)


def test_a_policy_breach_is_found_and_an_exception_needs_a_reason(tmp_path):
    """The checks themselves: a bare service breaks every rule that applies to it, and a comment
    without a reason is refused."""
    bare = {"image": "x", "ports": [{"published": "80", "target": 80, "host_ip": "0.0.0.0"}],
            "environment": {"DB_URL": "postgresql://u:pw@db/x", "API_TOKEN": "t", "X_PASSWORD_FILE": "/run/x"},
            "volumes": [{"type": "bind", "source": "/etc", "target": "/etc"}],
            "tmpfs": ["/tmp"], "security_opt": ["seccomp:unconfined"]}
    assert set(violations(bare)) == set(RULES) - {"secrets-as-files"}
    assert violations(bare)["secret-env"].count("'") == 4    # DB_URL and API_TOKEN, not X_PASSWORD_FILE
    # an exception in an x- anchor block covers the services that use the anchor, and only them
    (tmp_path / "c.yml").write_text(
        "x-env: &env\n"
        "  # fxstack-policy: allow secret-env because the token is the user's own\n"
        "  TOKEN: x\n"
        "services:\n"
        "  a:\n    environment: *env\n"
        "  b:\n    image: x\n")
    assert exceptions(("c.yml",), tmp_path) == {("a", "secret-env"): "c.yml:2"}
    # no stack we ship needs one
    shipped = tuple(sorted({f for files, _, _ in CONFIGS.values() for f in files}))
    assert exceptions(shipped) == {}
    m = EXCEPTION.search("    # fxstack-policy: allow memory")
    assert m and not m.group(2)


def test_every_compose_file_we_ship_is_checked():
    shipped = {p.name for p in COMPOSE_DIR.glob("*.yml") if yaml.safe_load(p.read_text()).get("services")}
    assert shipped <= {f for files, _, _ in CONFIGS.values() for f in files}, shipped
    assert {"fx", "fx+gpu", "bsopt", "bsopt+dev"} <= set(CONFIGS)


def test_bsopt_memory_limits_add_up_to_under_5_gib():
    services = resolved(("bsopt.yml",), ())["services"]
    total = sum(size_of(s["mem_limit"]) for s in services.values())
    print(f"\nbsopt memory limits: {total / (1 << 30):.2f} GiB over {len(services)} services")
    assert total < 5 << 30
