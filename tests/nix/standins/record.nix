# Shared by the stand-ins: a fake derivation that records the call that made it.
#
# The stand-ins never build anything. Each call returns an attrset that looks enough like a
# derivation for the flake to use it (outPath, drvPath, name, type) and carries
# `standin = { fn, args, instance }`, the function that made it and the arguments it got.
# outPath is a hash of (fn, name, args) where nested fake derivations count by their own outPath
# and Nix paths by their content: like a real derivation, it changes exactly when an input
# changes, so two images that share a layer share its outPath.
let
  inherit (builtins)
    isFunction isAttrs isList mapAttrs toJSON hashString substring concatStringsSep
    attrNames filter elem throw;

  # toJSON cannot print functions; everything else (paths, nested derivations) it handles.
  sanitize = v:
    if isFunction v then "<function>"
    else if isList v then map sanitize v
    else if isAttrs v then (if v ? outPath then v.outPath else mapAttrs (_: sanitize) v)
    else v;

  storeHash = s: substring 0 32 (hashString "sha256" s);
in
rec {
  inherit sanitize;

  mkDrv = { fn, name, args, extra ? { }, instance ? null, hashArgs ? args }:
    let
      key = toJSON { inherit fn name; args = sanitize hashArgs; };
      outPath = "/nix/store/${storeHash key}-${name}";
    in
    extra // {
      type = "derivation";
      inherit name outPath;
      drvPath = "/nix/store/${storeHash ("drv:" + key)}-${name}.drv";
      outputs = [ "out" ];
      standin = { inherit fn args instance; };
    };

  # Keys of `attrs` must be among `allowed`: for attrsets the real code passes on unchecked
  # (an OCI config, a perms entry), where a misspelt key would be silently dropped.
  onlyKeys = what: allowed: attrs:
    let bad = filter (k: !(elem k allowed)) (attrNames attrs);
    in if bad == [ ] then attrs
    else throw "stand-in ${what}: unknown key(s) ${concatStringsSep ", " bad}; accepted: ${concatStringsSep ", " allowed}";
}
