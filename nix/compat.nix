# The specs name Debian paths in entrypoints and env (they are shared with the portable
# path): /usr/bin/<tool>, /usr/lib/postgresql/15/bin. In the Nix images everything a
# package has in bin/ is in /bin, and /usr/bin is a link to it; these are the extra links for
# tools whose Debian name differs from the nixpkgs one, per nixpkgs attribute name.
# link: a path in the image (relative to /); target: a path inside the package.
{
  prometheus-redis-exporter = [{ link = "bin/prometheus-redis-exporter"; target = "bin/redis_exporter"; }];
  postgresql_15 = [{ link = "usr/lib/postgresql/15/bin"; target = "bin"; }];
  # Debian installs haproxy in /usr/sbin (the haproxy spec's entrypoint); nixpkgs in bin/.
  haproxy = [{ link = "usr/sbin/haproxy"; target = "bin/haproxy"; }];
}
