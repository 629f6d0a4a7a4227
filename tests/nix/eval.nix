# Evaluates flake.nix's outputs against the stand-ins and prints what they recorded, as JSON:
#   nix-instantiate --readonly-mode --eval --strict --json tests/nix/eval.nix --arg root ./.
# {
#   packages, checks, legacy: name -> outPath;  apps: name -> { type, program };
#   images: name -> { drv, imageName, imageTag, copyToDockerDaemon };
#   devShell, formatter: outPath;
#   drvs: outPath -> { fn, name, args, instance } for every fake derivation reachable from the
#         outputs; in args a nested derivation is { "$drv": outPath }, a Nix path { "$path": ... }
# }
{ root, standins ? ./standins }:
let
  inherit (builtins) isAttrs isList isFunction isPath mapAttrs listToAttrs attrValues concatMap genericClosure;
  system = "x86_64-linux";

  flake = import (root + "/flake.nix");
  outputs = flake.outputs {
    self = { outPath = root; };
    nixpkgs = standins + "/nixpkgs";
    nix2container = standins + "/nix2container";
    poetry2nix = standins + "/poetry2nix";
  };

  isDrv = v: isAttrs v && v ? standin;

  show = v:
    if isDrv v then { "$drv" = v.outPath; }
    else if isFunction v then { "$function" = true; }
    else if isPath v then { "$path" = toString v; }
    else if isList v then map show v
    else if isAttrs v then (if v ? outPath then { "$outPath" = toString v.outPath; } else mapAttrs (_: show) v)
    else v;

  # Fake derivations directly inside v (not through another derivation).
  childDrvs = v:
    if isDrv v then [ v ]
    else if isList v then concatMap childDrvs v
    else if isAttrs v && !(v ? outPath) then concatMap childDrvs (attrValues v)
    else [ ];

  roots =
    attrValues outputs.packages.${system}
    ++ map (i: i.copyToDockerDaemon) (attrValues outputs.packages.${system})
    ++ attrValues outputs.checks.${system}
    ++ childDrvs outputs.legacyPackages.${system}
    ++ [ outputs.devShells.${system}.default outputs.formatter.${system} ];

  closure = genericClosure {
    startSet = map (d: { key = d.outPath; drv = d; }) roots;
    operator = item: map (d: { key = d.outPath; drv = d; }) (childDrvs item.drv.standin.args);
  };

  outPaths = set: mapAttrs (_: d: d.outPath) set;
in
{
  packages = outPaths outputs.packages.${system};
  checks = outPaths outputs.checks.${system};
  apps = mapAttrs (_: a: { inherit (a) type program; }) outputs.apps.${system};
  legacy = mapAttrs (_: v: if isDrv v then v.outPath else outPaths v) outputs.legacyPackages.${system};
  images = mapAttrs
    (_: i: { drv = i.outPath; inherit (i) imageName imageTag; copyToDockerDaemon = i.copyToDockerDaemon.outPath; })
    outputs.packages.${system};
  devShell = outputs.devShells.${system}.default.outPath;
  formatter = outputs.formatter.${system}.outPath;
  outputNames = builtins.attrNames outputs;
  drvs = listToAttrs (map
    (i: { name = i.key; value = { inherit (i.drv.standin) fn instance; name = i.drv.name; args = show i.drv.standin.args; }; })
    closure);
}
