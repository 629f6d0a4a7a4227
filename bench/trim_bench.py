"""What an image's `trim` rules save: its layer bytes with and without them, per rule, and the
unique bytes of the own CPU images (a trimmed image's package layers are its own).

    .venv/bin/python bench/trim_bench.py [IMAGE]      # default fx-fastapi; builds what is missing

Prints a table and writes JSON (default bench/results/trim-latest.json).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OWN_CPU = ["fx-base", "fx-airflow-scheduler", "fx-airflow-webserver", "fx-airflow-worker", "fx-fastapi", "fx-mlflow"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", nargs="?", default="fx-fastapi")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "trim-latest.json"))
    args = ap.parse_args()
    from fxstack.image.builder import Builder
    from fxstack.image.settings import SITE_PACKAGES
    from fxstack.image.trim import Trim

    builder = Builder(log=lambda m: None)
    spec = builder.specs[args.image]
    if not spec.trim:
        sys.exit(f"{args.image} has no `trim` in its spec")
    built = {im.name: im for im in builder.build(sorted(set(OWN_CPU) | {args.image}))}
    trimmed = built[args.image]
    # the same image without its rules: the spec with trim = None, built from the same caches
    builder.specs[args.image] = dataclasses.replace(spec, trim=None)
    whole = builder.build([args.image])[0]
    builder.specs[args.image] = spec
    builder.build([args.image])  # the store's index names the trimmed image again

    trim = Trim.from_spec(spec.trim, ROOT)
    saved = [0] * len(trim.rules)
    per_image, classes = builder._package_classes()
    from fxstack.image.layers import layers_for
    from fxstack.image.wheels import install_tree, tree_key

    for files in layers_for(args.image, classes):
        for f in files:
            wheel = builder._wheel_for(f)
            tree = install_tree(wheel, tree_key(f, wheel, builder.compile_bytecode), builder.trees,
                                compile_bytecode=builder.compile_bytecode)
            site = tree / SITE_PACKAGES
            for path in site.rglob("*") if site.is_dir() else ():
                if path.is_file() and not path.is_symlink():
                    rel = path.relative_to(site).as_posix()
                    for i, rule in enumerate(trim.rules):  # the first rule that drops it counts
                        if rule.drops(rel, trim.imported):
                            saved[i] += path.stat().st_size
                            break

    def unique(images):
        seen = {}
        for im in images:
            seen.update({l.digest: l.size for l in im.layers})
        return sum(seen.values())

    others = [built[n] for n in OWN_CPU if n != args.image]
    result = {
        "image": args.image,
        "trimmed_mb": round(trimmed.size / 1e6, 1), "untrimmed_mb": round(whole.size / 1e6, 1),
        "rules": [{"files": list(r.patterns), "reason": r.reason, "saved_mb": round(s / 1e6, 1)}
                  for r, s in zip(trim.rules, saved)],
        "profiled_module_files": len(trim.imported),
        "own_cpu_unique_gb": {"trimmed": round(unique(others + [trimmed]) / 1e9, 2),
                              "untrimmed": round(unique(others + [whole]) / 1e9, 2)},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.image}: {result['untrimmed_mb']} MB -> {result['trimmed_mb']} MB of layers")
    for r in result["rules"]:
        print(f"  {r['saved_mb']:6.1f} MB  {', '.join(r['files'])}")
    u = result["own_cpu_unique_gb"]
    print(f"unique bytes of the six own CPU images: {u['untrimmed']} GB -> {u['trimmed']} GB")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
