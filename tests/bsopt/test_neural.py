"""The neural pricer's pieces on the host: the numpy forward pass equals scikit-learn's, the
versioned store publishes atomically, and neural-pricing swaps to a new version while serving.
(The accuracy target, MAE < 0.5 % of spot on the held-out grid, is checked on the model the
worker image trains: tests/bsopt/test_bsopt_stack.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bsopt.ml import model
from bsopt.pricing import bsm
from bsopt.pricing import main as pricing

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def small():
    # a quick, rough network: these tests are about plumbing, not accuracy
    return model.train(samples=600, hidden=(8,), seed=3, max_iter=60)


def test_forward_pass_equals_sklearn(small):
    from sklearn.neural_network import MLPRegressor

    net, _ = small
    mlp = MLPRegressor(hidden_layer_sizes=(8,), activation="tanh")
    mlp.coefs_, mlp.intercepts_ = net.weights, net.biases
    mlp.n_layers_, mlp.out_activation_, mlp.n_outputs_ = 3, "identity", 1
    x = model.sample(50, np.random.default_rng(0))
    want = mlp.predict((x - net.x_mean) / net.x_scale) * net.y_scale + net.y_mean
    np.testing.assert_allclose(net.g(x), want, rtol=1e-12, atol=1e-12)


def test_puts_follow_by_parity_and_metrics_are_reported(small):
    net, metrics = small
    c = net.price(100, 90, 0.5, 0.02, 0.3, 0.01, True)
    p = net.price(100, 90, 0.5, 0.02, 0.3, 0.01, False)
    assert float(c - p) == pytest.approx(100 * np.exp(-0.005) - 90 * np.exp(-0.01), abs=1e-9)
    assert metrics["heldout_points"] == 1560 and metrics["heldout_mae_pct_spot"] > 0


def test_store_versions_and_current(tmp_path, small):
    net, metrics = small
    store = model.ModelStore(tmp_path)
    assert store.current() is None and store.load() is None
    assert store.publish(net, metrics) == 1
    assert store.publish(net, metrics) == 2
    assert store.versions() == [1, 2] and store.current() == 2
    loaded = store.load()
    assert loaded.version == 2 and loaded.meta["samples"] == 600
    x = model.sample(20, np.random.default_rng(1))
    np.testing.assert_array_equal(loaded.g(x), net.g(x))
    assert not list(store.dir.glob(".*")), "no temp files left behind"


def test_neural_pricing_serves_and_hot_swaps(tmp_path, small, monkeypatch):
    net, metrics = small
    serving = pricing.Serving(model.ModelStore(tmp_path))
    monkeypatch.setattr(pricing, "serving", serving)
    with TestClient(pricing.app) as client:
        assert client.get("/ready").status_code == 503
        r = client.post("/price", json={"spot": 100, "strike": 100, "years": 1, "volatility": 0.2})
        assert r.status_code == 503 and "train_neural_pricer" in r.json()["detail"]
        serving.store.publish(net, metrics)
        serving.refresh()       # what the watcher thread does every second
        body = {"spot": 100, "strike": [90, 100, 110], "years": 1, "volatility": 0.2, "rate": 0.01}
        b = client.post("/price", json=body).json()
        assert b["model_version"] == 1 and len(b["price"]) == 3
        np.testing.assert_allclose(b["analytic"], bsm.price(100, np.array([90, 100, 110]), 1, 0.01, 0.2))
        np.testing.assert_allclose(np.array(b["price"]) - b["analytic"], b["error"], atol=1e-12)
        better, m2 = model.train(samples=800, hidden=(8,), seed=4, max_iter=60)
        serving.store.publish(better, m2)
        serving.refresh()
        assert client.post("/price", json=body).json()["model_version"] == 2
        assert client.get("/ready").json() == {"ready": True, "model_version": 2}
        p = client.post("/price", json={**body, "volatility": -1}).json()
        assert p["errors"] == [{"field": "volatility", "reason": "is out of range, got -1.0",
                                "accepted": bsm.LIMITS["volatility"][1], "got": -1.0}]
        assert "volatility" in p["detail"]
