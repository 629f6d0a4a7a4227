"""The services of a running stack that Compose has nothing to do for, so that `up` names only
the others.

`docker compose up` starts every exited container of the project again, one-shots included,
even when nothing about them changed (Compose keeps it so: docker/compose#11590). FX's
airflow-init (database migration, admin user) then ran for ten seconds at half a core beside
whatever `up` was there for: after a one-line change of the inference API it took that CPU from
the new API container while it imported its libraries. And before Compose starts a container
it waits for the container's dependencies to be healthy, checking twice a second, even when
they have been healthy for hours: half a second to a second before the new container starts.

A service is settled when its one container was made from the service's current configuration
(Compose's own `config --hash`, which it writes on the container as
`com.docker.compose.config-hash`) and current image, and it is running and healthy (or has no
health check), or, for a one-shot, exited 0 with no file it mounts (a secret) changed since. When some are settled, `up` runs
`compose up -d --no-deps` with the others: Compose does for them what it would have done, and
still waits for a dependency among them, and every dependency it no longer waits for is
running and healthy already. When none is settled (the first `up`), Compose gets the whole
stack as before.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime, timezone

HASH_LABEL = "com.docker.compose.config-hash"
IMAGE_LABEL = "com.docker.compose.image"


@dataclass(frozen=True)
class Container:
    service: str
    state: str
    health: str  # healthy / unhealthy / starting / none
    exit_code: int | None
    config_hash: str | None
    image_id: str | None
    # a file it mounts (a secret, a script) changed since it started: Compose's hash covers the
    # path, not the content
    inputs_changed: bool = False


def settled(services: list[str], oneshots: set[str], hashes: dict[str, str], images: dict[str, str | None],
            containers: list[Container]) -> set[str]:
    """The services whose single container has the current configuration hash (`hashes`, from
    Compose) and image id (`images`; None: Docker has no such image) and is running and healthy
    (a one-shot: exited 0)."""
    by_service: dict[str, list[Container]] = {}
    for c in containers:
        by_service.setdefault(c.service, []).append(c)
    result = set()
    for svc in services:
        found = by_service.get(svc, [])
        if len(found) != 1:  # none (never ran, or removed) or several (scaled, or a recreate under way)
            continue
        c = found[0]
        current = bool(hashes.get(svc)) and c.config_hash == hashes[svc] and bool(images.get(svc)) \
            and c.image_id == images[svc]
        if svc in oneshots:
            # (airflow-init sets the admin password from its secret file: a new secret runs it again)
            ok = c.state == "exited" and c.exit_code == 0 and not c.inputs_changed
        else:
            ok = c.state == "running" and c.health in ("healthy", "none")
        if current and ok:
            result.add(svc)
    return result


def parse_hashes(text: str) -> dict[str, str]:
    """`docker compose config --hash '*'`: one `service hash` per line."""
    pairs = (line.split() for line in text.splitlines())
    return {p[0]: p[1] for p in pairs if len(p) == 2}


def compose_args(services: list[str], oneshots: set[str], done: set[str]) -> list[str]:
    """What `up` passes to `compose up -d --remove-orphans` after its options: nothing (the whole
    stack) when nothing is settled, else `--no-deps` and the services that are not; when every
    one is, the long-running ones (Compose finds nothing to do but still removes orphans)."""
    if not done:
        return []
    rest = [s for s in services if s not in done] or [s for s in services if s not in oneshots]
    return ["--no-deps", *rest] if rest else []


def mounted_files_changed(mounts: list[dict], started_at: str) -> bool:
    """Whether a file bind-mounted into the container was modified after it started (Docker's
    StartedAt, RFC 3339 with nanoseconds); an unreadable time counts as changed."""
    try:
        whole, _, frac = started_at.rstrip("Z").partition(".")
        started = datetime.fromisoformat(whole).replace(tzinfo=timezone.utc).timestamp() + float(f"0.{frac or 0}")
    except ValueError:
        return True
    for m in mounts:
        if m.get("Type") != "bind":
            continue
        try:
            st = os.stat(m.get("Source") or "")
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mtime > started:
            return True
    return False


def restarts_dependents(config: dict) -> bool:
    """Whether a service asks to be restarted with a dependency (`depends_on: {x: {restart: true}}`):
    Compose does that only for the services it is given, so such a stack gets Compose's whole run."""
    return any(dep.get("restart") for svc in (config.get("services") or {}).values()
               for dep in (svc.get("depends_on") or {}).values() if isinstance(dep, dict))


def settled_in_docker(dc, target, config: dict, services: list[str], oneshots: set[str]) -> set[str]:
    """settled() for the target's services as Docker and Compose see them now."""
    from docker.errors import ImageNotFound

    if restarts_dependents(config):
        return set()
    containers = []
    for c in dc.containers.list(all=True, filters={"label": f"com.docker.compose.project={target.project_name}"}):
        labels = c.labels
        svc = labels.get("com.docker.compose.service")
        if svc not in services or labels.get("com.docker.compose.oneoff") == "True":
            continue
        st = c.attrs.get("State") or {}
        containers.append(Container(svc, st.get("Status", ""), (st.get("Health") or {}).get("Status", "none"),
                                    st.get("ExitCode"), labels.get(HASH_LABEL),
                                    labels.get(IMAGE_LABEL) or c.attrs.get("Image"),
                                    mounted_files_changed(c.attrs.get("Mounts") or [], st.get("StartedAt") or "")))
    if not containers:  # the first up: nothing to compare
        return set()
    images: dict[str, str | None] = {}
    ids: dict[str, str | None] = {}
    for svc in services:
        ref = ((config.get("services") or {}).get(svc) or {}).get("image")
        if ref not in ids:
            try:
                ids[ref] = dc.images.get(ref).id if ref else None
            except ImageNotFound:
                ids[ref] = None
        images[svc] = ids[ref]
    return settled(services, oneshots, parse_hashes(target.run("config", "--hash", "*").stdout), images, containers)
