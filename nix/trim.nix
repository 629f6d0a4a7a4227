# An image spec's `trim` rules (src/fxstack/image/trim.py) on the Nix path: a poetry2nix
# overlay that deletes, from every package of one image's environments, the files under
# site-packages the rules drop: fnmatch-style patterns (`*` crosses `/`, as in a shell
# `case`), and with `unless_imported` only files the import profile does not list (a `.pyc`
# stands for its `.py`). The portable builder applies the same rules to the same paths.
#
#   import ./trim.nix { trim = spec.trim; profile = src + "/${spec.trim.profile}"; packages = [ ... ]; }
{ trim, profile ? null, packages }:
final: prev:
let
  inherit (builtins) concatStringsSep map listToAttrs;
  # shell-quoted patterns of one rule, joined for `case`
  casePatterns = rule: concatStringsSep "|" (map (p: "'${builtins.replaceStrings [ "*" ] [ "'*'" ] p}'") rule.files);
  ruleScript = rule: ''
    case "$rel" in
      ${casePatterns rule})
        ${if rule.unless_imported then ''
          src=$(printf '%s\n' "$rel" | sed -E 's#(^|/)__pycache__/([^/.]+)\.cpython-[0-9]+(\.opt-[0-9])?\.pyc$#\1\2.py#')
          grep -qxF "$src" ${profile} || rm -f "$rel"
        '' else ''
          rm -f "$rel"
        ''}
        continue ;;
    esac
  '';
  script = ''
    if [ -d "$out/${final.python.sitePackages}" ]; then
      ( cd "$out/${final.python.sitePackages}"
        find . -type f | sed 's#^\./##' | while IFS= read -r rel; do
          ${concatStringsSep "\n" (map ruleScript trim.drop)}
        done )
    fi
  '';
in
# (the names come from `packages` alone: which packages exist must not depend on evaluating any)
listToAttrs (map
  (n: {
    name = n;
    value = if prev.${n} == null then null
      else prev.${n}.overridePythonAttrs (old: { postFixup = (old.postFixup or "") + script; });
  })
  packages)
