"""The lab's own helper processes (the delay proxies of the network experiments): Python, run as the lab's own
user, stopped with SIGTERM. Not a compose service: experiments start them beside a running topology."""

from __future__ import annotations

from lab.topology.services.base import ServiceKind


class LabProxy(ServiceKind):
    name = "lab-proxy"
    as_owner = False
    python_module = "lab.proxies"
