"""flake.nix's outputs evaluated against the stand-ins for nixpkgs, nix2container and poetry2nix
(tests/nix/standins): what each image is made of, in which order, what images share, and what
the apps, checks and dev shell contain."""

from __future__ import annotations

import functools
import json
import re
import tomllib

import pytest
from packaging.utils import canonicalize_name

import fxnix

pytestmark = [pytest.mark.unit, fxnix.needs_nix]

SPEC_NAMES = sorted(p.stem for p in (fxnix.ROOT / "images").glob("*.toml"))
AIRFLOW = ["fx-airflow-scheduler", "fx-airflow-webserver", "fx-airflow-worker"]
FLAKE_ENV = {"PATH", "SSL_CERT_FILE", "LD_LIBRARY_PATH", "NVIDIA_DRIVER_CAPABILITIES"}


@functools.cache
def baseline() -> list[str]:
    """nix/baseline.nix: what every image has besides its spec's packages."""
    return fxnix.eval_json(fxnix.ROOT / "nix" / "baseline.nix")


def test_every_image_has_bash_and_coreutils():
    """docs/contracts.md: health checks use bash /dev/tcp; airflow-init runs `bash -ec`."""
    assert {"bashInteractive", "coreutils"} <= set(baseline())


def python_images(specs):
    return [n for n, s in specs.items() if s["kind"] == "python"]


def service_images(specs):
    return [n for n, s in specs.items() if s["kind"] == "service"]


def nixpkgs_attr(flake, ref):
    fn = flake.drv(ref)["fn"]
    assert fn.startswith("nixpkgs."), fn
    return fn.removeprefix("nixpkgs.")


# --- what is exported ------------------------------------------------------------------------

def test_every_spec_is_an_image(flake, specs):
    assert sorted(flake.data["packages"]) == SPEC_NAMES == sorted(specs)
    # at least the 12 FX images and the 4 of bsopt (images/bsopt-*.toml)
    assert len(SPEC_NAMES) >= 16 and {"fx-base", "fx-fingpt", "grafana", "bsopt-worker"} <= set(SPEC_NAMES)
    for name in SPEC_NAMES:
        image = flake.image(name)
        assert image["fn"] == "nix2container.buildImage"
        assert image["args"]["name"] == name
        assert flake.data["images"][name]["imageName"] == name


def test_flake_outputs(flake):
    assert set(flake.data["outputNames"]) == {"packages", "legacyPackages", "apps", "checks", "devShells", "formatter"}
    assert set(flake.data["apps"]) >= {"stack-up", "stack-down", "stack-test"}
    assert set(flake.data["checks"]) == {"unit-tests", "specs-match", "images-evaluated"}


# --- config: user, entrypoint/cmd, ports, env, labels, workdir, volumes ---------------------

@pytest.mark.parametrize("name", SPEC_NAMES)
def test_image_config_follows_the_spec(flake, specs, name):
    spec, config = specs[name], flake.config(name)
    assert config["User"] == spec["user"]
    assert config["WorkingDir"] == spec["workdir"]
    assert config["Entrypoint"] == spec["entrypoint"]
    assert config["Cmd"] == spec["cmd"]
    assert config["ExposedPorts"] == {f"{p}/tcp": {} for p in spec["ports"]}
    assert config["Volumes"] == {v: {} for v in spec["volumes"]}
    env = flake.env(name)
    assert {k: env[k] for k in spec["env"]} == spec["env"]          # the spec's env, its values win
    assert set(env) - set(spec["env"]) <= FLAKE_ENV
    assert config["Labels"] == {"org.opencontainers.image.description": spec["description"], **spec["labels"]}
    assert flake.image_args(name)["meta"] == {"description": spec["description"]}


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_non_root_user_with_passwd_entry(flake, specs, name):
    spec = specs[name]
    assert spec["user"] != "root"
    system = flake.layers(name)[0]
    (rootfs,) = [d for d in flake.copy_to_root(system) if d["name"].startswith("fx-rootfs-")]
    script = rootfs["args"]["script"]
    uid = spec["uid"] if spec["uid"] is not None else (65534 if spec["user"] == "nobody" else 999)
    assert re.search(rf"^{re.escape(spec['user'])}:x:{uid}:{uid}:", script.replace("echo '", ""), re.M), script
    assert "ln -s ../bin $out/usr/bin" in script
    if spec["kind"] == "python":
        assert "mkdir -p $out/app $out/data" in script
        owned = {p["regex"].split(rootfs_path(flake, system))[1] for p in system["args"]["perms"] if "uid" in p}
        assert owned == {"/data(/.*)?$", f"/home/{spec['user']}(/.*)?$"}
        assert all(p["uid"] == uid and p["mode"] == "0755" for p in system["args"]["perms"] if "uid" in p)


