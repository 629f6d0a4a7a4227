# Every images/<name>.toml as a nix2container image.
#
# Layers, in order (each one skips what the layers before it already hold):
#   1. system  the spec's packages.nixpkgs + ./baseline.nix (+ the CUDA runtime for gpu images), the Python
#              interpreter, /etc/passwd + /etc/group for the spec's user, /app, /data, /tmp,
#              /usr/bin -> /bin and the Debian-named links of ./compat.nix;
#   2. env     per Poetry group list of the base chain: fx-base's groups first (the shared
#              data stack), then the image's own groups (the role's dependencies), each a
#              poetry2nix environment with its bin/ linked into /bin;
#   3. app     the spec's `app` entries copied to their `dest`.
# nix2container's own last layer (per image) holds the image's workdir and volume directories.
# A layer is a function of what goes into it only, so images that need the same content get
# the same layer derivation (the three Airflow images share all four; fx-fastapi and
# fx-airflow-worker share system + base env), and a code change rebuilds one app layer.
{ pkgs          # nixpkgs for x86_64-linux
, pkgsCuda      # the same nixpkgs with allowUnfree + cudaSupport: gpu images only
, n2c           # nix2container.nix2container
, pythonFor     # pkgs -> ./python.nix instance for that nixpkgs import
, specs         # ./specs.nix result
, src
, lib
}:
let
  inherit (builtins) concatMap concatStringsSep filter elem foldl' listToAttrs map match mapAttrs throw toString;

  users = import ./users.nix;
  compat = import ./compat.nix;
  cuda = import ./cuda.nix;
  all = specs.specs;

  where = spec: "images/${spec.name}.toml";
  pkgsFor = spec: if spec.gpu then pkgsCuda else pkgs;

  isPythonAttr = n: match "python3[0-9]+" n != null;
  getPkg = spec: name:
    lib.getPath "${where spec}: packages.nixpkgs names `${name}`, which the pinned nixpkgs does not have" (pkgsFor spec) name;

  # --- Python -------------------------------------------------------------------------
  pythonAttr = spec:
    lib.findFirst isPythonAttr
      (throw "${where spec}: a Python image needs its interpreter (python311) in packages.nixpkgs")
      spec.packages.nixpkgs;
  interpreter = spec: getPkg spec (pythonAttr spec);

  # Group lists of the base chain: [ fx-base's groups, this image's groups ].
  groupChain = spec:
    lib.unique ((if spec.base != null then groupChain all.${spec.base} else [ ]) ++ [ spec.groups ]);

  # One environment per (nixpkgs import, interpreter, group list), evaluated once however many
  # images use it.
  pythonSpecs = filter (s: s.kind == "python") (builtins.attrValues all);
  instKey = spec: (if spec.gpu then "gpu-" else "cpu-") + pythonAttr spec;
  groupsKey = concatStringsSep "+";
  envTable = listToAttrs (map
    (k:
      let
        members = filter (s: instKey s == k) pythonSpecs;
        first = builtins.head members;
        python = pythonFor (pkgsFor first) (interpreter first);
      in
      {
        name = k;
        value = listToAttrs (map (g: { name = groupsKey g; value = python.env g; }) (lib.unique (concatMap groupChain members)))
          # an image with `trim` has environments of its own: the same packages, fewer files
          // listToAttrs (concatMap (s: map (g: { name = trimKey s g; value = python.env' g s.trim; }) (groupChain s))
            (filter (s: s.trim != null) members));
      })
    (lib.unique (map instKey pythonSpecs)));
  trimKey = spec: groups: "${groupsKey groups}~${spec.name}";
  envFor = spec: groups: envTable.${instKey spec}.${if spec.trim != null then trimKey spec groups else groupsKey groups};

  # --- layer 1: system ------------------------------------------------------------------
  baseline = import ./baseline.nix;
  systemNames = spec: lib.unique (filter (n: !(isPythonAttr n)) spec.packages.nixpkgs ++ baseline);
  systemPackages = spec: map (getPkg spec) (systemNames spec);
  cudaPackages = spec: lib.optionals spec.gpu (map (getPkg spec) cuda.packages);

  # The image's root filesystem below /nix/store, as one derivation (one tree, so no two
  # store paths put the same directory into the layer): real directories with a symlink per
  # file of the packages' bin/, etc/ and share/ (buildEnv would link a whole directory when
  # one package has it, and a later layer's /bin would then hide it), /usr/bin -> /bin, the
  # compat links, passwd/group for the spec's user, /tmp, and /app + /data for Python images.
  rootfs = spec:
    let
      p = pkgsFor spec;
      uid = toString (users.uidOf spec);
      home = users.homeOf spec;
      isPython = spec.kind == "python";
      links = concatMap
        (name: map
          (l: ''
            mkdir -p "$(dirname "$out/${l.link}")"
            ln -s ${getPkg spec name}/${l.target} "$out/${l.link}"
          '')
          (compat.${name} or [ ]))
        spec.packages.nixpkgs;
      userLines = lib.optionalString (spec.user != "root" && spec.user != "nobody") ''
        echo '${spec.user}:x:${uid}:${uid}::${home}:/bin/sh' >> $out/etc/passwd
        echo '${spec.user}:x:${uid}:' >> $out/etc/group
      '';
    in
    p.runCommand "fx-rootfs-${spec.user}" { packages = systemPackages spec; } (''
      mkdir -p $out/bin $out/etc $out/share $out/tmp $out/root $out/usr/local/bin
      for pkg in $packages; do
        for dir in bin etc share; do
          if [ -d "$pkg/$dir" ]; then
            # real directories, one symlink per file; a file two packages both have is an error
            cp -rs "$pkg/$dir/." "$out/$dir/"
            chmod -R u+w "$out/$dir"
          fi
        done
      done
      ln -s ../bin $out/usr/bin
      echo 'root:x:0:0:root:/root:/bin/sh' > $out/etc/passwd
      echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >> $out/etc/passwd
      echo 'root:x:0:' > $out/etc/group
      echo 'nobody:x:65534:' >> $out/etc/group
      echo 'hosts: files dns' > $out/etc/nsswitch.conf
    '' + userLines
    + lib.optionalString (home != "/root" && home != "/nonexistent") ''
      mkdir -p "$out${home}"
    ''
    + lib.optionalString isPython ''
      mkdir -p $out/app $out/data
    ''
    + concatStringsSep "" links);

  rootfsPerms = spec: fs:
    let
      uid = users.uidOf spec;
      home = users.homeOf spec;
      owned = lib.optional (spec.kind == "python") "/data"
        ++ lib.optional (home != "/root" && home != "/nonexistent") home;
      # Store paths are read-only (0555): the user's directories get 0755 and the user as owner.
      own = dir: { path = fs; regex = "^${toString fs}${dir}(/.*)?$"; mode = "0755"; uid = uid; gid = uid; uname = spec.user; gname = spec.user; };
    in
    [{ path = fs; regex = "^${toString fs}/tmp$"; mode = "1777"; }] ++ map own (lib.unique owned);

  systemLayer = spec:
    let fs = rootfs spec; in
    n2c.buildLayer {
      deps = lib.optional (spec.kind == "python") (interpreter spec) ++ map lib.getLib (cudaPackages spec);
      copyToRoot = [ fs ];
      perms = rootfsPerms spec fs;
      metadata = { created_by = "fxstack: system packages and users"; };
    };

  # --- layer 2: Python environments ---------------------------------------------------------
  envLayer = spec: groups: below:
    n2c.buildLayer {
      copyToRoot = [
        ((pkgsFor spec).runCommand "fx-env-bin" { pythonEnv = envFor spec groups; } ''
          mkdir -p $out/bin
          for f in "$pythonEnv"/bin/*; do
            ln -s "$f" "$out/bin/$(basename "$f")"
          done
        '')
      ];
      layers = below;
      metadata = { created_by = "fxstack: poetry2nix environment for groups ${concatStringsSep ", " groups}"; };
    };

  # --- layer 3: app -------------------------------------------------------------------
  noBytecode = path: type: !(elem (baseNameOf path) [ "__pycache__" ".pytest_cache" ]) && match ".*\\.py[co]" path == null;
  appEntry = entry:
    let
      copy = builtins.path {
        path = src + "/${entry.src}";
        name = "fx-app-" + lib.safeName (baseNameOf entry.src);
        filter = noBytecode;
      };
    in
    ''
      mkdir -p "$(dirname "$out${entry.dest}")"
      cp -rT ${copy} "$out${entry.dest}"
      chmod -R u+w "$out"
    '';
  appLayer = spec: below:
    n2c.buildLayer {
      copyToRoot = [ ((pkgsFor spec).runCommand "fx-app" { } (concatStringsSep "" (map appEntry spec.app))) ];
      layers = below;
      metadata = { created_by = "fxstack: app code"; };
    };

  layersOf = spec:
    let
      system = [ (systemLayer spec) ];
      withEnvs =
        if spec.kind == "python" then foldl' (below: groups: below ++ [ (envLayer spec groups below) ]) system (groupChain spec)
        else if spec.groups != [ ] then throw "${where spec}: a service image installs no Poetry groups"
        else system;
    in
    withEnvs ++ lib.optional (spec.app != [ ]) (appLayer spec withEnvs);

  # --- the image's own last layer: workdir and volumes, owned by the user ------------------
  imageDirs = spec:
    let
      dirs = lib.unique (filter (d: !(elem d [ "/" "/app" "/tmp" ])) ([ spec.workdir ] ++ spec.volumes));
      fs = (pkgsFor spec).runCommand "fx-dirs" { } (concatStringsSep "" (map (d: "mkdir -p \"$out${d}\"\n") dirs));
      uid = users.uidOf spec;
    in
    if dirs == [ ] then { copyToRoot = null; perms = [ ]; }
    else {
      copyToRoot = [ fs ];
      perms = map (d: { path = fs; regex = "^${toString fs}${d}(/.*)?$"; mode = "0755"; inherit uid; gid = uid; uname = spec.user; gname = spec.user; }) (filter (d: spec.user != "root") dirs);
    };

  # --- config -------------------------------------------------------------------------------
  extraEnv = spec:
    {
      PATH = "/usr/local/bin:/usr/bin:/bin";
    }
    // lib.optionalAttrs (elem "cacert" spec.packages.nixpkgs) {
      SSL_CERT_FILE = "/etc/ssl/certs/ca-bundle.crt";
    }
    // lib.optionalAttrs spec.gpu (cuda.env // {
      LD_LIBRARY_PATH = concatStringsSep ":" (cuda.driverLibraryPath ++ map (d: "${lib.getLib d}/lib") (cudaPackages spec));
    });
  # The spec's env wins over what the flake adds.
  envOf = spec: extraEnv spec // spec.env;

  configOf = spec: {
    User = spec.user;
    WorkingDir = spec.workdir;
    Entrypoint = spec.entrypoint;
    Cmd = spec.cmd;
    Env = lib.mapToList (k: v: "${k}=${v}") (envOf spec);
    ExposedPorts = listToAttrs (map (port: { name = "${toString port}/tcp"; value = { }; }) spec.ports);
    Volumes = listToAttrs (map (v: { name = v; value = { }; }) spec.volumes);
    Labels = { "org.opencontainers.image.description" = spec.description; } // spec.labels;
  };

  imageOf = spec:
    let dirs = imageDirs spec; in
    n2c.buildImage {
      inherit (spec) name;
      config = configOf spec;
      layers = layersOf spec;
      inherit (dirs) copyToRoot perms;
      created = "1970-01-01T00:00:01Z";
      meta = { inherit (spec) description; };
    };

  images = mapAttrs (_: imageOf) all;

in
{
  inherit images envOf configOf layersOf;

  # What the stack apps need to load an image into Docker and tell Compose about it.
  manifest = mapAttrs
    (name: spec: {
      inherit name;
      inherit (spec) kind deploy gpu portable portable_reason;
      # Without string context (nix2container's imageRefUnsafe does the same): naming an image
      # must not make whoever reads the manifest build it; the copy scripts do that.
      ref = builtins.unsafeDiscardStringContext "${images.${name}.imageName}:${images.${name}.imageTag}";
      # Compose's variable for the image, as src/fxstack/load/loader.py names it.
      envVar = lib.toUpper (builtins.replaceStrings [ "-" ] [ "_" ] name) + "_IMAGE";
      copyToDockerDaemon = "${images.${name}.copyToDockerDaemon}/bin/copy-to-docker-daemon";
    })
    all;
}
