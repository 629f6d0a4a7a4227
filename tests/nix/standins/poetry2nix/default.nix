# Stand-in for poetry2nix's default.nix at the revision in flake.lock
# (nix-community/poetry2nix ce2369db77f45688172384bbeb962bc6c2ea6f94): same entry point
# (`import poetry2nix { inherit pkgs; }`), mkPoetryEnv / mkPoetryPackages with exactly the real
# argument sets, defaultPoetryOverrides with `extend` / `overrideOverlay`, and `overrides.withDefaults`.
#
# Stricter than the real code where the real one silently ignores a mistake:
#  - every name in `groups` / `checkGroups` must be "main" or a group of the pyproject
#    (the real code looks groups up with `or { }`, so a typo installs nothing);
#  - override overlays are evaluated against fake packages, and what each override returns
#    is recorded (tests check every overridden package is in poetry.lock).
{ pkgs ? throw "stand-in poetry2nix: pass `pkgs`"
, lib ? null
}:
let
  inherit (builtins) attrNames elem filter throw isList isAttrs isFunction isPath readFile fromTOML concatStringsSep typeOf listToAttrs;
  r = import ../record.nix;

  instance = { config = pkgs.config or { }; };

  # poetry2nix's known-build-systems.json: taken from nixpkgs unchanged into every package set.
  buildSystems = [ "cython" "cython_0" "flit" "flit-core" "hatch-vcs" "hatchling" "pbr" "pdm-backend" "poetry-core" "setuptools" "setuptools-scm" ];
  normalize = name: builtins.replaceStrings [ "_" "." "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ]
    [ "-" "-" "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ] name;

  # The locked packages' names, from the lock's `name = "..."` lines (only a [[package]] table has
  # that key): a fromTOML of the 800 kB lock per environment was most of an evaluation's time
  # (0.2 s each, a dozen environments), and Nix does not share it between calls.
  lockNames = poetrylock: builtins.concatMap
    (line: let m = builtins.match "name = \"([^\"]*)\"" line; in if m == null then [ ] else m)
    (filter builtins.isString (builtins.split "\n" (readFile poetrylock)));

  groupsOf = pyproject:
    if !(isPath pyproject) then throw "stand-in poetry2nix: pass `pyproject` as a path so the stand-in can read its groups (got ${typeOf pyproject})"
    else [ "main" ] ++ attrNames ((fromTOML (readFile pyproject)).tool.poetry.group or { });

  checkGroups' = what: pyproject: groups:
    let known = groupsOf pyproject; bad = filter (g: !(elem g known)) groups;
    in if bad == [ ] then groups
    else throw "stand-in poetry2nix ${what}: unknown Poetry group(s) ${concatStringsSep ", " bad}; the pyproject has ${concatStringsSep ", " known}";

  # --- overrides: a list of overlays, or a functor set like the real defaultPoetryOverrides --
  composeExtensions = f: g: final: prev:
    let fp = f final prev; in fp // g final (prev // fp);

  mkDefaultPoetryOverrides = { overlays }: {
    __functor = _: final: prev: { };
    standinOverlays = overlays;
    extend = overlay: mkDefaultPoetryOverrides { overlays = overlays ++ [ overlay ]; };
    overrideOverlay = fn: mkDefaultPoetryOverrides { overlays = overlays ++ [ fn ]; };
  };
  defaultPoetryOverrides = mkDefaultPoetryOverrides { overlays = [ ]; };

  fakePythonPackage = python: name: {
    pname = name;
    overridePythonAttrs = f:
      let
        old = { inherit name; pname = name; version = "0"; src = { isWheel = true; }; postFixup = ""; preBuild = ""; buildInputs = [ ]; nativeBuildInputs = [ ]; propagatedBuildInputs = [ ]; };
        new = if isFunction f then f old else f;
      in
      if !(isAttrs new) then throw "stand-in poetry2nix: the override of ${name} must return an attrset"
      else { standinOverride = { package = name; sets = attrNames new; values = r.sanitize new; }; };
    overrideAttrs = _: throw "stand-in poetry2nix: use overridePythonAttrs for ${name}";
  };

  # Evaluate one overlay: which packages it overrides and with what.
  # `available`: what the real final set has besides the overlay's own names (every locked
  # package and nixpkgs' build systems), so an override may refer to them.
  runOverlay = python: available: overlay:
    let
      names = attrNames (overlay fakeFinal { });
      prev = listToAttrs (map (n: { name = n; value = fakePythonPackage python n; }) names);
      fakeFinal = { inherit python; } // listToAttrs (map (n: { name = n; value = fakePythonPackage python n; }) available) // prev // {
        # poetry2nix's builder: an overlay may build a locked package with it (nix/pins.nix
        # builds `packaging` from the lock instead of nixpkgs); recorded as such.
        mkPoetryDep = args: { standinOverride = { package = normalize args.name; built = "mkPoetryDep"; inherit (args) version; }; };
      };
      result = overlay fakeFinal prev;
    in
    map
      (n:
        # poetry2nix's own builder, mkPoetryDep, is a function in the same set: an overlay
        # may wrap it (nix/wheels.nix does); recorded as such, never called here.
        if n == "mkPoetryDep" then
          (if isFunction result.${n} then { package = n; wraps = "mkPoetryDep"; }
           else throw "stand-in poetry2nix: mkPoetryDep must stay a function")
        else result.${n}.standinOverride or (throw "stand-in poetry2nix: override ${n} did not call overridePythonAttrs"))
      names;

  overrideSummary = python: available: overrides:
    let
      list = if isList overrides then overrides else [ overrides ];
      one = o:
        if isAttrs o && o ? standinOverlays then
          [{ defaults = true; overridden = builtins.concatLists (map (runOverlay python available) o.standinOverlays); }]
        else if isFunction o then
          [{ defaults = false; overridden = runOverlay python available o; }]
        else throw "stand-in poetry2nix: overrides must be overlays or defaultPoetryOverrides";
    in
    builtins.concatLists (map one list);

  common = what:
    { projectDir, pyproject, poetrylock, overrides, python, preferWheels, groups, checkGroups, extras, ... }@args:
    let
      summary = args // {
        groups = checkGroups' what pyproject groups;
        checkGroups = checkGroups' what pyproject checkGroups;
        overrides = overrideSummary python
          (buildSystems ++ map normalize (lockNames poetrylock))
          overrides;
      };
    in
    r.mkDrv {
      fn = "poetry2nix.${what}";
      name = "python3-${python.version}-env";
      args = summary;
      inherit instance;
      hashArgs = summary // { inherit instance; };
      extra = { inherit python; };
    };
