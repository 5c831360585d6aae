"""The probe's stand-in server: a loopback listener that accepts and holds connections.

Started by tuneup/probe.py as `python -m tuneup.probe_server` with the same rlimits as the probe.
Protocol, one JSON object per line on stdout:
  {"ready": true, "port": P, "pid": N, "fds": open fds, "soft": RLIMIT_NOFILE soft, "hard": ...}
  {"accepted": n}                        after every batch of accepts
  {"accepted": n, "error": "EMFILE"}     accept() failed; the listener stops accepting
It exits (closing everything) when its stdin reaches EOF: when the probe closes the pipe or dies.
Imports only the standard library, so its fd count at start is small and predictable.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import selectors
import socket
import sys

_FATAL = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def _say(out, obj: dict) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


def serve(host: str = "127.0.0.1", port: int = 0, backlog: int = 65535) -> int:
    out = sys.stdout
    held: list[socket.socket] = []
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(backlog)                 # the kernel caps it at net.core.somaxconn
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, "listen")
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fds = len(os.listdir("/proc/self/fd")) - 1
    _say(out, {"ready": True, "port": lsock.getsockname()[1], "pid": os.getpid(), "fds": fds,
               "soft": soft, "hard": hard})
    accepting = True
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "stdin":
                    if not os.read(sys.stdin.fileno(), 4096):
                        return 0
                    continue
                if not accepting:
                    continue
                before = len(held)
                error = None
                while True:
                    try:
                        conn, _addr = lsock.accept()
                    except BlockingIOError:
                        break
                    except InterruptedError:
                        continue
                    except OSError as exc:
                        if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                            continue
                        error = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                        break
                    held.append(conn)
                if error:
                    accepting = False
                    sel.unregister(lsock)
                    _say(out, {"accepted": len(held), "error": error})
                elif len(held) != before:
                    _say(out, {"accepted": len(held)})
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    finally:
        for c in held:
            c.close()
        lsock.close()
        sel.close()


if __name__ == "__main__":
    sys.exit(serve())
