"""The real stack: real dockerd, the images `fxstack build` made, traffic only to 127.0.0.1.

Tests share the session's stack, and the destructive ones (crash/restart, down + up) come last
so the others see it undisturbed; no test relies on another having run: what one needs (a
registered model) comes from a fixture.
"""

from __future__ import annotations

import os
import secrets
import signal
import time

import pytest
import requests

from fxstack.stack import docker_state as ds
from fxstack.stack import lifecycle
from fxstack.stacks import fx_e2e as e2e
from fxstack.envfile import read_env

pytestmark = pytest.mark.integration

EXPECTED = {"postgres", "redis", "airflow-init", "airflow-scheduler", "airflow-webserver", "airflow-worker",
            "mlflow", "fastapi", "prometheus", "statsd-exporter", "redis-exporter"}


def wait_until(predicate, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


# ------------------------------------------------------------------ bring-up
def test_from_nothing_to_every_service_healthy(stack, docker_client):
    st = stack["target"].states(docker_client)
    assert set(st) == EXPECTED
    for name, s in st.items():
        if name == "airflow-init":
            assert s.state == "exited" and s.exit_code == 0, s
        else:
            assert s.state == "running" and s.health == "healthy", s
    # the number the benchmark reports: images loaded -> all CPU services healthy
    print(f"\nimages loaded -> all services healthy: {stack['up'].seconds:.1f} s")
    assert stack["up"].seconds < 900


def test_only_loopback_ports_and_an_internal_backend_network(stack, docker_client):
    published = {}
    for c in ds.project_containers(docker_client, stack["project"], all_=False):
        svc = c.labels["com.docker.compose.service"]
        for bindings in (c.attrs["NetworkSettings"]["Ports"] or {}).values():
            for b in bindings or []:
                assert b["HostIp"] == "127.0.0.1", (svc, b)
                published[svc] = int(b["HostPort"])
    assert set(published) == {"airflow-webserver", "mlflow", "fastapi", "prometheus"}
    backend = docker_client.networks.get(f"{stack['project']}_backend")
    assert backend.attrs["Internal"] is True
    # postgres and redis are on the internal network only: nothing outside Docker reaches them
    for svc in ("postgres", "redis"):
        c = docker_client.containers.get(stack["target"].states(docker_client)[svc].container)
        assert set(c.attrs["NetworkSettings"]["Networks"]) == {f"{stack['project']}_backend"}


def test_status_lists_every_service_with_its_url(stack, capsys):
    rows = {r["service"]: r for r in lifecycle.status(stack["target"])}
    assert set(rows) == EXPECTED
    api_url = rows["fastapi"]["url"]
    assert api_url.startswith("http://127.0.0.1:")
    assert requests.get(api_url.replace("/docs", "/health"), timeout=10).status_code == 200
    out = capsys.readouterr().out
    assert "airflow-webserver" in out and "healthy" in out


def test_secrets_are_not_in_the_images(stack, docker_client):
    secrets_ = {k: v for k, v in read_env(stack["env_file"]).items() if "PASSWORD" in k or "KEY" in k}
    for s in stack["target"].states(docker_client).values():
        c = docker_client.containers.get(s.container)
        image_env = "\n".join(c.image.attrs["Config"].get("Env") or [])
        for key, value in secrets_.items():
            assert value not in image_env, (s.service, key)


# ------------------------------------------------------------------ bad requests get 4xx with a message
@pytest.fixture(scope="module")
def ep(stack):
    return e2e.endpoints(stack["target"])


def assert_client_error(r: requests.Response, status: int | tuple, *words: str):
    allowed = status if isinstance(status, tuple) else (status,)
    assert r.status_code in allowed, (r.status_code, r.text[:500])
    assert r.text.strip(), "a 4xx must say what was wrong"
    for w in words:
        assert w.lower() in r.text.lower(), (w, r.text[:500])


def test_inference_api_rejects_bad_requests_with_4xx(ep):
    api = ep.api
    assert_client_error(requests.post(f"{api}/predict", json={}, timeout=30), 422, "pair")
    assert_client_error(requests.post(f"{api}/predict", json={"pair": 42}, timeout=30), (404, 422), "pair")
    assert_client_error(requests.post(f"{api}/predict", data="not json",
                                      headers={"Content-Type": "application/json"}, timeout=30), 422)
    r = requests.post(f"{api}/predict", json={"pair": "ZZZ_QQQ"}, timeout=30)
    assert_client_error(r, (404, 422), "ZZZ_QQQ")
    assert_client_error(requests.get(f"{api}/predict", timeout=30), 405)
    assert_client_error(requests.get(f"{api}/no-such-route", timeout=30), 404)


def test_airflow_api_rejects_bad_requests_with_4xx(ep):
    base = f"{ep.airflow}/api/v1"
    assert_client_error(requests.get(f"{base}/dags", timeout=30), (401, 403))
    assert_client_error(requests.get(f"{base}/dags", auth=(ep.auth[0], "wrong-" + secrets.token_hex(4)),
                                     timeout=30), (401, 403))
    assert_client_error(requests.get(f"{base}/dags/no_such_dag", auth=ep.auth, timeout=30), 404, "no_such_dag")
    e2e.wait_for_dag(ep)
    assert_client_error(requests.post(f"{base}/dags/{e2e.DAG_ID}/dagRuns", json={"conf": "not-an-object"},
                                      auth=ep.auth, timeout=30), 400)


def test_mlflow_api_rejects_bad_requests_with_4xx(ep):
    base = f"{ep.mlflow}/api/2.0/mlflow"
    assert_client_error(requests.get(f"{base}/registered-models/get", params={"name": "no-such-model"},
                                     timeout=30), 404, "no-such-model")
    assert_client_error(requests.post(f"{base}/runs/create", data="{not json", timeout=30,
                                      headers={"Content-Type": "application/json"}), 400)


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def e2e_result(stack):
    return e2e.run(stack["target"], timeout=float(os.environ.get("FXSTACK_TEST_DAG_TIMEOUT", "900")))


def test_dag_via_rest_registers_a_model_that_predict_serves(e2e_result, ep):
    assert e2e_result.model_version
    print(f"\nDAG end to end (trigger -> served prediction): {e2e_result.dag_seconds:.1f} s")
    # MLflow holds a registered version with that number...
    mv = e2e.serving_version(ep)
    assert str(mv["version"]) == e2e_result.model_version and mv["name"] == ep.model_name
    # ...whose run logged artifacts through the server
    assert e2e.artifact_listing(ep, mv["run_id"]), "the registered model's run has no artifacts"
    # and /predict answers with exactly that version, for every configured pair
    for pair in ep.pairs:
        r = e2e.predict(ep, pair)
        assert r.status_code == 200, (pair, r.text)
        assert e2e.response_version(r.json()) == e2e_result.model_version


def test_prometheus_reports_every_target_up(e2e_result, ep):
    ts = e2e.wait_targets_up(ep)
    assert {"prometheus", "fastapi", "mlflow", "airflow", "redis"} <= {t["labels"]["job"] for t in ts}
    # the DAG run reached Prometheus through statsd -> the exporter
    def dagrun_metric():
        r = requests.get(f"{ep.prometheus}/api/v1/query",
                         params={"query": 'airflow_dagrun_duration_seconds_count{dag_id="fx_pipeline"}'}, timeout=30)
        return r.json()["data"]["result"]
    assert wait_until(dagrun_metric, 90, "the fx_pipeline dagrun metric in Prometheus", 5)


# ------------------------------------------------------------------ restart policy
def test_crashed_api_container_is_restarted_healthy(stack, docker_client, ep):
    before = stack["target"].states(docker_client)["fastapi"]
    c = docker_client.containers.get(before.container)
    # SIGKILL to the container's init, as a crash (OOM kill, segfault) delivers it. Docker 20.10
    # treats `docker kill` through its API as a deliberate stop and does not apply the restart
    # policy to it (see the next test); a process dying on its own is what the policy is for.
    os.kill(c.attrs["State"]["Pid"], signal.SIGKILL)

    def back():
        c.reload()
        s = c.attrs["State"]
        return c.attrs["RestartCount"] > before.restarts and s["Status"] == "running" and \
            (s.get("Health") or {}).get("Status") == "healthy"

    wait_until(back, 120, "the fastapi container to be restarted and healthy")
    assert requests.get(f"{ep.api}/health", timeout=10).status_code == 200


def test_docker_kill_of_the_api_then_up_brings_it_back(stack, docker_client, ep):
    name = stack["target"].states(docker_client)["fastapi"].container
    docker_client.containers.get(name).kill()
    wait_until(lambda: docker_client.containers.get(name).status == "exited", 30, "fastapi to stop")
    lifecycle.up(stack["target"], build=False, timeout=300)
    s = stack["target"].states(docker_client)["fastapi"]
    assert s.state == "running" and s.health == "healthy"
    assert requests.get(f"{ep.api}/health", timeout=10).status_code == 200


# ------------------------------------------------------------------ persistence across down + up
def test_data_and_the_served_model_survive_down_and_up(stack, docker_client, ep, e2e_result):
    """Everything written before `down` is there after `up`, and `up` returns only once the API
    serves the registered model: the very first POST /predict after it answers 200 with that
    version, on every worker (a registered model comes from the e2e fixture, run here if no
    earlier test did)."""
    token = secrets.token_hex(8)
    env = read_env(stack["env_file"])

    def pg(sql: str):
        c = docker_client.containers.get(stack["target"].states(docker_client)["postgres"].container)
        rc, out = c.exec_run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-tAc", sql],
                             environment={"PGPASSWORD": env["POSTGRES_PASSWORD"]})
        assert rc == 0, out.decode()
        return out.decode().strip()

    def redis_cli(*args):
        c = docker_client.containers.get(stack["target"].states(docker_client)["redis"].container)
        # Redis requires a login (ACL users): Airflow's user may read and write every key
        rc, out = c.exec_run(["redis-cli", "--user", "airflow", "-h", "127.0.0.1", *args],
                             environment={"REDISCLI_AUTH": env["REDIS_AIRFLOW_PASSWORD"]})
        assert rc == 0, out.decode()
        return out.decode().strip()

    # write: a Redis key, a Postgres row, an MLflow run with an artifact (through the server)
    assert redis_cli("SET", "fxstack:persist", token) == "OK"
    pg("CREATE TABLE IF NOT EXISTS fxstack_persist (token text)")
    pg(f"INSERT INTO fxstack_persist VALUES ('{token}')")
    ml = f"{ep.mlflow}/api/2.0/mlflow"
    exp = requests.post(f"{ml}/experiments/create", json={"name": f"fxstack-persist-{token}"}, timeout=30)
    assert exp.status_code == 200, exp.text
    run = requests.post(f"{ml}/runs/create", json={"experiment_id": exp.json()["experiment_id"]}, timeout=30)
    assert run.status_code == 200, run.text
    info = run.json()["run"]["info"]
    artifact_uri = info["artifact_uri"]
    assert artifact_uri.startswith("mlflow-artifacts:"), artifact_uri
    path = artifact_uri.split("mlflow-artifacts:", 1)[1].lstrip("/") + "/persist.txt"
    put = requests.put(f"{ep.mlflow}/api/2.0/mlflow-artifacts/artifacts/{path}", data=token.encode(), timeout=30)
    assert put.status_code == 200, put.text
    served_version = str(e2e.serving_version(ep)["version"])
    assert served_version == e2e_result.model_version

    lifecycle.down(stack["target"], volumes=False)
    assert not ds.project_containers(docker_client, stack["project"])
    lifecycle.up(stack["target"], build=False, timeout=600)
    ep2 = e2e.endpoints(stack["target"])  # same ports (env), containers are new
    # at once, no retry: each request on a new connection, so both gunicorn workers answer some
    first = [e2e.predict(ep2, ep2.pairs[0]) for _ in range(20)]
    assert [(r.status_code, e2e.response_version(r.json())) for r in first] == [(200, served_version)] * 20, \
        [r.text[:300] for r in first if r.status_code != 200][:3]

    assert redis_cli("GET", "fxstack:persist") == token
    assert pg(f"SELECT count(*) FROM fxstack_persist WHERE token = '{token}'") == "1"
    got = requests.get(f"{ep2.mlflow}/api/2.0/mlflow-artifacts/artifacts/{path}", timeout=30)
    assert got.status_code == 200 and got.text == token
    listing = e2e.artifact_listing(ep2, info["run_id"])
    assert [f["path"] for f in listing] == ["persist.txt"]
    assert str(e2e.serving_version(ep2)["version"]) == served_version


