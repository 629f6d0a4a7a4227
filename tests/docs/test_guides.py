"""The guides in docs/ are tests: each is followed literally on a copy of the repository
(tests/docs/guide.py), and a step that stops being enough fails here."""

from __future__ import annotations

import sys
import time
import uuid

import pytest

from guide import DOCS, Copy, guide_steps

IMAGE_GUIDE, SERVICE_GUIDE = "adding-an-image.md", "adding-a-service.md"


@pytest.mark.unit
@pytest.mark.parametrize("name", [IMAGE_GUIDE, SERVICE_GUIDE])
def test_a_guide_has_steps_that_write_check_and_run(name):
    steps = guide_steps(name)
    kinds = [s.kind for s in steps]
    assert "sh" in kinds and ("file" in kinds or "diff" in kinds), kinds
    # every file a step writes is named in the guide's table of files to touch
    text = (DOCS / name).read_text()
    table = text.split("\n## ", 1)[0]
    for step in steps:
        paths = [step.path] if step.kind == "file" else \
            [line[len("+++ b/"):] for line in step.body.splitlines() if line.startswith("+++ b/")]
        for path in paths:
            assert f"`{path}`" in table, f"{name}: {step} changes {path}, which its table of files does not name"


@pytest.mark.unit
def test_the_parser_takes_file_diff_and_sh_blocks_and_nothing_else():
    from guide import steps

    text = ("intro\n```python file=src/a.py\nprint(1)\n```\n```toml\nx = 1\n```\n"
            "```diff\n--- a/x\n+++ b/x\n```\n```sh\n./fx specs\n```\n```text\nnot run\n```\n")
    got = [(s.kind, s.path, s.body) for s in steps(text)]
    assert got == [("file", "src/a.py", "print(1)\n"), ("diff", "", "--- a/x\n+++ b/x\n"), ("sh", "", "./fx specs\n")]


def _copy(tmp_path, **env) -> Copy:
    return Copy(tmp_path / "repo", {"FXSTACK_PROJECT": f"fxguide-{uuid.uuid4().hex[:8]}", **env})


@pytest.fixture(autouse=True)
def _checkout_images_env_kept():
    """The copy builds into this checkout's state (its caches make the guides fast), and so
    writes the guides' new images into its images.env: take them out again afterwards, so this
    checkout's Compose and gc see only its own images. Only the guides' images: the lines of this
    checkout's own images are another test's load meanwhile (tests/parallel.py), and stay."""
    from fxstack.envfile import read_env
    from fxstack.load.loader import env_var_for, forget_images_env
    from fxstack.paths import state_dir
    from fxstack.specs import load_specs

    path = state_dir() / "images.env"
    ours = {env_var_for(name) for name in load_specs(DOCS.parent)}
    before = set(read_env(path))
    yield
    added = sorted(set(read_env(path)) - before - ours)
    if added:
        forget_images_env(state_dir(), [k[:-len("_IMAGE")].lower().replace("_", "-") for k in added])
    assert not set(read_env(path)) - before - ours


@pytest.mark.integration
def test_the_image_guide_builds_and_runs_a_new_image(tmp_path, docker_client):
    t0 = time.monotonic()
    copy = _copy(tmp_path)
    copy.follow(guide_steps(IMAGE_GUIDE))
    print(f"\nimage guide: {time.monotonic() - t0:.1f}s, touched {copy.touched()}\n" + "\n".join(copy.log),
          file=sys.stderr)
    assert copy.touched() == ["images/fx-hello.toml", "src/fxhello/__main__.py", "tests/builder/test_specs.py"]


@pytest.mark.integration
def test_the_service_guide_brings_its_stack_up_with_the_new_service_reachable(tmp_path, docker_client, free_port):
    t0 = time.monotonic()
    ports = {v: str(free_port()) for v in ("BSOPT_API_PORT", "BSOPT_PRICING_PORT", "BSOPT_HELLO_PORT")}
    copy = _copy(tmp_path, **ports)
    try:
        copy.follow(guide_steps(IMAGE_GUIDE) + guide_steps(SERVICE_GUIDE))
    finally:
        # whatever step failed, the guide's stack goes (the guide itself ends with `down`)
        import subprocess

        subprocess.run(["./fx", "down", "bsopt", "--volumes"], cwd=copy.root, env=copy.env,
                       capture_output=True, timeout=300)
    touched = copy.touched()
    print(f"\nservice guide (with the image guide): {time.monotonic() - t0:.1f}s, {len(touched)} files "
          f"touched: {touched}\n" + "\n".join(copy.log), file=sys.stderr)
    assert "compose/bsopt.yml" in touched and "src/fxstack/stacks/bsopt.py" in touched
    assert not any(n.startswith(copy.env["FXSTACK_PROJECT"]) for n in
                   (c.name for c in docker_client.containers.list(all=True))), "the guide's stack is still there"
