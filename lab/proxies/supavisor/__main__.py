"""`python -m lab.proxies.supavisor`: the model as a process of the topology, configured by its environment.

The compose service (lab.kind supavisor-model) sets, as Supavisor's own deployment sets its environment:
SUPAVISOR_MODEL_RELEASE (2.8 | 2.9 | 2.10), NAMED_PREPARED_STATEMENTS_ENABLED (Supavisor's own variable:
true | false), SUPAVISOR_MODEL_LEAK_ACTION (ignore | log | error, 2.10), SUPAVISOR_MODEL_REFUSAL_DELAY_MS
(empty: the release's own), SUPAVISOR_MODEL_TENANT, SUPAVISOR_MODEL_POOL_SIZE, SUPAVISOR_MODEL_SERVER
(host:port), PROXY_PORT_TRANSACTION and PROXY_PORT_SESSION (Supavisor's names), SUPAVISOR_MODEL_HOST, and
SUPAVISOR_MODEL_SECRETS: the roles' SCRAM secrets as JSON (what the tenant's auth_query would return; never
a password), base64 of the JSON. It logs to stderr: one line per login and per refusal.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import sys

from lab.proxies.supavisor.model import LEAK_ACTIONS, Model, Settings
from lab.proxies.supavisor.scram import Secret
from lab.topology.supavisor_releases import DEFAULT, RELEASES


def settings_from(env: dict[str, str]) -> Settings:
    release = env.get("SUPAVISOR_MODEL_RELEASE") or DEFAULT
    if release not in RELEASES:
        raise SystemExit(f"SUPAVISOR_MODEL_RELEASE={release!r}: one of {', '.join(RELEASES)}")
    switch = (env.get("NAMED_PREPARED_STATEMENTS_ENABLED") or "false").lower()
    if switch not in ("true", "1", "false", "0"):  # helpers.ex get_env_bool: anything else refuses to boot
        raise SystemExit(f"NAMED_PREPARED_STATEMENTS_ENABLED={switch!r}: true, 1, false or 0")
    leak = env.get("SUPAVISOR_MODEL_LEAK_ACTION") or "ignore"
    if leak not in LEAK_ACTIONS:
        raise SystemExit(f"SUPAVISOR_MODEL_LEAK_ACTION={leak!r}: one of {', '.join(LEAK_ACTIONS)}")
    delay = env.get("SUPAVISOR_MODEL_REFUSAL_DELAY_MS")
    host, _, port = (env.get("SUPAVISOR_MODEL_SERVER") or "127.0.0.1:5432").rpartition(":")
    return Settings(
        release=RELEASES[release],
        tenant=env.get("SUPAVISOR_MODEL_TENANT") or "lab",
        server=(host, int(port)),
        secrets={
            role: Secret.parse(text)
            for role, text in json.loads(base64.b64decode(env["SUPAVISOR_MODEL_SECRETS"])).items()
        },
        named_prepared_statements=switch in ("true", "1"),
        leak_action=leak,
        refusal_delay_s=float(delay) / 1000 if delay else None,
        pool_size=int(env.get("SUPAVISOR_MODEL_POOL_SIZE") or 2),
        session_pool_size=int(env.get("SUPAVISOR_MODEL_SESSION_POOL_SIZE") or 5),
    )


async def main() -> None:
    env = dict(os.environ)
    settings = settings_from(env)
    model = Model(settings)
    host = env.get("SUPAVISOR_MODEL_HOST") or "127.0.0.1"
    host = "0.0.0.0" if host == "*" else host
    servers = await model.serve(host, int(env["PROXY_PORT_TRANSACTION"]), int(env["PROXY_PORT_SESSION"]))
    logging.getLogger("supavisor-model").info(
        "LOG listening on %s:%s (transaction) and :%s (session): %s",
        host,
        env["PROXY_PORT_TRANSACTION"],
        env["PROXY_PORT_SESSION"],
        settings.describe(),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    asyncio.run(main())
