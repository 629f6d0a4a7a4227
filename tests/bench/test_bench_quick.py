"""`./fx bench --quick` runs every scenario of the builder benchmark, ours and the Dockerfile
baseline, on one small image: a change that breaks a scenario (a stale lock, a load that no
longer works, a build that stops being reproducible) fails here rather than in the next
person's full benchmark run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCENARIOS = ("cold_build_s", "noop_rebuild_s", "initial_load_s", "code_change_rebuild_reload_s",
             "code_change_cli_s", "add_dependency_rebuild_reload_s", "second_cold_build_s",
             "cold_redis_from_lock_s", "cold_redis_drifted_s")
BASELINE = ("cold_build_s", "noop_rebuild_s", "code_change_rebuild_s", "add_dependency_rebuild_s")


@pytest.mark.integration
def test_quick_benchmark_runs_every_scenario(cpu_images, tmp_path):
    # cpu_images: the checkout's state holds the Python root filesystem the quick run starts
    # from (the session builds it for the other integration tests anyway)
    out = tmp_path / "quick.json"
    # --repeat 1: each scenario once is what this test is for (the medians are `./fx bench`'s)
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench.py"), "--quick", "--repeat", "1",
                           "--out", str(out), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"the quick benchmark failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(out.read_text())
    ours, base = result["ours"], result["baseline"]
    assert result["mode"] == "quick"
    for key in SCENARIOS:
        assert ours.get(key, 0) > 0, f"ours: no figure for {key}"
    for key in BASELINE:
        assert base.get(key, 0) > 0, f"baseline: no figure for {key}"
    assert ours["identical_digests"] == ours["images_compared"] == 1, "two clean builds differ"
    # the table is what a reader sees: both sides on the code-change row
    assert "1-line change: `fxstack build --load`" in proc.stdout
    assert set(result["images"]) == {"bench-mini"}
    # and nothing of it stays in Docker: no baseline image (tagged or left dangling by a
    # rebuild), no bench-mini image of ours
    left = subprocess.run(["docker", "image", "ls", "-q", "--filter", "label=org.fxstack.bench-baseline"],
                          capture_output=True, text=True, check=True).stdout.split()
    left += subprocess.run(["docker", "image", "ls", "-q", "bench-mini"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert left == [], f"the benchmark left images in Docker: {left}"
