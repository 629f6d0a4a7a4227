# uid for a spec that names a user but no uid (the service images). Debian's packages create
# these as system users with whatever id is free; the Nix images fix them here.
{
  uidOf = spec:
    if spec.uid != null then spec.uid
    else { root = 0; nobody = 65534; }.${spec.user} or 999;

  homeOf = spec:
    if spec.user == "root" then "/root"
    else if spec.user == "nobody" then "/nonexistent"
    else if spec.kind == "python" then "/home/${spec.user}"
    else spec.workdir;
}
