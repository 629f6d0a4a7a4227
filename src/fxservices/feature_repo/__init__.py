"""Feast repo of project `fx` (feature_store.yaml + definitions.py). Use store.get_store()."""
import os as _os

# Feast's anonymous usage reporting stays off (0.37's default, made explicit): the stack runs on
# an internal network. Feast reads this when first imported, so it is set before any feast import.
_os.environ.setdefault("FEAST_USAGE", "False")
