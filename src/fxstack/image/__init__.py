"""The portable image builder: Debian root filesystems + locked wheels + app code -> OCI images."""
