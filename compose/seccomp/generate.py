"""Write compose/seccomp/chromium.json: Docker's default seccomp profile plus what Chromium's
namespace sandbox needs, for the bsopt scraper (compose/bsopt.yml).

Docker's default profile allows `clone` only without namespace flags, and `unshare` and `chroot`
only to a container that holds CAP_SYS_ADMIN / CAP_SYS_CHROOT; the scraper holds no capability
(cap_drop: [ALL]). Chromium's sandbox (a non-root process) creates a user namespace, and within
it PID and network namespaces (clone with CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET; unshare to
probe for it first), then chroots each renderer into an empty directory, with the capabilities
the new user namespace gives it and nothing on the host. Those three calls are what is added,
without argument filters; everything else of the default stays as it is, including the refusal
of mount, setns, bpf and the rest that the default keeps for CAP_SYS_ADMIN, so a process inside
the namespaces still cannot mount or join another namespace.

The input is the profile Docker ships as profiles/seccomp/default.json in its source: the same
rules that the daemon compiles in as its default (profiles/seccomp/default_linux.go, from which
Docker generates the JSON). Debian carries that source as the package
golang-github-docker-docker-dev, at the version of its docker.io (the engine this project runs):

    apt-get download golang-github-docker-docker-dev=20.10.24+dfsg1-1+deb12u1
    python3 compose/seccomp/generate.py golang-github-docker-docker-dev_20.10.24+dfsg1-1+deb12u1_all.deb

The package is checked against the sha256 below; the output is sorted and stable, so running it
again gives the committed file byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

PACKAGE = "golang-github-docker-docker-dev_20.10.24+dfsg1-1+deb12u1_all.deb"
PACKAGE_SHA256 = "ecbf86108a209a86a69dc16a6d6e1f354c31d855237498109401fb3e55042692"
MEMBER = "./usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json"
OUT = Path(__file__).resolve().parent / "chromium.json"

SANDBOX_RULE = {
    "names": ["chroot", "clone", "unshare"],
    "action": "SCMP_ACT_ALLOW",
    "args": [],
    "comment": "bsopt: Chromium's namespace sandbox (user, PID and network namespaces; chroot "
               "of its renderers) without CAP_SYS_ADMIN or CAP_SYS_CHROOT (compose/seccomp/generate.py)",
    "includes": {},
    "excludes": {},
}


def default_profile(deb: Path) -> dict:
    data = deb.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != PACKAGE_SHA256:
        sys.exit(f"{deb}: sha256 {digest}, expected {PACKAGE_SHA256} ({PACKAGE})")
    # dpkg-deb streams the package's data.tar whatever its compression
    tar_bytes = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True,
                               capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            sys.exit(f"{deb}: no {MEMBER}")
        return json.load(member)


def chromium_profile(default: dict) -> dict:
    profile = json.loads(json.dumps(default))
    profile["syscalls"].append(SANDBOX_RULE)
    return profile


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    profile = chromium_profile(default_profile(Path(argv[0])))
    text = json.dumps(profile, indent=1, sort_keys=True) + "\n"
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(OUT)
    print(f"wrote {OUT} ({len(profile['syscalls'])} rules)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
