# Which of a locked package's files poetry2nix may look at: the sdists, and the wheels this
# platform's CPython can install. The other wheels are left out of the file list poetry2nix
# gets; everything else (names, versions, dependencies, markers, hashes) is unchanged.
#
# Why: poetry2nix ce2369db (its last commit) vendors a pyproject.nix that parses EVERY file of
# a locked package before it picks one, even with preferWheels, and aborts evaluation on tags
# it does not know:
#  - `manylinux_*_riscv64` wheels: pep599.nix has no riscv64, pep600.nix looks it up
#    ("attribute 'riscv64' missing"); 20 locked packages ship one (charset-normalizer,
#    markupsafe, aiohttp, ... : every environment reaches one);
#  - compressed ABI tag sets and new ABI tags: `cp315-abi3.abi3t` (cryptography,
#    ast-serialize), `graalpy250_312_native` (kiwisolver) fail pypa.nix's
#    parseABITag ("assertion '(m != null)' failed").
# A wheel for riscv64, for CPython 3.15 or for GraalPy can never be chosen on x86_64-linux
# CPython 3.11, so leaving it out changes nothing that poetry2nix would pick. The filter is deliberately
# looser than the real selection (it keeps every wheel that could be compatible) except for one thing the
# real parser cannot read at all: an ABI field that is a compressed set (`abi3.abi3t`).
#
# Packages an image installs get exactly the portable builder's file (./pins.nix); this filter
# is for the others poetry2nix may build from the lock (build tools of an sdist). ./pins.nix
# wraps poetry2nix's `mkPoetryDep` (an overlay on its Python package set), so neither
# poetry.lock nor the poetry2nix source is changed (a rewritten lock written with
# builtins.toFile cannot be read back in pure evaluation with Nix 2.8).
#
#   (import ./wheels.nix { pythonVersion = "3.11"; arch = "x86_64"; }).installable "<file name>"
{ pythonVersion, arch }:
let
  inherit (builtins) any elem filter match split isString elemAt;
  toInt = s: builtins.fromJSON (builtins.head (match "0*([0-9]+)" ("0" + s)));

  parts = s: filter isString (split "\\." s);
  minor = toInt (elemAt (parts pythonVersion) 1);
  major = elemAt (parts pythonVersion) 0;

  # {name}-{version}(-{build})?-{python}-{abi}-{platform}.whl (PEP 427); null: not a wheel.
  wheelTags = file:
    let m = match "[^-]+-[^-]+(-[0-9][^-]*)?-([^-]+)-([^-]+)-(.+)\\.whl" file;
    in if m == null then null else { python = elemAt m 1; abi = elemAt m 2; platform = elemAt m 3; };

  pythonOk = tag:
    tag == "py${major}" || tag == "py2"
    || (let m = match "(py|cp)${major}([0-9]+)" tag; in m != null && toInt (elemAt m 1) <= minor);
  abiOk = abi:
    match "[a-z]+[0-9]*_?[a-z0-9]*" abi != null
    && (elem abi [ "none" "abi3" ] || abi == "cp${major}${toString minor}");
  platformOk = tag:
    tag == "any" || tag == "linux_${arch}" || match "manylinux[0-9_]*_${arch}" tag != null;
in
rec {
  # true for sdists (and anything else that is not a wheel: poetry2nix decides about those)
  # and for wheels this interpreter on this CPU could install.
  installable = file:
    let t = wheelTags file; in
    t == null
    || (any pythonOk (parts t.python) && abiOk t.abi && any platformOk (parts t.platform));
}
