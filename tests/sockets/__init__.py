"""Socket census tests (a package so that its conftest does not shadow tests/conftest.py)."""

from __future__ import annotations
