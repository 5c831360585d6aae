"""FixPlan -> {relative path: file text}, from the jinja2 templates in templates/.

The paths form a root overlay: etc/sysctl.d/NN-tuneup.conf, etc/security/limits.d/NN-tuneup.conf,
etc/systemd/system/UNIT.d/NN-tuneup-limits.conf, etc/systemd/system.conf.d/NN-tuneup.conf,
etc/modprobe.d/NN-tuneup.conf, plus apply.sh. Audited from a child network namespace, host-global
settings go under host/ (an overlay for the host) and the per-namespace sysctls are also given in
container form under container/. Every value was validated by the plan; it is validated again here
as text (no newline or control character), and free text only ever reaches comment lines.
"""

from __future__ import annotations

import shlex
from typing import Any

from tuneup import __version__
from tuneup.fixes import FixItem, FixPlan, conf_name, is_rlimit
from tuneup.fixes.values import comment, rlimit_pair, safe, text_of
from tuneup.textsafe import block_safe

# Kubernetes "safe" sysctls (v1.26): settable without --allowed-unsafe-sysctls.
K8S_SAFE = frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                      "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"})
APPLY_SCRIPT = "apply.sh"
HOST_PREFIX = "host/"


def _env():
    import jinja2

    from tuneup.rulebook.loader import builtin_dir

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(builtin_dir("templates"))),
                              autoescape=False, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _common(item: FixItem) -> dict[str, Any]:
    from tuneup.engine import render

    return {"rules": comment(", ".join(item.rules)), "reason": comment(item.reason),
            "before": comment(render(item.before)), "before_source": comment(item.before_source)}


def _limit_item(item: FixItem) -> str:
    return item.key.removeprefix("Limit").removeprefix("DefaultLimit").lower() if item.kind == "systemd" else item.key


