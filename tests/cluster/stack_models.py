"""The real stacks' cluster models for the unit tier: Compose's resolved config of each stack's
own files, with images standing in for a build (each name gets a digest of its own)."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from fxstack.cluster.model import ImageInfo, StackModel, build_model, image_name
from fxstack.cluster.stackconfig import image_vars, stack_config

REGISTRY = "registry.example:5000/fx"
SERVICE_USERS = {"postgres": (101, 103), "redis": (102, 104), "prometheus": (103, 105), "redis-exporter": (65534, 65534)}


def fake_image(ref: str) -> ImageInfo:
    name = image_name(ref)
    uid, gid = SERVICE_USERS.get(name, (1000, 1000))
    return ImageInfo(f"{REGISTRY}/{name}@sha256:{hashlib.sha256(name.encode()).hexdigest()}", uid, gid)


@lru_cache(maxsize=None)
def model(stack: str) -> StackModel:
    name, project, config = stack_config(stack, image_vars("000000000000"))
    return build_model(name, project, config, fake_image)
