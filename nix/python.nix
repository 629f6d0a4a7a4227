# Python environments from pyproject.toml + poetry.lock with poetry2nix, one per list of
# Poetry groups (an image role). Every environment of one nixpkgs import shares the same
# package set, so what two roles have in common is the same store paths: the role's layer
# then holds only what its base layer does not.
{ poetry2nix        # the poetry2nix library, imported with the nixpkgs import it builds for
, python            # the interpreter (nixpkgs python311)
, src               # the repository
, lib
, arch ? "x86_64"   # the CPU the images are for (uname -m, as in wheel platform tags)
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
  # [tool.fxstack.exclude] in pyproject.toml: packages no image installs (the Python builder
  # reads the same table). poetry2nix has no such option, so each locked package that depends
  # on an excluded one gets it filtered out of its propagatedBuildInputs; what only the
  # excluded package needed is then never reached.
  normalize = name: lib.toLower (builtins.replaceStrings [ "_" "." ] [ "-" "-" ] name);
  excluded = map normalize (builtins.attrNames
    ((builtins.fromTOML (builtins.readFile (src + "/pyproject.toml"))).tool.fxstack.exclude or { }));
  locked = (builtins.fromTOML (builtins.readFile (src + "/poetry.lock"))).package;
  # Each locked package reaches poetry2nix without the wheels no x86_64-linux CPython 3.11 can
  # install: the poetry2nix pin aborts on some of their tags (riscv64, abi3t, graalpy); see
  # ./wheels.nix.
  wheels = import ./wheels.nix { inherit (python) pythonVersion; inherit arch; };
  dependents = lib.unique (map (p: normalize p.name) (builtins.filter
    (p: builtins.any (d: builtins.elem (normalize d) excluded) (builtins.attrNames (p.dependencies or { })))
    locked));
  withoutExcluded = final: prev: lib.genAttrs dependents (name:
    prev.${name}.overridePythonAttrs (old: {
      propagatedBuildInputs = builtins.filter
        (dep: !(builtins.elem (normalize (dep.pname or "")) excluded))
        (old.propagatedBuildInputs or [ ]);
    }));
in
{
  inherit excluded dependents wheels;

  # groups: the spec's `groups` (base image's groups first). checkGroups = [ ]: poetry2nix
  # otherwise adds the `dev` group's packages (pytest) to every environment.
  env = groups: poetry2nix.mkPoetryEnv {
    inherit projectDir python groups;
    pyproject = src + "/pyproject.toml";
    poetrylock = src + "/poetry.lock";
    preferWheels = true;
    checkGroups = [ ];
    overrides = ((poetry2nix.defaultPoetryOverrides.extend (import ./poetry-overrides.nix)).extend
      withoutExcluded).extend wheels.overlay;
  };

  key = groups: builtins.concatStringsSep "+" groups;
}
