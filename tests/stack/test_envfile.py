"""A stack's env file (compose/.env for the FX stack): created with strong random secrets, never
overwritten."""

from __future__ import annotations

import base64
import math
import os
import stat
from collections import Counter

import pytest

from fxstack.envfile import ensure_env_file, parse_env, read_env
from fxstack.stacks.fx import FX, SECRET_KEYS

pytestmark = pytest.mark.unit


def ensure(path):
    """What `up` does for the FX stack."""
    return ensure_env_file(path, FX.generate(), FX.env_header, set(FX.plain_defaults))


def entropy_bits_per_char(s: str) -> float:
    counts = Counter(s)
    return -sum(c / len(s) * math.log2(c / len(s)) for c in counts.values())


def test_first_run_creates_private_file_with_strong_distinct_secrets(tmp_path):
    path = tmp_path / "compose" / ".env"
    created, added = ensure(path)
    assert created
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600, oct(mode)
    values = read_env(path)
    assert set(SECRET_KEYS) <= set(added) and set(SECRET_KEYS) <= set(values)
    secrets_ = [values[k] for k in SECRET_KEYS]
    assert len(set(secrets_)) == len(secrets_), "every secret must be different"
    for key in SECRET_KEYS:
        v = values[key]
        assert len(v) >= 32, (key, v)
        assert v not in ("admin", "airflow", "mlflow", "postgres", "password")
        assert entropy_bits_per_char(v) > 3.5, (key, v)
        # letters and digits only: the passwords go into postgresql:// URLs unescaped, and onto
        # command lines where a leading '-' reads as an option (CI once failed on exactly that)
        assert v.isascii() and v.isalnum(), (key, v)
    key = base64.urlsafe_b64decode(values["AIRFLOW_FERNET_KEY"])
    assert len(key) == 32
    assert values["AIRFLOW_ADMIN_USER"] == "admin"


def test_generated_passwords_never_start_like_an_option():
    from fxstack.envfile import new_password

    # with token_urlsafe, 1 in 32 started with '-': 2000 draws would all but surely show one
    drawn = [new_password() for _ in range(2000)]
    assert all(p.isascii() and p.isalnum() and len(p) == 32 for p in drawn)
    assert len(set(drawn)) == len(drawn)


def test_two_runs_give_different_secrets(tmp_path):
    a, b = tmp_path / "a.env", tmp_path / "b.env"
    ensure(a)
    ensure(b)
    va, vb = read_env(a), read_env(b)
    assert all(va[k] != vb[k] for k in SECRET_KEYS)


def test_existing_file_is_never_overwritten(tmp_path):
    path = tmp_path / ".env"
    ensure(path)
    before = path.read_text()
    created, added = ensure(path)
    assert not created and added == []
    assert path.read_text() == before


def test_hand_written_values_survive_and_only_missing_keys_are_appended(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# mine\nPOSTGRES_PASSWORD=my-own-choice\nFX_API_PORT=18000\n")
    created, added = ensure(path)
    assert not created
    assert "POSTGRES_PASSWORD" not in added and "AIRFLOW_DB_PASSWORD" in added
    text = path.read_text()
    assert text.startswith("# mine\nPOSTGRES_PASSWORD=my-own-choice\nFX_API_PORT=18000\n")
    values = read_env(path)
    assert values["POSTGRES_PASSWORD"] == "my-own-choice"
    assert values["FX_API_PORT"] == "18000"
    assert len(values["AIRFLOW_DB_PASSWORD"]) >= 32


def test_parse_env_handles_comments_quotes_and_export():
    values = parse_env('# c\n\nexport A=1\nB="two words"\nC=\'x\'\nD=a=b\nnot a line\n')
    assert values == {"A": "1", "B": "two words", "C": "x", "D": "a=b"}



def test_values_are_what_compose_reads_inline_comments_included(tmp_path):
    """The real Compose v2 reads the same file: a ` #` ends an unquoted value, a `#` inside a
    word or quotes does not (a parser that kept ` # mine` made the port check refuse 18000)."""
    import json
    import subprocess

    from fxstack.stack.compose import find_compose

    text = ('FX_API_PORT=18000 # mine\nQUOTED="x # y"\nWORD=a#b\nSINGLE=\'$NOT\'\n'
            'export EXPORTED=1\nREF=${FX_API_PORT}0\n')
    values = parse_env(text)
    assert values == {"FX_API_PORT": "18000", "QUOTED": "x # y", "WORD": "a#b", "SINGLE": "$NOT",
                      "EXPORTED": "1", "REF": "180000"}
    env = tmp_path / "x.env"
    env.write_text(text)
    compose = tmp_path / "compose.yml"
    compose.write_text("services:\n  s:\n    image: scratch\n    environment:\n"
                       + "".join(f"      {k}: ${{{k}}}\n" for k in values))
    out = subprocess.run([*find_compose(), "-p", "envtest", "-f", str(compose), "--env-file", str(env),
                          "config", "--format", "json"], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)["services"]["s"]["environment"]
    assert {k: v.replace("$$", "$") for k, v in seen.items()} == values  # config re-escapes a `$`