in
{
  mkPoetryEnv =
    { projectDir ? null
    , pyproject ? projectDir + "/pyproject.toml"
    , poetrylock ? projectDir + "/poetry.lock"
    , overrides ? defaultPoetryOverrides
    , pwd ? projectDir
    , python ? pkgs.python3
    , preferWheels ? false
    , editablePackageSources ? { }
    , extraPackages ? _ps: [ ]
    , groups ? [ "main" "dev" ]
    , checkGroups ? [ "dev" ]
    , extras ? [ "*" ]
    }@args:
    common "mkPoetryEnv" (args // { inherit projectDir pyproject poetrylock overrides python preferWheels groups checkGroups extras; });

  mkPoetryPackages =
    { projectDir ? null
    , pyproject ? projectDir + "/pyproject.toml"
    , poetrylock ? projectDir + "/poetry.lock"
    , poetrylockPos ? { file = toString poetrylock; line = 0; column = 0; }
    , overrides ? defaultPoetryOverrides
    , python ? pkgs.python3
    , pwd ? projectDir
    , preferWheels ? false
    , editablePackageSources ? { }
    , pyProject ? null
    , groups ? [ "main" ]
    , checkGroups ? [ "dev" ]
    , extras ? [ "*" ]
    }@args:
    let
      # The real one returns the package set's interpreter and the packages; an environment
      # is `python.withPackages (_: poetryPackages)` (what mkPoetryEnv does). Recorded: the
      # arguments, with the scripts the given pyProject would add (poetry2nix's scripts package).
      drv = common "mkPoetryPackages" (removeAttrs args [ "pyProject" ] // {
        inherit projectDir pyproject poetrylock overrides python preferWheels groups checkGroups extras;
        scripts = if pyProject == null then (fromTOML (readFile pyproject)).tool.poetry.scripts or { }
                  else pyProject.tool.poetry.scripts or { };
      });
    in
    {
      python = python // {
        withPackages = f:
          let ps = f { }; in
          if isList ps && elem drv ps then drv
          else throw "stand-in poetry2nix: withPackages must be given the poetryPackages";
      };
      poetryPackages = [ drv ];
      pyProject = if pyProject == null then fromTOML (readFile pyproject) else pyProject;
      poetryLock = fromTOML (readFile poetrylock);
    };

  inherit defaultPoetryOverrides mkDefaultPoetryOverrides;
  overrides = {
    withoutDefaults = overlay: [ overlay ];
    withDefaults = overlay: [ overlay defaultPoetryOverrides ];
  };
}
