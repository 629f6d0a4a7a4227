# The stack apps: the Python harness (`fxstack up|down|test`, src/fxstack) with the images'
# nix2container copy scripts (copyToDockerDaemon) available.
#
# Each app exports, for the harness:
#   FXSTACK_ROOT         the checkout when run from one (images/, compose/, pyproject.toml in $PWD),
#                        else the flake's copy of them (state then goes to $XDG_STATE_HOME/fxstack)
#   PATH                 + fx-load-<image> (each image's copyToDockerDaemon) and fx-load-images
# The harness learns which images to run from $state/images.env (as after `fxstack load`) and
# is told not to build (--no-build); nothing else passes between the two.
# stack-up first runs fx-load-images: every deployed image (the gpu one only in stack-up-gpu) is
# copied into Docker (skopeo copies only the layers Docker does not have) and $state/images.env
# gets FX_FASTAPI_IMAGE=fx-fastapi:<tag>... as docs/contracts.md says; then `fxstack up --no-build`.
{ pkgs, images, manifest, harnessEnv, src, lib }:
let
  inherit (builtins) attrNames concatStringsSep filter toJSON elem head split length;

  root = toString src;
  keepTop = [ "src" "images" "compose" "pyproject.toml" "poetry.lock" ];
  harnessSrc = builtins.path {
    path = src;
    name = "fxstack-harness-src";
    filter = path: type:
      let
        rel = builtins.substring (builtins.stringLength root + 1) (builtins.stringLength (toString path)) (toString path);
        top = head (builtins.filter builtins.isString (split "/" rel));
      in
      elem top keepTop && !(elem (baseNameOf path) [ "__pycache__" ".pytest_cache" ".fxstack" ])
      && builtins.match ".*\\.py[co]" path == null;
  };

  loadable = gpu: filter (n: manifest.${n}.deploy && (gpu || !manifest.${n}.gpu)) (attrNames manifest);

  # legacyPackages.image-manifest(-gpu): every image with its ref and flags, for tools outside
  # the harness; the copy script only for the images the matching app loads, so building the
  # manifest builds neither fx-base nor (without -gpu) the CUDA image.
  manifestFile = gpu: pkgs.writeText "fxstack-nix-images.json" (toJSON (builtins.mapAttrs
    (n: m: builtins.removeAttrs m [ "copyToDockerDaemon" ]
      // lib.optionalAttrs (elem n (loadable gpu)) { inherit (m) copyToDockerDaemon; })
    manifest));

  # Copies each image into Docker, then writes $state/images.env like the portable loader
  # (src/fxstack/load/loader.py write_images_env): our lines replace the same variables, other
  # lines are kept. Nothing is written unless every copy succeeded.
  loaders = gpu:
    let names = loadable gpu; vars = map (n: manifest.${n}.envVar) names; in
    pkgs.writeShellApplication {
      name = "fx-load-images";
      text = ''
        state="''${FXSTACK_STATE:-''${FXSTACK_ROOT:?FXSTACK_ROOT is not set}/.fxstack}"
        mkdir -p "$state"
      '' + concatStringsSep "" (map
        (n: with manifest.${n}; ''
          echo "fx-load-images: ${name} -> ${ref}"
          ${copyToDockerDaemon}
        '')
        names) + ''
        env_file="$state/images.env"
        {
          echo "# written by the Nix stack apps (fx-load-images): image refs for docker compose"
          if [ -f "$env_file" ]; then
            grep -v -E '^(#|(${concatStringsSep "|" vars})=)' "$env_file" || true
          fi
      '' + concatStringsSep "" (map (n: "  echo '${manifest.${n}.envVar}=${manifest.${n}.ref}'\n") names) + ''
        } > "$env_file.tmp"
        mv "$env_file.tmp" "$env_file"
        echo "fx-load-images: wrote $env_file"
      '';
    };

  perImage = gpu: pkgs.runCommand "fxstack-nix-image-loaders" { } (''
    mkdir -p $out/bin
  '' + concatStringsSep "" (map (n: "ln -s ${manifest.${n}.copyToDockerDaemon} $out/bin/fx-load-${n}\n") (loadable gpu)));

  app = { name, command, load ? false, gpu ? false }:
    let
      script = pkgs.writeShellApplication {
        inherit name;
        runtimeInputs = [ (loaders gpu) (perImage gpu) pkgs.docker-compose ];
        text = ''
          if [ -z "''${FXSTACK_ROOT:-}" ]; then
            if [ -d images ] && [ -d compose ] && [ -f pyproject.toml ]; then
              FXSTACK_ROOT="$PWD"
            else
              FXSTACK_ROOT=${harnessSrc}
              FXSTACK_STATE="''${FXSTACK_STATE:-''${XDG_STATE_HOME:-$HOME/.local/state}/fxstack}"
              export FXSTACK_STATE
            fi
          fi
          export FXSTACK_ROOT
          export PYTHONPATH=${harnessSrc}/src''${PYTHONPATH:+:$PYTHONPATH}
          ${lib.optionalString load "fx-load-images"}
          exec ${harnessEnv}/bin/python -m fxstack.cli ${command} "$@"
        '';
      };
    in
    { type = "app"; program = "${script}/bin/${name}"; drv = script; };

  apps = {
    # The images are loaded here, so the harness must not run the portable builder (--no-build);
    # Grafana is built by this flake (the portable path cannot), so its profile is on.
    stack-up = app { name = "stack-up"; command = "up --no-build --grafana"; load = true; };
    stack-up-gpu = app { name = "stack-up-gpu"; command = "up --no-build --grafana --gpu"; load = true; gpu = true; };
    stack-down = app { name = "stack-down"; command = "down"; };
    stack-test = app { name = "stack-test"; command = "test"; };
  };
in
{
  inherit harnessSrc;
  manifestFile = manifestFile false;
  manifestFileGpu = manifestFile true;
  loaders = loaders false;
  apps = builtins.mapAttrs (_: a: { inherit (a) type program; }) apps;
  scripts = builtins.mapAttrs (_: a: a.drv) apps;
}