def test_up_refuses_a_taken_port_and_names_the_variable(stack, docker_client):
    import socket

    from fxstack.errors import FxError

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        target = stack["target"]
        grafana = target.but(variants=("grafana",),
                             overrides={**target.overrides, "FX_GRAFANA_PORT": str(s.getsockname()[1])})
        # grafana is not running in this stack, so its port counts as someone else's
        with pytest.raises(FxError) as err:
            lifecycle.preflight(grafana, docker_client, {})
        assert "FX_GRAFANA_PORT" in str(err.value) and "grafana" in str(err.value)
    finally:
        s.close()


def test_up_refuses_a_port_another_projects_container_publishes(stack, docker_client):
    """Found by asking Docker: with --userland-proxy=false nothing listens on the host port."""
    from fxstack.errors import FxError
    from fxstack.stack.compose import images_env_file
    from fxstack.stack.docker_state import free_port

    redis_ref = read_env(images_env_file())["REDIS_IMAGE"]
    port = free_port()
    other = docker_client.containers.run(
        redis_ref, detach=True, ports={"6379/tcp": ("127.0.0.1", port)},
        labels={"com.docker.compose.project": "someone-else"})
    try:
        target = stack["target"]
        grafana = target.but(variants=("grafana",), overrides={**target.overrides, "FX_GRAFANA_PORT": str(port)})
        with pytest.raises(FxError) as err:
            lifecycle.preflight(grafana, docker_client, {})
        assert f"127.0.0.1:{port}" in str(err.value) and "FX_GRAFANA_PORT" in str(err.value)
    finally:
        other.remove(force=True, v=True)