def rootfs_path(flake, layer):
    (path,) = [r["$drv"] for r in layer["args"]["copyToRoot"] if flake.drv(r)["name"].startswith("fx-rootfs-")]
    return path


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_tini_and_entrypoint_binary_are_in_the_image(flake, specs, name):
    spec = specs[name]
    system = flake.layers(name)[0]
    (rootfs,) = flake.copy_to_root(system)
    attrs = [nixpkgs_attr(flake, p) for p in rootfs["args"]["env"]["packages"]]
    assert "tini" in attrs
    # /usr/bin/tini resolves through /usr/bin -> ../bin, where every package's bin/ is linked
    assert 'for dir in bin etc share; do' in rootfs["args"]["script"]
    if spec["entrypoint"][:1] == ["/usr/bin/tini"]:
        assert spec["entrypoint"][1] == "--"


@functools.cache
def compat_links():
    """nix/compat.nix: nixpkgs attribute -> [(link, target)]."""
    data = fxnix.eval_json(fxnix.ROOT / "nix" / "compat.nix")
    return {attr: [(l["link"], l["target"]) for l in links] for attr, links in data.items()}


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_debian_named_paths_are_linked(flake, specs, name):
    system = flake.layers(name)[0]
    script = flake.drvs[rootfs_path(flake, system)]["args"]["script"]
    for attr in specs[name]["packages"]["nixpkgs"]:
        for link, target in compat_links().get(attr, []):
            assert re.search(rf'ln -s /nix/store/\S+/{re.escape(target)} "\$out/{re.escape(link)}"', script), (attr, link)


def test_debian_named_entrypoints_resolve():
    """Every absolute entrypoint path of a service image is a link the Nix image has."""
    links = {"/" + link for entries in compat_links().values() for link, _ in entries}
    assert "/bin/prometheus-redis-exporter" in links and "/usr/lib/postgresql/15/bin" in links


# --- layers and their order -------------------------------------------------------------------

def env_groups(flake, layer):
    return flake.env_of_layer(layer)["args"]["groups"]


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_layers_in_order(flake, specs, name):
    spec = specs[name]
    layers = flake.layers(name)
    paths = flake.layer_paths(name)
    # Each layer skips what the layers before it hold.
    for i, layer in enumerate(layers):
        assert layer["fn"] == "nix2container.buildLayer"
        assert [r["$drv"] for r in layer["args"]["layers"]] == paths[:i], f"layer {i} of {name}"
    system, rest = layers[0], layers[1:]
    assert system["args"]["metadata"]["created_by"].startswith("fxstack: system")
    expected_pkgs = [p for p in spec["packages"]["nixpkgs"] if not re.fullmatch(r"python3\d+", p)]
    expected_pkgs += [p for p in baseline() if p not in expected_pkgs]
    (rootfs,) = flake.copy_to_root(system)
    assert rootfs["name"] == f"fx-rootfs-{spec['user']}"
    assert [nixpkgs_attr(flake, p) for p in rootfs["args"]["env"]["packages"]] == expected_pkgs
    deps = [nixpkgs_attr(flake, p) for p in system["args"]["deps"]]
    if spec["kind"] == "python":
        # interpreter first, then the groups of the base chain, then the role's own
        assert deps[0] == "python311"
        chain = ([specs[spec["base"]]["groups"]] if spec["base"] else []) + [spec["groups"]]
        chain = [g for i, g in enumerate(chain) if g not in chain[:i]]
        env_layers = rest[:len(chain)]
        assert [env_groups(flake, l) for l in env_layers] == chain
        rest = rest[len(chain):]
    else:
        assert deps == []
    if spec["app"]:
        (app,) = rest
        (tree,) = flake.copy_to_root(app)
        assert tree["fn"] == "nixpkgs.runCommand" and tree["name"] == "fx-app"
        for entry in spec["app"]:
            assert f'"$out{entry["dest"]}"' in tree["args"]["script"]
        # the copies are in the same order as the spec lists them
        dests = re.findall(r'cp -rT \S+ "\$out([^"]+)"', tree["args"]["script"])
        assert dests == [e["dest"] for e in spec["app"]]
    else:
        assert rest == []


