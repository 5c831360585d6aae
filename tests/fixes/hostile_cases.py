"""The hostile-tree corpus, as data. Consumed by test_hostile_tree.py.

WRITTEN_PATHS: every path `fix --apply` / `rollback` / `--out-dir` write under their root for the
ROOT_TREE plan; a symlink is planted at each component of each of them in turn (pointing into a
sentinel tree outside the root that mirrors the layout, so following it would land somewhere
writable).

RECORD_MUTATIONS: (name, JSON path, new value) applied to a genuine record; every one must be
refused with one line (exit 2), the record kept, nothing written. "DEL" removes the field; "ADD"
appends a sysctl entry. A path is a list of keys/indices from the record's top.

RECORD_FILE_TAMPERING: (name, what is done to the record file itself).

LIVE_RECORD_MUTATIONS: forged sysctl entries for a record under `/`, refused before any write.
Every "before" value there is the key's current value (filled in at run time where it says
"@current"), so even a failed check would change nothing on the machine.
"""

from __future__ import annotations

WRITTEN_PATHS = [
    "etc/sysctl.d/60-tuneup.conf",
    "etc/systemd/system/web.service.d/60-tuneup-limits.conf",
    "var/lib/tuneup/state.json",
]

OUT_DIR_PATHS = [
    "etc/sysctl.d/60-tuneup.conf",
    "etc/systemd/system/web.service.d/60-tuneup-limits.conf",
    "apply.sh",
]

F0 = ["files", 0]   # the first file entry (etc/sysctl.d/60-tuneup.conf, replaced: has data/uid/gid/mode)

RECORD_MUTATIONS = [
    # the top level
    ("record is a list", [], []),
    ("schema wrong", ["schema"], "tuneup.applied/1"),
    ("schema int", ["schema"], 2),
    ("schema missing", ["schema"], "DEL"),
    ("unknown field", ["extra"], 1),
    ("applied_at int", ["applied_at"], 5),
    ("live a string", ["live"], "no"),
    ("live true under --root", ["live"], True),
    ("complete an int", ["complete"], 1),
    ("netns_inode a string", ["netns_inode"], "4026531840"),
    ("netns_inode negative", ["netns_inode"], -1),
    ("netns_inode a float", ["netns_inode"], 1.5),
    ("files a dict", ["files"], {}),
    ("dirs a string", ["dirs"], "var/lib/tuneup"),
    ("sysctls a dict", ["sysctls"], {}),
    # file entries
    ("file entry a string", F0, "etc/sysctl.d/60-tuneup.conf"),
    ("path an int", [*F0, "path"], 7),
    ("path absolute", [*F0, "path"], "/etc/passwd"),
    ("path with ..", [*F0, "path"], "etc/sysctl.d/../../../outside"),
    ("path only ..", [*F0, "path"], "etc/sysctl.d/.."),
    ("path outside the areas", [*F0, "path"], "var/spool/cron/crontabs/root"),
    ("path with NUL", [*F0, "path"], "etc/sysctl.d/a\u0000b"),
    ("path empty component", [*F0, "path"], "etc/sysctl.d//x.conf"),
    ("path too long", [*F0, "path"], "etc/sysctl.d/" + "x" * 300),
    ("created a string", [*F0, "created"], "false"),
    ("done missing", [*F0, "done"], "DEL"),
    ("data not base64", [*F0, "data"], "not base64!"),
    ("data an int", [*F0, "data"], 12),
    ("data missing", [*F0, "data"], "DEL"),
    ("uid negative", [*F0, "uid"], -1),
    ("uid a string", [*F0, "uid"], "0"),
    ("uid a bool", [*F0, "uid"], True),
    ("uid too big", [*F0, "uid"], 2**40),
    ("gid a float", [*F0, "gid"], 0.0),
    ("mode setuid", [*F0, "mode"], 0o4755),
    ("mode setgid", [*F0, "mode"], 0o2755),
    ("mode sticky", [*F0, "mode"], 0o1777),
    ("mode a string", [*F0, "mode"], "0644"),
    ("mode negative", [*F0, "mode"], -1),
    ("extra field in a file", [*F0, "owner"], "root"),
    ("same path twice", ["files", "DUP"], None),
    # directories
    ("dir absolute", ["dirs", 0], "/tmp"),
    ("dir with ..", ["dirs", 0], "var/lib/../../.."),
    ("dir not a parent of a written path", ["dirs", 0], "usr/lib"),
    ("dir an int", ["dirs", 0], 3),
    # sysctls in a --root record: --root loads none, so any is forged
    ("a sysctl in a --root record", ["sysctls", "ADD"], {"key": "net.core.somaxconn", "before": "4096",
                                                         "value": "65535", "done": True}),
    ("null netns with a sysctl", ["sysctls", "ADD+NULLNS"], {"key": "net.core.somaxconn", "before": "4096",
                                                              "value": "65535", "done": True}),
]

RECORD_FILE_TAMPERING = [
    "owned by another user",
    "group-writable",
    "world-writable",
    "a symlink to a good record elsewhere",
    "a FIFO",
    "a directory",
    "not JSON",
    "JSON nested 100000 deep",
    "an integer of 5000 digits",
    "NaN",
    "invalid UTF-8",
    "empty",
]

# forged sysctl entries for a live record (root /), each refused; "@current" = the key's current value
LIVE_RECORD_MUTATIONS = [
    ("core_pattern, the code-execution key", {"key": "kernel.core_pattern", "before": "@current", "value": "@current"}),
    ("a key no rule writes", {"key": "net.ipv4.ip_forward", "before": "@current", "value": "@current"}),
    ("a key no rule writes, global", {"key": "kernel.randomize_va_space", "before": "@current", "value": "@current"}),
    ("a non-numeric value", {"key": "net.core.somaxconn", "before": "|/tmp/x %p", "value": "@current"}),
    ("a key with a path in it", {"key": "net/../../kernel/core_pattern", "before": "@current", "value": "@current"}),
]
