"""Constants every build path agrees on."""

from __future__ import annotations

import os

# A fixed, recent date (the Debian snapshot the mirror serves): mmdebstrap clamps newer
# mtimes to it, configs carry it as `created`. Older mtimes from .debs are kept, so the
# distribution's own .pyc files stay valid.
SOURCE_DATE_EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "1747699200"))
CREATED = "2025-05-20T00:00:00Z" if SOURCE_DATE_EPOCH == 1747699200 else None

SITE_PACKAGES = "usr/local/lib/python3.11/dist-packages"
SCRIPTS = "usr/local/bin"
INTERPRETER = "/usr/bin/python3.11"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
MAX_LAYERS = 60
# Bump when the way a layer is made changes, so old cache entries are not reused.
BUILDER_VERSION = "2"
# The same, for how one wheel becomes an installed tree (wheels.install_tree); apart from
# BUILDER_VERSION so a change there does not rebuild the Debian root filesystems.
TREE_VERSION = "5"


def created() -> str:
    import datetime

    if CREATED:
        return CREATED
    return datetime.datetime.fromtimestamp(SOURCE_DATE_EPOCH, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
