"""The cyclic garbage collector paused while tuneup builds many objects that hold no cycles.

Loading 100,000 rules makes a few million objects (the parsed TOML, then the rules) and listing
them a few million more (rows, dicts, strings). Each of those allocations counts towards the next
collection, and every collection of the oldest generation walks everything alive, the rulebook
included: about a third of `rules list`'s time beyond parsing. Nothing built there is cyclic, so
reference counting frees it all the same; the collector is only switched back on afterwards (as
it was: a caller that had it off keeps it off).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
