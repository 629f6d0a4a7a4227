# Python environments from pyproject.toml + poetry.lock with poetry2nix, one per list of
# Poetry groups (an image role). Every environment of one nixpkgs import shares the same
# package set, so what two roles have in common is the same store paths: the role's layer
# then holds only what its base layer does not.
{ poetry2nix        # the poetry2nix library, imported with the nixpkgs import it builds for
, python            # the interpreter (nixpkgs python311)
, src               # the repository
, lib
, arch ? "x86_64"   # the CPU the images are for (uname -m, as in wheel platform tags)
, lock ? builtins.fromTOML (builtins.readFile (src + "/poetry.lock"))  # parsed (./pins.nix)
}:
let
  # poetry2nix reads both files at evaluation time; projectDir is a copy that holds only them,
  # so no change to the code ever touches an environment.
  projectDir = builtins.path {
    path = src;
    name = "fxstack-poetry-project";
    filter = path: type: builtins.elem (baseNameOf path) [ "pyproject.toml" "poetry.lock" ]
      && builtins.dirOf path == toString src;
  };
  # Which files and dependencies each package gets: exactly the portable builder's
  # (nix/lock-pins.json); files of packages outside it (build tools from the lock) are limited
  # to those this interpreter can install (./wheels.nix).
  wheels = import ./wheels.nix { inherit (python) pythonVersion; inherit arch; };
  pins = import ./pins.nix { inherit src lib lock; inherit (wheels) installable; };
  # [tool.poetry.scripts] is for the harness's own venv (`fxstack`); poetry2nix would add a
  # scripts package with a bin/fxstack that cannot import in any image (fxstack.cli is not
  # there). mkPoetryEnv reads the pyproject file itself, so the environment is made as it
  # makes it (mkPoetryPackages, then withPackages) from the parsed table without `scripts`.
  # The content-hash does not cover `scripts`; pins.check compares the real file.
  pyProject =
    let p = builtins.fromTOML (builtins.readFile (src + "/pyproject.toml")); in
    p // { tool = p.tool // { poetry = removeAttrs p.tool.poetry [ "scripts" ]; }; };
  mkEnv = groups: trim:
    let
      key = builtins.concatStringsSep "+" groups;
      pinned = pins.overlays key { pwd = projectDir; };
      packages = builtins.seq pins.check (poetry2nix.mkPoetryPackages {
        inherit projectDir python groups pyProject;
        pyproject = src + "/pyproject.toml";
        poetrylock = src + "/poetry.lock";
        preferWheels = true;
        checkGroups = [ ];
        overrides = (((poetry2nix.defaultPoetryOverrides.extend pinned.fromLock).extend
          (import ./poetry-overrides.nix { packages = pins.packages key; })).extend pinned.onlyFollowed
          ).extend (if trim == null then (_: _: { }) else import ./trim.nix {
            inherit trim;
            profile = if trim.profile == "" then null else src + "/${trim.profile}";
            packages = pins.packages key;
          });
      });
    in
    packages.python.withPackages (_: packages.poetryPackages);
in
{
  inherit wheels pins;

  # groups: the spec's `groups` (base image's groups first). checkGroups = [ ]: poetry2nix
  # otherwise adds the `dev` group's packages (pytest) to every environment. Evaluating one
  # refuses a stale lock first (pins.check). `trim`: an image spec's trim rules, applied to
  # every package of the environment (./trim.nix), or null.
  env = groups: mkEnv groups null;
  env' = mkEnv;

  key = groups: builtins.concatStringsSep "+" groups;
}
