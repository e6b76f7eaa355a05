"""The lab's model of Supavisor (lab.proxies.supavisor), as a service of the topology.

Supavisor itself cannot run here (the compose profile `supavisor` runs its image where it can be pulled);
the model runs as the lab's own Python process natively and from the local image under Docker, configured
as Supavisor is, by its environment: the release line it follows, Supavisor's own
NAMED_PREPARED_STATEMENTS_ENABLED switch, txn_mode_leak_action (2.10), the refusal delay. It offers a
transaction port and a session port; every row through it names the model, its release line and its
settings (facts.model), never Supavisor itself. Its pooler family is "supavisor-model", so the expectation
rules written from it never apply to a real Supavisor (a target's rows through one are recorded, not held).
"""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path

from lab.paths import ROOT
from lab.topology.compose import Service
from lab.topology.model import Endpoint, EndpointFacts
from lab.topology.ports import HOST
from lab.topology.services.base import DockerSite, NativeSite, Progress, ServiceKind, pg_probe, wait_ready
from lab.topology.supavisor_api import TENANT
from lab.topology.supavisor_releases import DEFAULT, RELEASES


class SupavisorModel(ServiceKind):
    name = "supavisor-model"
    family = "supavisor-model"
    as_owner = False  # the lab's own Python process
    python_module = "lab.proxies.supavisor"
    login_pattern = "LOG connect: user="
    log_events = re.compile(r" (?P<level>WARNING|ERROR|FATAL) (?P<message>.*)")

    def prepared_statements(self, version: str | None, settings: str | None) -> str | None:
        """With Supavisor's switch on, named statements are kept per client and prepared where needed (tracked)."""
        return "tracked" if "NAMED_PREPARED_STATEMENTS_ENABLED=true" in (settings or "") else "not tracked"

    def binary(self, svc: Service, progress: Progress = print) -> Path:
        return Path(sys.executable)

    def image_files(self, svc: Service, progress: Progress = print) -> tuple[tuple[Path, str], ...]:
        """The model's package and the few lab modules it imports, all standard library, by their paths."""
        return tuple((ROOT / name, name) for name in model_files())

    @staticmethod
    def settings_of(svc: Service) -> tuple[str, str]:
        """(release line, the settings a row names): the switch, the leak action (2.10), the refusal delay."""
        env = svc.environment
        release = env.get("SUPAVISOR_MODEL_RELEASE") or DEFAULT
        switch = (
            "true" if (env.get("NAMED_PREPARED_STATEMENTS_ENABLED") or "false").lower() in ("true", "1") else "false"
        )
        parts = [f"NAMED_PREPARED_STATEMENTS_ENABLED={switch}"]
        if RELEASES[release].has_leak_action:
            parts.append(f"txn_mode_leak_action={env.get('SUPAVISOR_MODEL_LEAK_ACTION') or 'ignore'}")
        delay = env.get("SUPAVISOR_MODEL_REFUSAL_DELAY_MS")
        parts.append(f"refusal_delay_ms={delay if delay else int(RELEASES[release].refusal_delay_s * 1000)}")
        return release, ", ".join(parts)

    def _facts(self, svc: Service, base: EndpointFacts, **more: object) -> EndpointFacts:
        release, settings = self.settings_of(svc)
        label = RELEASES[release].label
        facts = self.facts(svc, base, release, model=f"{label} ({settings})", tenant=TENANT, **more)
        return facts.with_(pooler_settings=settings, prepared_statements=self.prepared_statements(release, settings))

    def topologies(self, svc: Service) -> list[str]:
        modes = ["transaction"] if svc.labels.get("lab.session") == "off" else ["transaction", "session"]
        return [f"{svc.topology}-{mode}" for mode in modes]

    def _endpoints(
        self, svc: Service, transaction: int, session: int, facts: EndpointFacts, site_endpoint: object
    ) -> dict[str, Endpoint]:
        out = {}
        for mode, port in (("transaction", transaction), ("session", session)):
            name = f"{svc.topology}-{mode}"
            if name in self.topologies(svc):  # the switch acts in transaction mode only: one session port is enough
                out[name] = site_endpoint(name, port, facts.with_(pool_mode=mode))  # type: ignore[operator]
        return {k: replace(v, tenant=TENANT) for k, v in out.items()}

    def native(self, svc: Service, site: NativeSite) -> dict[str, Endpoint]:
        transaction, session = site.ports[svc.name], site.tls_ports[svc.name]
        server = site.topo.server
        env = {
            **{k: v for k, v in svc.environment.items() if k.startswith(("SUPAVISOR_MODEL_", "NAMED_"))},
            "SUPAVISOR_MODEL_HOST": HOST,
            "SUPAVISOR_MODEL_SERVER": f"{HOST}:{site.ports[server.name]}",
            "SUPAVISOR_MODEL_TENANT": TENANT,
            "SUPAVISOR_MODEL_SECRETS": site.creds.model_secrets(),
            "PROXY_PORT_TRANSACTION": str(transaction),
            "PROXY_PORT_SESSION": str(session),
        }
        assert self.python_module is not None
        proc = site.spawn(svc, [str(self.binary(svc)), "-m", self.python_module], self, extra_env=env)
        probe = pg_probe(transaction, f"{site.creds.app_user}.{TENANT}", site.creds.app_password)
        wait_ready(proc, probe, svc.name).close()  # type: ignore[attr-defined]
        facts = self._facts(svc, site.base)
        site.progress(f"{facts.model} ready on {HOST}:{transaction} (transaction) and {HOST}:{session} (session)")

        def endpoint(name: str, port: int, f: EndpointFacts) -> Endpoint:
            return Endpoint(
                name, HOST, port, "postgres", site.creds.app_user, site.creds.app_password, f, ca_file=site.ca_file
            )

        return self._endpoints(svc, transaction, session, facts, endpoint)

    def docker(self, svc: Service, site: DockerSite) -> dict[str, Endpoint]:
        transaction, session = site.service_ports(svc)[:2]
        facts = self._facts(svc, site.base, image=site.image(svc.name))
        return self._endpoints(svc, transaction, session, facts, site.pg_endpoint)


def model_files() -> list[str]:
    """What the model's image carries of the lab: lab.proxies.supavisor and the modules it imports."""
    fixed = [
        "lab/__init__.py",
        "lab/errors.py",
        "lab/topology/__init__.py",
        "lab/topology/ports.py",
        "lab/topology/supavisor_releases.py",
        "lab/proxies/__init__.py",
        "lab/proxies/base.py",
        "lab/proxies/pgwire.py",
        "lab/proxies/tenant.py",
    ]
    return fixed + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "lab/proxies/supavisor").glob("*.py"))
