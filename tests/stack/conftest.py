"""Shared fixtures for the stack tests.

Integration tests share ONE stack per session (bring-up is expensive on 2 cores). It runs as its
own Compose project (`fxstack-it`), with its own secrets file and free ports on 127.0.0.1, so it
never touches a stack the user has running; it starts from nothing (`down --volumes` first) and is
removed with its volumes at the end (FXSTACK_KEEP_STACK=1 keeps it for a look).
"""

from __future__ import annotations

# The fixtures live in tests/conftest.py, so that every tier that needs the running stack (this
# one, tests/security) shares ONE session stack. Nothing is imported from it by name: with
# tests/bsopt/conftest.py beside it, `conftest` is not one module.

