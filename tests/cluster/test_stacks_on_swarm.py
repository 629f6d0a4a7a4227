"""The cluster tier's second run (`./fx check-cluster`): the real FX and bsopt stacks deployed by
`fxstack deploy swarm` onto three dockerd nodes from a registry `fxstack push` filled; each
stack's own end-to-end run through the load balancer, a node with an API replica (FX: and an
Airflow worker) lost under a client at 20 requests/s, the end-to-end run again with FX's
registered model and Airflow's run history kept, and a rolling update of fx-fastapi to a new
digest under wrk; nothing of it left on the machine afterwards (tests/cluster/stacks_on_swarm.py).
One cluster per stack, so one stack's failure does not hide the other's result."""

from __future__ import annotations

import os
import shutil

import pytest

pytestmark = pytest.mark.cluster


def _run(stack: str, capsys) -> dict:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nsenter", "unshare", "iptables", "wrk",
                                                                "docker-registry")):
        pytest.skip("needs root, iproute2, util-linux, iptables, wrk and docker-registry")
    from . import stacks_on_swarm

    from fxstack.paths import state_dir

    # the run's figures (docs/cluster.md quotes them from bench/results/): one file per stack
    out = state_dir() / "cluster-results" / f"{stack}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = stacks_on_swarm.main([stack], str(out))
    if "line" in (result.get(stack) or {}):
        with capsys.disabled():  # the run's line, `cluster fx: 3 nodes, ...`, also when pytest is quiet
            print(f"\n{result[stack]['line']}")
    assert result["leftovers"] == []
    r = result[stack]
    loss = r["node_loss"]
    assert loss["replacement_running_s"] is not None, f"{stack}: Swarm ran the lost replicas elsewhere"
    assert loss["client"]["sent"] > 0 and loss["client"]["failed"] < 0.01 * loss["client"]["sent"], loss
    assert r["e2e_after_loss"]["seconds"] > 0
    return r


def test_fx_on_three_nodes(docker_client, capsys):
    fx = _run("fx", capsys)
    assert fx["history"]["first_run_state"] == "success"
    assert fx["rolling_update"]["new"] != fx["rolling_update"]["old"]
    assert fx["rolling_update"]["requests"] > 0 and fx["rolling_update"]["failed"] == 0, fx["rolling_update"]


def test_bsopt_on_three_nodes(docker_client, capsys):
    _run("bsopt", capsys)