def test_layer_shapes(flake, specs):
    for name, spec in specs.items():
        if spec["kind"] == "python":
            chain = 2 if spec["base"] else 1
            assert len(flake.layers(name)) == 1 + chain + bool(spec["app"]), name
        else:
            assert len(flake.layers(name)) == 1 + bool(spec["app"]), name
    assert len(flake.layers("fx-base")) == 2                       # system, base env
    for name in AIRFLOW:
        assert len(flake.layers(name)) == 4                        # system, base env, role env, app


# --- what images share ------------------------------------------------------------------------

def test_airflow_images_share_every_layer(flake):
    first = flake.layer_paths(AIRFLOW[0])
    for name in AIRFLOW[1:]:
        assert flake.layer_paths(name) == first
    # ... and only their config differs
    assert len({flake.data["images"][n]["drv"] for n in AIRFLOW}) == 3


def test_python_images_share_the_base_layers(flake, specs):
    base = flake.layer_paths("fx-base")
    for name, spec in specs.items():
        if spec["base"] == "fx-base":
            # an image with `trim` has environments of its own (the same packages, fewer
            # files): it shares the system layer only
            shared = 1 if spec["trim"] else 2
            assert flake.layer_paths(name)[:shared] == base[:shared], name
            assert spec["trim"] or flake.layer_paths(name)[1] == base[1], name
    fastapi, worker = flake.layer_paths("fx-fastapi"), flake.layer_paths("fx-airflow-worker")
    assert specs["fx-fastapi"]["trim"] and fastapi[:1] == worker[:1]
    assert not set(fastapi[1:]) & set(worker[1:])
    mlflow = flake.layer_paths("fx-mlflow")
    assert mlflow[:2] == worker[:2]


def test_unrelated_images_share_nothing(flake, specs):
    fingpt = set(flake.layer_paths("fx-fingpt"))
    for name in SPEC_NAMES:
        if name != "fx-fingpt":
            assert not fingpt & set(flake.layer_paths(name)), name
    services = service_images(specs)
    for a in services:
        for b in services:
            if a < b:
                assert not set(flake.layer_paths(a)) & set(flake.layer_paths(b)), (a, b)


# --- poetry2nix ------------------------------------------------------------------------------

def all_envs(flake):
    return {p: d for p, d in flake.drvs.items() if d["fn"] == "poetry2nix.mkPoetryPackages"}


def test_poetry2nix_environments(flake, specs, snapshot):
    pyproject = tomllib.loads((snapshot / "pyproject.toml").read_text())
    groups = {"main", *pyproject["tool"]["poetry"]["group"]}
    python311 = {p for p, d in flake.drvs.items() if d["fn"] == "nixpkgs.python311"}
    seen = []
    for env in all_envs(flake).values():
        args = env["args"]
        assert args["preferWheels"] is True
        assert args["checkGroups"] == []
        assert set(args["groups"]) <= groups
        assert args["python"]["$drv"] in python311
        assert args["pyproject"] == {"$path": str(snapshot / "pyproject.toml")}
        assert args["poetrylock"] == {"$path": str(snapshot / "poetry.lock")}
        assert args["projectDir"].startswith("/nix/store/") and args["projectDir"].endswith("-fxstack-poetry-project")
        seen.append(args["groups"])
    expected = {tuple(s["groups"]) for s in specs.values() if s["kind"] == "python"}
    expected |= {("base",), ("main",), ("main", "dev")}
    assert {tuple(g) for g in seen} == expected