# ------------------------------------------------------------------ a code change reaches the stack
def test_a_code_change_then_up_serves_the_new_code(stack, docker_client, ep, e2e_result, tmp_path, monkeypatch):
    """A one-line change to the inference API, then `up` as after any edit: fx-fastapi is
    rebuilt and loaded, Compose recreates that container only (and does not run the one-shot
    airflow-init again: fxstack.stack.settled), and when `up` returns the
    published port answers with the new code and the registered model. (How fast is
    `./fx bench-stack`'s business.) The checkout is not edited: the change is made in a copy,
    built into a state of its own that starts as a copy of the checkout's; afterwards `up`
    from the checkout's state puts the original image back."""
    import sys

    from fxstack.image.builder import cache_dir
    from fxstack.paths import repo_root, state_dir

    sys.path.insert(0, str(repo_root() / "bench"))
    from code_change import APP, copy_checkout, seed_state, set_version  # the benchmark's own steps

    root, state = repo_root(), state_dir()
    target = stack["target"].but(root=root)  # the compose files stay the checkout's own
    copy, own = copy_checkout(tmp_path / "repo"), tmp_path / "state"
    version = f"1.0.0+test.{time.time_ns()}"
    set_version(copy / APP, version)
    seed_state(own, state)

    def containers() -> dict[str, str]:
        return {svc: docker_client.containers.get(st.container).id for svc, st in target.states(docker_client).items()}

    def init_started() -> str:  # the one-shot: Compose would start it again on every up
        return docker_client.containers.get(target.states(docker_client)["airflow-init"].container).attrs["State"]["StartedAt"]

    before, init_before = containers(), init_started()
    old_ref = read_env(state / "images.env")["FX_FASTAPI_IMAGE"]
    monkeypatch.setenv("FXSTACK_ROOT", str(copy))
    monkeypatch.setenv("FXSTACK_STATE", str(own))
    monkeypatch.setenv("FXSTACK_CACHE", str(cache_dir(state)))
    new_ref = None
    try:
        lifecycle.up(target, out=sys.stderr)
        new_ref = read_env(own / "images.env")["FX_FASTAPI_IMAGE"]
        assert new_ref != old_ref
        r = requests.get(f"{ep.api}/openapi.json", timeout=10)
        assert r.status_code == 200 and r.json()["info"]["version"] == version
        r = e2e.predict(ep, ep.pairs[0])
        assert r.status_code == 200, r.text
        assert e2e.response_version(r.json()) == e2e_result.model_version
        after = containers()
        assert {svc for svc in after if after[svc] != before.get(svc)} == {"fastapi"}
        assert init_started() == init_before, "airflow-init ran again although nothing of it changed"
        assert docker_client.containers.get(target.states(docker_client)["fastapi"].container).image.tags == [new_ref]
    finally:
        monkeypatch.undo()
        lifecycle.up(target, build=False, out=sys.stderr)
        if new_ref:
            docker_client.images.remove(new_ref, noprune=False)
    assert requests.get(f"{ep.api}/openapi.json", timeout=10).json()["info"]["version"] != version
