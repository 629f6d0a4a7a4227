"""fx-fingpt: PyTorch with its CUDA libraries from the locked wheels, serving the tiny model.

Slow tier: the image carries ~7 GB of torch + NVIDIA wheels. The GPU test additionally needs
an NVIDIA GPU and the NVIDIA container runtime.
"""

from __future__ import annotations

import socket
import time

import pytest
import requests

SERVE = ("python3 -m fxservices.fingpt.tiny /tmp/m >/dev/null && "
         "exec uvicorn fxservices.fingpt.service:app --host 0.0.0.0 --port 8001")
TEXTS = ["Euro rises as the ECB hikes rates", "Stocks plunge on weak earnings"]


@pytest.fixture(scope="module")
def fingpt(docker_client):
    from fxstack.image.builder import Builder
    from fxstack.load.loader import load_images

    builder = Builder()
    images = builder.build(["fx-fingpt"])
    load_images(builder, images)
    return images[0]


def serve(client, ref, **kw):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = client.containers.run(ref, ["sh", "-c", SERVE], detach=True,
                              environment={"FINGPT_BASE_MODEL": "/tmp/m/base",
                                           "FINGPT_ADAPTER": "/tmp/m/adapter"},
                              ports={"8001/tcp": ("127.0.0.1", port)}, **kw)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            r = requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
            if r.status_code == 200:
                return c, port, r.json()
        except requests.RequestException:
            pass
        c.reload()
        if c.status == "exited":
            break
        time.sleep(2)
    logs = c.logs().decode()[-3000:]
    c.remove(force=True, v=True)
    raise AssertionError(f"fx-fingpt did not become healthy:\n{logs}")


@pytest.mark.slow
def test_fingpt_image_has_torch_with_cuda_libraries(fingpt, docker_client):
    out = docker_client.containers.run(fingpt.ref, ["python3", "-c",
        "import torch, transformers, peft, accelerate, os; "
        "print(torch.__version__, torch.version.cuda, os.getuid())"], remove=True).decode().split()
    assert out[0].startswith("2.6.0") and out[1].startswith("12.") and out[2] == "1000"


@pytest.mark.slow
def test_fingpt_image_serves_tiny_model_on_cpu(fingpt, docker_client):
    c, port, health = serve(docker_client, fingpt.ref)
    try:
        assert health["model"]["device"] == "cpu"
        r = requests.post(f"http://127.0.0.1:{port}/sentiment", json={"texts": TEXTS}, timeout=60)
        assert r.status_code == 200
        body = r.json()
        assert len(body) == 2 and all(item["label"] in ("positive", "negative", "neutral") for item in body)
    finally:
        c.remove(force=True, v=True)


@pytest.mark.gpu
def test_fingpt_image_serves_on_cuda(fingpt, docker_client):
    from docker.types import DeviceRequest

    c, port, health = serve(docker_client, fingpt.ref,
                            device_requests=[DeviceRequest(count=-1, capabilities=[["gpu"]])])
    try:
        assert health["model"]["device"].startswith("cuda")
        r = requests.post(f"http://127.0.0.1:{port}/sentiment", json={"texts": TEXTS}, timeout=60)
        assert r.status_code == 200 and len(r.json()) == 2
    finally:
        c.remove(force=True, v=True)
