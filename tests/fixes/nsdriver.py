"""Run apply/rollback cases for real inside a private mount namespace (and the network namespace it
was started in): `ip netns exec tA-... unshare -m --propagation private PYTHON nsdriver.py < cases.json`.

For every case: fresh tmpfs over each of `mounts` (the machine's real /etc and /var/lib are never
written: the tmpfs hides them in this mount namespace only), the tree and per-namespace sysctls put in
place, the state captured, the commands run, the state captured again. One JSON result per case on
stdout. Used by test_apply_journal.py and test_hostile_tree.py.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys


def capture(paths: list[str], keys: list[str]) -> dict:
    """Every entry under each path (not following symlinks): type, mode, owner, bytes / link target."""
    out: dict = {}
    for top in paths:
        for d, dirs, files in os.walk(top):
            for name in [*dirs, *files]:
                p = os.path.join(d, name)
                st = os.lstat(p)
                e = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid]
                if stat.S_ISREG(st.st_mode):
                    with open(p, "rb") as fh:
                        e.append(base64.b64encode(fh.read()).decode())
                elif stat.S_ISLNK(st.st_mode):
                    e.append(os.readlink(p))
                out[p] = e
    sysctls = {}
    for k in keys:
        try:
            with open("/proc/sys/" + k.replace(".", "/")) as fh:
                sysctls[k] = " ".join(fh.read().split())
        except OSError:
            sysctls[k] = None
    return {"files": out, "sysctls": sysctls}


def plant(tree: list) -> None:
    """[path, kind, payload, mode, uid, gid]; kind: dir | file (payload base64) | symlink | fifo."""
    for path, kind, payload, mode, uid, gid in tree:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if kind == "dir":
            os.makedirs(path, exist_ok=True)
        elif kind == "file":
            with open(path, "wb") as fh:
                fh.write(base64.b64decode(payload))
        elif kind == "symlink":
            os.symlink(payload, path)
            continue
        elif kind == "fifo":
            os.mkfifo(path)
        os.chown(path, uid, gid)
        os.chmod(path, mode)


def main() -> None:
    spec = json.load(sys.stdin)
    results = []
    for case in spec["cases"]:
        for m in case["mounts"]:
            subprocess.run(["umount", "-l", m], capture_output=True)
            opts = "mode=0755" + (f",size={case['size']}" if case.get("size") and m == case["mounts"][0] else "")
            subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tA-tmpfs", m], check=True)
        for k, v in case.get("preset", {}).items():
            assert k.startswith("net."), k
            with open("/proc/sys/" + k.replace(".", "/"), "w") as fh:
                fh.write(v)
        plant(case.get("tree", []))
        watch = case.get("watch", case["mounts"])
        keys = case.get("keys", [])
        res = {"name": case["name"], "before": capture(watch, keys), "runs": []}
        for cmd in case["commands"]:
            env = {**os.environ, "NO_COLOR": "1", **cmd.get("env", {})}
            if cmd.get("shell"):
                p = subprocess.run(cmd["argv"], shell=True, capture_output=True, text=True, env=env, timeout=120)
            else:
                p = subprocess.run([*spec["tuneup"], *cmd["argv"]], capture_output=True, text=True, env=env,
                                   timeout=120)
            res["runs"].append({"argv": cmd["argv"], "rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr,
                                "state": capture(watch, keys)})
            if cmd.get("until_ok") and p.returncode == 0:
                break
        res["after"] = capture(watch, keys)
        results.append(res)
    for m in spec["cases"][-1]["mounts"] if spec["cases"] else []:
        subprocess.run(["umount", "-l", m], capture_output=True)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
