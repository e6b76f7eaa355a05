"""Registering the lab's tenant with a real Supavisor (compose profile "supavisor").

Supavisor learns its tenants through its API, not from a file: `PUT /api/tenants/<ref>`
with a JWT signed with API_JWT_SECRET (the run's JWT secret, as the compose file passes
it). The body follows Supavisor's changesets at 03e5cc56 (lib/supavisor/tenants/tenant.ex
and user.ex require db_host, db_port, db_database, require_user and, per user, db_user,
db_password, pool_size and mode_type); the controller fills default_parameter_status by
connecting to the server itself (tenant_controller.ex, `check_creds_get_ver`). The lab's
tenant and its pool size are the tenant router's, so the two are held to the same cells.
"""

from __future__ import annotations

import time

import httpx

from lab.errors import StartupError
from lab.topology.render import Credentials, api_keys

#: The project ref (tenant) the lab's topology hosts: the user name `<role>.labproject01` reaches it through Supavisor,
#: through the lab's model of Supavisor, and through the tenant router
TENANT = "labproject01"


def register_tenant(
    api_host: str,
    api_port: int,
    creds: Credentials,
    db_host: str,
    db_port: int,
    tenant: str,
    pool_size: int,
    timeout: float = 60.0,
) -> None:
    """PUT the tenant, retrying until Supavisor's API takes it (its migrations may still run). `pool_size`: the pool
    Supavisor keeps per user, the lab's transaction PgBouncers' (compose/.env), so the router and it match."""
    token = api_keys(creds)["service_role"]  # HS256, signed with the run's JWT secret: Supavisor's API_JWT_SECRET
    body = {
        "tenant": {
            "db_host": db_host,
            "db_port": db_port,
            "db_database": "postgres",
            "require_user": True,
            "users": [
                {
                    "db_user": creds.app_user,
                    "db_user_alias": creds.app_user,
                    "db_password": creds.app_password,
                    "pool_size": pool_size,
                    "mode_type": "transaction",
                }
            ],
        }
    }
    base = f"http://{api_host}:{api_port}"
    deadline, last = time.monotonic() + timeout, ""
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            try:
                r = client.put(f"{base}/api/tenants/{tenant}", json=body, headers={"Authorization": f"Bearer {token}"})
                if r.status_code in (200, 201):
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(1)
    raise StartupError(f"Supavisor did not register the tenant {tenant} within {timeout:g}s ({last})")
