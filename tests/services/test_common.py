"""fxservices.common: environment reading with errors that name the variable."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


def test_required_variable_missing_names_it(monkeypatch):
    from fxservices.common.config import ConfigError, env_str

    monkeypatch.delenv("FX_SOMETHING", raising=False)
    with pytest.raises(ConfigError, match=r"FX_SOMETHING is not set.*mount it"):
        env_str("FX_SOMETHING", required=True, hint="mount it")
    monkeypatch.setenv("FX_SOMETHING", "   ")
    with pytest.raises(ConfigError, match="FX_SOMETHING"):
        env_str("FX_SOMETHING", required=True)
    monkeypatch.setenv("FX_SOMETHING", " value ")
    assert env_str("FX_SOMETHING", required=True) == "value"


def test_typed_values_and_their_errors(monkeypatch):
    from fxservices.common.config import ConfigError, env_bool, env_float, env_int, env_list

    monkeypatch.setenv("FX_PORT", "abc")
    with pytest.raises(ConfigError, match=r"FX_PORT='abc' is not an integer"):
        env_int("FX_PORT", 1)
    monkeypatch.setenv("FX_PORT", "70000")
    with pytest.raises(ConfigError, match="FX_PORT=70000 is above the maximum 65535"):
        env_int("FX_PORT", 1, maximum=65535)
    monkeypatch.setenv("FX_PORT", "6380")
    assert env_int("FX_PORT", 1) == 6380
    monkeypatch.setenv("FX_TTL", "-1")
    with pytest.raises(ConfigError, match="FX_TTL"):
        env_float("FX_TTL", 1.0, minimum=0.0)
    monkeypatch.setenv("FX_FLAG", "maybe")
    with pytest.raises(ConfigError, match="FX_FLAG"):
        env_bool("FX_FLAG", False)
    monkeypatch.setenv("FX_FLAG", "yes")
    assert env_bool("FX_FLAG", False) is True
    monkeypatch.setenv("FX_L", " a, ,b ,")
    assert env_list("FX_L") == ("a", "b")
    monkeypatch.delenv("FX_L")
    assert env_list("FX_L", ("x",)) == ("x",)


def test_settings_defaults_follow_the_contract(monkeypatch):
    from fxservices.common.config import FxSettings

    for name in ("REDIS_HOST", "REDIS_PORT", "MLFLOW_TRACKING_URI", "FX_MODEL_NAME",
                 "FX_MODEL_ALIAS", "FEAST_REPO_PATH", "FX_DATA_DIR", "FX_PAIRS"):
        monkeypatch.delenv(name, raising=False)
    s = FxSettings.from_env()
    assert (s.redis_host, s.redis_port) == ("redis", 6379)
    assert s.mlflow_tracking_uri == "http://mlflow:5000"
    assert (s.model_name, s.model_alias) == ("fx-direction", "serving")
    assert s.pairs == ("EUR_USD", "GBP_USD", "USD_JPY")
    assert str(s.data_dir) == "/data"
    assert (s.feast_repo_path / "feature_store.yaml").is_file()
    monkeypatch.setenv("FX_PAIRS", "eur/usd, aud_usd")
    assert FxSettings.from_env().pairs == ("EUR_USD", "AUD_USD")
