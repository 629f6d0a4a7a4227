"""The cluster tier (`./fx check-cluster`, not in `./fx check`: it starts three more dockerd and
holds two cores for minutes): a real three-node Swarm on this machine (tests/cluster/nodes.py),
images from a registry that `fxstack push` filled, the load balancer `deploy swarm` renders on
every node, a node's link cut under a client at 20 requests/s, a rolling update under wrk, and
nothing of it left on the machine afterwards."""

from __future__ import annotations

import os
import shutil

import pytest

pytestmark = pytest.mark.cluster


def test_three_node_swarm_behind_the_load_balancer(docker_client):
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nsenter", "unshare", "iptables", "wrk",
                                                                "docker-registry")):
        pytest.skip("needs root, iproute2, util-linux, iptables, wrk and docker-registry")
    from . import swarm_smoke

    result = swarm_smoke.main(None)
    assert result["leftovers"] == []
    assert len(result["replicas_on"]) == 2, "two replicas on two nodes"
    assert result["replacement_running_s"] is not None, "Swarm ran the lost replica elsewhere"
    assert result["node_loss_failed_requests"] < 0.01 * result["node_loss_requests"]
    assert result["rolling_update_requests"] > 0 and result["rolling_update_failed_requests"] == 0
