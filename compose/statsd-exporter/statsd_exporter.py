"""A small statsd -> Prometheus bridge for Airflow's metrics.

Debian 12 has no `prometheus-statsd-exporter` package, so the portable path cannot ship the Go
exporter. This does the part Airflow needs, with the standard library and PyYAML only (both in
the Airflow images, which run it): it listens for statsd lines on UDP (and TCP) 9125, maps dotted
names to Prometheus names + labels with the same mapping file format as statsd_exporter (glob
`*` within a dot-separated component, `$1..$n` in labels/name), and serves the text exposition format
on :9102/metrics. Counters (`c`), gauges (`g`, including `+n`/`-n`), timers/histograms
(`ms`, `h`, `d` -> histogram in seconds for `ms`). Sets (`s`) are ignored.
"""

from __future__ import annotations

import argparse
import re
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


def sanitize(name: str) -> str:
    name = _INVALID.sub("_", name)
    return "_" + name if name[:1].isdigit() else name


class Mapper:
    def __init__(self, config: dict | None):
        config = config or {}
        defaults = config.get("defaults") or {}
        self.buckets = sorted(float(b) for b in defaults.get("buckets", DEFAULT_BUCKETS))
        self.rules = []
        for m in config.get("mappings") or []:
            parts = m["match"].split(".")
            pattern = r"\.".join("([^.]+)".join(re.escape(x) for x in p.split("*")) for p in parts)
            self.rules.append((re.compile(f"^{pattern}$"), m["name"], m.get("labels") or {}))

    @staticmethod
    def _expand(template: str, groups: tuple[str, ...]) -> str:
        return re.sub(r"\$\{?(\d+)\}?", lambda mo: groups[int(mo.group(1)) - 1], template)

    def map(self, name: str) -> tuple[str, dict[str, str]]:
        for regex, target, labels in self.rules:
            mo = regex.match(name)
            if mo:
                groups = mo.groups()
                return sanitize(self._expand(target, groups)), {
                    sanitize(k): self._expand(str(v), groups) for k, v in labels.items()
                }
        return sanitize(name), {}


class Store:
    def __init__(self, mapper: Mapper):
        self.mapper = mapper
        self.lock = threading.Lock()
        self.types: dict[str, str] = {}
        self.values: dict[tuple, float] = {}  # (name, labels) -> value for counters and gauges
        self.hists: dict[tuple, list] = {}  # (name, labels) -> [bucket counts..., sum, count]
        self.lines = 0
        self.bad = 0

    def feed(self, packet: str) -> None:
        for line in packet.splitlines():
            line = line.strip()
            if line:
                try:
                    self._line(line)
                except (ValueError, IndexError, KeyError):
                    with self.lock:
                        self.bad += 1

    def _line(self, line: str) -> None:
        name, _, rest = line.partition(":")
        fields = rest.split("|")
        raw, kind = fields[0], fields[1]
        rate = 1.0
        tags: dict[str, str] = {}
        for extra in fields[2:]:
            if extra.startswith("@"):
                rate = float(extra[1:]) or 1.0
            elif extra.startswith("#"):
                for tag in extra[1:].split(","):
                    k, _, v = tag.partition(":")
                    tags[sanitize(k)] = v
        metric, labels = self.mapper.map(name)
        labels.update(tags)
        key = (metric, tuple(sorted(labels.items())))
        with self.lock:
            self.lines += 1
            if kind == "c":
                self._typed(metric, "counter")
                self.values[key] = self.values.get(key, 0.0) + float(raw) / rate
            elif kind == "g":
                self._typed(metric, "gauge")
                if raw[:1] in "+-":
                    self.values[key] = self.values.get(key, 0.0) + float(raw)
                else:
                    self.values[key] = float(raw)
            elif kind in ("ms", "h", "d"):
                self._typed(metric, "histogram")
                value = float(raw) / 1000.0 if kind == "ms" else float(raw)
                h = self.hists.setdefault(key, [0] * (len(self.mapper.buckets) + 2))
                for i, bound in enumerate(self.mapper.buckets):
                    if value <= bound:
                        h[i] += 1
                h[-2] += value
                h[-1] += 1
            elif kind == "s":
                pass
            else:
                raise ValueError(kind)

    def _typed(self, metric: str, kind: str) -> None:
        if self.types.setdefault(metric, kind) != kind:
            raise ValueError(f"{metric} is a {self.types[metric]}, not a {kind}")

    def render(self) -> str:
        def fmt(labels) -> str:
            if not labels:
                return ""
            inner = ",".join(
                f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in labels
            )
            return "{" + inner + "}"

        out = []
        with self.lock:
            for metric in sorted(self.types):
                kind = self.types[metric]
                out.append(f"# TYPE {metric} {kind}")
                if kind == "histogram":
                    for (name, labels), h in sorted(self.hists.items()):
                        if name != metric:
                            continue
                        for bound, count in zip(self.mapper.buckets, h):
                            out.append(f"{metric}_bucket{fmt(labels + (('le', repr(bound)),))} {count}")
                        out.append(f"{metric}_bucket{fmt(labels + (('le', '+Inf'),))} {h[-1]}")
                        out.append(f"{metric}_sum{fmt(labels)} {h[-2]}")
                        out.append(f"{metric}_count{fmt(labels)} {h[-1]}")
                else:
                    for (name, labels), value in sorted(self.values.items()):
                        if name == metric:
                            out.append(f"{metric}{fmt(labels)} {value}")
            out.append("# TYPE statsd_exporter_lines_total counter")
            out.append(f"statsd_exporter_lines_total {self.lines}")
            out.append("# TYPE statsd_exporter_lines_invalid_total counter")
            out.append(f"statsd_exporter_lines_invalid_total {self.bad}")
        return "\n".join(out) + "\n"


def serve(store: Store, statsd_port: int, web_port: int) -> None:
    class UDP(socketserver.BaseRequestHandler):
        def handle(self):
            store.feed(self.request[0].decode("utf-8", "replace"))

    class TCP(socketserver.StreamRequestHandler):
        def handle(self):
            for raw in self.rfile:
                store.feed(raw.decode("utf-8", "replace"))

    class Web(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] in ("/metrics", "/"):
                body, ctype, code = store.render().encode(), "text/plain; version=0.0.4", 200
            elif self.path in ("/-/healthy", "/-/ready"):
                body, ctype, code = b"OK\n", "text/plain", 200
            else:
                body, ctype, code = b"not found: try /metrics\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet: Prometheus scrapes every 15 s
            pass

    class ThreadingUDP(socketserver.ThreadingMixIn, socketserver.UDPServer):
        daemon_threads = True

    class ThreadingTCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True
        allow_reuse_address = True

    servers = [
        ThreadingUDP(("0.0.0.0", statsd_port), UDP),
        ThreadingTCP(("0.0.0.0", statsd_port), TCP),
    ]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print(f"statsd on :{statsd_port} (udp+tcp), metrics on :{web_port}/metrics", flush=True)
    ThreadingHTTPServer(("0.0.0.0", web_port), Web).serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mapping-config", default=None)
    ap.add_argument("--statsd-port", type=int, default=9125)
    ap.add_argument("--web-port", type=int, default=9102)
    args = ap.parse_args()
    config = None
    if args.mapping_config:
        with open(args.mapping_config, encoding="utf-8") as fh:
            config = yaml.safe_load(fh)
    socket.setdefaulttimeout(None)
    serve(Store(Mapper(config)), args.statsd_port, args.web_port)


if __name__ == "__main__":
    main()
