"""The OANDA token reaches the pipeline as a secret file (OANDA_API_TOKEN_FILE, the Compose
secret `oanda_api_token`), never through the container's environment. Unset, the file holds a
bare newline (Swarm refuses an empty secret) and the pipeline generates its price series."""
from __future__ import annotations

import pytest

from fxservices.pipeline import tasks
from fxservices.pipeline.ingest import IngestError

pytestmark = pytest.mark.unit


@pytest.fixture
def worker_env(tmp_path, monkeypatch):
    monkeypatch.delenv("OANDA_API_TOKEN", raising=False)
    monkeypatch.setenv("FX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FX_PAIRS", "EUR_USD")
    token_file = tmp_path / "oanda_api_token"
    monkeypatch.setenv("OANDA_API_TOKEN_FILE", str(token_file))
    return token_file, monkeypatch


def test_an_unset_token_file_means_the_generated_series(worker_env):
    token_file, _ = worker_env
    token_file.write_text("\n")
    (result,) = tasks.ingest_task()
    assert result["source"] == "generated" and result["rows"] > 0


def test_a_token_in_the_file_sends_the_pipeline_to_oanda(worker_env):
    token_file, mp = worker_env
    token_file.write_text("t0k\n")
    # an unknown OANDA_ENV stops before any request: the error shows the token was taken from the file
    mp.setenv("OANDA_ENV", "nowhere")
    with pytest.raises(IngestError, match="OANDA_ENV='nowhere'"):
        tasks.ingest_task()
