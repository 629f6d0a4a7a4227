"""The platform every image targets: Debian 12's CPython 3.11 on x86_64 (glibc 2.36)."""

from __future__ import annotations

from functools import lru_cache

from packaging import tags

PYTHON = (3, 11)
PYTHON_FULL = "3.11.2"  # Debian 12's python3.11
GLIBC_MINOR = 36

MARKER_ENV = {
    "implementation_name": "cpython",
    "implementation_version": PYTHON_FULL,
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": PYTHON_FULL,
    "python_version": f"{PYTHON[0]}.{PYTHON[1]}",
    "sys_platform": "linux",
}

_LEGACY = {17: "manylinux2014_x86_64", 12: "manylinux2010_x86_64", 5: "manylinux1_x86_64"}


def platforms() -> list[str]:
    """manylinux tags the image's glibc accepts, best first; never plain linux_x86_64."""
    out = []
    for minor in range(GLIBC_MINOR, 4, -1):
        out.append(f"manylinux_2_{minor}_x86_64")
        if minor in _LEGACY:
            out.append(_LEGACY[minor])
    return out


@lru_cache(maxsize=1)
def tag_priority() -> dict[tags.Tag, int]:
    """Tag -> rank (0 is best), in the order pip would prefer them on the target."""
    interp = f"cp{PYTHON[0]}{PYTHON[1]}"
    ordered = list(tags.cpython_tags(PYTHON, abis=[interp], platforms=platforms()))
    ordered += list(tags.compatible_tags(PYTHON, interp, platforms()))
    return {tag: rank for rank, tag in enumerate(ordered)}
