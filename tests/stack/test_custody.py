"""The record of a stack's data secrets, and the error that stops `up` (no Docker: the record
is labels, the check compares fingerprints)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fxstack.stack import custody
from fxstack.stack.target import Target
from fxstack.stacks.bsopt import BSOPT
from fxstack.stacks.fx import FX

pytestmark = pytest.mark.unit


def test_the_record_holds_fingerprints_never_the_secrets(tmp_path):
    target = Target(FX, project="p", env_file=tmp_path / "a.env")
    values = FX.generate()
    record = custody.new_record(target, values)
    labels = record.labels("p")
    assert labels["com.docker.compose.project"] == "p"
    assert set(record.prints) == set(custody.tracked_keys(target))
    for key in record.prints:
        assert values[key] not in "".join(labels.values()), key
    again = custody.Record.from_labels(labels)
    assert again == record
    assert not any(again.differs(k, values[k]) for k in record.prints)
    assert again.differs("AIRFLOW_FERNET_KEY", FX.generate()["AIRFLOW_FERNET_KEY"])
    # salted: the same secret gives another fingerprint in another record
    other = custody.new_record(target, values)
    assert other.prints["AIRFLOW_FERNET_KEY"] != record.prints["AIRFLOW_FERNET_KEY"]


def test_bsopt_data_depends_only_on_secrets_its_services_set():
    assert all(not d.bound for d in BSOPT.data) and any(d.healed for d in BSOPT.data)
    assert any("AIRFLOW_FERNET_KEY" in d.bound for d in FX.data)


def test_the_mismatch_error_names_volumes_checkout_file_restore_and_start_over(tmp_path):
    first = Path("/srv/first-checkout")
    target = Target(FX, project="fxstack", root=tmp_path, cli="./fx")
    record = custody.Record(since="2026-12-01T10:00:00Z", checkout=str(first),
                            env_file=str(first / "compose" / ".env"), salt="s", prints={})
    pgdata = next(d for d in FX.data if d.volume == "pgdata")
    text = str(custody.mismatch_error(target, record, [(pgdata, "AIRFLOW_FERNET_KEY")]))
    for part in ("fxstack_pgdata", "AIRFLOW_FERNET_KEY", "2026-12-01T10:00:00Z", str(first),
                 f"cp {first}/compose/.env {tmp_path}/compose/.env", "./fx down --volumes", "deletes"):
        assert part in text, part
