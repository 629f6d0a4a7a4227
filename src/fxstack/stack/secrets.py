"""Secret files for Compose's `secrets:`: written by `fxstack up`, each readable by one uid only.

Compose (without Swarm) bind-mounts a file secret into the container as it is on the host: its
owner and mode come along, and the `uid`/`gid`/`mode` of the long syntax are ignored. A file of
mode 0600 must therefore be owned on the host by the uid the service runs as. Which service reads
which file comes from Compose's resolved configuration, and the uid from the service's image
(its configured user looked up in the image's /etc/passwd), so nothing here repeats the compose
file. Two services with different uids may not share a file: each gets its own.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import TextIO

from ..envfile import secret_files
from ..errors import FxError
from .target import Target


def image_user_ids(dc, ref: str) -> tuple[int, int]:
    """(uid, gid) the image runs as: its configured user resolved in its own /etc/passwd."""
    image = dc.images.get(ref)
    user = (image.attrs.get("Config") or {}).get("User") or "root"
    name, _, group = user.partition(":")
    if name.isdigit():
        return int(name), int(group) if group.isdigit() else int(name)
    # A tmpfs over each path the image declares a VOLUME (postgres, redis): Docker makes no
    # anonymous volume for a path that has a mount, and the container never starts, so no tmpfs
    # is made either. An anonymous volume, even one removed with the container, is seen by
    # whatever lists volumes meanwhile.
    volumes = (image.attrs.get("Config") or {}).get("Volumes") or {}
    container = dc.containers.create(ref, entrypoint=["/nonexistent"], command=[], network_disabled=True,
                                     tmpfs={path: "" for path in volumes})
    try:
        stream, _ = container.get_archive("/etc/passwd")
        data = b"".join(stream)
    finally:
        container.remove(force=True, v=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile(tar.getmembers()[0])
        passwd = member.read().decode() if member else ""
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == name:
            return int(fields[2]), int(fields[3])
    raise FxError(f"image {ref} runs as user {name!r}, which its /etc/passwd does not have",
                  hint="rebuild the image (`fxstack build`); its spec names the user")


def owners(config: dict, dc) -> dict[str, tuple[int, int, str]]:
    """{secret name: (uid, gid, service)} for every secret a service of `config` mounts."""
    by_image: dict[str, tuple[int, int]] = {}
    result: dict[str, tuple[int, int, str]] = {}
    for svc_name, svc in sorted((config.get("services") or {}).items()):
        refs = svc.get("secrets") or []
        if not refs:
            continue
        ref = svc["image"]
        if ref not in by_image:
            by_image[ref] = image_user_ids(dc, ref)
        uid, gid = by_image[ref]
        if svc.get("user"):
            name = str(svc["user"]).split(":")[0]
            if not name.isdigit():
                raise FxError(f"service {svc_name} sets user {svc['user']!r}: give it as a number",
                              where="compose", hint="secret files are owned by the uid that reads them")
            uid = int(name)
        for entry in refs:
            source = entry["source"]
            have = result.get(source)
            if have and have[0] != uid:
                raise FxError(f"secret {source} is read by {have[2]} (uid {have[0]}) and {svc_name} (uid {uid})",
                              where="compose", hint="give each service its own secret file (the stack's secret_files table)")
            result.setdefault(source, (uid, gid, svc_name))
    return result


def _write(path: Path, content: bytes, uid: int, gid: int) -> str:
    """Create or update one file, 0600, owned by uid:gid. An existing file is rewritten in place
    (same inode), so a running container's bind mount sees the new content."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        try:
            os.fchown(fd, uid, gid)
            how = "0600"
        except PermissionError:
            # Not root: we cannot give the file away. Readable by all, inside a directory only
            # we may enter (the container sees the file, not the host directory).
            os.fchmod(fd, 0o644)
            how = "0644"
        with os.fdopen(os.dup(fd), "rb+") as fh:
            if fh.read() != content:
                fh.seek(0)
                fh.truncate()
                fh.write(content)
    finally:
        os.close(fd)
    return how


def write_secret_files(target: Target, dc, out: TextIO | None = None) -> Path:
    """Derive every secret file the stack's services mount from its env file (the stack's
    secret_files table) into the target's secrets directory; owners from the services."""
    directory = target.secrets_path
    owned = owners(target.config(), dc)
    if not owned:
        return directory  # a stack without file secrets: nothing to write
    table = target.stack.secret_files
    unknown = sorted(set(owned) - set(table))
    if unknown:
        raise FxError(f"the compose files of the {target.stack.name} stack mount secrets fxstack does not write: "
                      f"{', '.join(unknown)}",
                      hint=f"add them to the {target.stack.name} stack's secret_files table (src/fxstack/stacks/)")
    contents = secret_files(table, target.settings(), sorted(owned))
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    modes = set()
    for name, content in contents.items():
        uid, gid, _ = owned[name]
        modes.add(_write(directory / name, content, uid, gid))
    if "0644" in modes and out is not None:
        print(f"note: not root, so the secret files in {directory} cannot be owned by the services' "
              "users; they are mode 0644 inside a directory of mode 0700", file=out)
    return directory
