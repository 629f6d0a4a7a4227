"""The Feast repo: feature_store.yaml expanded from the environment, and the definitions."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


def test_feature_store_yaml_takes_its_settings_from_the_environment(monkeypatch, tmp_path):
    from fxservices.feature_repo.store import get_store

    monkeypatch.setenv("FX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REDIS_HOST", "redis.example")
    monkeypatch.setenv("REDIS_PORT", "6390")
    store = get_store()
    assert store.config.project == "fx"
    assert store.config.registry.path == f"{tmp_path}/feast/registry.db"
    assert store.config.online_store.type == "redis"
    assert store.config.online_store.connection_string == "redis.example:6390,username=,password="
    assert store.config.offline_store.type == "file"


def test_unset_variables_get_the_contract_defaults(monkeypatch):
    from fxservices.feature_repo.store import load_config

    for name in ("FX_DATA_DIR", "REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD",
                 "REDIS_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    config = load_config()
    assert config.project == "fx"
    assert config.registry.path == "/data/feast/registry.db"
    assert config.registry.cache_ttl_seconds == 30
    # no login: empty username and password, which redis-py takes as "no AUTH"
    assert config.online_store.connection_string == "redis:6379,username=,password="


def test_the_redis_login_comes_from_a_secret_file(monkeypatch, tmp_path):
    from fxservices.feature_repo.store import load_config

    secret = tmp_path / "api_redis_password"
    secret.write_text("Zq8v3kP0mW7xT2yL\n")
    monkeypatch.setenv("REDIS_USERNAME", "api")
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(secret))
    config = load_config()
    assert config.online_store.connection_string.endswith(",username=api,password=Zq8v3kP0mW7xT2yL")


def test_feast_repo_path_must_hold_feature_store_yaml(monkeypatch, tmp_path):
    from fxservices.common.config import ConfigError
    from fxservices.feature_repo.store import repo_path

    monkeypatch.setenv("FEAST_REPO_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=f"FEAST_REPO_PATH={tmp_path}: no feature_store.yaml"):
        repo_path()


def test_definitions_match_the_pipeline():
    from fxservices.feature_repo import definitions as d
    from fxservices.pipeline import features as f

    assert d.FEATURE_NAMES == f.FEATURE_NAMES
    view = d.fx_market_features
    assert view.name == "fx_market_features"
    assert [e for e in view.entities] == ["pair"]
    names = [field.name for field in view.schema]
    assert set(d.FEATURE_NAMES + d.INFO_NAMES) <= set(names)
    assert set(names) <= set(f.OFFLINE_COLUMNS)
    assert d.market_source.timestamp_field == "event_timestamp"
    assert d.pair.join_key == "pair"
    assert all(ref.startswith("fx_market_features:") for ref in d.feature_refs())
