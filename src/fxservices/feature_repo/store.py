"""Opening the Feast store from the environment (docs/contracts.md)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from fxservices.common.config import ConfigError, default_feast_repo_path, redis_auth

_DEFAULTS = {"FX_DATA_DIR": "/data", "REDIS_HOST": "redis", "REDIS_PORT": "6379"}


def repo_path() -> Path:
    path = Path(os.environ.get("FEAST_REPO_PATH") or default_feast_repo_path())
    if not (path / "feature_store.yaml").is_file():
        raise ConfigError(f"FEAST_REPO_PATH={path}: no feature_store.yaml there")
    return path


def _prepare_env(path: Path) -> None:
    for name, value in _DEFAULTS.items():
        if not os.environ.get(name):
            os.environ[name] = value
    # The Redis login for feature_store.yaml's connection string, in this process's environment
    # only: the password comes from REDIS_PASSWORD_FILE (a Compose secret) where one is set.
    auth = redis_auth()
    os.environ["FX_REDIS_USERNAME"] = auth.get("username", "")
    os.environ["FX_REDIS_PASSWORD"] = auth.get("password", "")
    lines = (path / "feature_store.yaml").read_text().splitlines()
    text = os.path.expandvars("\n".join(l for l in lines if not l.lstrip().startswith("#")))
    left = re.findall(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", text)
    if left:
        raise ConfigError(
            f"{path / 'feature_store.yaml'} uses {', '.join(sorted(set(left)))} "
            "but the environment does not set it"
        )


def registry_path() -> Path:
    return Path(os.environ.get("FX_DATA_DIR") or "/data") / "feast" / "registry.db"


def load_config(path: str | Path | None = None):
    """The RepoConfig of feature_store.yaml as the environment expands it (opens nothing)."""
    from feast.repo_config import load_repo_config

    repo = Path(path) if path else repo_path()
    _prepare_env(repo)
    return load_repo_config(repo, repo / "feature_store.yaml")


def get_store(path: str | Path | None = None):
    """A FeatureStore for the repo at `path` (default FEAST_REPO_PATH).

    Note: with a file registry Feast creates an empty registry file when there is none."""
    from feast import FeatureStore

    repo = Path(path) if path else repo_path()
    _prepare_env(repo)
    return FeatureStore(repo_path=str(repo))
