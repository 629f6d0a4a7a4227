"""`fxstack render k8s [STACK] -o DIR`: plain Kubernetes manifests from the stack model.

One file per service (its workload, Service, ConfigMap) plus one for the shared volume claims.
Deployments for stateless services, StatefulSets with a volume claim template for the stateful
ones, Jobs for the one-shot ones. Secrets are referenced by name, never written: the cluster
gets them from `kubectl create secret generic <project>-secrets --from-file=<secrets dir>`.
The Compose hardening maps one to one: runAsNonRoot with the image's numeric user,
readOnlyRootFilesystem, every capability dropped, allowPrivilegeEscalation false, seccomp
RuntimeDefault (or the stack's own profile as a Localhost one); memory limits from mem_limit;
probes from the Compose health checks (HTTP and TCP checks become httpGet/tcpSocket probes, the
rest exec). What Kubernetes has no per-pod field for (pids_limit) is listed in docs/cluster.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from ..errors import FxError
from ..image.store import atomic_write_bytes
from .model import Health, Service, StackModel

KUBERNETES_VERSION = "1.30.0"
VOLUME_SIZE = "10Gi"
SECCOMP_DIR = "fxstack"  # Localhost profiles live under the kubelet's seccomp root, in this folder


def _labels(model: StackModel, svc: Service) -> dict[str, str]:
    return {"app.kubernetes.io/name": svc.name, "app.kubernetes.io/part-of": model.project}


def _k8s_name(text: str) -> str:
    return text.lower().replace("_", "-").replace(".", "-")


def _probe(h: Health, threshold: int) -> dict:
    probe: dict = {"periodSeconds": max(1, math.ceil(h.interval)), "timeoutSeconds": max(1, math.ceil(h.timeout)),
                   "failureThreshold": max(1, threshold)}
    if h.http:
        probe["httpGet"] = {"path": h.http[1], "port": h.http[0]}
    elif h.tcp:
        probe["tcpSocket"] = {"port": h.tcp}
    else:
        # Compose's `$$` escape is also Kubernetes' in command, args and env (it expands $(NAME)
        # there), but a probe's command is run as written
        probe["exec"] = {"command": [a.replace("$$", "$") for a in h.command]}
    return probe


def _mem(n: int) -> str:
    return f"{n // (1 << 20)}Mi" if n % (1 << 20) == 0 else str(n)


def _pod(model: StackModel, svc: Service) -> dict:
    if svc.image.uid == 0:
        raise FxError(f"image of {svc.name} runs as root: runAsNonRoot would refuse it",
                      where=svc.name, hint="give its spec a non-root user")
    volumes: list[dict] = []
    mounts: list[dict] = []
    for i, m in enumerate(svc.mounts):
        vol = f"v{i}-{_k8s_name(Path(m.target).name or 'root')}"[:63].rstrip("-")
        if m.kind == "tmpfs":
            empty: dict = {"medium": "Memory"}
            if m.size:
                empty["sizeLimit"] = _mem(m.size)
            volumes.append({"name": vol, "emptyDir": empty})
            mounts.append({"name": vol, "mountPath": m.target})
        elif m.kind == "volume":
            mounts.append({"name": _k8s_name(m.source), "mountPath": m.target, "readOnly": m.read_only})
        elif m.kind == "shared":
            volumes.append({"name": vol, "persistentVolumeClaim": {"claimName": _k8s_name(m.source),
                                                                    "readOnly": m.read_only}})
            mounts.append({"name": vol, "mountPath": m.target, "readOnly": m.read_only})
        elif m.kind == "config":
            volumes.append({"name": vol, "configMap": {"name": f"{svc.name}-files"}})
            mounts.append({"name": vol, "mountPath": m.target, "subPath": Path(m.source).name, "readOnly": True})
    if svc.shm_size:
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": _mem(svc.shm_size)}})
        mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    if svc.secrets:
        volumes.append({"name": "secrets", "secret": {
            "secretName": f"{model.project}-secrets", "defaultMode": 0o440,
            "items": [{"key": s, "path": s} for s in svc.secrets]}})
        mounts.append({"name": "secrets", "mountPath": "/run/secrets", "readOnly": True})
    seccomp = ({"type": "Localhost", "localhostProfile": f"{SECCOMP_DIR}/{Path(svc.seccomp).name}"}
               if svc.seccomp else {"type": "RuntimeDefault"})
    resources: dict = {}
    if svc.memory:
        resources = {"limits": {"memory": _mem(svc.memory)}, "requests": {"memory": _mem(svc.memory)}}
    if svc.gpus:
        resources.setdefault("limits", {})["nvidia.com/gpu"] = svc.gpus
    container: dict = {
        "name": svc.name, "image": svc.image.ref, "imagePullPolicy": "IfNotPresent",
        "env": [{"name": k, "value": v} for k, v in sorted(svc.environment.items())],
        "ports": [{"containerPort": p.number, "protocol": p.protocol.upper(), "name": f"{p.protocol}-{p.number}"}
                  for p in svc.ports],
        "volumeMounts": mounts, "resources": resources,
        "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": svc.read_only,
                            "allowPrivilegeEscalation": not svc.no_new_privileges,
                            "capabilities": {"drop": svc.cap_drop}, "seccompProfile": seccomp},
    }
    if svc.entrypoint is not None:
        container["command"] = svc.entrypoint
    if svc.command is not None:
        container["args"] = svc.command
    if svc.health and svc.kind != "job":
        container["readinessProbe"] = _probe(svc.health, svc.health.retries)
        container["livenessProbe"] = _probe(svc.health, svc.health.retries)
        if svc.health.start_period:
            container["startupProbe"] = _probe(
                svc.health, math.ceil(svc.health.start_period / max(svc.health.interval, 1)) + svc.health.retries)
    container = {k: v for k, v in container.items() if v not in ([], {}, None)}
    pod: dict = {
        "enableServiceLinks": False,  # else every Service adds REDIS_PORT=tcp://... to the env
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": svc.image.uid, "runAsGroup": svc.image.gid,
                            "fsGroup": svc.image.gid, "seccompProfile": seccomp},
        "containers": [container],
    }
    if volumes:
        pod["volumes"] = volumes
    if svc.stop_grace:
        pod["terminationGracePeriodSeconds"] = math.ceil(svc.stop_grace)
    if svc.hostname and svc.replicas == 1:
        pod["hostname"] = svc.hostname
    if svc.kind == "job":
        pod["restartPolicy"] = "OnFailure"
    return pod


def service_manifests(model: StackModel, svc: Service) -> list[dict]:
    labels = _labels(model, svc)
    meta = {"name": svc.name, "labels": labels}
    template = {"metadata": {"labels": labels}, "spec": _pod(model, svc)}
    docs: list[dict] = []
    configs = [m for m in svc.mounts if m.kind == "config"]
    if configs:
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{svc.name}-files", "labels": labels},
                     "data": {Path(m.source).name: Path(m.source).read_text() for m in configs}})
    if svc.ports and svc.kind != "job":
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {
            "selector": labels,
            "ports": [{"name": f"{p.protocol}-{p.number}", "port": p.number, "targetPort": p.number,
                       "protocol": p.protocol.upper()} for p in svc.ports]}})
    if svc.kind == "job":
        docs.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
                     "spec": {"backoffLimit": 10, "template": template}})
    elif svc.kind == "stateful":
        claims = [{"metadata": {"name": _k8s_name(m.source)},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": VOLUME_SIZE}}}}
                  for m in svc.mounts if m.kind == "volume"]
        docs.append({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": {
            "serviceName": svc.name, "replicas": 1, "selector": {"matchLabels": labels},
            "template": template, "volumeClaimTemplates": claims}})
    else:
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
            "replicas": svc.replicas, "selector": {"matchLabels": labels}, "template": template,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}})
    return docs


def shared_claims(model: StackModel) -> list[dict]:
    return [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": _k8s_name(v), "labels": {"app.kubernetes.io/part-of": model.project}},
             "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": VOLUME_SIZE}}}}
            for v in model.shared_volumes()]


def render(model: StackModel) -> dict[str, list[dict]]:
    """file name -> the manifests in it."""
    files = {f"{name}.yaml": service_manifests(model, svc) for name, svc in model.services.items()}
    claims = shared_claims(model)
    if claims:
        files["shared-volumes.yaml"] = claims
    return files


def write(files: dict[str, list[dict]], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, docs in sorted(files.items()):
        text = "---\n".join(yaml.safe_dump(d, sort_keys=False, default_flow_style=False) for d in docs)
        atomic_write_bytes(out / name, text.encode())
        written.append(out / name)
    return written


def validate(files: dict[str, list[dict]], version: str = KUBERNETES_VERSION) -> None:
    """Every manifest against the Kubernetes JSON schemas of `version`, strict (no unknown field)."""
    try:
        import kubernetes_validate
    except ImportError:
        raise FxError("kubernetes-validate is not installed",
                      hint="pip install --no-deps --require-hashes -r requirements/cluster.txt") from None
    problems = []
    for name, docs in files.items():
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} "
                                f"at {'/'.join(map(str, exc.path))}")
    if problems:
        raise FxError("manifests do not validate against Kubernetes " + version + ":\n  " + "\n  ".join(problems))
