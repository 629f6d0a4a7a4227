"""What the secret scans of both stacks look for: every secret of a stack as it could appear
anywhere (a container's environment, `docker inspect`, an image's history, a command line)."""
from __future__ import annotations

from fxstack.stacks.model import StackDef

# Names of user-supplied secrets that are not generated (the OANDA token, say).
SECRET_SUFFIXES = ("_PASSWORD", "_KEY", "_TOKEN")


def secret_values(stack: StackDef, values: dict[str, str]) -> dict[str, str]:
    """{where: value} for the env file's secret values and each secret file's content. Redis ACL
    files hold hashes, not passwords; an optional secret left unset has no value to find."""
    keys = set(stack.secret_keys) | set(stack.generated) | {k for k in values if k.endswith(SECRET_SUFFIXES)}
    found = {k: values[k] for k in sorted(keys) if values.get(k, "").strip()}
    for name, make in stack.secret_files.items():
        content = make(values)
        if not name.endswith("redis_users_acl") and content.strip():
            found[f"file:{name}"] = content
    return found
