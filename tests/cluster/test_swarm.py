"""`fxstack deploy swarm`: the rendered `docker stack deploy` file of both stacks says everything
in the form Swarm honours (docs/cluster.md lists what `docker stack deploy` refuses or drops)."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from fxstack.cluster import swarm
from fxstack.cluster.model import ImageInfo
from fxstack.errors import FxError
from fxstack.stack.compose import find_compose

from .stack_models import REGISTRY, model

pytestmark = pytest.mark.unit

LB = ImageInfo(f"{REGISTRY}/haproxy@sha256:" + "ab" * 32, 100, 101)
OPTS = swarm.SwarmOptions(endpoint_mode="dnsrr", lb_image=LB, nfs="nfs.example:/srv/fxstack")
# keys `docker stack deploy` (20.10) refuses, or drops without a word
REFUSED_OR_DROPPED = ("mem_limit", "pids_limit", "tmpfs", "depends_on", "restart", "security_opt", "shm_size")


def stack_file(name: str, opts=OPTS):
    return swarm.render(model(name), opts)


@pytest.mark.parametrize("name", ["fx", "bsopt"])
def test_only_keys_swarm_honours(name):
    stack, _ = stack_file(name)
    for svc_name, svc in stack["services"].items():
        assert not set(REFUSED_OR_DROPPED) & set(svc), svc_name
        assert "@sha256:" in svc["image"], svc_name
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"], svc_name
        assert svc["deploy"]["restart_policy"]["condition"] in ("any", "on-failure"), svc_name
        assert svc["deploy"]["endpoint_mode"] == "dnsrr"
        for p in svc.get("ports", []):
            assert p["mode"] == "host", f"{svc_name}: no routing mesh without IPVS"


def test_fx_placement_replicas_and_resources():
    stack, _ = stack_file("fx")
    s = stack["services"]
    for stateful in ("postgres", "redis", "mlflow", "prometheus"):
        assert s[stateful]["deploy"]["placement"]["constraints"] == [f"node.labels.fxstack.fxstack.{stateful} == true"]
        assert s[stateful]["deploy"]["update_config"]["order"] == "stop-first"
    assert s["fastapi"]["deploy"]["replicas"] == 2 and s["airflow-worker"]["deploy"]["replicas"] == 2
    assert s["fastapi"]["deploy"]["update_config"] == {"parallelism": 1, "delay": "5s", "order": "start-first",
                                                       "failure_action": "rollback", "monitor": "30s"}
    assert s["airflow-worker"]["hostname"] == "airflow-worker-{{.Task.Slot}}"
    assert s["fastapi"]["deploy"]["resources"]["limits"] == {"memory": "1024M", "pids": 128}
    # tmpfs in the long form, with its size
    assert {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 64 << 20}} in s["fastapi"]["volumes"]
    assert s["airflow-init"]["deploy"]["restart_policy"]["condition"] == "on-failure"
    gpu = s["fingpt"]["deploy"]
    assert gpu["resources"]["reservations"]["generic_resources"][0]["discrete_resource_spec"]["kind"] == "NVIDIA-GPU"
    assert "node.labels.fxstack.gpu == true" in gpu["placement"]["constraints"]
    assert stack["networks"]["backend"] == {"driver": "overlay", "internal": True}
    assert stack["volumes"]["fx-data"]["driver_opts"]["device"] == ":/srv/fxstack/fx-data"
    assert stack["volumes"]["pgdata"] == {}


def test_secrets_long_form_owned_by_the_service_user():
    stack, _ = stack_file("fx")
    redis = stack["services"]["redis"]
    assert {"source": "redis_users_acl", "target": "redis_users_acl", "uid": "102", "gid": "104",
            "mode": 0o400} in redis["secrets"]
    assert set(stack["secrets"]) >= {"redis_users_acl", "api_redis_password"}
    # a file and, once the file exists (a checkout whose stack has been up), a name with its
    # content's hash (swarm.content_name): never the value
    assert all("file" in v and set(v) <= {"file", "name"} for v in stack["secrets"].values()), \
        "files referenced, values never written"


def test_load_balancer_finds_the_api_tasks_by_dns():
    stack, files = stack_file("fx")
    lb = stack["services"]["lb"]
    assert lb["deploy"]["mode"] == "global" and lb["ports"][0]["published"] == swarm.LB_PORT
    cfg = files["haproxy.cfg"]
    assert "server-template fastapi- 8 tasks.fastapi:8000" in cfg and "option httpchk GET /ready" in cfg
    assert "nameserver docker 127.0.0.11:53" in cfg
    assert "timeout connect 300ms" in cfg, "a request to a task that is gone is retried well within a client's timeout"
    # a server connection kept alive: `option http-server-close` sends the API `Connection: close`,
    # so after its early 413 for a 10 MB body it closed with the body still arriving and the
    # reset discarded the 413 before HAProxy read it (its log: SD--, status -1)
    assert "http-server-close" not in cfg and "httpclose" not in cfg
    assert "tasks.api:8000" in stack_file("bsopt")[1]["haproxy.cfg"]


class _ReadyServer:
    """A real HTTP server answering /ready with the status and JSON body set for each case."""

    def __enter__(self):
        import http.server
        import threading

        outer = self
        self.answer: tuple[int, dict] = (200, {})

        class Ready(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                status, body = outer.answer
                data = json.dumps(body).encode()
                self.send_response(status if self.path == "/ready" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Ready)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def probe(self, status: int, body: dict) -> int:
        """The fx entry probe run by bash, as Docker runs it, against the server answering
        `status` with `body`: its exit status."""
        self.answer = (status, body)
        test = swarm.entry_probe(self.server.server_port, "/ready", swarm.WARMING["fx"])
        assert test[:3] == ["CMD", "bash", "-c"]
        # `docker stack deploy` reads `$$` as `$`
        return subprocess.run(["bash", "-c", test[3].replace("$$", "$")], capture_output=True,
                              timeout=10).returncode


@pytest.mark.integration
def test_fx_entry_health_check_is_the_readiness_gate():
    """Swarm puts a task into DNS when its health check passes, and HAProxy serves a new address
    at once: fx-fastapi's check on Swarm passes only once the task is warm (entry_probe)."""
    from fxservices.inference.model import ModelCache

    check = stack_file("fx")[0]["services"]["fastapi"]["healthcheck"]
    assert check["test"] == swarm.entry_probe(8000, "/ready", swarm.WARMING["fx"])
    # what /ready says while a worker loads the model: the marker is the model cache's own text
    loading = ModelCache("http://mlflow:5000", "fx-direction", "serving").unavailable_reason()
    with _ReadyServer() as ready:
        assert ready.probe(200, {"ready": True}) == 0
        assert ready.probe(503, {"ready": False, "missing": [f"model: {loading}"]}) == 1
        assert ready.probe(503, {"ready": False, "missing": [
            "model: not every worker serves version 3 yet: worker 7 serves nothing yet"]}) == 1
        # missing outside the task (nothing registered yet, Redis down): healthy, Swarm keeps it
        assert ready.probe(503, {"ready": False, "missing": [
            "model: no version of model 'fx-direction' carries the alias 'serving'", "features: redis"]}) == 0
        assert ready.probe(500, {"detail": "boom"}) == 1
    with _ReadyServer() as gone:
        pass
    assert gone.probe(200, {}) == 1, "nothing listening: unhealthy"
    # bsopt's API already checks /ready on Compose: its check is Compose's
    assert "/ready" in str(stack_file("bsopt")[0]["services"]["api"]["healthcheck"]["test"])


