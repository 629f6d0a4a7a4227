{
  description = "fx-ml-pipeline images: nix2container + poetry2nix images from images/*.toml and poetry.lock, and the stack apps";

  # One consistent set of revisions (see docs/nix.md, "Pinned revisions"):
  #  - nixpkgs 75e28c02 (2024-10-28) is the revision poetry2nix's own CI last ran against;
  #    poetry2nix is unmaintained since 2025 and was never tested with anything newer. It still
  #    has Poetry 1.8 (`poetry`), python311, postgresql_15 and cudaPackages_12_4 (torch 2.6 is cu124).
  #  - poetry2nix ce2369db (2025-04-03) is its last commit; its lock pins the same nixpkgs.
  #  - nix2container 78aadfc4 (2025-04-15) is its last commit before it moved its own pin to
  #    nixpkgs of June 2025 and rebuilt the patched skopeo with a newer Go: the newest one made
  #    for nixpkgs of this age (its lock still pins nixpkgs 2024-04). The nixpkgs its HEAD pins
  #    (1cabc318, 2025-12) no longer has Poetry 1.8 and poetry2nix is untested there.
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/75e28c029ef2605f9841e0baa335d70065fe7ae2";
    nix2container = {
      url = "github:nlewo/nix2container/78aadfc4ee1f9c2ee256e304b180ca356eb6a045";
      flake = false;
    };
    poetry2nix = {
      url = "github:nix-community/poetry2nix/ce2369db77f45688172384bbeb962bc6c2ea6f94";
      flake = false;
    };
  };

  outputs = { self, nixpkgs, nix2container, poetry2nix }:
    import ./nix/outputs.nix {
      inherit nixpkgs nix2container poetry2nix;
      src = ./.;
    };
}
