"""Where a test run's time went, per test directory, from pytest's JUnit XML.

    ./fx check -p no:cacheprovider --junit-xml=ci.xml
    .venv/bin/python tests/ci_time.py ci.xml [--json out.json]

Each test's time in the XML is its setup, call and teardown, so a session fixture (images
built, a stack brought up) counts for the directory of the test that first or last needed it.
In a run of several processes (tests/parallel.py) xdist names each test's group after an `@`:
the table per group says how long each group of machine state kept its process busy.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def per_directory(xml: Path) -> dict[str, dict[str, float]]:
    dirs: dict[str, dict[str, float]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")
        # classname is tests.<dir>.<module>[.<class>]; a module at the top is its own entry
        where = "/".join(parts[:2]) if len(parts) > 2 else ".".join(parts)
        entry = dirs.setdefault(where, {"tests": 0, "seconds": 0.0})
        entry["tests"] += 1
        entry["seconds"] += float(case.get("time", 0) or 0)
    return {k: {"tests": v["tests"], "seconds": round(v["seconds"], 1)}
            for k, v in sorted(dirs.items(), key=lambda kv: -kv[1]["seconds"])}


def per_group(xml: Path) -> dict[str, dict[str, float]]:
    """{group: tests, seconds} of a run of several processes; empty for a run of one."""
    from parallel import OWN_PROJECTS, SHARED

    groups: dict[str, dict[str, float]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = case.get("name", "")
        if "@" in name:
            group = name.rsplit("@", 1)[1]
            where = group if group in (SHARED, OWN_PROJECTS) else "one module each (MACHINE_FREE)"
        else:
            where = "unit tier"
        entry = groups.setdefault(where, {"tests": 0, "seconds": 0.0})
        entry["tests"] += 1
        entry["seconds"] += float(case.get("time", 0) or 0)
    if set(groups) == {"unit tier"}:
        return {}
    return {k: {"tests": v["tests"], "seconds": round(v["seconds"], 1)}
            for k, v in sorted(groups.items(), key=lambda kv: -kv[1]["seconds"])}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("xml", type=Path)
    parser.add_argument("--json", type=Path, help="write the table as JSON here too")
    args = parser.parse_args(argv)
    dirs = per_directory(args.xml)
    suite = ET.parse(args.xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total = float(suite.get("time", 0))
    for where, v in dirs.items():
        print(f"{where:<24} {v['tests']:>4} tests {v['seconds']:>8.1f} s")
    print(f"{'whole run':<24} {sum(v['tests'] for v in dirs.values()):>4} tests {total:>8.1f} s")
    groups = per_group(args.xml)
    for where, v in groups.items():
        print(f"group {where:<34} {v['tests']:>4} tests {v['seconds']:>8.1f} s")
    if args.json:
        tmp = args.json.with_suffix(".tmp")
        record = {"seconds": round(total, 1), "per_directory": dirs, **({"per_group": groups} if groups else {})}
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
