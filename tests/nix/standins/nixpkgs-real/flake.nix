{
  description = "nixpkgs stand-in for the nixreal tests (tests/nix/standins/nixpkgs-real)";
  outputs = { self }: { lib = import ./lib; };
}
