# poetry2nix overrides on top of its defaults (poetry2nix.defaultPoetryOverrides.extend this).
# Only packages that need one are here, each with the reason. Everything else installs from
# the wheel poetry.lock pins (preferWheels = true), with poetry2nix's default overrides
# (which already cover torch, bitsandbytes, triton and the nvidia-*-cu12 wheels of torch < 2.5).
final: prev: {
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
