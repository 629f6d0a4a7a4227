"""Several Docker nodes on this one machine, joined into one Swarm, for the cluster tier.

Each node is a dockerd in its own network namespace on a bridge (`nsenter --net` plus
`unshare --uts --mount`: its own host name and its own /etc/docker; not `ip netns exec`, under
which dockerd finds no devices cgroup). The host's FORWARD chain drops by default under Docker,
so the bridge gets an ACCEPT rule. Everything made is recorded in `<base>/made.json` as it is
made, so `cleanup` removes it (daemons, namespaces, links, the bridge, the iptables rule, the
directories), also from another process after a crash:

    .venv/bin/python tests/cluster/nodes.py cleanup
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fxstack.poll import TimedOut, poll

BASE = Path(os.environ.get("FXSTACK_CLUSTER_DIR", "/tmp/fxc"))  # short: unix socket paths < 108 bytes
BRIDGE = "fxcbr0"
NET = "172.31.250"          # the nodes' bridge: host .1, nodes .11, .12, ...
FORWARD_RULE = ["FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"]


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


@dataclass
class Node:
    name: str
    index: int

    @property
    def ip(self) -> str:
        return f"{NET}.{10 + self.index}"

    @property
    def dir(self) -> Path:
        return BASE / self.name

    @property
    def sock(self) -> str:
        return f"unix://{self.dir}/d.sock"

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("docker", "-H", self.sock, *args, check=check)


class Made:
    """What exists, on disk as it is made: the cleanup's list."""

    def __init__(self) -> None:
        self.path = BASE / "made.json"
        try:
            self.items: list[list[str]] = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            self.items = []

    def add(self, *item: str) -> None:
        self.items.append(list(item))
        BASE.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.items))
        tmp.replace(self.path)


def _wait(check, timeout: float, what: str) -> None:
    try:
        poll(lambda: True if check() else None, timeout=timeout, interval=0.3)
    except TimedOut:
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}") from None


def start(count: int = 3, insecure_registry: str | None = None, seccomp_profile: str | None = None) -> list[Node]:
    if (BASE / "made.json").exists():
        cleanup()
    made = Made()
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    made.add("bridge", BRIDGE)
    sh("ip", "addr", "add", f"{NET}.1/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    sh("iptables", "-I", *FORWARD_RULE)
    made.add("iptables", *FORWARD_RULE)
    Path("/etc/docker").mkdir(exist_ok=True)  # the bind mount's target
    nodes = [Node(f"fxc{i}", i) for i in range(1, count + 1)]
    for node in nodes:
        sh("ip", "netns", "add", node.name)
        made.add("netns", node.name)
        sh("ip", "link", "add", f"{node.name}h", "type", "veth", "peer", "name", f"{node.name}n")
        made.add("link", f"{node.name}h")
        sh("ip", "link", "set", f"{node.name}n", "netns", node.name)
        sh("ip", "link", "set", f"{node.name}h", "master", BRIDGE, "up")
        for cmd in (["ip", "addr", "add", f"{node.ip}/24", "dev", f"{node.name}n"],
                    ["ip", "link", "set", f"{node.name}n", "up"], ["ip", "link", "set", "lo", "up"],
                    ["ip", "route", "add", "default", "via", f"{NET}.1"]):
            sh("ip", "netns", "exec", node.name, *cmd)
        etc = node.dir / "etc-docker"
        etc.mkdir(parents=True, exist_ok=True)
        # no-new-privileges for every container: Swarm services have no security_opt
        daemon = {"no-new-privileges": True, "log-level": "warn"}
        if insecure_registry:
            daemon["insecure-registries"] = [insecure_registry]
        if seccomp_profile:
            # the default profile of every container on the node (a service has no seccomp field)
            daemon["seccomp-profile"] = seccomp_profile
        (etc / "daemon.json").write_text(json.dumps(daemon))
        log = open(node.dir / "dockerd.log", "ab")
        script = (f"hostname {node.name} && mount --bind {etc} /etc/docker && exec dockerd "
                  f"--data-root {node.dir}/data --exec-root {node.dir}/x -H {node.sock} "
                  f"--pidfile {node.dir}/d.pid --bip 172.31.{250 + node.index}.1/24")
        proc = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{node.name}", "unshare", "--uts", "--mount",
                                 "--propagation", "private", "sh", "-c", script],
                                stdout=log, stderr=log, start_new_session=True)
        made.add("dockerd", node.name, str(proc.pid))
    for node in nodes:
        _wait(lambda: node.docker("info", check=False).returncode == 0, 60, f"dockerd of {node.name}")
    return nodes


