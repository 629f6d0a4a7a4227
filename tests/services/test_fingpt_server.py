"""The FinGPT service behind a real uvicorn on 127.0.0.1 (both of uvicorn's HTTP parsers), with
the tiny LLaMA + LoRA model: its input is bounded before the model sees it."""
from __future__ import annotations

import json

import pytest

from .conftest import post_json, uvicorn_thread

pytestmark = pytest.mark.integration

MB = 1024 * 1024


@pytest.fixture(params=["httptools", "h11"])
def port(request, tiny, monkeypatch):
    from fxservices.fingpt import service

    monkeypatch.setenv("FINGPT_BASE_MODEL", tiny["base"])
    monkeypatch.setenv("FINGPT_ADAPTER", tiny["adapter"])
    monkeypatch.setattr(service, "state", service.State())
    with uvicorn_thread(service.app, http=request.param) as p:
        yield p


def _texts_body(size: int) -> bytes:
    """A well-formed request of at least `size` bytes: only its size is wrong."""
    n = size // 900 + 1
    return json.dumps({"texts": ["Euro rises as the ECB hikes rates " * 28] * n}).encode()


def _sentiment_413s(port: int) -> float:
    import urllib.request

    key = 'fx_fingpt_requests_total{method="POST",route="/sentiment",status="413"} '
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(key))


def test_a_1mb_body_is_413_before_it_is_read(port):
    body = _texts_body(MB)
    assert len(body) > MB
    before = _sentiment_413s(port)
    status, answer = post_json(port, "/sentiment", body)
    assert status == 413, answer
    (err,) = answer["errors"]
    assert set(err) == {"field", "reason", "accepted", "got"} and err["got"] == len(body)
    assert err["field"] == "body" and f"{len(body)} bytes (Content-Length)" in err["reason"]
    assert "65536 bytes (FX_MAX_BODY_BYTES)" in err["accepted"]
    # the same body in 8 KiB chunks, no Content-Length: counted while it streams
    status, answer = post_json(port, "/sentiment",
                               (body[i:i + 8192] for i in range(0, len(body), 8192)),
                               chunked=True)
    assert status == 413, answer
    assert "streamed without Content-Length" in answer["errors"][0]["reason"]
    assert _sentiment_413s(port) - before == 2  # counted under the route they were for


def test_bodies_under_the_limit_still_work(port):
    body = json.dumps({"texts": ["Euro rises as the ECB hikes rates", "Oil prices steady"]})
    status, answer = post_json(port, "/sentiment", body.encode())
    assert status == 200, answer
    assert [set(x) for x in answer] == [{"label", "score"}] * 2
    # chunked, just under the limit: the count while streaming lets it through
    texts = ["Stocks plunge on weak earnings " * 33] * 60
    body = json.dumps({"texts": texts}).encode()
    assert 60_000 < len(body) <= 64 * 1024
    status, answer = post_json(port, "/sentiment",
                               (body[i:i + 4096] for i in range(0, len(body), 4096)),
                               chunked=True)
    assert status == 200, answer
    assert len(answer) == 60


def test_text_length_and_batch_size_are_422_naming_the_limit(port):
    from fxservices.fingpt.service import MAX_CHARS, MAX_TEXTS

    status, answer = post_json(port, "/sentiment", json.dumps(
        {"texts": ["a"] * (MAX_TEXTS + 1)}).encode())
    assert status == 422, answer
    (err,) = answer["errors"]
    assert err["field"] == "texts"
    assert f"over the limit of {MAX_TEXTS} per request (FINGPT_MAX_TEXTS)" in err["reason"]
    assert "FINGPT_MAX_TEXTS" in err["accepted"] and "FINGPT_MAX_CHARS" in err["accepted"]
    status, answer = post_json(port, "/sentiment", json.dumps(
        {"texts": ["fine", "x" * (MAX_CHARS + 1)]}).encode())
    assert status == 422, answer
    assert answer["errors"][0]["reason"] == (
        f"texts[1] has {MAX_CHARS + 1} characters, over the limit of {MAX_CHARS} "
        "(FINGPT_MAX_CHARS)")
    assert "FINGPT_MAX_CHARS" in answer["detail"]
