"""In the services layout each service is its own pod: `http://127.0.0.1:9002` (what
`${url:controller}` renders to) becomes `http://controller:9002`, the Service's
in-cluster name. Ports stay as they are: each Service listens on its service's port."""

from __future__ import annotations

import re
from collections.abc import Mapping

from hippo_tasks.model.plan import HOST, StackPlan
from hippo_tasks.model.spec import StackSpec

_LOOPBACK = re.compile(rf"(?<![\w.-])(?:{re.escape(HOST)}|localhost):(\d{{1,5}})(?!\d)")


def port_owners(spec: StackSpec, plan: StackPlan, names: Mapping[str, str]) -> dict[int, str]:
    """Port -> in-cluster host name. Every service of the stack file counts (a
    `${url:x}` of a service not selected still renders), the selected one winning
    where two that never run together share a port."""
    offset = plan.options.port_offset
    owners = {s.port + offset: names.get(s.name, s.name.replace("_", "-"))
              for s in spec.services if s.port is not None}
    owners.update({s.port: names[s.name] for s in plan.services
                   if s.port is not None and s.name in names})
    return owners


def rewrite(text: str, owners: Mapping[int, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        port = int(match.group(1))
        return f"{owners[port]}:{port}" if port in owners else match.group(0)

    return _LOOPBACK.sub(sub, text)


def names_port(text: str, port: int) -> bool:
    """Does the text point at this loopback port (the dashboard's, say)?"""
    return any(int(m.group(1)) == port for m in _LOOPBACK.finditer(text))
