"""Write images/profiles/fx-fastapi.imports: the inference API's import profile, taken from
the running FX stack (its DAG has run, so a model is registered).

    ./fx up && ./fx test            # a stack with a served model
    .venv/bin/python tools/import_profile.py [--project fxstack]
    ./fx build fx-fastapi           # the image keeps byte-code for exactly these modules

Runs src/fxservices/inference/import_profile.py inside the fastapi container (that module
serves the app in its own process and drives it; see its docstring) and adds every extension
module the gunicorn workers have mapped (/proc/<pid>/maps), so a module only the real
workers loaded is kept too. Sorted, one path per line relative to site-packages.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "images" / "profiles" / "fx-fastapi.imports"
PROFILER = ROOT / "src" / "fxservices" / "inference" / "import_profile.py"
HEADER = """\
# fx-fastapi's import profile: the modules an inference API worker imports (site-packages
# relative). Written by tools/import_profile.py from the running stack; read by the image's
# `trim` rules (images/fx-fastapi.toml). Do not edit by hand.
"""


def container(project: str) -> str:
    out = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                          "--filter", "label=com.docker.compose.service=fastapi"],
                         capture_output=True, text=True, check=True).stdout.split()
    if not out:
        sys.exit(f"no running fastapi container in the Compose project {project!r}: "
                 "`./fx up` and `./fx test` first (or pass --project)")
    return out[0]


def worker_extensions(cid: str) -> set[str]:
    """Extension modules mapped by the container's gunicorn workers, site-packages relative."""
    script = ('for p in /proc/[0-9]*; do case "$(tr "\\0" " " < $p/cmdline 2>/dev/null)" in '
              '*gunicorn*) cat $p/maps;; esac; done')
    maps = subprocess.run(["docker", "exec", cid, "sh", "-c", script],
                          capture_output=True, text=True, check=True).stdout
    found = set()
    for line in maps.splitlines():
        path = line.split()[-1] if line.split() else ""
        if "-packages/" in path and ".cpython-" in path:
            found.add(path.split("-packages/", 1)[1])
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", default="fxstack", help="the Compose project of the FX stack")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    cid = container(args.project)
    proc = subprocess.run(["docker", "exec", "-i", "-w", "/app", cid, "python3", "-"],
                          input=PROFILER.read_text(), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"profiling failed in the fastapi container:\n{proc.stderr[-2000:]}")
    paths = set(proc.stdout.split()) | worker_extensions(cid)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(HEADER + "".join(f"{p}\n" for p in sorted(paths)))
    tmp.replace(args.out)
    print(f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}: "
          f"{len(paths)} module files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
