"""Runs the image builder and the loader together: the layer above both (build, load, gc)."""
