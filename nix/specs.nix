# Reads images/*.toml with nothing but builtins and resolves `base` inheritance exactly like
# src/fxstack/specs.py (`_resolve`). No nixpkgs: this file is evaluated on every CI run by
# tests/nix/test_specs.py and must give the same JSON as `fxstack specs --json`.
#
#   import ./nix/specs.nix { root = ./.; }
#     => { specs = { <name> = <resolved spec>; ... }; names = [ ... ]; deployed = [ ... ]; }
{ root, imagesDir ? root + "/images" }:
let
  inherit (builtins)
    attrNames filter foldl' hasAttr listToAttrs elem concatStringsSep
    readDir readFile fromTOML match head length throw isString;

  universes = [ "debian" "nixpkgs" ];

  # The fields the Python loader knows (specs.FIELDS); anything else is a typo in a spec.
  fields = [
    "name" "description" "kind" "deploy" "gpu" "portable" "portable_reason" "base" "groups"
    "app" "user" "uid" "workdir" "entrypoint" "cmd" "ports" "volumes" "env" "labels" "packages" "trim"
  ];
  required = [ "name" "description" "kind" ];
  # Fields an image inherits from its `base` when it does not set them (specs.INHERITED).
  inherited = [ "user" "uid" "workdir" "entrypoint" "cmd" ];
  defaults = { user = "root"; uid = null; workdir = "/"; entrypoint = [ ]; cmd = [ ]; };

  fail = file: msg: throw "images/${file}: ${msg}";

  entries = readDir imagesDir;
  files = filter (n: entries.${n} == "regular" && match ".*\\.toml" n != null) (attrNames entries);
  stem = file: head (match "(.*)\\.toml" file);

  check = file: raw:
    let
      unknown = filter (k: !(elem k fields)) (attrNames raw);
      missing = filter (k: !(hasAttr k raw)) required;
    in
    if unknown != [ ] then fail file "unknown field `${head unknown}` (known: ${concatStringsSep ", " fields})"
    else if missing != [ ] then fail file "missing required field `${head missing}`"
    else if raw.name != stem file then fail file "name `${raw.name}` differs from the file name `${stem file}`"
    else raw;

  raws = listToAttrs (map
    (file: let raw = check file (fromTOML (readFile (imagesDir + "/${file}"))); in { name = raw.name; value = raw; })
    files);

  # Append `new` to `old`, skipping what `old` already has (Python: old + [n for n in new if n not in old]).
  appendNew = old: new: old ++ filter (n: !(elem n old)) new;

  resolve = chain: name:
    let
      raw = raws.${name};
      base =
        if !(raw ? base) then null
        else if elem raw.base (chain ++ [ name ]) then
          fail "${name}.toml" "base chain loops: ${concatStringsSep " -> " (chain ++ [ name raw.base ])}"
        else if !(hasAttr raw.base raws) then
          fail "${name}.toml" "base image `${raw.base}` has no spec"
        else resolve (chain ++ [ name ]) raw.base;
      inherit' = key:
        if raw ? ${key} then raw.${key}
        else if base != null && elem key inherited then base.${key}
        else defaults.${key};
      ownPackages = raw.packages or { };
      packages = listToAttrs (map
        (u: {
          name = u;
          value = appendNew (if base != null then base.packages.${u} else [ ]) (ownPackages.${u} or [ ]);
        })
        universes);
    in
    {
      inherit (raw) name description kind;
      deploy = raw.deploy or true;
      gpu = raw.gpu or false;
      portable = raw.portable or true;
      portable_reason = raw.portable_reason or "";
      base = raw.base or null;
      groups = appendNew (if base != null then base.groups else [ ]) (raw.groups or [ ]);
      app = map (a: { inherit (a) src dest; }) (raw.app or [ ]);
      user = inherit' "user";
      uid = inherit' "uid";
      workdir = inherit' "workdir";
      entrypoint = inherit' "entrypoint";
      cmd = inherit' "cmd";
      ports = raw.ports or [ ];
      volumes = raw.volumes or [ ];
      env = (if base != null then base.env else { }) // (raw.env or { });
      labels = (if base != null then base.labels else { }) // (raw.labels or { });
      inherit packages;
      # specs._normal_trim: defaults filled in; not inherited from `base`
      trim =
        if !(raw ? trim) then null
        else {
          profile = raw.trim.profile or "";
          drop = map (d: { inherit (d) files reason; unless_imported = d.unless_imported or false; }) (raw.trim.drop or [ ]);
        };
    };

  specs = listToAttrs (map (name: { inherit name; value = resolve [ ] name; }) (attrNames raws));
in
if files == [ ] then throw "no image specs found in ${toString imagesDir}"
else {
  inherit specs fields;
  names = attrNames specs;
  deployed = filter (n: specs.${n}.deploy) (attrNames specs);
}
