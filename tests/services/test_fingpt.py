"""FinGPT processor and service on the CPU with a tiny LLaMA + LoRA adapter made here
(random weights, local word-level tokenizer; nothing downloaded). The image pins torch 2.6.0;
the host may run another CPU build: the code path is the same."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def processor(tiny):
    from fxservices.fingpt.processor import SentimentProcessor

    return SentimentProcessor(tiny["base"], tiny["adapter"])


TEXTS = ["Euro rises as the ECB hikes rates", "Stocks plunge on weak earnings",
         "Oil prices steady", "Gold gains; dollar falls as inflation slows"]


def test_tiny_model_is_a_llama_with_a_lora_adapter(tiny):
    import json
    from pathlib import Path

    cfg = json.loads((Path(tiny["base"]) / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["architectures"] == ["LlamaForCausalLM"]
    acfg = json.loads((Path(tiny["adapter"]) / "adapter_config.json").read_text())
    assert acfg["peft_type"] == "LORA" and acfg["task_type"] == "CAUSAL_LM"
    assert set(acfg["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert (Path(tiny["adapter"]) / "adapter_model.safetensors").stat().st_size > 0


@pytest.fixture(scope="module")
def expected(tiny):
    """Each text's label and score worked out from the tiny model by hand, apart from the
    processor's code: the adapter merged into the base weights, one text at a time (no
    padding), label tokens looked up in the word-level vocabulary, softmax over those three
    next-token logits after the prompt."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fxservices.fingpt.processor import LABELS, build_prompt

    tok = AutoTokenizer.from_pretrained(tiny["base"], local_files_only=True)
    base = AutoModelForCausalLM.from_pretrained(tiny["base"], torch_dtype=torch.float32,
                                                local_files_only=True)
    model = PeftModel.from_pretrained(base, tiny["adapter"]).merge_and_unload().eval()
    label_ids = [tok.convert_tokens_to_ids(label) for label in LABELS]
    out = {}
    with torch.inference_mode():
        for text in TEXTS:
            enc = tok(build_prompt(text), return_tensors="pt")
            probs = torch.softmax(model(**enc).logits[0, -1, label_ids], dim=-1)
            best = int(probs.argmax())
            out[text] = (LABELS[best], float(probs[best]))
    return out


def test_labels_and_scores_are_the_models(processor, expected):
    out = processor.classify(TEXTS)
    assert [(s.label, s.score) for s in out] == [
        (expected[t][0], pytest.approx(expected[t][1], abs=2e-6)) for t in TEXTS]
    # the text matters: the tiny model does not give these one score
    assert len({round(expected[t][1], 4) for t in TEXTS}) > 1
    assert processor.info()["device"] == "cpu" and processor.info()["dtype"] == "float32"
    assert len(set(processor.label_token_ids)) == 3
    assert processor.tokenizer.unk_token_id not in processor.label_token_ids


def test_deterministic_and_batch_independent(processor):
    together = processor.classify(TEXTS)
    again = processor.classify(TEXTS)
    alone = [processor.classify([t])[0] for t in TEXTS]
    assert [s.as_dict() for s in together] == [s.as_dict() for s in again]
    for a, b in zip(together, alone):  # left padding does not change a text's answer
        assert a.label == b.label
        assert a.score == pytest.approx(b.score, abs=1e-4)


def test_the_adapter_is_applied(processor):
    import torch

    from fxservices.fingpt.processor import build_prompt

    enc = processor.tokenizer([build_prompt(TEXTS[0])], return_tensors="pt")
    with torch.inference_mode():
        with_adapter = processor.model(**enc).logits[0, -1]
        with processor.model.disable_adapter():
            base_only = processor.model(**enc).logits[0, -1]
    assert not torch.allclose(with_adapter, base_only, atol=1e-5)


def test_prompt_is_fingpt_style():
    from fxservices.fingpt.processor import build_prompt

    p = build_prompt("  Shares rally  ")
    assert p.startswith("Instruction: What is the sentiment of this news?")
    assert "{negative/neutral/positive}" in p
    assert p.endswith("Input: Shares rally\nAnswer:")


def test_missing_or_wrong_paths_name_the_variable(tiny, tmp_path, monkeypatch):
    from fxservices.common.config import ConfigError
    from fxservices.fingpt.processor import SentimentProcessor, from_env

    monkeypatch.delenv("FINGPT_BASE_MODEL", raising=False)
    monkeypatch.setenv("FINGPT_ADAPTER", tiny["adapter"])
    with pytest.raises(ConfigError, match="FINGPT_BASE_MODEL is not set"):
        from_env()
    with pytest.raises(ConfigError, match=f"FINGPT_BASE_MODEL={tmp_path}/nope: .*does not exist"):
        SentimentProcessor(tmp_path / "nope", tiny["adapter"])
    with pytest.raises(ConfigError, match="FINGPT_ADAPTER=.*has no adapter_config.json"):
        SentimentProcessor(tiny["base"], tiny["base"])
    with pytest.raises(ConfigError, match="FINGPT_BASE_MODEL=.*has no config.json"):
        SentimentProcessor(tiny["adapter"], tiny["adapter"])


def _client(monkeypatch, **env):
    from fastapi.testclient import TestClient

    from fxservices.fingpt import service

    for k in ("FINGPT_BASE_MODEL", "FINGPT_ADAPTER"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    service.state = service.State()
    return TestClient(service.app, raise_server_exceptions=False)


def test_service_health_and_sentiment(tiny, monkeypatch):
    with _client(monkeypatch, FINGPT_BASE_MODEL=tiny["base"],
                 FINGPT_ADAPTER=tiny["adapter"]) as c:
        r = c.get("/health")
        assert r.status_code == 200
        assert r.json()["model"]["device"] == "cpu"
        r = c.post("/sentiment", json={"texts": TEXTS[:2]})
        assert r.status_code == 200
        body = r.json()
        assert len(body) == 2
        assert all(set(x) == {"label", "score"} for x in body)
        assert all(x["label"] in ("positive", "negative", "neutral") for x in body)
        for bad, field in [({}, "texts"), ({"texts": []}, "texts"), ({"texts": ["  "]}, "texts"),
                           ({"texts": "one"}, "texts"), ({"texts": [3]}, "texts.0"),
                           ({"texts": ["x"] * 65}, "texts")]:
            r = c.post("/sentiment", json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["errors"][0]["field"] == field
            assert "FINGPT_MAX_TEXTS" in r.json()["errors"][0]["accepted"]  # what to send
        r = c.post("/sentiment", content=b"{", headers={"content-type": "application/json"})
        assert r.status_code == 422
        m = c.get("/metrics").text
        assert 'fx_fingpt_requests_total{method="POST",route="/sentiment",status="200"}' in m


def test_service_without_model_answers_503_naming_the_variable(monkeypatch):
    with _client(monkeypatch) as c:
        r = c.get("/health")
        assert r.status_code == 503 and "FINGPT_BASE_MODEL" in r.json()["detail"]
        r = c.post("/sentiment", json={"texts": ["a"]})
        assert r.status_code == 503 and "FINGPT_BASE_MODEL" in r.json()["detail"]
