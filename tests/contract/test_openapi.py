"""Every HTTP API we ship against its own OpenAPI, by schemathesis: all checks, a fixed seed,
at least 100 examples per operation, 0 failures. A real server per API (conftest.py)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import Server, schemathesis_cli

pytestmark = pytest.mark.contract

HERE = Path(__file__).parent
SEED = 20261204
EXAMPLES = 100
APIS = ["bsopt_api", "neural_pricing", "quote_board", "fx_inference", "fingpt"]


def run_schemathesis(url: str, report: Path) -> tuple[int, str, dict]:
    cmd = [str(schemathesis_cli()), "--config-file", str(HERE / "schemathesis.toml"), "--no-color",
           "run", f"{url}/openapi.json", "--checks", "all", "--seed", str(SEED),
           "--max-examples", str(EXAMPLES), "--generation-database", "none",
           "--report", "json", "--report-json-path", str(report),
           # one worker: the same cases every run, and hypothesis's source inspection is not
           # thread-safe on CPython 3.11 (a runtime error with two)
           "--workers", "1"]
    # cwd: schemathesis keeps state under ./.schemathesis, which belongs in the test's tmp dir
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=report.parent)
    data = json.loads(report.read_text()) if report.exists() else {}
    return r.returncode, r.stdout + r.stderr, data


@pytest.mark.parametrize("api", APIS)
def test_api_meets_its_openapi(api, request, tmp_path):
    server = request.getfixturevalue(api)
    code, output, report = run_schemathesis(server.url, tmp_path / "report.json")
    cases = report.get("test_cases", {})
    print(f"\nschemathesis {api}: {cases.get('unique_failures')} unique failures in "
          f"{cases.get('generated')} cases, {report.get('running_time', 0):.1f} s: "
          + json.dumps(report.get("failures", []))[:3000])
    (tmp_path / "schemathesis.txt").write_text(output)
    assert code == 0, (f"schemathesis found failures on {api} ({server.url}; whole output in "
                       f"{tmp_path / 'schemathesis.txt'}):\n{output[-6000:]}")
    ops = report["operations"]
    assert ops["tested"] == ops["total"] > 0 and cases["generated"] >= ops["total"], ops


def test_the_tier_catches_an_api_that_breaks_its_openapi(tmp_path):
    """The same run against an API broken on purpose (broken_api.py) fails, naming both faults."""
    from .conftest import SRC

    server = Server("broken_api:app", tmp_path / "broken.log", {"PYTHONPATH": f"{SRC}:{HERE}"},
                    ready="/openapi.json")
    try:
        code, output, report = run_schemathesis(server.url, tmp_path / "report.json")
    finally:
        server.close()
    found = {f["type"] for f in report.get("failures", [])}
    assert code != 0 and {"ServerError", "UndefinedContentType"} <= found, output[-3000:]


def _walk_schemas(spec: dict):
    """(where, media type, schema) of every request body and answer in an OpenAPI document."""
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                yield f"{method.upper()} {path} body", media, content.get("schema")
            for status, answer in op.get("responses", {}).items():
                for media, content in answer.get("content", {}).items():
                    yield f"{method.upper()} {path} {status}", media, content.get("schema")


@pytest.mark.parametrize("api", APIS)
def test_every_body_and_answer_is_a_model(api, request):
    """JSON bodies and answers are models in components (what clients generate from), never
    `{}`; text answers (/metrics, the board's page) say they are strings."""
    import urllib.request

    server = request.getfixturevalue(api)
    with urllib.request.urlopen(f"{server.url}/openapi.json", timeout=30) as r:
        spec = json.loads(r.read())
    seen = 0
    for where, media, schema in _walk_schemas(spec):
        seen += 1
        if media == "application/json":
            ref = schema.get("$ref") or (schema.get("items") or {}).get("$ref")
            assert ref and ref.split("/")[-1] in spec["components"]["schemas"], (api, where, schema)
        else:
            assert schema == {"type": "string"}, (api, where, media, schema)
    assert seen >= len(spec["paths"]), (api, seen)


def test_graphql_reads_real_rows_within_the_limits(bsopt_api):
    """Ten aliases of `quotes` over the seeded rows (real Postgres) answer 200 with the rows;
    one more alias, or rows past 10,000, are a 400 naming the limit."""
    import urllib.request

    def post(query: str) -> tuple[int, dict]:
        req = urllib.request.Request(f"{bsopt_api.url}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    ten = "{" + " ".join(f"q{i}: quotes(limit: 1000) {{ id strike impliedVol }}" for i in range(10)) + "}"
    status, answer = post(ten)
    assert status == 200 and len(answer["data"]) == 10 and len(answer["data"]["q0"]) == 54, answer
    status, answer = post(ten.replace("q0: quotes(limit: 1000)", "q0: quotes(limit: 1001)"))
    assert status == 400 and "more than 10000 quote rows" in answer["errors"][0]["message"], answer
