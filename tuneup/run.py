"""Audit orchestration the CLI calls: rulebook and profile once, then snapshot(s) -> Report(s).

No printing and no exit codes here; progress is reported through a callback. The rules are
loaded and their expressions compiled once, however many snapshots are audited.
"""

from __future__ import annotations

import datetime as _dt
import glob
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tuneup import engine
from tuneup.errors import SnapshotError, UsageError
from tuneup.model import Fleet, Profile, Report, Rule, Snapshot
from tuneup.waivers import Waiver
from tuneup.waivers import apply as apply_waivers
from tuneup.waivers import check_rules

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Plan:
    """Everything that is the same for every host of a run."""

    book: object               # tuneup.rulebook.loader.Rulebook
    profile: Profile
    rules: tuple[Rule, ...]
    waivers: tuple[Waiver, ...] = ()
    today: _dt.date | None = None

    def audit(self, snap: Snapshot) -> Report:
        from dataclasses import replace

        from tuneup import persistence

        value_rules = [r for r in self.rules if not persistence.is_boot_rule(r)]
        boot_rules = [r for r in self.rules if persistence.is_boot_rule(r)]
        report = engine.build_report(value_rules, snap, self.profile.name, self.profile.params)
        extra = persistence.findings(value_rules, snap, self.profile.params, report.findings, boot_rules)
        report = replace(report, findings=persistence.name_sources(report.findings + tuple(extra), snap))
        return apply_waivers(report, self.waivers, self.today or _dt.date.today())


def plan(profile: str | None, overrides: dict[str, int | float], rules_dir: Sequence[Path] = (),
         waivers: Sequence[Waiver] = (), today: _dt.date | None = None,
         config_params: dict[str, int | float] | None = None, config_where: str | None = None) -> Plan:
    from tuneup.rulebook import loader

    book = loader.load(list(rules_dir))
    if config_params:
        unknown = set(config_params) - set(book.params)
        if unknown:
            from tuneup.config import ConfigError

            raise ConfigError(f"[params]: unknown parameter(s) {', '.join(sorted(unknown))} "
                              f"(known: {', '.join(sorted(book.params))})", config_where)
    prof = book.profile(profile or book.default_profile, {**(config_params or {}), **overrides})
    check_rules(waivers, list(book.rules))
    return Plan(book=book, profile=prof, rules=tuple(book.rules_for(prof.name)), waivers=tuple(waivers),
                today=today)


def expand_snapshots(args: Iterable[Path]) -> tuple[list[Path], bool]:
    """--snapshot values -> snapshot files, and whether this is a fleet run.

    A directory means every *.json in it; a value with * ? [ that is not an existing file is a
    glob. More than one value, a directory or a glob makes a fleet run (even if one file matched).
    """
    args = list(args)
    out: list[Path] = []
    fleet = len(args) > 1
    for a in args:
        s = str(a)
        if a.is_dir():
            found = sorted(a.glob("*.json"))
            if not found:
                raise SnapshotError("directory holds no *.json snapshots", s)
            out += found
            fleet = True
        elif not a.exists() and _GLOB_CHARS & set(s):
            found = sorted(Path(p) for p in glob.glob(s, recursive=True) if Path(p).is_file())
            if not found:
                raise SnapshotError("pattern matches no files", s)
            out += found
            fleet = True
        else:
            out.append(a)
    return list(dict.fromkeys(out)), fleet


def audit_fleet(p: Plan, paths: Sequence[Path], progress: Callable[[int, int], None] | None = None) -> Fleet:
    from tuneup import snapshot as snapmod

    reports = []
    n = len(paths)
    for i, path in enumerate(paths, 1):
        reports.append(p.audit(snapmod.load(str(path))))
        if progress:
            progress(i, n)
    return Fleet(profile=p.profile.name, params=dict(p.profile.params), reports=tuple(reports))


def obtain_snapshot(p: Plan, path: Path | None, pids: Sequence[int] = (), names: Sequence[str] = (),
                    root: Path | None = None, service: str | None = None, sample: float | None = None,
                    kernel: str | None = None, ram_bytes: int | None = None,
                    app_configs: dict[str, Path] | None = None) -> Snapshot:
    """A snapshot file, a filesystem tree (root), or the live host (with --pid/--process targets,
    or --service: the limits systemd gives that unit)."""
    if (pids or names) and (path is not None or root is not None or service):
        what = "--snapshot" if path is not None else "--root" if root is not None else "--service"
        raise UsageError(f"--pid/--process read live processes; they cannot be combined with {what}",
                         "--pid" if pids else "--process")
    if path is not None:
        if root is not None or service:
            raise UsageError("a snapshot cannot be combined with --root or --service", "--snapshot")
        from tuneup import snapshot as snapmod

        snap = snapmod.load(str(path))
        if app_configs:
            from tuneup.facts import servers

            servers.add_facts(snap, app_configs)
        return snap
    if root is not None:
        from tuneup.facts.collect import collect_root

        return collect_root(p.book.fact_keys(), root, service, kernel=kernel, ram_bytes=ram_bytes,
                            app_configs=app_configs)
    from tuneup.facts.collect import collect, resolve_targets

    return collect(p.book.fact_keys(), resolve_targets(pids, names), service=service, sample=sample,
                   app_configs=app_configs)
