# poetry2nix overrides on top of its defaults (poetry2nix.defaultPoetryOverrides.extend this).
# Only packages that need one are here, each with the reason. Everything else installs from
# the wheel poetry.lock pins (preferWheels = true), with poetry2nix's default overrides
# (which already cover torch, bitsandbytes, triton and the nvidia-*-cu12 wheels of torch < 2.5).
#
# `packages`: the names the lock walk installs in this environment (nix/lock-pins.json), for
# the one override that depends on what else the environment has.
{ packages }:
final: prev:
let
  lib = import ./lib.nix;
  without = names: deps: builtins.filter (d: d == null || !(builtins.elem (d.pname or "") names)) deps;
  # (names only: which packages exist must not depend on evaluating any of them)
  providers = builtins.filter (lib.hasPrefix "apache-airflow-providers-") (builtins.attrNames prev);
in
# apache-airflow 2.10 depends on its nine pre-installed providers, and each provider depends
# on apache-airflow (>= 2.10.0): a cycle, which poetry2nix turns into "infinite recursion
# encountered" (every package's requiredPythonModules is the closure of its dependencies).
# poetry2nix breaks such cycles for dask and fastapi (the package that pulls the others keeps
# its edges) but not for Airflow. Same rule here: apache-airflow keeps its providers, a
# provider no longer propagates apache-airflow. Every environment that has a provider has
# apache-airflow (only it pulls them in), so nothing goes missing at run time.
lib.genAttrs providers (n: if prev.${n} == null then null else prev.${n}.overridePythonAttrs (old: {
  propagatedBuildInputs = without [ "apache-airflow" ] (old.propagatedBuildInputs or [ ]);
}))
// {
  # mlflow 2.16's wheel is the whole of mlflow-skinny's plus the server: the two share 582
  # identical files and both declare the `mlflow` console script, so an environment with
  # both fails python.withPackages' collision check (the bin/mlflow wrappers differ per store
  # path; nixpkgs does not ignore collisions there). The portable builder installs both wheels
  # into one tree, mlflow's files over mlflow-skinny's identical ones. The same here: the
  # mlflow-skinny wheel is installed, and everything but its metadata (`*.dist-info`, so
  # importlib.metadata still finds it) is left to mlflow, which ships the same files.
  # Only where mlflow is installed too (the harness's own environments have mlflow-skinny alone).
  mlflow-skinny = prev.mlflow-skinny.overridePythonAttrs (old: lib.optionalAttrs (builtins.elem "mlflow" packages) {
    postInstall = (old.postInstall or "") + ''
      find $out/${final.python.sitePackages} -mindepth 1 -maxdepth 1 ! -name '*.dist-info' -exec rm -rf {} +
      rm -rf $out/bin
    '';
  });

  # volatile 2.1.0 (bowler -> feast) is an sdist only, with a bare setup.py that imports
  # setuptools, and poetry2nix's build-systems.json has no entry for it: without this its
  # build fails ("No module named 'setuptools'").
  volatile = prev.volatile.overridePythonAttrs (old: {
    nativeBuildInputs = (old.nativeBuildInputs or [ ]) ++ [ final.setuptools ];
  });

  # torch 2.6 depends on nvidia-cusparselt-cu12, which is newer than poetry2nix's list of
  # nvidia-*-cu12 wheels it fixes up. Like the others, the wheel ships its own
  # site-packages/nvidia/__init__.py, so two wheels would install the same file and
  # python.withPackages would fail with a collision; and torch finds libcusparseLt through the
  # wheel's lib/ directory, which autoPatchelf must be able to search.
  nvidia-cusparselt-cu12 = prev.nvidia-cusparselt-cu12.overridePythonAttrs (old: {
    postFixup = (old.postFixup or "") + ''
      rm -rf $out/${final.python.sitePackages}/nvidia/{__pycache__,__init__.py}
      mkdir -p $out/lib
      ln -sfn $out/${final.python.sitePackages}/nvidia/*/lib/lib*.so* $out/lib
    '';
  });
}