def test_overrides_name_real_lock_packages(flake, snapshot):
    lock = tomllib.loads((snapshot / "poetry.lock").read_text())
    locked = {canonicalize_name(p["name"]) for p in lock["package"]}
    pins = json.loads((snapshot / "nix" / "lock-pins.json").read_text())
    text = (snapshot / "nix" / "poetry-overrides.nix").read_text()
    hand_written = set(re.findall(r"^  ([a-z0-9-]+) = prev\.", text, re.M))
    assert {"volatile", "mlflow-skinny", "nvidia-cusparselt-cu12"} <= hand_written
    for name in hand_written:
        assert name in locked, f"override for {name}, which poetry.lock does not have"
        # each override says why, in a comment right above it
        assert re.search(rf"#[^\n]*\n(\s*#[^\n]*\n)*\s*{re.escape(name)} =", text), name
    for env in all_envs(flake).values():
        args = env["args"]
        (summary,) = args["overrides"]
        assert summary["defaults"] is True, "poetry2nix's default overrides must stay in"
        # nix/pins.nix wraps poetry2nix's own mkPoetryDep (every package's file and dependencies)
        assert {"package": "mkPoetryDep", "wraps": "mkPoetryDep"} in summary["overridden"]
        overridden = [o for o in summary["overridden"] if "wraps" not in o]
        packages = set(pins["envs"]["+".join(args["groups"])]["packages"])
        # every package of the environment propagates only what the lock walk followed
        swept = {o["package"] for o in overridden if o.get("sets") == ["propagatedBuildInputs"]}
        assert packages <= swept, sorted(packages - swept)
        assert swept <= locked | hand_written
        # packages poetry2nix takes from nixpkgs are built from the lock where an image has them
        built = {o["package"]: o for o in overridden if o.get("built") == "mkPoetryDep"}
        assert set(built) == packages & {"packaging", "setuptools", "wheel", "tomli"}, sorted(built)
        names = {o["package"] for o in overridden}
        assert names <= locked | {"mkPoetryDep"}, sorted(names - locked)


def test_cuda_and_unfree_only_for_the_gpu_image(flake, specs):
    for name in SPEC_NAMES:
        reach = flake.reachable(flake.data["images"][name]["drv"])
        cuda = {p for p in reach if (flake.drvs[p]["instance"] or {}).get("config", {}).get("cudaSupport")}
        if specs[name]["gpu"]:
            fns = {flake.drvs[p]["fn"] for p in cuda}
            assert "nixpkgs.cudaPackages_12_4.cuda_cudart" in fns
            assert "poetry2nix.mkPoetryPackages" in fns
            assert flake.drvs[next(p for p in cuda if flake.drvs[p]["fn"] == "poetry2nix.mkPoetryPackages")]["instance"]["config"] == {"allowUnfree": True, "cudaSupport": True}
        else:
            assert not cuda, name
    env = flake.env("fx-fingpt")
    assert env["LD_LIBRARY_PATH"].startswith("/usr/lib64:/usr/lib/x86_64-linux-gnu:/nix/store/")
    assert env["LD_LIBRARY_PATH"].endswith("-cuda_cudart-12.4.127/lib")


# --- apps, checks, dev shell ------------------------------------------------------------------

def script_of(flake, app):
    path = flake.data["apps"][app]["program"].rsplit("/bin/", 1)[0]
    return flake.drvs[path]


@pytest.mark.parametrize("app,command", [
    ("stack-up", "up --no-build --grafana"), ("stack-down", "down"), ("stack-test", "test"),
    ("stack-up-gpu", "up --no-build --grafana --gpu"),
])
def test_stack_apps_run_the_harness(flake, app, command):
    assert flake.data["apps"][app]["type"] == "app"
    assert flake.data["apps"][app]["program"].endswith(f"/bin/{app}")
    script = script_of(flake, app)
    assert script["fn"] == "nixpkgs.writeShellApplication"
    text = script["args"]["text"]
    assert re.search(rf"exec /nix/store/\S+-env/bin/python -m fxstack.cli {command} \"\$@\"", text)
    # nothing the harness does not read (it takes the images from images.env, and --no-build)
    assert not re.search(r"FXSTACK_(IMAGES_FROM|NIX_IMAGES|GPU)", text)
    assert "export FXSTACK_ROOT" in text
    assert ("fx-load-images" in text) == command.startswith("up")


