"""Supavisor, Supabase's own pooler, from its official image (compose profile "supavisor").

It cannot run natively (no image, no Hex packages here): the lab's model of it
(lab.topology.services.supavisor_model) stands in there. Under Docker the lab registers its
tenant through Supavisor's API (lab.topology.supavisor_api) before any cell runs; its
transaction and session ports become the topologies `supavisor` and `supavisor-session`.
"""

from __future__ import annotations

from pathlib import Path

from lab.errors import MissingDependency
from lab.topology.compose import Service
from lab.topology.model import Endpoint
from lab.topology.ports import HOST
from lab.topology.services.base import DockerSite, Progress, ServiceKind
from lab.topology.supavisor_api import TENANT, register_tenant


class Supavisor(ServiceKind):
    name = "supavisor"
    family = "supavisor"

    def binary(self, svc: Service, progress: Progress = print) -> Path:
        raise MissingDependency(
            f"service {svc.name} (profile {', '.join(svc.profiles)}) has no native binary: run it with --backend docker "
            "(natively the lab's model of Supavisor stands in for it)"
        )

    def docker(self, svc: Service, site: DockerSite) -> dict[str, Endpoint]:
        transaction, session, api = site.service_ports(svc)
        server = site.topo.server
        # the server as Supavisor reaches it: by name on a bridge network, at 127.0.0.1 on the host's
        register_tenant(
            HOST,
            api,
            site.creds,
            HOST if site.host_network else server.name,
            server.container_port,
            TENANT,
            int(site.topo.settings["PGBOUNCER_TRANSACTION_POOL_SIZE"]),
        )
        image = site.image(svc.name)
        facts = self.facts(
            svc, site.base, None, router="supavisor", image=image, tenant=TENANT, tenant_router=f"Supavisor ({image})"
        )
        return {
            svc.topology: site.pg_endpoint(svc.topology, transaction, facts.with_(pool_mode="transaction")),
            f"{svc.topology}-session": site.pg_endpoint(
                f"{svc.topology}-session", session, facts.with_(pool_mode="session")
            ),
        }
