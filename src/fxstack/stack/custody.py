"""A stack's data and the secrets it was made with stay together (issue 19).

A stack's data volumes outlive its env file: a second checkout, `git clean -xdf` or a deleted
compose/.env gives `up` new random secrets while Compose reuses the volumes of the same project.
Two things keep that from failing late and obscurely:

- Healed: a credential that is ours to set follows the env file. The Postgres entrypoint sets the
  roles' passwords to the current secrets on start, airflow-init resets the admin user's, and the
  Redis ACL users come from the secret file on every start (StackDef.data[].healed).
- Detected: a secret the data cannot outlive (Airflow's Fernet key encrypts what is in its
  database; Grafana sets its admin password once) must be the one the volumes were made with.
  `up` keeps a record of them beside the data: a small Docker volume of the project whose labels
  hold a salted SHA-256 per secret (never the secret), when, by which checkout and with which env
  file. When a bound secret differs, `up` stops before anything starts and says how to restore.

Two checkouts of the repository on one machine share the Compose project name, and so its
volumes and ports. The second one's `up` refuses while the first one's containers run, naming
the first checkout; `status` says which checkout the running stack belongs to, `test` refuses to
test another checkout's stack, and `down` stops the project's stack whichever checkout started it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..errors import FxError
from . import docker_state as ds
from .target import Target

LABEL = "io.fxstack"
WORKING_DIR = "com.docker.compose.project.working_dir"


def record_name(target: Target) -> str:
    return f"{target.project_name}_fxstack-secrets"


def volume_name(target: Target, volume: str) -> str:
    return f"{target.project_name}_{volume}"


def fingerprint(salt: str, key: str, value: str) -> str:
    return hashlib.sha256(f"{salt}\0{key}\0{value}".encode()).hexdigest()[:24]


@dataclass
class Record:
    since: str
    checkout: str
    env_file: str
    salt: str
    prints: dict[str, str]

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> "Record":
        prefix = f"{LABEL}.key."
        return cls(since=labels.get(f"{LABEL}.since", "?"), checkout=labels.get(f"{LABEL}.checkout", "?"),
                   env_file=labels.get(f"{LABEL}.env-file", "?"), salt=labels.get(f"{LABEL}.salt", ""),
                   prints={k[len(prefix):]: v for k, v in labels.items() if k.startswith(prefix)})

    def labels(self, project: str) -> dict[str, str]:
        labels = {"com.docker.compose.project": project, f"{LABEL}.since": self.since,
                  f"{LABEL}.checkout": self.checkout, f"{LABEL}.env-file": self.env_file,
                  f"{LABEL}.salt": self.salt}
        labels.update({f"{LABEL}.key.{k}": v for k, v in self.prints.items()})
        return labels

    def differs(self, key: str, value: str | None) -> bool:
        return key in self.prints and fingerprint(self.salt, key, value or "") != self.prints[key]


def tracked_keys(target: Target) -> list[str]:
    return sorted({k for d in target.stack.data for k in d.bound + d.healed})


def new_record(target: Target, values: dict[str, str], since: str | None = None) -> Record:
    salt = secrets.token_hex(16)
    return Record(since=since or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  checkout=str(checkout_of(target.compose_dir)), env_file=str(target.env_path), salt=salt,
                  prints={k: fingerprint(salt, k, values.get(k) or "") for k in tracked_keys(target)})


def checkout_of(compose_dir: Path | str) -> Path:
    """The checkout a compose directory belongs to (its parent)."""
    return Path(compose_dir).parent


def read_record(dc, target: Target) -> Record | None:
    from docker.errors import NotFound

    try:
        return Record.from_labels(dc.volumes.get(record_name(target)).attrs.get("Labels") or {})
    except NotFound:
        return None


def write_record(dc, target: Target, record: Record) -> None:
    """Volume labels cannot change: a new record replaces the old volume (it holds no data)."""
    from docker.errors import NotFound

    try:
        dc.volumes.get(record_name(target)).remove()
    except NotFound:
        pass
    dc.volumes.create(name=record_name(target), labels=record.labels(target.project_name))


def remove_record(dc, target: Target) -> None:
    from docker.errors import NotFound

    try:
        dc.volumes.get(record_name(target)).remove()
    except NotFound:
        pass


def existing_data(dc, target: Target) -> list:
    """The stack's data volumes (StackDef.data) that exist in Docker for this project."""
    from docker.errors import NotFound

    found = []
    for data in target.stack.data:
        try:
            dc.volumes.get(volume_name(target, data.volume))
        except NotFound:
            continue
        found.append(data)
    return found