def render_files(plan: FixPlan) -> dict[str, str]:
    """All files of the plan, by path relative to the output directory (a root overlay)."""
    env = _env()
    host = comment(str(plan.host.get("hostname", "?")))
    base = {"version": __version__, "profile": comment(plan.profile), "host": host}
    files: dict[str, str] = {}

    def header(c: str, purpose: str) -> dict[str, Any]:
        return {**base, "c": c, "purpose": purpose}

    def prefix(item: FixItem) -> str:
        return HOST_PREFIX if plan.child_netns and item.host_only else ""

    # sysctl.d
    sysctl_items = plan.of_kind("sysctl")
    sysctl_name = conf_name(plan.setters.get("sysctl", ()))
    for pre in ("", HOST_PREFIX):
        chosen = [i for i in sysctl_items if prefix(i) == pre]
        if chosen:
            rows = [{**_common(i), "key": ("-" if i.optional else "") + safe(i.key, "key"), "value": text_of(i.value)}
                    for i in chosen]
            files[f"{pre}etc/sysctl.d/{sysctl_name}"] = env.get_template("sysctl.conf.j2").render(
                **header("#", "sysctl.d(5): applied at boot by systemd-sysctl, in lexical order of file names."),
                items=rows)

    # module-owned keys: the module must be loaded before systemd-sysctl runs, or the line never
    # applies at boot; nf_conntrack also gets its hash table sized for the new maximum
    from tuneup.facts.configfiles import module_of

    derived_modprobe: list[dict[str, Any]] = []
    for pre in ("", HOST_PREFIX):
        chosen = [i for i in sysctl_items if prefix(i) == pre and module_of(i.key)]
        mods = sorted({module_of(i.key) for i in chosen})
        if mods:
            name = conf_name(plan.setters.get("modules", ()))
            files[f"{pre}etc/modules-load.d/{name}"] = env.get_template("modules-load.conf.j2").render(
                **header("#", "modules-load.d(5): kernel modules loaded early at boot."),
                modules=[safe(m, "module") for m in mods], keys=comment(", ".join(i.key for i in chosen)))
        for i in chosen:
            if i.key == "net.netfilter.nf_conntrack_max" and isinstance(i.value, int) \
                    and not any(m.key == "nf_conntrack.hashsize" for m in plan.of_kind("modprobe")):
                derived_modprobe.append({**_common(i), "module": "nf_conntrack", "param": "hashsize",
                                         "value": text_of(i.value), "pre": pre})

    # tuned applies sysctls at boot: a child profile that includes the active one keeps
    # `tuned-adm verify` green (the sysctl.d file stays: tuned re-applies it with reapply_sysctl)
    if plan.tuned_profile and sysctl_items:
        child = f"tuneup-{plan.tuned_profile}"[:100]
        rows = [{**_common(i), "key": safe(i.key, "key"), "value": text_of(i.value)} for i in sysctl_items
                if not prefix(i)]
        if rows:
            files[f"etc/tuned/{child}/tuned.conf"] = env.get_template("tuned-profile.conf.j2").render(
                **header("#", "tuned.conf(5): a child profile of the active one."), parent=plan.tuned_profile,
                name=child, items=rows)

    # process limits: a unit drop-in, system.conf.d (every service), or limits.d (logins)
    limit_items = [i for i in plan.items if i.kind in ("systemd", "limits")]
    dropin, manager, pam = [], [], []
    for i in limit_items:
        if i.kind == "systemd" and i.key.startswith("Default"):
            manager.append(i)
        elif i.kind == "systemd" and plan.service:
            dropin.append(i)
        elif i.kind == "systemd" and plan.rootfs:
            manager.append(i)
        else:
            pam.append(i)

    def limit_rows(items: list[FixItem], manager_conf: bool) -> list[dict[str, Any]]:
        rows = []
        for i in items:
            directive = i.key if i.kind == "systemd" else f"Limit{i.key.upper()}"
            if manager_conf and not directive.startswith("Default"):
                directive = "Default" + directive
            if not is_rlimit(i.kind, i.key):       # a cgroup directive: TasksMax=N, MemoryMax=BYTES
                rows.append({**_common(i), "single": text_of(i.value), "directive": safe(directive, "directive")})
                continue
            soft, hard = rlimit_pair(i.value, None)   # the plan made it (soft, hard)
            rows.append({**_common(i), "item": safe(_limit_item(i), "item"), "soft": soft, "hard": hard,
                         "single": None, "directive": safe(directive, "directive")})
        return rows

    if dropin:
        unit = plan.service
        name = conf_name(plan.setters.get("systemd", ()), suffix="tuneup-limits.conf")
        files[f"etc/systemd/system/{unit}.d/{name}"] = env.get_template("systemd.conf.j2").render(
            **header("#", f"systemd drop-in for {unit}: LimitX= beats DefaultLimitX= and limits.conf; "
                          "TasksMax= and MemoryMax= size the unit's cgroup."),
            section="Service", items=limit_rows(dropin, False))
    if manager:
        name = conf_name(plan.setters.get("systemd", ()))
        files[f"etc/systemd/system.conf.d/{name}"] = env.get_template("systemd.conf.j2").render(
            **header("#", "systemd-system.conf(5): the default limits of every service without its own LimitX=."),
            section="Manager", items=limit_rows(manager, True))
    if pam:
        name = conf_name(plan.setters.get("limits", ()))
        files[f"etc/security/limits.d/{name}"] = env.get_template("limits.conf.j2").render(
            **header("#", "limits.conf(5) drop-in for pam_limits (login sessions)."), items=limit_rows(pam, False))

    # modprobe.d
    mods = plan.of_kind("modprobe")
    for pre in ("", HOST_PREFIX):
        chosen = [i for i in mods if (HOST_PREFIX if plan.child_netns else "") == pre]
        extra = [{k: v for k, v in r.items() if k != "pre"} for r in derived_modprobe if r["pre"] == pre]
        if chosen or extra:
            rows = [{**_common(i), "module": i.key.split(".", 1)[0], "param": i.key.split(".", 1)[1],
                     "value": text_of(i.value, ",")} for i in chosen] + extra
            files[f"{pre}etc/modprobe.d/99-{'tuneup.conf'}"] = env.get_template("modprobe.conf.j2").render(
                **header("#", "modprobe.d(5): module options."), items=rows)

    # container forms
    if plan.child_netns:
        ns = [i for i in sysctl_items if not i.host_only]
        if ns:
            rows = [{"key": i.key, "value": text_of(i.value), "safe": i.key in K8S_SAFE,
                     "quoted": shlex.quote(f"{i.key}={text_of(i.value)}")} for i in ns]
            files["container/docker-sysctl.txt"] = env.get_template("docker-sysctl.txt.j2").render(**base, items=rows)
            files["container/kubernetes-sysctls.yaml"] = env.get_template("k8s-sysctls.yaml.j2").render(**base, items=rows)
        host_items = [i for i in plan.items if i.host_only or (i.kind == "modprobe")]
        if host_items:
            rows = [{"kind": i.kind, "key": i.key, "value": text_of(i.value), "rules": comment(", ".join(i.rules))}
                    for i in host_items]
            files["container/host-only.txt"] = env.get_template("host-only.txt.j2").render(**base, items=rows)

    overlay = sorted(p for p in files if p.startswith("etc/"))
    if overlay:
        systemd = [p for p in overlay if p.startswith("etc/systemd/")]
        files[APPLY_SCRIPT] = env.get_template("apply.sh.j2").render(
            **base, files=overlay,
            sysctl_files=[p for p in overlay if p.startswith("etc/sysctl.d/")],
            systemd=bool(systemd), systemd_what=plan.service or "services")
    for path, text in files.items():
        for n, line in enumerate(text.splitlines(), 1):
            safe(line, f"{path}:{n}")
    return files


@block_safe
def summary(plan: FixPlan, files: dict[str, str], out_dir: str | None) -> str:
    """What the fix does, for the operator: each setting and where it goes, what was not written."""
    from tuneup.engine import render

    where: dict[tuple[str, str], str] = {}
    for path, text in files.items():
        for item in plan.items:
            if item.kind == "sysctl" and path.endswith(".conf") and f"\n{item.key} = " in text:
                where.setdefault((item.kind, item.key), path)
            elif item.kind != "sysctl" and path.endswith(".conf") and (item.key in text or item.key.upper() in text):
                where.setdefault((item.kind, item.key), path)
    lines = []
    if not plan.items:
        lines.append("nothing to fix: no failing rule with a fix")
    for i in plan.items:
        dest = where.get((i.kind, i.key), "-")
        note = " (host-global: the host must set it)" if i.host_only else ""
        lines.append(f"{', '.join(i.rules)}: {i.key} {render(i.before)} -> {render(i.value)}  [{dest}]{note}")
    for s in plan.skipped:
        lines.append(f"{s.rule}: {s.key} {s.reason}")
    lines += [f"note: {n}" for n in plan.notes]
    if out_dir is not None:
        lines.append(f"wrote {len(files)} file(s) under {out_dir}")
    return "\n".join(lines) + "\n"