def loader_text(flake, app):
    script = script_of(flake, app)
    (loader,) = [flake.drv(r) for r in script["args"]["runtimeInputs"] if flake.drv(r)["name"] == "fx-load-images"]
    return loader["args"]["text"]


@pytest.mark.parametrize("app", ["stack-up", "stack-up-gpu"])
def test_stack_up_loads_the_deployed_images(flake, specs, app):
    text = loader_text(flake, app)
    for name, spec in specs.items():
        copy = flake.data["images"][name]["copyToDockerDaemon"] + "/bin/copy-to-docker-daemon"
        wanted = spec["deploy"] and (app == "stack-up-gpu" or not spec["gpu"])
        assert (copy in text) == wanted, name
        var = name.upper().replace("-", "_") + "_IMAGE"
        ref = f"{name}:{flake.data['images'][name]['imageTag']}"
        assert (f"echo '{var}={ref}'" in text) == wanted, name


def test_checks(flake, specs):
    checks = {n: flake.drvs[p] for n, p in flake.data["checks"].items()}
    unit = checks["unit-tests"]["args"]
    assert "python -m pytest -m unit" in unit["script"]
    assert {nixpkgs_attr(flake, r) for r in unit["env"]["nativeBuildInputs"] if flake.drv(r)["fn"].startswith("nixpkgs.")} == {"nix"}
    listed = checks["images-evaluated"]["args"]["text"].splitlines()
    assert sorted(line.split()[0] for line in listed) == SPEC_NAMES
    assert all(line.split()[1].endswith(".drv") for line in listed)
    assert "load_specs" in checks["specs-match"]["args"]["script"]


def test_dev_shell(flake):
    shell = flake.drvs[flake.data["devShell"]]
    attrs = [flake.drv(p)["fn"].removeprefix("nixpkgs.") for p in shell["args"]["packages"]]
    assert set(attrs) >= {"python311", "poetry", "docker-compose", "skopeo"}
    poetry = next(flake.drv(p) for p in shell["args"]["packages"] if flake.drv(p)["fn"] == "nixpkgs.poetry")
    assert poetry["name"].startswith("poetry-1.8.")
    assert flake.drvs[flake.data["formatter"]]["fn"] == "nixpkgs.nixfmt-rfc-style"


@pytest.mark.parametrize("app", ["stack-up", "stack-up-gpu"])
def test_manifest_references_only_the_images_the_app_loads(flake, specs, app):
    """Naming an image in the manifest must not make `nix run` build it (fx-base, and the CUDA image for stack-up)."""
    import json as _json
    text = script_of(flake, app)["args"]["text"]
    manifest_path = flake.data["legacy"]["image-manifest" + ("-gpu" if app == "stack-up-gpu" else "")]
    manifest = _json.loads(flake.drvs[manifest_path]["args"]["text"])
    assert sorted(manifest) == SPEC_NAMES
    for name, spec in specs.items():
        entry = manifest[name]
        assert entry["ref"] == f"{name}:{flake.data['images'][name]['imageTag']}"
        assert entry["envVar"] == name.upper().replace("-", "_") + "_IMAGE"
        assert {k: entry[k] for k in ("kind", "deploy", "gpu", "portable", "portable_reason")} == {
            k: spec[k] for k in ("kind", "deploy", "gpu", "portable", "portable_reason")}
        loads = spec["deploy"] and (app == "stack-up-gpu" or not spec["gpu"])
        assert ("copyToDockerDaemon" in entry) == loads, name
        assert (flake.data["images"][name]["copyToDockerDaemon"] in text + loader_text(flake, app)) == loads, name
