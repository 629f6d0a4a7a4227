# Stand-in for nixpkgs (the pinned revision in flake.lock), just the part flake.nix uses.
#
# The argument set is the one of pkgs/top-level/impure.nix + top-level/default.nix, without the
# `...` (the real one forwards unknown arguments to top-level/default.nix, whose fixed pattern
# rejects them). Builders take exactly the arguments of the real ones (read from
# pkgs/build-support/trivial-builders/default.nix, buildenv/default.nix, mkshell/default.nix);
# a misspelt argument fails with Nix's own "called with unexpected argument" error.
# Packages are fake derivations (see ../record.nix); versions are those of the pinned revision
# where known, else placeholders: nothing reads them except the devShell's Poetry 1.8 assertion.
{ localSystem ? null
, system ? null
, platform ? null
, crossSystem ? null
, config ? { }
, overlays ? [ ]
, crossOverlays ? [ ]
}:
let
  inherit (builtins) throw concatStringsSep attrNames filter elem isAttrs isString isList;
  r = import ../record.nix;

  sys =
    if system != null then system
    else if localSystem != null then localSystem.system or localSystem
    else throw "stand-in nixpkgs: neither `system` nor `localSystem` given (the flake must not rely on builtins.currentSystem)";

  # The nixpkgs config options the flake may set; anything else is a typo here.
  knownConfig = [ "allowUnfree" "allowUnfreePredicate" "cudaSupport" "cudaCapabilities" "cudaForwardCompat" "allowBroken" "permittedInsecurePackages" ];
  cfg = r.onlyKeys "nixpkgs config" knownConfig config;
  instance = { system = sys; config = r.sanitize cfg; };

  unfreeOk = cfg.allowUnfree or false;

  pkg = attr: pname: version: extra:
    r.mkDrv {
      fn = "nixpkgs.${attr}";
      name = "${pname}-${version}";
      args = { };
      inherit instance;
      extra = { inherit pname version; meta = { mainProgram = pname; }; } // extra;
    };

  unfree = attr: pname: version:
    if unfreeOk then pkg attr pname version { meta.license = "unfree"; }
    else throw "Package ‘${pname}-${version}’ in ${attr} has an unfree license, refusing to evaluate (stand-in nixpkgs: config.allowUnfree is not set in this import).";

  mkPython = attr: version: pythonVersion:
    pkg attr "python3" version {
      inherit pythonVersion;
      sitePackages = "lib/python${pythonVersion}/site-packages";
      executable = "python${pythonVersion}";
      isPy3k = true;
    };

  cudaPackages_12_4 = {
    cudaVersion = "12.4";
    cuda_cudart = unfree "cudaPackages_12_4.cuda_cudart" "cuda_cudart" "12.4.127";
    libcublas = unfree "cudaPackages_12_4.libcublas" "libcublas" "12.4.5.8";
    cudnn = unfree "cudaPackages_12_4.cudnn" "cudnn" "9.3.0.75";
    nccl = unfree "cudaPackages_12_4.nccl" "nccl" "2.21.5";
  };

  builder = fn: name: args: extra: r.mkDrv { inherit fn name args instance extra; };
