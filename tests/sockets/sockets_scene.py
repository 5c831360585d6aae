"""A known TCP scene, built inside a throwaway network namespace (run with `ip netns exec`).

    python3 sockets_scene.py '{"backlog_port": 5001, ...}'

Builds, on loopback:
  Q   127.0.0.1:<queue_port>  listen(7)      QUEUED clients connected, never accepted (accept queue)
  E   127.0.0.1:<estab_port>  listen(100)    ESTAB pairs accepted (ESTABLISHED on both sides)
  S   [::1]:<v6_port>         listen(50)     V6 pairs accepted over IPv6
  T   127.0.0.1:<tw_port>     listen(100000) TW connections closed by the client first (TIME_WAIT),
                                             backlog capped by net.core.somaxconn
  R   127.0.0.1:<range_port>  listen(16)     a listener inside the ephemeral range with RANGE pairs:
                                             its accepted sockets are server-side, not ephemeral
then prints one JSON line {"pid": ..., "expected": {...}} and holds everything until stdin closes.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

# the scene the tests build; listener ports below the ephemeral range except range_port
SCENE = {
    "queue_port": 5001, "estab_port": 5002, "v6_port": 5003, "tw_port": 5004, "range_port": 25000,
    "queued": 5, "estab": 4, "v6": 2, "tw": 6, "range": 3,
}
PORT_RANGE = (20000, 29999)     # net.ipv4.ip_local_port_range inside the scene's namespace


def main() -> None:
    cfg = json.loads(sys.argv[1])
    keep = []

    def listener(family, addr, port, backlog):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(backlog)
        keep.append(s)
        return s

    def connect(family, addr, port):
        c = socket.socket(family, socket.SOCK_STREAM)
        c.connect((addr, port))
        return c

    q = listener(socket.AF_INET, "127.0.0.1", cfg["queue_port"], 7)
    e = listener(socket.AF_INET, "127.0.0.1", cfg["estab_port"], 100)
    v6 = listener(socket.AF_INET6, "::1", cfg["v6_port"], 50)
    tw = listener(socket.AF_INET, "127.0.0.1", cfg["tw_port"], 100000)
    rl = listener(socket.AF_INET, "127.0.0.1", cfg["range_port"], 16)

    for _ in range(cfg["queued"]):
        keep.append(connect(socket.AF_INET, "127.0.0.1", cfg["queue_port"]))
    for lst, fam, addr, port, n in ((e, socket.AF_INET, "127.0.0.1", cfg["estab_port"], cfg["estab"]),
                                    (v6, socket.AF_INET6, "::1", cfg["v6_port"], cfg["v6"]),
                                    (rl, socket.AF_INET, "127.0.0.1", cfg["range_port"], cfg["range"])):
        for _ in range(n):
            keep.append(connect(fam, addr, port))
            keep.append(lst.accept()[0])
    for _ in range(cfg["tw"]):
        c = connect(socket.AF_INET, "127.0.0.1", cfg["tw_port"])
        a = tw.accept()[0]
        c.close()                 # the client closes first: it ends in TIME_WAIT
        a.recv(1)                 # the server sees EOF ...
        a.close()                 # ... and closes: LAST_ACK, then gone once the client ACKs
    time.sleep(0.3)               # let the last ACKs land: the scene is still from here on

    print(json.dumps({"pid": os.getpid()}), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
