"""`fxstack render k8s`: the manifests of both stacks validate against the Kubernetes 1.30
schemas (kubernetes-validate, strict) and keep the Compose hardening, limits and probes."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from fxstack.cluster import k8s
from fxstack.errors import FxError

from .stack_models import model

pytestmark = pytest.mark.unit

WORKLOADS = ("Deployment", "StatefulSet", "Job")


def rendered(stack: str) -> dict[str, list[dict]]:
    return k8s.render(model(stack))


def by_kind(files, kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for docs in files.values() for d in docs if d["kind"] == kind}


def pods(files):
    for docs in files.values():
        for d in docs:
            if d["kind"] in WORKLOADS:
                yield d["metadata"]["name"], d["spec"]["template"]["spec"]


@pytest.mark.parametrize("stack", ["fx", "bsopt"])
def test_every_manifest_validates_strictly_against_kubernetes_1_30(stack):
    pytest.importorskip("kubernetes_validate", reason="requirements/cluster.txt (./fx check installs it)")
    k8s.validate(rendered(stack))


def test_validation_catches_a_field_kubernetes_does_not_have():
    pytest.importorskip("kubernetes_validate", reason="requirements/cluster.txt (./fx check installs it)")
    files = copy.deepcopy(rendered("fx"))
    files["fastapi.yaml"][-1]["spec"]["template"]["spec"]["containers"][0]["memLimit"] = "1g"
    with pytest.raises(FxError, match="fastapi.yaml: Deployment/fastapi: Additional properties"):
        k8s.validate(files)


@pytest.mark.parametrize("stack", ["fx", "bsopt"])
def test_hardening_of_compose_on_every_pod(stack):
    for name, pod in pods(rendered(stack)):
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0, name
        assert pod["automountServiceAccountToken"] is False
        (c,) = pod["containers"]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"] == {"drop": ["ALL"]}, name
        assert sc["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost"), name
        assert re.fullmatch(r"registry\.example:5000/fx/[a-z0-9-]+@sha256:[0-9a-f]{64}", c["image"]), name
        assert c["resources"]["limits"]["memory"].endswith("Mi"), f"{name}: Compose mem_limit"


def test_fx_workload_kinds_replicas_and_volumes():
    files = rendered("fx")
    stateful = by_kind(files, "StatefulSet")
    assert {"postgres", "redis", "mlflow", "prometheus"} <= set(stateful)
    assert stateful["postgres"]["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "pgdata"
    deployments = by_kind(files, "Deployment")
    assert deployments["fastapi"]["spec"]["replicas"] == 2
    assert deployments["airflow-worker"]["spec"]["replicas"] == 2
    worker = deployments["airflow-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["args"][-1] == "celery@%h", "two workers, two Celery node names"
    assert set(by_kind(files, "Job")) == {"airflow-init"}
    # the data directory (Feast's registry) is shared by scheduler, worker and API: one RWX claim
    assert by_kind(files, "PersistentVolumeClaim")["fx-data"]["spec"]["accessModes"] == ["ReadWriteMany"]
    # Prometheus' configuration (the GPU variant's: a cluster render includes fingpt) and the
    # statsd exporter's files travel as ConfigMaps
    assert "prometheus.gpu.yml" in by_kind(files, "ConfigMap")["prometheus-files"]["data"]
    assert len(by_kind(files, "ConfigMap")["statsd-exporter-files"]["data"]) == 2


def test_probes_limits_gpu_and_services():
    files = rendered("fx")
    api = by_kind(files, "Deployment")["fastapi"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8000}
    h = model("fx").services["fastapi"].health
    # the startup probe covers the start period, then the check's retries (Compose's values)
    assert api["startupProbe"]["failureThreshold"] == round(h.start_period / h.interval) + h.retries
    assert api["startupProbe"]["periodSeconds"] == max(1, round(h.interval))
    assert api["resources"]["limits"]["memory"] == "1024Mi"
    worker = by_kind(files, "Deployment")["airflow-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["readinessProbe"]["tcpSocket"] == {"port": 8793}
    redis = by_kind(files, "StatefulSet")["redis"]["spec"]["template"]["spec"]["containers"][0]
    assert redis["readinessProbe"]["exec"]["command"][:2] == ["/bin/sh", "-c"]
    assert 'REDISCLI_AUTH="$(cat ' in redis["readinessProbe"]["exec"]["command"][2], "probes are not expanded"
    fingpt = by_kind(files, "StatefulSet")["fingpt"]["spec"]["template"]["spec"]["containers"][0]
    assert fingpt["resources"]["limits"]["nvidia.com/gpu"] == 1
    services = by_kind(files, "Service")
    assert services["statsd-exporter"]["spec"]["ports"][-1] == {"name": "udp-9125", "port": 9125,
                                                               "targetPort": 9125, "protocol": "UDP"}
    assert {"postgres", "redis", "mlflow", "fastapi"} <= set(services)


@pytest.mark.parametrize("stack", ["fx", "bsopt"])
def test_secrets_are_referenced_never_written(stack):
    files = rendered(stack)
    assert not by_kind(files, "Secret")
    for name, pod in pods(files):
        for vol in pod.get("volumes", []):
            if "secret" in vol:
                assert vol["secret"]["secretName"] == f"{model(stack).project}-secrets"
                assert vol["secret"]["defaultMode"] == 0o440


def test_shell_substitutions_survive_kubernetes_expansion():
    init = by_kind(rendered("fx"), "Job")["airflow-init"]["spec"]["template"]["spec"]["containers"][0]
    assert "pw=$$(cat /run/secrets/airflow_admin_password)" in init["args"][-1]


def test_bsopt_scraper_keeps_its_seccomp_profile_and_shm():
    pod = by_kind(rendered("bsopt"), "Deployment")["scraper"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "Localhost", "localhostProfile": "fxstack/chromium.json"}
    assert {"name": "shm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]


def test_written_files_read_back(tmp_path):
    files = rendered("bsopt")
    written = k8s.write(files, tmp_path / "k8s")
    assert sorted(p.name for p in written) == sorted(files)
    for path in written:
        assert list(yaml.safe_load_all(path.read_text())) == files[path.name]
