"""Compose's resolved config of a stack (the model every engine here starts from), with the
images of the current build."""

from __future__ import annotations

from ..envfile import read_env
from ..specs import load_specs
from ..paths import repo_root
from ..stack.compose import images_env_file
from ..stack.target import Target
from ..stacks import registry

# The variants a cluster render includes: the GPU service belongs on the cluster's GPU node.
CLUSTER_VARIANTS = {"fx": ("gpu",)}


def image_vars(tag: str | None = None) -> dict[str, str]:
    """*_IMAGE settings: from images.env, or (tag given) every spec's `name:tag`, for renders
    that need no build (tests)."""
    if tag is None:
        return read_env(images_env_file())
    return {name.upper().replace("-", "_") + "_IMAGE": f"{name}:{tag}" for name in load_specs(repo_root())}


def stack_config(stack: str | None, overrides: dict[str, str] | None = None) -> tuple[str, str, dict]:
    """(stack name, Compose project, resolved config). Secrets are referenced, so the env file
    need not hold them: missing values become placeholders, never rendered."""
    definition = registry.get(stack)
    target = Target(definition, variants=CLUSTER_VARIANTS.get(definition.name, ()), strict=False,
                    overrides=dict(overrides or {}))
    return definition.name, target.project_name, target.config()