in
if overlays != [ ] || crossOverlays != [ ] then throw "stand-in nixpkgs: overlays are not modelled; the flake uses none"
else if crossSystem != null then throw "stand-in nixpkgs: cross compilation is not modelled"
else rec {
  system = sys;
  inherit config;
  stdenv = { hostPlatform = { system = sys; isLinux = true; }; buildPlatform = { system = sys; }; };

  # --- build helpers, with the real argument sets --------------------------------------
  runCommand = name: env: script:
    if !(isAttrs env) then throw "stand-in runCommand ${name}: the second argument must be an attrset"
    else if !(isString script) then throw "stand-in runCommand ${name}: the build script must be a string"
    else builder "nixpkgs.runCommand" name { inherit env script; } { };

  writeTextFile =
    { name
    , text
    , executable ? false
    , destination ? ""
    , checkPhase ? ""
    , meta ? { }
    , passthru ? { }
    , allowSubstitutes ? false
    , preferLocalBuild ? true
    , derivationArgs ? { }
    }@args:
    builder "nixpkgs.writeTextFile" name args passthru;

  writeText = name: text:
    if !(isString text) then throw "stand-in writeText ${name}: text must be a string"
    else builder "nixpkgs.writeText" name { inherit text; } { };

  writeShellApplication =
    { name
    , text
    , runtimeInputs ? [ ]
    , runtimeEnv ? null
    , meta ? { }
    , passthru ? { }
    , checkPhase ? null
    , excludeShellChecks ? [ ]
    , extraShellCheckFlags ? [ ]
    , bashOptions ? [ "errexit" "nounset" "pipefail" ]
    , derivationArgs ? { }
    }@args:
    builder "nixpkgs.writeShellApplication" name args (passthru // { meta = { mainProgram = name; } // meta; });

  # buildEnv: the arguments common to the pinned revision and current nixpkgs.
  buildEnv =
    { name
    , paths
    , ignoreCollisions ? false
    , checkCollisionContents ? true
    , pathsToLink ? [ "/" ]
    , extraOutputsToInstall ? [ ]
    , extraPrefix ? ""
    , postBuild ? ""
    , nativeBuildInputs ? [ ]
    , buildInputs ? [ ]
    , passthru ? { }
    , meta ? { }
    , manifest ? ""
    , ignoreSingleFileOutputs ? false
    , includeClosures ? false
    }@args:
    if !(isList paths) then throw "stand-in buildEnv ${name}: paths must be a list"
    else builder "nixpkgs.buildEnv" name args passthru;

  # mkShell forwards unknown attributes to mkDerivation; the stand-in allows the ones the
  # flake may use (shellHook, env vars are set through shellHook) and rejects the rest.
  mkShell =
    { name ? "nix-shell"
    , packages ? [ ]
    , inputsFrom ? [ ]
    , buildInputs ? [ ]
    , nativeBuildInputs ? [ ]
    , propagatedBuildInputs ? [ ]
    , propagatedNativeBuildInputs ? [ ]
    , shellHook ? ""
    }@args:
    builder "nixpkgs.mkShell" name args { };

  # --- packages the specs and the flake name ------------------------------------------
  python311 = mkPython "python311" "3.11.10" "3.11";
  python3 = mkPython "python3" "3.12.7" "3.12";
  tini = pkg "tini" "tini" "0.19.0" { };
  cacert = pkg "cacert" "nss-cacert" "3.104" { };
  bashInteractive = pkg "bashInteractive" "bash-interactive" "5.2p37" { };
  coreutils = pkg "coreutils" "coreutils" "9.5" { };
  postgresql_15 = pkg "postgresql_15" "postgresql" "15.8" { psqlSchema = "15"; };
  redis = pkg "redis" "redis" "7.2.6" { };
  haproxy = pkg "haproxy" "haproxy" "3.0.5" { };
  prometheus = pkg "prometheus" "prometheus" "2.55.0" { };
  prometheus-statsd-exporter = pkg "prometheus-statsd-exporter" "statsd_exporter" "0.26.1" { };
  prometheus-redis-exporter = pkg "prometheus-redis-exporter" "redis_exporter" "1.65.0" { };
  grafana = pkg "grafana" "grafana" "11.3.0" { };
  chromium = pkg "chromium" "chromium" "130.0.6723.69" { };
  poetry = pkg "poetry" "poetry" "1.8.4" { };
  docker-compose = pkg "docker-compose" "docker-compose" "2.29.7" { };
  skopeo = pkg "skopeo" "skopeo" "1.16.1" { };
  nixfmt-rfc-style = pkg "nixfmt-rfc-style" "nixfmt" "unstable-2024-08-16" { };
  nix = pkg "nix" "nix" "2.18.8" { };
  jq = pkg "jq" "jq" "1.7.1" { };
  inherit cudaPackages_12_4;
}
