# The flake's outputs, for x86_64-linux (the images are Linux/amd64; CUDA wheels are x86_64).
{ nixpkgs, nix2container, poetry2nix, src }:
let
  system = "x86_64-linux";
  lib = import ./lib.nix;
  inherit (builtins) attrNames concatStringsSep mapAttrs toJSON substring throw;

  pkgs = import nixpkgs { inherit system; };
  # Unfree (CUDA EULA) and CUDA support only for images with `gpu = true` (fx-fingpt).
  pkgsCuda = import nixpkgs {
    inherit system;
    config = { allowUnfree = true; cudaSupport = true; };
  };

  n2c = (import nix2container { inherit pkgs system; }).nix2container;

  lock = builtins.fromTOML (builtins.readFile (src + "/poetry.lock"));  # once (./pins.nix)
  pythonFor = p: python: import ./python.nix {
    poetry2nix = import poetry2nix { pkgs = p; };
    inherit python src lib lock;
  };

  specs = import ./specs.nix { root = src; };

  built = import ./images.nix {
    inherit pkgs pkgsCuda n2c pythonFor specs src lib;
  };

  # The harness's own dependencies (the Poetry main group), and with the dev group for the tests.
  harnessPython = pythonFor pkgs pkgs.python311;
  harnessEnv = harnessPython.env [ "main" ];
  testEnv = harnessPython.env [ "main" "dev" ];

  stack = import ./stack.nix {
    inherit pkgs src lib harnessEnv;
    inherit (built) images manifest;
  };

  poetry =
    let version = pkgs.poetry.version or (builtins.parseDrvName pkgs.poetry.name).version; in
    if substring 0 4 version == "1.8."
    then pkgs.poetry
    else throw "the pinned nixpkgs has Poetry ${version}; poetry2nix and poetry.lock need Poetry 1.8";

  testSrc = builtins.path {
    path = src;
    name = "fxstack-test-src";
    # What .gitignore ignores (a flake from a git checkout has none of it anyway; a path: flake would).
    filter = path: type:
      !(builtins.elem (baseNameOf path) [ ".git" ".venv" ".fxstack" "__pycache__" ".pytest_cache" ".mypy_cache" "result" ])
      && !(builtins.elem (toString path) [ "${toString src}/build" "${toString src}/bench/results" "${toString src}/compose/.env" ]);
  };

  # Unit tests that cannot mean anything in the build sandbox, each with the reason; the
  # check deselects them by id and prints the list (`./fx check` runs them).
  notInSandbox = [
    {
      id = "tests/services/test_postgres_entrypoint.py::test_script_is_bash_and_executable_in_git";
      why = "it checks the mode git records for the script (git ls-files -s); the flake's source has no .git and the sandbox no git";
    }
  ];

  checks = {
    # pytest's unit tier (no Docker, no network), including tests/nix against the stand-ins.
    unit-tests = pkgs.runCommand "fxstack-unit-tests"
      { nativeBuildInputs = [ testEnv pkgs.nix ]; }
      ''
        cp -r ${testSrc} repo
        chmod -R u+w repo
        cd repo
        export HOME=$TMPDIR NIX_STATE_DIR=$TMPDIR/nix-state NIX_CONF_DIR=$TMPDIR/nix-conf
        mkdir -p $NIX_CONF_DIR
        PYTHONPATH=$PWD/src python -m pytest -m unit -q -p no:cacheprovider tests ${lib.shellQuoteList (map (t: "--deselect=${t.id}") notInSandbox)}
        echo "fxstack-unit-tests: not run in the Nix sandbox:"
        ${builtins.concatStringsSep "\n" (map (t: "echo ${lib.shellQuote "  ${t.id}: ${t.why}"}") notInSandbox)}
        touch $out
      '';

    # nix/specs.nix and the Python loader read every spec to the same values.
    specs-match = pkgs.runCommand "fxstack-specs-match"
      { nativeBuildInputs = [ harnessEnv ]; nixSpecs = pkgs.writeText "nix-specs.json" (toJSON specs.specs); }
      ''
        cd ${testSrc}
        PYTHONPATH=${testSrc}/src FXSTACK_ROOT=${testSrc} python - <<'PY'
        import json, os, sys
        from fxstack.specs import load_specs, specs_json
        from pathlib import Path
        py = specs_json(load_specs(Path(os.environ["FXSTACK_ROOT"])))
        nix = json.load(open(os.environ["nixSpecs"]))
        if py != nix:
            sys.exit("nix/specs.nix and src/fxstack/specs.py disagree:\n" + "\n".join(
                f"  {n}: {k}" for n in sorted(set(py) | set(nix)) for k in sorted(set(py.get(n, {})) | set(nix.get(n, {})))
                if py.get(n, {}).get(k) != nix.get(n, {}).get(k)))
        PY
        touch $out
      '';

    # Every image evaluated (instantiated, not built): the check depends on each image's .drv only.
    images-evaluated = pkgs.writeText "fxstack-images-evaluated"
      (concatStringsSep "\n" (map
        (n: "${n} ${builtins.unsafeDiscardOutputDependency built.images.${n}.drvPath}")
        (attrNames built.images)));
  };

  # A stale poetry.lock stops every image, app and check at evaluation, service images
  # included, with the portable builder's message (nix/pins.nix). The dev shell and the
  # formatter stay usable: the dev shell's Poetry is what re-locks.
  lockCheck = (import ./pins.nix { inherit src lib lock; installable = _: true; }).check;
  guarded = mapAttrs (_: v: builtins.seq lockCheck v);
in
{
  packages.${system} = guarded built.images;

  legacyPackages.${system} = guarded {
    inherit harnessEnv testEnv;
    image-manifest = stack.manifestFile;
    image-manifest-gpu = stack.manifestFileGpu;
    image-loaders = stack.loaders;
    stack-scripts = stack.scripts;
  };

  apps.${system} = guarded stack.apps;

  checks.${system} = guarded checks;

  devShells.${system}.default = pkgs.mkShell {
    packages = [ pkgs.python311 poetry pkgs.docker-compose pkgs.skopeo pkgs.nixfmt-rfc-style ];
    shellHook = ''
      export PYTHONPATH=$PWD/src''${PYTHONPATH:+:$PYTHONPATH}
      echo "fxstack dev shell: python3.11, poetry ${poetry.version}, docker-compose, skopeo"
    '';
  };

  formatter.${system} = pkgs.nixfmt-rfc-style;
}
