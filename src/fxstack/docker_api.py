"""The one way fxstack gets a Docker SDK client: it answers ping, or an FxError says how to get one."""

from __future__ import annotations

import os

from .errors import FxError


def client(timeout: int = 120):
    """`timeout` is per API call: loads stream whole images and want minutes, queries want less."""
    import docker
    from docker.errors import DockerException

    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        c = docker.from_env(timeout=timeout)
        c.ping()
        return c
    except (DockerException, OSError) as exc:
        text = str(exc)
        if "Permission denied" in text or "PermissionError" in text:
            hint = (f"you may not use {where}: add yourself to the `docker` group "
                    "(`sudo usermod -aG docker $USER`, then log in again) or run as root")
        else:
            hint = ("start the Docker daemon (`sudo systemctl start docker`, or `sudo dockerd &` where there "
                    "is no systemd) or point DOCKER_HOST at a running one")
        raise FxError(f"Docker daemon unreachable at {where}: {text.splitlines()[0] if text else exc!r}",
                      where="docker", hint=hint) from None
