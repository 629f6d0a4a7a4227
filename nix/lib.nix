# The few list/attrset helpers the flake needs, from builtins only, so that nix/ can be
# evaluated against stand-ins without nixpkgs' lib.
let
  inherit (builtins) foldl' elem filter attrNames listToAttrs concatMap concatStringsSep split isString
    substring stringLength match head tail length replaceStrings hasAttr getAttr;
in
rec {
  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];

  splitDots = s: filter isString (split "\\." s);

  # Look up a dotted attribute path ("cudaPackages_12_4.cuda_cudart") in a set, or throw `msg`.
  getPath = msg: set: path:
    foldl' (acc: k: if builtins.isAttrs acc && hasAttr k acc then getAttr k acc else throw msg) set (splitDots path);

  mapToList = f: set: map (k: f k set.${k}) (attrNames set);

  genAttrs = names: f: listToAttrs (map (n: { name = n; value = f n; }) names);

  optional = c: x: if c then [ x ] else [ ];
  optionals = c: xs: if c then xs else [ ];
  optionalString = c: s: if c then s else "";
  optionalAttrs = c: s: if c then s else { };

  # The output that holds a package's shared libraries (nixpkgs' lib.getLib): cudaPackages
  # put them in `lib`, most packages in `out`.
  getLib = drv: drv.lib or drv.out or drv;

  hasPrefix = p: s: substring 0 (stringLength p) s == p;

  findFirst = pred: default: list:
    let found = filter pred list; in if found == [ ] then default else head found;

  # A store-path-safe name from any string.
  safeName = s:
    let cleaned = replaceStrings [ "/" " " ":" "@" "," ] [ "-" "-" "-" "-" "-" ] s;
    in if hasPrefix "." cleaned || hasPrefix "-" cleaned then "x" + cleaned else cleaned;

  # Single-quote a string for the shell.
  shellQuote = s: "'" + replaceStrings [ "'" ] [ "'\\''" ] s + "'";
  shellQuoteList = xs: concatStringsSep " " (map shellQuote xs);

  toLower = builtins.replaceStrings
    [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ]
    [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];

  toUpper = builtins.replaceStrings
    [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ]
    [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
}
