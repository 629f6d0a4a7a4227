"""One wrk run against a JSON POST endpoint on 127.0.0.1, parsed: what both stack benchmarks use."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile


def wrk_post(url: str, body: dict, seconds: int, connections: int) -> dict:
    """p50/p99 in ms, requests/s, non-2xx count and socket errors of `seconds` of POSTs."""
    if shutil.which("wrk") is None:
        return {"error": "wrk not installed (apt-get install wrk)"}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = '{json.dumps(body)}'\n")
        script = f.name
    try:
        proc = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, url],
                              capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(script)
    text = proc.stdout

    def ms(label: str) -> float | None:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {"p50_ms": ms("50%"), "p99_ms": ms("99%"), "requests_per_s": float(rps.group(1)) if rps else None,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else "",
            "connections": connections, "seconds": seconds, "raw": text}
