"""PostgREST: the REST tier Supabase runs behind its gateway.

No PostgREST binary can be installed from the registries the native backend uses, so natively
the lab runs its stand-in (lab.proxies.postgrest) with the compose service's own PGRST_*
environment, placed on this machine; under Docker it is whatever image the run uses (the
official one, or the local image of the same stand-in). Its endpoint is the gateway's
(lab.topology.services.nginx), which names the REST server in every row.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from lab.paths import ROOT
from lab.topology.compose import Service
from lab.topology.model import Endpoint
from lab.topology.ports import HOST
from lab.topology.services.base import NativeSite, Progress, ServiceKind, http_probe, wait_ready


class PostgREST(ServiceKind):
    name = "postgrest"
    as_owner = False  # the lab's own Python process: it needs no other user
    python_module = "lab.proxies.postgrest"

    def binary(self, svc: Service, progress: Progress = print) -> Path:
        return Path(sys.executable)

    def image_files(self, svc: Service, progress: Progress = print) -> tuple[tuple[Path, str], ...]:
        """The stand-in itself (compose/images/postgrest-standin runs it)."""
        return ((ROOT / "lab" / "proxies" / "postgrest.py", "standin.py"),)

    def native(self, svc: Service, site: NativeSite) -> dict[str, Endpoint]:
        env = {k: v for k, v in svc.environment.items() if k.startswith("PGRST_")}
        uri = urlsplit(env["PGRST_DB_URI"])
        netloc = uri.netloc.rsplit("@", 1)[0] + f"@{HOST}:{site.ports[site.topo.server.name]}"
        env.update(
            PGRST_DB_URI=urlunsplit(uri._replace(netloc=netloc)),
            PGRST_SERVER_HOST=HOST,
            PGRST_SERVER_PORT=str(site.ports[svc.name]),
        )
        assert self.python_module is not None
        proc = site.spawn(svc, [str(self.binary(svc)), "-m", self.python_module], self, extra_env=env)
        wait_ready(proc, http_probe(f"http://{HOST}:{site.ports[svc.name]}/"), f"{svc.name} stand-in")
        return {}  # reached through the gateway
