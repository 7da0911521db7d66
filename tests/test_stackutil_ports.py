"""The tests' port helper never hands one port out twice: a port chosen for a service
that has not bound it yet is still free, and CI once started two services of one
fixture on the same port (admin_server's URL answered as ecom_ingest)."""

from __future__ import annotations

import stackutil
from service_process import free_port
from stackutil import STACK_PORTS, free_offset, free_ports, worker_ports


def test_ports_handed_out_one_at_a_time_are_all_different() -> None:
    stackutil._HANDED.clear()  # the memory forgets at half the share: start it empty
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)
    assert all(p in worker_ports() for p in ports)


def test_a_stack_range_never_overlaps_ports_already_handed_out() -> None:
    stackutil._HANDED.clear()
    singles = set(free_ports(300))
    for _ in range(20):
        first = free_offset() + 9000
        stack = set(range(first, first + STACK_PORTS))
        assert not stack & singles
        singles |= stack