def form_swarm(nodes: list[Node], heartbeat: str = "1s") -> None:
    first = nodes[0]
    first.docker("swarm", "init", "--advertise-addr", first.ip, "--dispatcher-heartbeat", heartbeat)
    token = first.docker("swarm", "join-token", "-q", "worker").stdout.strip()
    for node in nodes[1:]:
        node.docker("swarm", "join", "--token", token, "--advertise-addr", node.ip, f"{first.ip}:2377")
    _wait(lambda: first.docker("node", "ls", "--format", "{{.Status}}").stdout.split().count("Ready") == len(nodes),
          60, "every node Ready")


def _stop_dockerd(pid: int) -> None:
    """SIGTERM, not SIGKILL: a killed dockerd leaves its containers' shims running."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return

    def gone() -> bool | None:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return None

    try:
        poll(gone, timeout=40, interval=0.3)
    except TimedOut:
        os.killpg(pid, signal.SIGKILL)


def cleanup() -> list[str]:
    """Remove everything `start` recorded, last made first; returns what failed (also printed)."""
    made = Made()
    problems = []
    for item in reversed(made.items):
        kind, *args = item
        try:
            if kind == "dockerd":
                _stop_dockerd(int(args[1]))
                # containerd shims of its containers, should any outlive it
                for pid in sh("pgrep", "-f", f"{BASE}/{args[0]}/", check=False).stdout.split():
                    if int(pid) != os.getpid():
                        os.kill(int(pid), signal.SIGKILL)
            elif kind == "pid":
                try:
                    os.kill(int(args[0]), signal.SIGTERM)
                except ProcessLookupError:
                    pass
            elif kind == "netns":
                sh("ip", "netns", "del", args[0], check=False)
            elif kind == "link":
                sh("ip", "link", "del", args[0], check=False)
            elif kind == "bridge":
                sh("ip", "link", "del", args[0], check=False)
            elif kind == "iptables":
                while sh("iptables", "-C", *args, check=False).returncode == 0:
                    sh("iptables", "-D", *args)
        except Exception as exc:  # keep going: everything else must still go
            problems.append(f"{kind} {args}: {exc}")
    # overlay and bind mounts of the nodes lived in their own mount namespaces; any that
    # leaked into this one are unmounted before the directories go
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        target = line.split()[1]
        if target.startswith(str(BASE) + "/"):
            sh("umount", "-l", target, check=False)
    shutil.rmtree(BASE, ignore_errors=True)
    for p in problems:
        print(f"cleanup: {p}", file=sys.stderr)
    return problems


def leftovers() -> list[str]:
    """Anything of ours still on the machine (the test's last assertion)."""
    found = []
    if sh("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        found.append(f"bridge {BRIDGE}")
    found += [f"netns {n}" for n in sh("ip", "netns", "list", check=False).stdout.split() if n.startswith("fxc")]
    if sh("iptables", "-C", *FORWARD_RULE, check=False).returncode == 0:
        found.append("iptables rule")
    if sh("pgrep", "-f", f"--data-root {BASE}/", check=False).stdout.strip():
        found.append("dockerd processes")
    if BASE.exists():
        found.append(str(BASE))
    return found


if __name__ == "__main__":
    if sys.argv[1:] == ["cleanup"]:
        sys.exit(1 if cleanup() else 0)
    print(__doc__)
