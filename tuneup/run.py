"""Audit orchestration the CLI calls: rulebook and profile once, then snapshot(s) -> Report(s).

No printing and no exit codes here; progress is reported through a callback. The rules are
loaded and their expressions compiled once, however many snapshots are audited.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tuneup import engine
from tuneup.errors import SnapshotError, UsageError
from tuneup.model import Fleet, Profile, Report, Rule, Snapshot
from tuneup.record import Frozen
from tuneup.waivers import Waiver
from tuneup.waivers import apply as apply_waivers
from tuneup.waivers import check_rules

_set = object.__setattr__   # the written-out __init__s of the Frozen classes

_GLOB_CHARS = set("*?[")


@dataclass(init=False, eq=False, repr=False)
class Plan(Frozen):
    """Everything that is the same for every host of a run."""

    book: object               # tuneup.rulebook.loader.Rulebook
    profile: Profile
    rules: tuple[Rule, ...]
    waivers: tuple[Waiver, ...] = ()
    today: _dt.date | None = None

    def __init__(self, book, profile, rules, waivers=(), today=None) -> None:
        _set(self, "book", book)
        _set(self, "profile", profile)
        _set(self, "rules", rules)
        _set(self, "waivers", waivers)
        _set(self, "today", today)

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
            import glob

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


# -- streaming fleets -------------------------------------------------------------------------
# A fleet is read, audited and reduced one snapshot at a time: the caller's sink writes each host's
# text as it goes (to a spool file), and only a FleetSummary row stays in memory per host. Large
# fleets use a process pool (fork: each worker inherits the compiled rulebook, compiled once);
# the parent keeps the order, labels and renders, so the output is the same either way.

POOL_MIN_HOSTS = 200       # below this a pool's start-up costs more than it saves
_BATCH_PER_WORKER = 64     # results in flight per worker: bounds memory when the parent lags

_WORKER_PLAN: Plan | None = None


def _audit_path(path: str):
    """In a worker: one snapshot file -> (report, collected_at), or the error to raise in the parent."""
    from tuneup import snapshot as snapmod
    from tuneup.errors import TuneupError

    try:
        snap = snapmod.load(path)
        return _pack(_WORKER_PLAN.audit(snap)), snap.collected_at  # type: ignore[union-attr]
    except TuneupError as exc:
        return type(exc), exc.message, exc.where


# Findings cross from a worker as plain tuples (pickling dataclasses costs more than auditing);
# what is the same for every host (title, scope, rationale, refs) comes from the parent's rules.
_PER_HOST = ("rule", "key", "status", "severity", "actual", "expected", "message", "host_only", "source",
             "target", "expected_value", "waiver")
_PER_RULE = ("title", "scope", "rationale", "refs", "how")


def _pack(report: Report) -> tuple:
    rules = _WORKER_RULES
    out = []
    for f in report.findings:
        row = tuple(getattr(f, k) for k in _PER_HOST)
        r = rules.get(f.rule)
        if r is None or (r.title, r.scope, r.rationale, r.refs, engine.how_to_fix(r)) != \
                tuple(getattr(f, k) for k in _PER_RULE):
            row += tuple(getattr(f, k) for k in _PER_RULE)
        out.append(row)
    return report.profile, report.params, report.host, report.origin, out, report.collected_at


def _unpack(p: Plan, packed: tuple) -> Report:
    from tuneup.model import Finding

    profile, params, host, origin, rows, collected_at = packed
    rules = _WORKER_RULES
    findings = []
    n = len(_PER_HOST)
    for row in rows:
        d = dict(zip(_PER_HOST, row[:n]))
        if len(row) > n:
            d.update(zip(_PER_RULE, row[n:]))
        else:
            r = rules[d["rule"]]
            d.update(title=r.title, scope=r.scope, rationale=r.rationale, refs=r.refs, how=engine.how_to_fix(r))
        findings.append(Finding(**d))
    return Report(profile=profile, params=params, host=host, findings=tuple(findings), origin=origin,
                  collected_at=collected_at)


_WORKER_RULES: dict = {}


def default_jobs(n: int) -> int:
    import os

    if n < POOL_MIN_HOSTS:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    # the parent renders and writes, so a pool pays only with a core to spare: on a busy machine
    # (load near the core count) it costs more in copying than it saves
    idle = cpus - os.getloadavg()[0]
    return max(1, min(int(idle) + 1, cpus, 8)) if idle >= 1 else 1


def _results(p: Plan, paths: Sequence[Path], jobs: int):
    global _WORKER_PLAN
    names = [str(x) for x in paths]
    if jobs <= 1:
        from tuneup import snapshot as snapmod

        for name in names:
            snap = snapmod.load(name)
            yield p.audit(snap), snap.collected_at
        return
    import multiprocessing as mp

    global _WORKER_RULES
    _WORKER_PLAN = p
    _WORKER_RULES = {r.id: r for r in p.rules}
    ctx = mp.get_context("fork")
    pool = ctx.Pool(jobs)
    try:
        step = _BATCH_PER_WORKER * jobs
        for start in range(0, len(names), step):
            for res in pool.imap(_audit_path, names[start:start + step], chunksize=8):
                if len(res) == 3:
                    cls, message, where = res
                    raise cls(message, where)
                yield _unpack(p, res[0]), res[1]
    finally:
        pool.terminate()
        pool.join()
        _WORKER_PLAN = None
        _WORKER_RULES = {}


def audit_fleet_stream(p: Plan, paths: Sequence[Path], sink, threshold=None, include_host: bool = False,
                       progress: Callable[[int, int], None] | None = None, jobs: int | None = None,
                       each: Callable[[Report], Report] | None = None):
    """Audit snapshot files one at a time into ``sink`` (tuneup.formats.fleetsink.Sink); returns
    the FleetSummary (rows carry ``gate``: the host fails the run at ``threshold``)."""
    from tuneup.formats.fleetsink import prepared
    from tuneup.model import FleetSummary

    summary = FleetSummary(p.profile.name, dict(p.profile.params))
    n = len(paths)
    for i, (report, collected_at) in enumerate(_results(p, paths, default_jobs(n) if jobs is None else jobs)):
        if each is not None:     # the caller's per-host step (snapshot age, waiver use), in this process
            report = each(report)
        gate = bool(engine.failing(report, threshold, include_host))
        report = prepared(sink, report)    # escaped for a format a person reads, collected_at included
        sink.host(summary.add(report, report.collected_at or collected_at, gate), report, i)
        if progress:
            progress(i + 1, n)
    return summary


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
                   app_configs=app_configs, only_wanted=True)
