"""Report formats. Each module exposes ``format_report(report, **opts) -> str`` and
``format_fleet(fleet, **opts) -> str``; only the CLI writes. Options a format does not use are
ignored (``color`` for the table, ``root`` for SARIF)."""

from __future__ import annotations

from types import ModuleType

from tuneup.compat import StrEnum, assert_never
from tuneup.model import Fleet, Report


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    HTML = "html"
    JUNIT = "junit"
    SARIF = "sarif"
    PROMETHEUS = "prometheus"


class CapacityFormat(StrEnum):
    """`capacity` and `probe` --format (rendered by tuneup.formats.capacity, which re-exports it);
    here so that building the CLI does not import that renderer and json."""

    TABLE = "table"
    JSON = "json"


def module(fmt: OutputFormat) -> ModuleType:
    """Map every format choice to its implementation (imported only when chosen)."""
    if fmt == OutputFormat.TABLE:
        from tuneup.formats import table as mod
    elif fmt == OutputFormat.JSON:
        from tuneup.formats import json_report as mod
    elif fmt == OutputFormat.MARKDOWN:
        from tuneup.formats import markdown as mod
    elif fmt == OutputFormat.HTML:
        from tuneup.formats import html as mod
    elif fmt == OutputFormat.JUNIT:
        from tuneup.formats import junit as mod
    elif fmt == OutputFormat.SARIF:
        from tuneup.formats import sarif as mod
    elif fmt == OutputFormat.PROMETHEUS:
        from tuneup.formats import prometheus as mod
    else:
        assert_never(fmt)
    return mod


def split_ref(ref: str) -> tuple[str | None, str]:
    """"https://x/y.html (somaxconn)" -> ("https://x/y.html", "(somaxconn)"); non-http refs -> (None, ref)."""
    url, _, note = ref.strip().partition(" ")
    if url.startswith(("https://", "http://")) and '"' not in url and "<" not in url:
        return url, note.strip()
    return None, ref


def formatter(fmt: OutputFormat):
    return module(fmt).format_report


def render(report: Report | Fleet, fmt: OutputFormat, **opts) -> str:
    if isinstance(report, Fleet):
        return module(fmt).format_fleet(report, **opts)
    return module(fmt).format_report(report, **opts)
