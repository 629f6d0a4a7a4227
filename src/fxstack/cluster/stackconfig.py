"""Compose's resolved config of a stack (the model every engine here starts from), with the
images of the current build."""

from __future__ import annotations

import os
from pathlib import Path

from ..envfile import ensure_env_file, read_env, secret_files
from ..errors import FxError
from ..paths import repo_root
from ..specs import load_specs
from ..stack.compose import images_env_file, required_vars
from ..stack.target import Target
from ..stacks import registry

# Variants a cluster render includes when their images are built: the GPU service belongs on
# the cluster's GPU node. (variant, the image setting it needs)
CLUSTER_VARIANTS = {"fx": (("gpu", "FX_FINGPT_IMAGE"),)}


def image_vars(tag: str | None = None) -> dict[str, str]:
    """*_IMAGE settings: from images.env, or (tag given) every spec's `name:tag`, for renders
    that need no build (tests)."""
    if tag is None:
        return read_env(images_env_file())
    return {name.upper().replace("-", "_") + "_IMAGE": f"{name}:{tag}" for name in load_specs(repo_root())}


def cluster_target(stack: str | None, overrides: dict[str, str] | None = None, log=lambda message: None,
                   env_file: Path | None = None) -> Target:
    """The stack as a cluster renders it: the cluster variants whose images are built, its env
    file (default compose/<stack's env file>) and the secrets directory beside it."""
    definition = registry.get(stack)
    overrides = dict(overrides or {})
    variants = []
    for variant, image_var in CLUSTER_VARIANTS.get(definition.name, ()):
        if overrides.get(image_var):
            variants.append(variant)
        else:
            log(f"{definition.name}: without the {variant} variant ({image_var} is not built)")
    return Target(definition, variants=tuple(variants), strict=False, overrides=overrides, env_file=env_file)


def write_secrets(target: Target, log=lambda message: None) -> Path:
    """The env file's missing generated values, then every secret file the stack's services
    mount, from it. Swarm reads a file once, when `docker stack deploy` creates the secret (as
    the deploying user), and gives the task the owner and mode the stack file names: the file on
    the manager need not belong to the service's user. An existing file with the same content is
    left as it is (a Compose stack of the same checkout may be reading it)."""
    created, added = ensure_env_file(target.env_path, target.stack.generate(), target.stack.env_header,
                                     plain=set(target.stack.plain_defaults))
    if created or added:
        log(f"{'wrote' if created else 'completed'} {target.env_path} (generated secrets, mode 600)")
    config = target.config()
    names = sorted({s["source"] for svc in (config.get("services") or {}).values() for s in svc.get("secrets") or []})
    contents = secret_files(target.stack.secret_files, target.settings(), names)
    directory = target.secrets_path
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for name, content in contents.items():
        path = directory / name
        try:
            if path.read_bytes() == content:
                continue
        except FileNotFoundError:
            pass
        _write_0600(path, content)
    return directory


def _write_0600(path: Path, content: bytes) -> None:
    """Written whole or not at all (a temporary file renamed), readable by its owner only."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    os.replace(tmp, path)


def stack_config(stack: str | None, overrides: dict[str, str] | None = None,
                 log=lambda message: None, env_file: Path | None = None) -> tuple[str, str, dict]:
    """(stack name, Compose project, resolved config). Secrets are referenced, so the env file
    need not hold them: missing values become placeholders, never rendered. Every image the
    stack's files name must be built."""
    target = cluster_target(stack, overrides, log, env_file)
    definition = target.stack
    missing = [v for v in required_vars(target.files) if v.endswith("_IMAGE") and not overrides.get(v)]
    if missing:
        raise FxError(f"images of the {definition.name} stack are not built: {', '.join(missing)}",
                      where=str(images_env_file()), hint="run `fxstack build` first (it writes .fxstack/images.env)")
    return definition.name, target.project_name, target.config()
