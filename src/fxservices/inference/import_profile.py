"""Print the inference API's import profile: every module file a worker imports, one path per
line relative to site-packages (the fx-fastapi image keeps byte-code, and the extension
modules of the packages its spec names, only for these; images/fx-fastapi.toml `trim`).

Run inside the running fastapi container (same environment, secrets and network as the
service; tools/import_profile.py does it): the app is served in this process by uvicorn, with
the event loop and HTTP parser gunicorn's UvicornWorker picks, and driven through what the
service does: start-up and its background warm-up, the first model loaded from the MLflow
registry, /health, /ready, /metrics, /openapi.json, POST /predict for every pair, a 404 and a
422. gunicorn's own modules are imported as its master and workers import them.

    docker exec -w /app <fastapi container> python3 -m fxservices.inference.import_profile
"""
from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

READY_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(base: str, method: str, path: str, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


def exercise() -> None:
    """Serve the app here and drive it until a model is served; raises if it never is."""
    import gunicorn.app.wsgiapp  # noqa: F401  (the master: config, arbiter, worker class)
    import gunicorn.arbiter  # noqa: F401
    import uvicorn
    import uvicorn.workers  # noqa: F401

    import fxservices.inference.gunicorn_conf  # noqa: F401
    from fxservices.inference.app import app, services

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, loop="auto",
                                           http="auto", lifespan="on", log_level="warning"))
    threading.Thread(target=server.run, name="profile-server", daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    status = 0
    # /ready speaks for the gunicorn master's workers, which this process is not one of:
    # a served prediction is what says that the model is loaded here
    while time.monotonic() < deadline:
        try:
            status = _call(base, "POST", "/predict", {"pair": "EUR_USD"})
        except OSError:
            status = 0
        if status == 200:
            break
        time.sleep(0.5)
    if status != 200:
        raise SystemExit(f"the API in this process served no prediction within "
                         f"{READY_TIMEOUT_S:.0f} s (last: {status}): profile a stack whose DAG has run")
    _call(base, "GET", "/ready")
    for pair in services.settings.pairs:
        for _ in range(3):  # the first reads the features, the next ones hit the caches
            assert _call(base, "POST", "/predict", {"pair": pair}) == 200
    _call(base, "POST", "/predict", {"pair": "XXX_YYY"})
    _call(base, "POST", "/predict", {"pair": 1})
    for path in ("/health", "/metrics", "/openapi.json", "/nowhere"):
        _call(base, "GET", path)
    server.should_exit = True


def imported_files(site: Path) -> list[str]:
    """The files of every imported module under `site`, relative to it."""
    out = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file:
            try:
                out.add(Path(file).resolve().relative_to(site).as_posix())
            except ValueError:
                pass
    return sorted(out)


def main() -> int:
    exercise()
    import fastapi

    site = Path(fastapi.__file__).resolve().parents[1]  # where the image installs packages
    print("\n".join(imported_files(site)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
