"""What `fxstack build IMAGE --load` imports: after a code change the whole process should take
well under 0.3 s, and most of it is Python starting and importing. The lock parser (with
`packaging`), the SBOM writer (with cyclonedx) and the Docker SDK (with requests) are each
tens of milliseconds that a rebuild from a known lock, loaded with the standard library,
never needs. The benchmark times it (`./fx bench --quick`); this keeps the imports from
coming back unnoticed."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

NOT_ON_THE_RELOAD_PATH = ("packaging", "docker", "requests", "cyclonedx", "fxstack.lock.poetry_lock",
                          "fxstack.image.sbom", "fxstack.stack.lifecycle")


def test_build_load_imports_none_of_the_heavy_modules():
    # every command's parser is built (as `fxstack` does), then what `build --load` runs
    code = ("import sys\n"
            "from fxstack.cli import build_parser\n"
            "build_parser()\n"
            "import fxstack.workflow.commands, fxstack.image.builder, fxstack.load.loader\n"
            "print(' '.join(sorted(sys.modules)))\n")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not loaded & set(NOT_ON_THE_RELOAD_PATH), sorted(loaded & set(NOT_ON_THE_RELOAD_PATH))
    assert "fxstack.load.engine" in loaded  # the check sees the reload path's own modules
