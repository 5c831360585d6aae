"""Parsers of what is in use: /proc/net/tcp rows (IPv4, IPv6, accept queue), ports per destination."""

from __future__ import annotations

from tuneup.facts import usage

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000009 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0
   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 112 1 0 20 4 30 10 -1
   2: 0100007F:9C41 0100007F:1F90 06 00000000:00000000 00:00000000 00000000     0        0 0 3 0
   3: 0100007F:9C42 0500000A:0050 01 00000000:00000000 00:00000000 00000000     0        0 113 1 0 20 4 30 10 -1
"""
TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 211 1 0 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:9C43 0000000000000000FFFF00000100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 212 1 0 20 4 30 10 -1
"""


def test_rows_are_decoded_with_addresses_ports_states_and_accept_queue():
    rows = usage.parse_proc_net_tcp(TCP) + usage.parse_proc_net_tcp(TCP6)
    assert rows[0] == usage.TcpRow("127.0.0.1", 8080, "0.0.0.0", 0, 0x0A, 111, 9)
    assert rows[3].remote == "10.0.0.5" and rows[3].rport == 80
    assert rows[4].local == "::1" and rows[4].lport == 8081 and rows[4].rx_queue == 2
    assert rows[5].local == "127.0.0.1" and rows[5].remote == "127.0.0.1"   # v4-mapped reads as IPv4
    assert usage.listen_ports(rows) == (8080, 8081)


def test_ports_toward_one_destination_with_and_without_time_wait():
    rows = usage.parse_proc_net_tcp(TCP) + usage.parse_proc_net_tcp(TCP6)
    assert usage.ports_toward(rows, "127.0.0.1", 8080, (40000, 40999)) == 3
    assert usage.ports_toward(rows, "127.0.0.1", 8080, (40000, 40999), count_time_wait=False) == 2
    assert usage.ports_toward(rows, "127.0.0.1", 8080, (40001, 40002)) == 1
    assert usage.busiest_destination(rows, (40000, 40999)) == ("127.0.0.1:8080", 3)


def test_own_open_fds_are_counted_without_the_listing_handle():
    import os

    assert usage.open_fds("self") == len(os.listdir("/proc/self/fd")) - 1
