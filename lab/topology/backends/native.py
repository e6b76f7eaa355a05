"""The compose topology as local processes: real PostgreSQL, PgBouncer and nginx on 127.0.0.1.

Everything comes from compose/: the services, their kinds (the `lab.kind` label), roles and
pool settings, the initdb arguments, PostgREST's environment, and the config files (rendered
from the same templates the Docker backend mounts). Only placement differs: free ports, a
per-run directory, and binaries from the Debian packages (or built by the lab) instead of
images. Each service kind (lab.topology.services) knows how to start its service; this
backend is one loop over them, in the order the services depend on each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from lab.paths import COMPOSE_DIR
from lab.topology.backends import Backend, Progress
from lab.topology.compose import ComposeTopology, Service, load
from lab.topology.model import Endpoint, EndpointFacts, Topology
from lab.topology.ports import ensure_free, free_ports
from lab.topology.processes import RunAs, Server, check_reachable, give_to, run_as, run_as_self
from lab.topology.render import Credentials, Placement, render
from lab.topology.runstate import RunState, runtime_base
from lab.topology.services import kind_of
from lab.topology.services.base import NativeSite, ServiceKind


class NativeBackend(Backend):
    """Starts, describes and stops one run of the topology. Use as a context manager."""

    name = "native"

    def __init__(
        self,
        compose_dir: Path = COMPOSE_DIR,
        fixed_ports: bool = False,
        persistent: bool = False,
        progress: Progress | None = None,
        run_id: str | None = None,
        profiles: tuple[str, ...] = (),
        topologies: tuple[str, ...] | None = None,
    ) -> None:
        self.run_id = run_id
        self.profiles = profiles
        self.topologies = topologies
        self.compose_dir = compose_dir
        self.fixed_ports = fixed_ports
        self.persistent = persistent
        super().__init__(progress)
        self.state: RunState | None = None
        self.servers: list[Server] = []
        self.owner: RunAs | None = None

    def start(self) -> Topology:
        self.reap()
        creds = Credentials.generate()
        topo = load(self.compose_dir, creds.compose_secrets(), profiles=self.profiles)
        if self.topologies is not None:  # a narrowed run starts (and builds) only what its topologies need
            topo = topo.serving(self.topologies, lambda s: kind_of(s).topologies(s))
        services = topo.in_start_order()
        # every binary first: a missing one stops the run before anything starts
        binaries = {svc.name: kind_of(svc).binary(svc, self.progress) for svc in services}
        ports, tls_ports = self._ports(topo)
        self.owner = owner = run_as()
        check_reachable(owner, runtime_base(), "runtime directory")
        for svc in services:
            if kind_of(svc).as_owner:  # a build cached where the servers' user cannot reach is one line, not a crash
                check_reachable(owner, binaries[svc.name], f"{svc.name}'s binary", setting="POOLER_LAB_CACHE")
        self.state = state = RunState.create(persistent=self.persistent, run_id=self.run_id)
        rundir = state.directory
        rendered, logs, sockets, states = (rundir / d for d in ("config", "logs", "sockets", "state"))
        for d in (rendered, logs, sockets, states):
            d.mkdir()
        for svc in topo.services.values():
            (states / svc.name).mkdir()
        render(topo, Placement.native(topo, ports, tls_ports, rendered, sockets, states), creds, rendered)
        give_to(owner, rendered, logs, sockets, states)
        if owner.switches:
            os.chown(rundir, owner.uid, owner.gid)
        site = NativeSite(
            topo, state, owner, creds, ports, tls_ports, self._spawn, self.progress, EndpointFacts(self.name)
        )
        endpoints: dict[str, Endpoint] = {}
        for svc in services:
            offered = kind_of(svc).native(svc, site)
            endpoints.update(offered)
            if svc.role == "server":  # every later endpoint names the server's version too
                site.base = site.base.with_(server_version=offered[svc.topology].facts.server_version)
        topology = Topology(
            run_id=state.run_id,
            backend=self.name,
            endpoints=endpoints,
            superuser=creds.superuser,
            superuser_password=creds.superuser_password,
        )
        state.topology = topology.to_dict()
        state.save()
        return topology

    def stop(self) -> None:
        """Stop every process of this run (also after a partial start) and remove its directory."""
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()
        if self.state is not None:
            self.state.stop()
            self.state = None

    # -- steps -----------------------------------------------------------------------
    def _ports(self, topo: ComposeTopology) -> tuple[dict[str, int], dict[str, int]]:
        tls_names = [s.name for s in topo.services.values() if len(s.container_ports) > 1]
        picked = iter(free_ports(len(tls_names) + len(topo.services)))
        tls_ports = {name: next(picked) for name in tls_names}
        if not self.fixed_ports:
            return {name: next(picked) for name in topo.services}, tls_ports
        fixed = {
            "direct": int(topo.settings["LAB_DIRECT_PORT"]),
            "pgbouncer-transaction": int(topo.settings["LAB_TRANSACTION_PORT"]),
            "pgbouncer-session": int(topo.settings["LAB_SESSION_PORT"]),
        }
        ports = {svc.name: fixed.get(svc.topology) or next(picked) for svc in topo.services.values()}
        ensure_free({ports[svc.name]: f"{svc.name} ({svc.topology})" for svc in topo.services.values()})
        return ports, tls_ports

    def _spawn(
        self, svc: Service, argv: list[str], kind: ServiceKind, extra_env: dict[str, str] | None = None
    ) -> Server:
        """Servers that refuse root run as the lab user; the lab's own Python processes run as we do."""
        assert self.state is not None and self.owner is not None
        server = self.state.start(
            svc.name, argv, self.owner if kind.as_owner else run_as_self(), kind, extra_env=extra_env
        )
        self.servers.append(server)
        return server


def check_binaries(
    compose_dir: Path = COMPOSE_DIR,
    profiles: tuple[str, ...] = (),
    progress: Callable[[str], None] = print,
    topologies: tuple[str, ...] | None = None,
) -> None:
    """Every binary a native run of these profiles (and topologies, where narrowed) needs (a server the lab builds is
    built now, once), or MissingDependency naming the first one missing."""
    topo = load(compose_dir, profiles=profiles)
    if topologies is not None:
        topo = topo.serving(topologies, lambda s: kind_of(s).topologies(s))
    for svc in topo.in_start_order():
        kind_of(svc).binary(svc, progress)
