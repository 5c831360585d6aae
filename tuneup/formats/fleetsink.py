"""Streaming fleet output: each format's ``fleet_sink(**opts)`` returns a Sink that takes one
audited host at a time (its report is dropped right after) and writes the document at the end.

Per-host text goes to an unnamed temporary spool file as it is produced, so memory holds only the
fleet summary (a row per host, host lists per failing rule) whatever the fleet's size; ``finish``
writes the head (which may need the whole summary: totals, rules sorted by severity), the spooled
hosts, then the tail.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import IO, Any

from tuneup.model import Fleet, FleetSummary, HostRow, Report


class Sink:
    # formats a person reads (table, markdown, HTML) see each report with its strings made
    # printable (tuneup.formats.safe): hostnames, process names and rule ids from snapshots
    escape = False

    def __init__(self, **opts: Any) -> None:
        self.opts = opts
        self._spool: IO[str] | None = None

    # -- what a format overrides ---------------------------------------------------------------
    def chunk(self, row: HostRow, report: Report, index: int) -> str:
        """Text for one host, written as it is audited (index counts from 0)."""
        return ""

    def head(self, fleet: FleetSummary) -> str:
        return ""

    def tail(self, fleet: FleetSummary) -> str:
        return ""

    # -- the machinery -------------------------------------------------------------------------
    def host(self, row: HostRow, report: Report, index: int) -> None:
        text = self.chunk(row, report, index)
        if text:
            if self._spool is None:
                self._spool = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="tuneup-fleet-")
            self._spool.write(text)

    def finish(self, fleet: FleetSummary, out: IO[str]) -> None:
        out.write(self.head(fleet))
        if self._spool is not None:
            self._spool.seek(0)
            shutil.copyfileobj(self._spool, out, 1 << 20)
        out.write(self.tail(fleet))
        self.close()

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None


def prepared(sink: Sink, report: Report) -> Report:
    """The report as the sink gets it: escaped for a format a person reads."""
    if not sink.escape:
        return report
    from tuneup.formats.safe import escaped

    return escaped(report)


def render(sink: Sink, fleet: Fleet | FleetSummary, reports: Any = None) -> str:
    """A whole fleet document as text (for an in-memory Fleet: tests, small fleets)."""
    import io

    if isinstance(fleet, FleetSummary):
        summary = fleet
    else:
        empty = Fleet(fleet.profile, fleet.params, ())
        summary = empty.reduce()
        names = [str(r.host.get("hostname", "?")) for r in fleet.reports]
        seen: set[str] = set()
        summary._dups = frozenset(n for n in names if n in seen or seen.add(n))
        gate = sink.opts.get("gate")
        for i, r in enumerate(fleet.reports):
            r = prepared(sink, r)
            sink.host(summary.add(r, gate=bool(gate(r)) if gate else False), r, i)
    buf = io.StringIO()
    sink.finish(summary, buf)
    return buf.getvalue()
