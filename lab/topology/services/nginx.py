"""nginx: Supabase's gateway in front of the REST tier (/rest/v1/ over http and https).

Natively Debian's nginx with the rendered nginx.conf (`daemon off;`, its pid and temp files in
the service's state directory). The gateway's endpoint is the REST tier's: it carries the REST
server's facts (PostgREST, or the lab's stand-in, named as such) and the run's API keys.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from lab.topology.compose import Service
from lab.topology.model import Endpoint, EndpointFacts
from lab.topology.ports import HOST
from lab.topology.render import api_keys
from lab.topology.services.base import (
    DockerSite,
    NativeSite,
    Progress,
    ServiceKind,
    binary_version,
    debian_binary,
    http_probe,
    wait_ready,
)


class Nginx(ServiceKind):
    name = "nginx"

    def binary(self, svc: Service, progress: Progress = print) -> Path:
        return debian_binary("nginx", "nginx")

    def native(self, svc: Service, site: NativeSite) -> dict[str, Endpoint]:
        nginx = self.binary(svc)
        argv = [str(nginx), "-e", "stderr", "-p", str(site.state_dir(svc)), "-c", str(site.config(svc, "nginx.conf"))]
        proc = site.spawn(svc, argv, self)
        keys = api_keys(site.creds)
        port, tls_port = site.ports[svc.name], site.tls_ports[svc.name]
        wait_ready(proc, http_probe(f"http://{HOST}:{port}/rest/v1/", {"apikey": keys["anon"]}), svc.name)
        rest = _upstream(site.topo.with_role("rest"))
        facts = self.facts(
            svc,
            site.base,
            None,
            gateway=f"nginx {binary_version(nginx, '-v')}",
            **rest_server_facts(rest, keys["anon"], port),
        )
        site.progress(
            f"{facts.gateway} -> {facts.rest_server} ready on http://{HOST}:{port} and https://{HOST}:{tls_port}"
        )
        return {svc.topology: _rest_endpoint(svc, port, tls_port, keys, site.ca_file, facts)}

    def docker(self, svc: Service, site: DockerSite) -> dict[str, Endpoint]:
        port, *more = site.service_ports(svc)
        keys = api_keys(site.creds)
        rest = _upstream(site.topo.with_role("rest"))
        facts = self.facts(
            svc,
            site.base,
            None,
            gateway=f"nginx ({site.image(svc.name)})",
            rest_image=site.image(rest.name) if rest else None,
            **rest_server_facts(rest, keys["anon"], port),
        )
        return {svc.topology: _rest_endpoint(svc, port, more[0] if more else None, keys, site.ca_file, facts)}


#: how the lab's stand-in for PostgREST marks its root document
STAND_IN_MARK = "x-pooler-lab-stand-in-for"


def _upstream(rest: list[Service]) -> Service | None:
    return rest[0] if rest else None


def _rest_endpoint(
    svc: Service, port: int, tls_port: int | None, keys: dict[str, str], ca_file: str, facts: EndpointFacts
) -> Endpoint:
    return Endpoint(
        topology=svc.topology,
        host=HOST,
        port=port,
        tls_port=tls_port,
        database="postgres",
        user="",
        password="",
        keys=keys,
        ca_file=ca_file,
        facts=facts.with_(path="/rest/v1/"),
    )


def rest_server_facts(rest: Service | None, key: str, gateway_port: int) -> dict[str, object]:
    """What answers behind the gateway, asked through it: PostgREST and its version, or the lab's stand-in (which
    names itself in its root document), so a row says which REST server produced it."""
    request = urllib.request.Request(
        f"http://{HOST}:{gateway_port}/rest/v1/", headers={"apikey": key, "Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        info = json.loads(resp.read() or b"{}").get("info") or {}
    if info.get(STAND_IN_MARK):  # the lab's own stand-in says so in its root document (lab.proxies.postgrest)
        return {
            "rest_server": str(info.get("description") or info.get("title")),
            "stand_in": True,
            "stand_in_for": rest.topology if rest else "postgrest",
        }
    return {"rest_server": f"PostgREST {info['version']}" if info.get("version") else "PostgREST", "stand_in": False}
