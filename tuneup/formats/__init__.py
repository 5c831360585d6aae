"""Report formats. Each module exposes ``format(report, **opts) -> str``; only the CLI writes."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import assert_never

from tuneup.model import Report


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


def formatter(fmt: OutputFormat) -> Callable[..., str]:
    """Map every format choice to its implementation (imported only when chosen)."""
    match fmt:
        case OutputFormat.TABLE:
            from tuneup.formats import table
            return table.format_report
        case OutputFormat.JSON:
            from tuneup.formats import json_report
            return json_report.format_report
        case _:
            assert_never(fmt)


def render(report: Report, fmt: OutputFormat, **opts) -> str:
    return formatter(fmt)(report, **opts)