def test_vip_mode_uses_the_routing_mesh():
    stack, _ = stack_file("fx", swarm.SwarmOptions(endpoint_mode="vip", lb_image=LB, nfs="n:/x"))
    assert stack["services"]["lb"]["ports"][0]["mode"] == "ingress"
    assert stack["services"]["fastapi"]["deploy"]["endpoint_mode"] == "vip"


def test_shared_volumes_need_nfs():
    with pytest.raises(FxError, match=r"fx-data: \['airflow-scheduler', 'airflow-worker', 'fastapi'\].*\n.*--nfs"):
        swarm.render(model("fx"), swarm.SwarmOptions(lb_image=LB))


def test_compose_v2_reads_the_file_and_keeps_the_escapes(tmp_path):
    """The file is Compose: Compose v2 (the real binary) parses it, and a shell's `$(...)` stays
    escaped for `docker stack deploy`'s interpolation."""
    stack, files = stack_file("fx")
    path = swarm.write(stack, files, tmp_path)
    assert (tmp_path / "haproxy.cfg").is_file()
    out = subprocess.run(find_compose() + ["-f", str(path), "-p", "fxcheck", "config", "--format", "json"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    parsed = json.loads(out.stdout)
    assert parsed["services"]["fastapi"]["deploy"]["replicas"] == 2
    assert "$$(cat /run/secrets/airflow_admin_password)" in yaml.safe_load(path.read_text())[
        "services"]["airflow-init"]["command"][-1]


@pytest.mark.parametrize("name", ["fx", "bsopt"])
def test_docker_stack_deploy_accepts_the_file(name, tmp_path):
    """Debian's docker CLI (20.10, the one the nodes run) loads and checks the file against its
    own Compose schema before it contacts a daemon: pointed at a socket that does not exist, a
    file it accepts fails only at the connection, and no `$` is left to its interpolation."""
    import os
    import shutil

    cli = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")
    if cli is None:
        pytest.skip("the docker CLI (docker.io) is needed; scripts/bootstrap.sh installs it")
    stack, files = stack_file(name)
    path = swarm.write(stack, files, tmp_path)
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    out = subprocess.run([cli, "stack", "deploy", "-c", str(path), f"fxcheck-{name}"], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=60)
    text = out.stdout + out.stderr
    assert "Cannot connect to the Docker daemon" in text, text
    assert "variable is not set" not in text, text


def test_docker_stack_deploy_would_refuse_a_compose_only_key(tmp_path):
    """The check above can fail: the same CLI refuses `mem_limit` beside deploy.resources."""
    import os
    import shutil

    cli = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")
    if cli is None:
        pytest.skip("the docker CLI (docker.io) is needed; scripts/bootstrap.sh installs it")
    stack, files = stack_file("bsopt")
    stack["services"]["api"]["mem_limit"] = "768m"
    path = swarm.write(stack, files, tmp_path)
    out = subprocess.run([cli, "stack", "deploy", "-c", str(path), "fxcheck"], capture_output=True, text=True,
                         env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}, timeout=60)
    assert "mem_limit" in out.stdout + out.stderr and "Cannot connect" not in out.stdout + out.stderr


def test_shared_path_binds_a_directory_of_the_shared_filesystem():
    opts = swarm.SwarmOptions(endpoint_mode="dnsrr", lb_image=LB, shared_path="/mnt/shared/fxstack/")
    for name, volume in (("fx", "fx-data"), ("bsopt", "models")):
        m = model(name)
        stack, _ = swarm.render(m, opts)
        device = f"/mnt/shared/fxstack/{m.project}/{volume}"
        assert stack["volumes"][volume] == {"driver": "local",
                                            "driver_opts": {"type": "none", "o": "bind", "device": device}}
        # owned by the one user of the images that mount it (a bind copies no owner from the image)
        assert swarm.shared_dirs(m, "/mnt/shared/fxstack") == {device: (1000, 1000)}
    assert stack_file("fx")[0]["volumes"]["pgdata"] == {}, "a stateful volume stays on its node"
    with pytest.raises(FxError, match="both name storage"):
        swarm.render(model("fx"), swarm.SwarmOptions(lb_image=LB, nfs="n:/x", shared_path="/s"))
    with pytest.raises(FxError, match="not an absolute path"):
        swarm.render(model("fx"), swarm.SwarmOptions(lb_image=LB, shared_path="shared"))


def test_published_ports_keep_clear_of_the_load_balancer():
    with pytest.raises(FxError, match=r"airflow-webserver would publish port 8080.*\n.*--publish airflow-webserver=PORT"):
        swarm.render(model("fx"), swarm.SwarmOptions(lb_image=LB, nfs="n:/x", publish=("airflow-webserver",)))
    stack, _ = swarm.render(model("fx"), swarm.SwarmOptions(lb_image=LB, nfs="n:/x",
                                                            publish=("airflow-webserver=18080", "mlflow")))
    s = stack["services"]
    assert s["airflow-webserver"]["ports"] == [{"target": 8080, "published": 18080, "protocol": "tcp", "mode": "host"}]
    assert s["mlflow"]["ports"][0]["published"] == 5000
    with pytest.raises(FxError, match="not a service"):
        swarm.render(model("fx"), swarm.SwarmOptions(lb_image=LB, nfs="n:/x", publish=("nosuch",)))


def test_swarm_tmpfs_that_compose_gives_to_the_user_is_an_anonymous_volume():
    """Swarm's tmpfs has no owner option and takes the mode of the image's directory (root 0755
    over /home/fxuser, seen on the cluster tier's nodes): the Airflow home becomes an anonymous
    volume, a copy of the image's directory with its owner; /tmp stays a sized tmpfs."""
    s = stack_file("fx")[0]["services"]["airflow-scheduler"]
    assert {"type": "volume", "target": "/home/fxuser"} in s["volumes"]
    assert {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 256 << 20}} in s["volumes"]


def test_a_host_mode_port_updates_stop_first():
    stack, _ = swarm.render(model("fx"), swarm.SwarmOptions(lb_image=LB, nfs="n:/x", publish=("mlflow=15000",
                                                                                            "airflow-webserver=18080")))
    assert stack["services"]["airflow-webserver"]["deploy"]["update_config"]["order"] == "stop-first"
    assert stack["services"]["fastapi"]["deploy"]["update_config"]["order"] == "start-first"


def test_secrets_and_configs_named_by_content(tmp_path):
    """Swarm never changes a secret's or a config's content: a stack deployed again after one
    changed (a new balancer configuration, a regenerated ACL file) names a new object."""
    stack, files = stack_file("fx")
    cfg = stack["configs"]["lb-haproxy-cfg"]
    assert cfg["name"] == swarm.content_name("fxstack", "lb-haproxy-cfg", files["haproxy.cfg"].encode())["name"]
    a, b = (swarm.content_name("fxstack", "redis_users_acl", c)["name"] for c in (b"one", b"two"))
    assert a != b and a.startswith("fxstack_redis_users_acl-") and len(a) <= 64
    assert swarm.content_name("fxstack", "x", None) == {}, "a file not written yet: no name"