# ---------------------------------------------------------------- two checkouts
def running_checkout(dc, target: Target) -> Path | None:
    """The checkout whose Compose files started the project's running containers, when that is
    not this target's checkout; None when nothing runs or it is ours."""
    for c in ds.project_containers(dc, target.project_name, all_=False):
        where = c.labels.get(WORKING_DIR)
        if where and Path(where) != target.compose_dir:
            return checkout_of(where)
    return None


def refuse_other_checkout(dc, target: Target, doing: str) -> None:
    other = running_checkout(dc, target)
    if other is None:
        return
    raise FxError(
        f"project {target.project_name} is running from another checkout: {other}\n"
        f"(this checkout is {checkout_of(target.compose_dir)}); both would share its volumes and ports",
        where=str(other),
        hint=f"stop it there first: `cd {other} && ./fx down{'' if target.stack.name == 'fx' else ' ' + target.stack.name}` "
             f"(volumes kept), then {doing} here; or give this checkout a project of its own with "
             f"FXSTACK_PROJECT=<name> (its own volumes and secrets; change the published ports in "
             f"{target.env_path} too)")


# ---------------------------------------------------------------- the check before `up`
def check_before_up(dc, target: Target, out: TextIO) -> None:
    """Before anything starts: the other checkout, then the data's secrets against the env file.
    Records the secrets of new volumes (they are made with exactly these)."""
    refuse_other_checkout(dc, target, f"`{target.cmd('up')}`")
    values = target.settings()
    record = read_record(dc, target)
    present = existing_data(dc, target)
    if not present:
        write_record(dc, target, new_record(target, values))
        return
    if record is None:
        print(f"note: the data volumes of project {target.project_name} have no record of their secrets "
              f"(made before fxstack kept one); recording those of {target.env_path}", file=out)
        write_record(dc, target, new_record(target, values))
        return
    bound = [(d, k) for d in present for k in d.bound if record.differs(k, values.get(k))]
    if bound:
        raise mismatch_error(target, record, bound)
    healed = sorted({k for d in present for k in d.healed if record.differs(k, values.get(k))})
    if healed:
        print(f"note: {', '.join(healed)} differ from when the volumes of project {target.project_name} were "
              f"made ({record.since}); the services set them to the values in {target.env_path} as they start",
              file=out)
    if healed or record.checkout != str(checkout_of(target.compose_dir)) or record.env_file != str(target.env_path):
        write_record(dc, target, new_record(target, values, since=record.since))


def mismatch_error(target: Target, record: Record, bound: list) -> FxError:
    keys = sorted({k for _, k in bound})
    lines = [f"the data volumes of project {target.project_name} were made with other secrets than "
             f"{target.env_path} holds now:"]
    for data in dict.fromkeys(d for d, _ in bound):
        differ = [k for d, k in bound if d is data]
        lines.append(f"  {volume_name(target, data.volume)} ({data.holds}): {', '.join(differ)} differs")
    lines.append(f"they were made on {record.since} by the checkout {record.checkout} with {record.env_file}")
    lines.append(f"{target.env_path} is not that file (a new checkout, `git clean -xdf` or a deleted env file "
                 f"gives new random secrets), and {', '.join(keys)} cannot change under the data")
    restore = (f"restore it: `cp {record.env_file} {target.env_path}`" if record.env_file != str(target.env_path)
               else f"restore {target.env_path} from a copy")
    return FxError("\n".join(lines), where=str(target.env_path),
                   hint=f"{restore} (or set {', '.join(keys)} in it to the old value), then "
                        f"`{target.cmd('up')}` again; or start over: `{target.cmd('down', '--volumes')}` deletes "
                        f"the data of project {target.project_name} and the next up makes new volumes")
