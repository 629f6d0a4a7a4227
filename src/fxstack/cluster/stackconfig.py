"""Compose's resolved config of a stack (the model every engine here starts from), with the
images of the current build."""

from __future__ import annotations

from ..envfile import read_env
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


def stack_config(stack: str | None, overrides: dict[str, str] | None = None,
                 log=lambda message: None) -> tuple[str, str, dict]:
    """(stack name, Compose project, resolved config). Secrets are referenced, so the env file
    need not hold them: missing values become placeholders, never rendered. Every image the
    stack's files name must be built."""
    definition = registry.get(stack)
    overrides = dict(overrides or {})
    variants = []
    for variant, image_var in CLUSTER_VARIANTS.get(definition.name, ()):
        if overrides.get(image_var):
            variants.append(variant)
        else:
            log(f"{definition.name}: without the {variant} variant ({image_var} is not built)")
    target = Target(definition, variants=tuple(variants), strict=False, overrides=overrides)
    missing = [v for v in required_vars(target.files) if v.endswith("_IMAGE") and not overrides.get(v)]
    if missing:
        raise FxError(f"images of the {definition.name} stack are not built: {', '.join(missing)}",
                      where=str(images_env_file()), hint="run `fxstack build` first (it writes .fxstack/images.env)")
    return definition.name, target.project_name, target.config()
