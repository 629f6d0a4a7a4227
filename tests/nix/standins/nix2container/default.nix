# Stand-in for nix2container's default.nix at the revision in flake.lock
# (nlewo/nix2container 78aadfc4ee1f9c2ee256e304b180ca356eb6a045): same entry point
# (`import nix2container { inherit pkgs system; }`), same result shape
# ({ nix2container-bin, skopeo-nix2container, nix2container = { buildImage, buildLayer,
# pullImage, pullImageFromManifest } }), and buildImage/buildLayer with exactly the real
# argument sets and defaults. The image carries the real passthru (imageName, imageTag,
# copyToDockerDaemon, copyToRegistry, copyToPodman, copyTo).
#
# Stricter than the real code where the real code would silently drop a typo: the OCI config
# keys (Go's JSON decoding ignores unknown fields) and the keys of perms entries are checked.
{ pkgs ? throw "stand-in nix2container: pass `pkgs` (the real default is <nixpkgs>, which a flake cannot use)"
, system
}:
let
  inherit (builtins) isList isAttrs isString isInt all attrNames attrValues throw head match substring stringLength;
  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  toLower = builtins.replaceStrings upper lower;
  r = import ../record.nix;

  # github.com/opencontainers/image-spec specs-go/v1/config.go ImageConfig fields.
  ociConfigKeys = [ "User" "ExposedPorts" "Env" "Entrypoint" "Cmd" "Volumes" "WorkingDir" "Labels" "StopSignal" "ArgsEscaped" ];
  # nix2container types.PermPath
  permKeys = [ "path" "regex" "mode" "uid" "gid" "uname" "gname" ];
  metadataKeys = [ "created_by" "author" "comment" ];

  checkPerms = what: perms:
    if !(isList perms) then throw "stand-in ${what}: perms must be a list"
    else map (p: r.onlyKeys "${what} perms entry" permKeys p) perms;

  checkLayers = what: layers:
    if !(isList layers) then throw "stand-in ${what}: layers must be a list"
    else if !(all (l: isAttrs l && (l.standin.fn or "") == "nix2container.buildLayer") layers)
    then throw "stand-in ${what}: every element of layers must come from buildLayer"
    else layers;

  checkConfig = config:
    let
      c = r.onlyKeys "buildImage config" ociConfigKeys config;
      strList = k: !(c ? ${k}) || (isList c.${k} && all isString c.${k});
      emptySets = k: !(c ? ${k}) || (isAttrs c.${k} && all (v: v == { }) (attrValues c.${k}));
    in
    if !(strList "Entrypoint" && strList "Cmd" && strList "Env") then throw "stand-in buildImage config: Entrypoint, Cmd and Env must be lists of strings"
    else if !(all (e: match "[A-Za-z_][A-Za-z0-9_]*=.*" e != null) (c.Env or [ ])) then throw "stand-in buildImage config: every Env entry must be NAME=value"
    else if !(emptySets "ExposedPorts" && emptySets "Volumes") then throw "stand-in buildImage config: ExposedPorts and Volumes map to {}"
    else if !(all (p: match "[0-9]+/(tcp|udp)" p != null) (attrNames (c.ExposedPorts or { }))) then throw "stand-in buildImage config: ExposedPorts keys are PORT/tcp or PORT/udp"
    else c;

  checked = what: { copyToRoot, contents }:
    if contents != null && copyToRoot != null then throw "stand-in ${what}: You can not specify both contents and copyToRoot."
    else if contents != null then throw "stand-in ${what}: contents is deprecated, use copyToRoot"
    else true;

  buildLayer =
    { deps ? [ ]
    , copyToRoot ? null
    , ignore ? null
    , layers ? [ ]
    , reproducible ? true
    , perms ? [ ]
    , maxLayers ? 1
    , contents ? null
    , metadata ? { created_by = "nix2container"; }
    }@args:
    assert checked "buildLayer" { inherit copyToRoot contents; };
    assert isList deps || throw "stand-in buildLayer: deps must be a list";
    assert isInt maxLayers || throw "stand-in buildLayer: maxLayers must be an integer";
    let
      args' = args // {
        perms = checkPerms "buildLayer" perms;
        layers = checkLayers "buildLayer" layers;
        metadata = r.onlyKeys "buildLayer metadata" metadataKeys metadata;
      };
    in
    r.mkDrv { fn = "nix2container.buildLayer"; name = "layers.json"; args = args'; };

  copyScript = fn: bin: image:
    r.mkDrv { fn = "nix2container.${fn}"; name = bin; args = { inherit image; }; extra = { meta.mainProgram = bin; }; };

  buildImage =
    { name
    , tag ? null
    , config ? { }
    , layers ? [ ]
    , copyToRoot ? null
    , fromImage ? ""
    , arch ? "amd64"
    , perms ? [ ]
    , maxLayers ? 1
    , initializeNixDatabase ? false
    , nixUid ? 0
    , nixGid ? 0
    , created ? "0001-01-01T00:00:00Z"
    , contents ? null
    , meta ? { }
    }@args:
    assert checked "buildImage" { inherit copyToRoot contents; };
    assert isString name || throw "stand-in buildImage: name must be a string";
    let
      args' = args // {
        config = checkConfig config;
        perms = checkPerms "buildImage" perms;
        layers = checkLayers "buildImage" layers;
      };
      image = r.mkDrv {
        fn = "nix2container.buildImage";
        name = "image-${name}.json";
        args = args';
        extra = {
          imageName = toLower name;
          # Real: the tag, or the hash part of the image's out path.
          imageTag = if tag != null then tag else substring 11 32 image.outPath;
          inherit fromImage meta;
          copyToDockerDaemon = copyScript "copyToDockerDaemon" "copy-to-docker-daemon" image;
          copyToRegistry = copyScript "copyToRegistry" "copy-to-registry" image;
          copyToPodman = copyScript "copyToPodman" "copy-to-podman" image;
          copyTo = copyScript "copyTo" "copy-to" image;
        };
      };
    in
    image;

  notModelled = what: _: throw "stand-in nix2container: ${what} is not modelled (the flake pulls no image)";
in
{
  nix2container-bin = r.mkDrv { fn = "nix2container.nix2container-bin"; name = "nix2container-1.0.0"; args = { }; };
  skopeo-nix2container = r.mkDrv { fn = "nix2container.skopeo-nix2container"; name = "skopeo-nix2container"; args = { }; };
  nix2container = {
    inherit buildImage buildLayer;
    pullImage = notModelled "pullImage";
    pullImageFromManifest = notModelled "pullImageFromManifest";
  };
}
