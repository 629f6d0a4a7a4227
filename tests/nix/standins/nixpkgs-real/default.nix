# Stand-in for nixpkgs for the `nixreal` tier: the REAL nixpkgs `lib` (./lib, copied in from
# nix-community/nixpkgs.lib at the date of the pinned nixpkgs; tests/nix/realinputs.py assembles
# the tree), and a package set that implements what the real nix2container and poetry2nix
# call, so that their internals run: real derivations (`builtins.derivation`, instantiated into
# the store, never built: the builder is `false`), overridable like nixpkgs' (override,
# overrideAttrs, overridePythonAttrs), a Python interpreter with `override { packageOverrides;
# self; }`, a package scope with callPackage / buildPythonPackage / requiredPythonModules /
# withPackages, setup hooks, and nixpkgs' meta check for unfree packages.
#
# Versions that the real code reads and that change its result are those of the pinned
# nixpkgs (75e28c02, 2024-10-28): glibc 2.40 (pyproject.nix compares manylinux tags with it),
# CPython 3.11.10, Poetry 1.8.4. Other packages are placeholders named like nixpkgs' ones.
# What is not here fails with Nix's own "attribute missing": add it when the real code needs it.
{ localSystem ? null
, system ? null
, config ? { }
, overlays ? [ ]
, crossSystem ? null
, crossOverlays ? [ ]
}:
let
  lib = import ./lib;
  inherit (lib) isDerivation isFunction isAttrs isList;

  sys =
    if system != null then system
    else if localSystem != null then localSystem.system or localSystem
    else throw "nixpkgs stand-in: pass `system` (a flake must not rely on builtins.currentSystem)";
  platform = lib.systems.elaborate sys;

  allowUnfree = config.allowUnfree or false;

  # --- derivations ---------------------------------------------------------------------------
  # Dependency lists as nixpkgs' mkDerivation takes them: nested lists flattened, nulls dropped.
  depAttrs = [
    "nativeBuildInputs" "buildInputs" "propagatedBuildInputs" "propagatedNativeBuildInputs"
    "checkInputs" "nativeCheckInputs" "depsBuildBuild" "depsTargetTargetPropagated"
  ];
  cleanDeps = attrs: lib.mapAttrs
    (n: v: if builtins.elem n depAttrs && isList v then lib.filter (d: d != null) (lib.flatten v) else v)
    attrs;

  isUnfree = meta:
    let ls = lib.toList (meta.license or [ ]); in
    lib.any (l: isAttrs l && (l.free or true) == false) ls;

  # What goes into the .drv: everything but what nixpkgs' mkDerivation keeps out of it.
  notInDrv = [ "passthru" "meta" "pos" "env" ];

  mkDerivation = fnOrAttrs:
    let
      attrs0 = if isFunction fnOrAttrs then lib.fix fnOrAttrs else fnOrAttrs;
      mk = attrs:
        let
          a = cleanDeps attrs;
          name = a.name or "${a.pname}-${a.version}";
          meta = a.meta or { };
          drvArgs = removeAttrs a notInDrv // (a.env or { }) // {
            inherit name;
            system = a.system or sys;
            builder = a.builder or "${shell}";
            args = a.args or [ "-c" "echo 'nixpkgs stand-in (tests/nix): instantiated, never built' >&2; exit 1" ];
            nixpkgsStandin = "1";
          };
          drv = derivation drvArgs;
          checked =
            if isUnfree meta && !allowUnfree
            then throw "Package ‘${name}’ has an unfree license, refusing to evaluate (nixpkgs stand-in: allowUnfree is not set in this import)."
            else drv;
          out = checked // (a.passthru or { }) // {
            inherit meta name;
            passthru = a.passthru or { };
            outPath = checked.outPath;
            drvPath = checked.drvPath;
            drvAttrs = drvArgs;
            overrideAttrs = f:
              let new = f attrs; in
              mk (attrs // (if isFunction new then new out attrs else new));
          } // lib.optionalAttrs (a ? pname) { inherit (a) pname; }
            // lib.optionalAttrs (a ? version) { inherit (a) version; };
        in
        out;
    in
    mk attrs0;

  shell = "/bin/sh";

  pkg = pname: version: extra: mkDerivation ({ inherit pname version; } // extra);

  # glibc of the pinned nixpkgs: pyproject.nix checks manylinux_X_Y tags against its version.
  glibc = pkg "glibc" "2.40-36" { passthru.linuxHeaders = { version = "6.10"; }; };

  stdenv = {
    inherit mkDerivation shell;
    system = sys;
    hostPlatform = platform;
    buildPlatform = platform;
    targetPlatform = platform;
    inherit (platform) isLinux isDarwin;
    cc = pkg "gcc-wrapper" "13.3.0" { passthru = { libc = glibc; isGNU = true; isClang = false; }; };
  };

  # --- trivial builders (nixpkgs/pkgs/build-support/trivial-builders), same arguments --------
  runCommandWith = { name, stdenv ? stdenv', runLocal ? false, derivationArgs ? { } }: buildCommand:
    stdenv.mkDerivation ({ inherit name buildCommand; passAsFile = [ "buildCommand" ]; } // derivationArgs);
  stdenv' = stdenv;
  runCommand = name: env: runCommandWith { inherit name; derivationArgs = env; };

  writeTextFile =
    { name, text, executable ? false, destination ? "", checkPhase ? "", meta ? { }
    , passthru ? { }, allowSubstitutes ? false, preferLocalBuild ? true, derivationArgs ? { } }:
    mkDerivation ({
      inherit name text executable destination checkPhase meta passthru allowSubstitutes preferLocalBuild;
      passAsFile = [ "text" ];
    } // derivationArgs);
  writeText = name: text: writeTextFile { inherit name text; };
  writeScript = name: text: writeTextFile { inherit name text; executable = true; };
  writeShellScript = name: text: writeTextFile { inherit name; executable = true; text = "#!${shell}\n" + text; };

  writeShellApplication =
    { name, text, runtimeInputs ? [ ], runtimeEnv ? null, meta ? { }, passthru ? { }
    , checkPhase ? null, excludeShellChecks ? [ ], extraShellCheckFlags ? [ ]
    , bashOptions ? [ "errexit" "nounset" "pipefail" ], derivationArgs ? { } }:
    writeTextFile {
      inherit name passthru derivationArgs;
      meta = { mainProgram = name; } // meta;
      executable = true;
      destination = "/bin/${name}";
      text = "#!${shell}\n" + lib.concatMapStrings (o: "set -o ${o}\n") bashOptions
        + lib.optionalString (runtimeInputs != [ ]) "export PATH=\"${lib.makeBinPath runtimeInputs}:$PATH\"\n"
        + text;
      checkPhase = if checkPhase != null then checkPhase else "shellcheck ${lib.concatStringsSep " " (map (c: "-e ${c}") excludeShellChecks)} $target";
    };

  buildEnv = lib.makeOverridable (
    { name, paths, ignoreCollisions ? false, checkCollisionContents ? true, pathsToLink ? [ "/" ]
    , extraOutputsToInstall ? [ ], extraPrefix ? "", postBuild ? "", nativeBuildInputs ? [ ]
    , buildInputs ? [ ], passthru ? { }, meta ? { }, manifest ? "", ignoreSingleFileOutputs ? false
    , includeClosures ? false }:
    runCommand name {
      inherit ignoreCollisions checkCollisionContents pathsToLink extraPrefix postBuild nativeBuildInputs buildInputs passthru meta;
      # nixpkgs passes the chosen outputs as JSON; here the paths themselves, so they are inputs.
      paths = lib.filter (p: p != null) paths;
    } "buildEnv");

  makeSetupHook =
    { name ? "hook", deps ? [ ], propagatedBuildInputs ? [ ], depsTargetTargetPropagated ? [ ]
    , meta ? { }, passthru ? { }, substitutions ? { } }: script:
    runCommand name ({
      inherit meta passthru depsTargetTargetPropagated;
      propagatedBuildInputs = lib.toList deps ++ propagatedBuildInputs;
      script = script;
    } // lib.mapAttrs (_: v: if isList v then lib.concatMapStringsSep " " toString v else v) substitutions) "makeSetupHook";

  mkShell =
    { name ? "nix-shell", packages ? [ ], inputsFrom ? [ ], buildInputs ? [ ], nativeBuildInputs ? [ ]
    , propagatedBuildInputs ? [ ], propagatedNativeBuildInputs ? [ ], ... }@attrs:
    mkDerivation (removeAttrs attrs [ "packages" "inputsFrom" ] // {
      inherit name;
      nativeBuildInputs = packages ++ nativeBuildInputs;
      phases = [ "nobuildPhase" ];
    });

  fetchurl = lib.makeOverridable ({ url ? null, urls ? [ ], hash ? null, sha256 ? null, name ? baseNameOf (if url != null then url else lib.head urls), ... }:
    mkDerivation {
      inherit name;
      urls = if url != null then [ url ] else urls;
      builder = "builtin:fetchurl";
      system = "builtin";
      outputHashMode = "flat";
      outputHashAlgo = if hash != null then null else "sha256";
      outputHash = if hash != null then hash else sha256;
    });
  fetchpatch2 = { url, sha256 ? null, hash ? null, postFetch ? "", ... }:
    fetchurl { inherit url sha256 hash; name = "source.patch"; };

  # nixpkgs' Go builder: a derivation plus its `goModules` (fixed-output on vendorHash).
  buildGoModule = { pname, version, src, vendorHash, ldflags ? [ ], ... }@args:
    let
      goModules = mkDerivation {
        name = "${pname}-${version}-go-modules";
        inherit src;
        outputHashMode = "recursive";
        outputHashAlgo = if vendorHash == "" then "sha256" else null;
        outputHash = vendorHash;
      };
    in
    mkDerivation (removeAttrs args [ "vendorHash" ] // { inherit goModules; passthru = { inherit goModules; } // (args.passthru or { }); });

  # --- Python --------------------------------------------------------------------------------
  # What poetry2nix and pyproject.nix read from an interpreter and its package scope, with the
  # behaviour of nixpkgs' pkgs/development/interpreters/python (passthrufun.nix, wrapper.nix,
  # python-packages-base.nix) reduced to what matters for evaluation.
  pythonPackageNames = [
    # What nixpkgs' Python package set has that poetry2nix takes from it unchanged (its
    # known-build-systems.json) or that its hooks and overrides name.
    "cython" "cython_0" "flit" "flit-core" "hatch-vcs" "hatchling" "pbr" "pdm-backend" "poetry-core"
    "setuptools" "setuptools-scm" "pip" "wheel" "tomlkit" "packaging" "installer" "build"
    "pyproject-hooks" "scikit-build" "scikit-build-core" "maturin" "pybind11" "numpy" "meson-python"
    "cffi" "pkgconfig" "setuptools-rust" "versioneer" "toml" "tomli" "babel"
  ];
  # nixpkgs' python-aliases.nix (allowAliases is on by default); poetry2nix nulls those that
  # are not normalized names and some of its overrides still name them.
  pythonAliases = self: { Babel = self.babel; };

  mkPythonScope = { python, overrides }:
    let
      base = self: {
        inherit python lib;
        pkgs = pkgsSet;
        callPackage = lib.callPackageWith (pkgsSet // self);
        isPy27 = false;
        isPy2 = false;
        isPy3k = true;
        isPyPy = false;
        pythonOlder = lib.versionOlder python.pythonVersion;
        pythonAtLeast = lib.versionAtLeast python.pythonVersion;
        pythonOnBuildForHost = python;
        hasPythonModule = drv: drv ? pythonModule && drv.pythonModule == python;
        toPythonModule = drv: drv // { pythonModule = python; requiredPythonModules = drv.requiredPythonModules or [ ]; };
        requiredPythonModules = requiredPythonModulesFor self;
        makePythonPath = drvs: lib.makeSearchPath python.sitePackages (requiredPythonModulesFor self drvs);
        buildPythonPackage = buildPythonPackageFor self;
        buildPythonApplication = buildPythonPackageFor self;
        wheelUnpackHook = makeSetupHook { name = "wheel-unpack-hook.sh"; } "wheel-unpack-hook";
        pypaInstallHook = makeSetupHook { name = "pypa-install-hook"; propagatedBuildInputs = [ self.installer ]; } "pypa-install-hook";
        pythonRelaxDepsHook = makeSetupHook { name = "python-relax-deps-hook"; } "python-relax-deps-hook";
        inherit fetchPypi fetchPypiLegacy;
      } // pythonAliases self // lib.genAttrs pythonPackageNames (n: self.callPackage
        # Like nixpkgs' python-modules/<name>: a function of its build inputs, so that
        # `.override { inherit (final) buildPythonPackage flit-core; }` (poetry2nix's
        # bootstrapping packages) works.
        ({ buildPythonPackage, ... }: buildPythonPackage {
          pname = n;
          version = "0-nixpkgs";
          format = "other";
          src = null;
        })
        { });
    in
    lib.fix (lib.extends overrides base);

  requiredPythonModulesFor = self: drvs:
    let modules = lib.filter self.hasPythonModule (lib.filter (d: d != null) drvs);
    in lib.unique ([ self.python ] ++ modules ++ lib.concatLists (lib.catAttrs "requiredPythonModules" modules));

  # nixpkgs' mk-python-derivation.nix, reduced: the derivation is named python3.11-<pname>-<version>,
  # propagates its Python dependencies and remembers them (requiredPythonModules), and
  # overridePythonAttrs rebuilds it from changed arguments.
  buildPythonPackageFor = self:
    let
      build = attrs:
        let
          propagated = lib.filter (d: d != null) (lib.flatten (attrs.propagatedBuildInputs or [ ]));
          drv = mkDerivation (removeAttrs attrs [ "disabled" "format" "pyproject" "build-system" "dependencies" "doCheck" "dontStrip" ] // {
            name = "${self.python.libPrefix}-${attrs.name or "${attrs.pname}-${attrs.version}"}";
            format = attrs.format or "setuptools";
            nativeBuildInputs = [ self.python ] ++ (attrs.nativeBuildInputs or [ ]);
            propagatedBuildInputs = propagated;
            doCheck = attrs.doCheck or false;
            dontStrip = attrs.dontStrip or false;
            passthru = (attrs.passthru or { }) // {
              pythonModule = self.python;
              requiredPythonModules = requiredPythonModulesFor self propagated;
              overridePythonAttrs = f: build (attrs // (if isFunction f then f attrs else f));
            };
          });
        in
        drv;
    in
    lib.makeOverridable build;

  fetchPypi = lib.makeOverridable ({ pname, version, hash ? null, sha256 ? null, ... }:
    fetchurl { url = "https://files.pythonhosted.org/packages/source/${lib.substring 0 1 pname}/${pname}/${pname}-${version}.tar.gz"; inherit hash sha256; });
  fetchPypiLegacy = lib.makeOverridable ({ pname, file, hash, url, ... }:
    fetchurl { url = "${url}/${pname}/${file}"; inherit hash; name = file; });

  mkPython = { attr, version }:
    let
      parts = lib.splitString "." version;
      sourceVersion = { major = lib.elemAt parts 0; minor = lib.elemAt parts 1; patch = lib.elemAt parts 2; suffix = ""; };
      pythonVersion = "${sourceVersion.major}.${sourceVersion.minor}";
      make = { packageOverrides ? (_: _: { }), self ? null }:
        let
          interp = mkDerivation {
            pname = "python3";
            inherit version;
            src = fetchurl { url = "https://www.python.org/ftp/python/${version}/Python-${version}.tar.xz"; hash = lib.fakeHash; };
            meta = { platforms = lib.platforms.linux; mainProgram = "python3"; };
            passthru = {
              inherit pythonVersion sourceVersion;
              pythonAttr = attr;
              interpreter = "${interp.outPath}/bin/python${pythonVersion}";
              implementation = "cpython";
              libPrefix = "python${pythonVersion}";
              sitePackages = "lib/python${pythonVersion}/site-packages";
              executable = "python${pythonVersion}";
              isPy3k = true;
              isPy27 = false;
              isPy2 = false;
              isPyPy = false;
              stdenv = stdenv;
              pkgs = scope;
              pythonOnBuildForHost = py;
              pythonForBuild = py;
              withPackages = f: py.buildEnv.override { extraLibs = f scope; };
              buildEnv = lib.makeOverridable (
                { extraLibs ? [ ], extraOutputsToInstall ? [ ], postBuild ? "", ignoreCollisions ? false
                , permitUserSite ? false, requiredPythonModules ? scope.requiredPythonModules, makeWrapperArgs ? [ ] }:
                let
                  env = buildEnv {
                    name = "${py.name}-env";
                    paths = requiredPythonModules (extraLibs ++ [ py ]);
                    inherit ignoreCollisions postBuild;
                    extraOutputsToInstall = [ "out" ] ++ extraOutputsToInstall;
                    # nixpkgs' wrapper.nix: the interpreter's passthru (pkgs, sitePackages...) and more
                    passthru = py.passthru // {
                      python = py;
                      interpreter = "${env}/bin/${py.executable}";
                      inherit (py) sitePackages executable pythonVersion;
                    };
                  };
                in
                env) { };
              override = args: make ({ inherit packageOverrides self; } // args);
            };
          };
          py = if self != null then self else interp;
          scope = mkPythonScope { python = py; overrides = packageOverrides; };
        in
        interp;
    in
    make { };

  # --- ordinary packages -----------------------------------------------------------------------
  simple = names: lib.genAttrs names (n: pkg n "0-nixpkgs" { meta.mainProgram = n; });
  unfree = pname: version: pkg pname version { meta.license = lib.licenses.unfree; };

  cudaPackages_12_4 = {
    cudaVersion = "12.4";
    # nixpkgs' CUDA redist packages split their outputs: the shared libraries are in `lib`.
    cuda_cudart = pkg "cuda_cudart" "12.4.127" { meta.license = lib.licenses.unfree; outputs = [ "out" "dev" "lib" "static" "stubs" ]; };
    libcublas = unfree "libcublas" "12.4.5.8";
    cudnn = unfree "cudnn" "9.3.0.75";
    nccl = unfree "nccl" "2.21.5";
  };

  pythonManylinuxPackages = {
    manylinux1 = [ glibc ];
    manylinux2010 = [ glibc ];
    manylinux2014 = [ glibc ];
  };

  pkgsSet = simple [
    "tini" "bash" "bashInteractive" "coreutils" "curl" "jq" "sqlite" "patchutils" "redis" "haproxy" "prometheus"
    "prometheus-statsd-exporter" "prometheus-redis-exporter" "grafana" "docker-compose" "nixfmt-rfc-style"
    "chromium" "yj" "pkg-config" "cmake" "swig" "jdk" "gfortran" "meson" "ninja" "autoconf" "automake" "libtool"
    "openblasCompat" "libjpeg" "libtiff" "libwebp" "tcl" "lcms2" "libxcrypt" "libyaml" "libpng" "freetype" "sentencepiece" "gperftools" "qhull" "which" "abseil-cpp" "re2" "c-ares" "openssl_3" "zlib" "openssl" "libffi" "gcc" "git" "nix" "shellcheck" "rustc" "cargo"
  ] // {
    inherit lib stdenv config mkDerivation runCommand runCommandWith writeTextFile writeText writeScript
      writeShellScript writeShellApplication buildEnv makeSetupHook mkShell fetchurl fetchpatch2
      buildGoModule glibc pythonManylinuxPackages cudaPackages_12_4 fetchPypi fetchPypiLegacy;
    system = sys;
    stdenvNoCC = stdenv;
    buildPackages = pkgsSet;
    pkgs = pkgsSet;
    callPackage = lib.callPackageWith pkgsSet;
    newScope = extra: lib.callPackageWith (pkgsSet // extra);
    cacert = pkg "nss-cacert" "3.104" { outputs = [ "out" "unbundled" ]; };
    postgresql_15 = pkg "postgresql" "15.8" { passthru.psqlSchema = "15"; };
    postgresql = pkg "postgresql" "16.4" { passthru.psqlSchema = "16"; };
    poetry = pkg "poetry" "1.8.4" { };
    go = pkg "go" "1.23.2" { passthru.GOARCH = { x86_64 = "amd64"; aarch64 = "arm64"; }.${platform.parsed.cpu.name}; };
    skopeo = pkg "skopeo" "1.16.1" { nativeBuildInputs = [ ]; };
    autoPatchelfHook = makeSetupHook { name = "auto-patchelf-hook"; } "auto-patchelf";
    makeWrapper = makeSetupHook { name = "make-wrapper-hook"; } "make-wrapper";
    nix-gitignore = { gitignoreFilterPure = filter: _: _: filter; };
    xorg = simple [ "libxcb" "libX11" "libXext" ];
    python311 = mkPython { attr = "python311"; version = "3.11.10"; };
    python312 = mkPython { attr = "python312"; version = "3.12.7"; };
    python3 = pkgsSet.python312;
    python3Packages = pkgsSet.python3.pkgs;
  };
in
if overlays != [ ] || crossOverlays != [ ] then throw "nixpkgs stand-in: overlays are not modelled; the flake uses none"
else if crossSystem != null then throw "nixpkgs stand-in: cross compilation is not modelled"
else pkgsSet
