"""The REST tier's clients: the RCA's per-call httpx code, a shared httpx client, Supabase's own client.

All three trust the run's CA the way an unmodified program would: through
SSL_CERT_FILE, pointing at certifi's bundle with the run's CA appended, so the
per-call client still pays for loading a full CA bundle on every call, as the
RCA's code does against Supabase.
"""

from __future__ import annotations

import contextvars
import os
import types
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import certifi
import httpx

from lab.clients.configuration import package_versions
from lab.topology.model import Endpoint

#: The table the REST clients write locally (compose/postgres/init.sql); on a target, the table the run created for
#: itself and drops at the end (lab.topology.backends.target)
TABLE = "lab_items"

# --- verbatim from the RCA, attempt 3 / solution 1 (docs/incident.md) ------------------
RCA_ATTEMPT_3 = """
async def save_to_supabase_rest(table: str, data: dict) -> bool:
    url = f"{SUPABASE_URL}/rest/v1/{table}"
    headers = {
        "apikey": SUPABASE_ANON_KEY,
        "Authorization": f"Bearer {SUPABASE_ANON_KEY}",
        "Content-Type": "application/json",
        "Prefer": "return=representation"
    }
    
    async with httpx.AsyncClient() as client:
        response = await client.post(url, json=data, headers=headers)
        return response.status_code == 201
"""
# ------------------------------------------------------------------------------------------


def trust_bundle(ca_file: str, directory: Path) -> Path:
    """certifi's CA bundle plus the run's CA: what SSL_CERT_FILE points at."""
    bundle = directory / "ca-bundle.pem"
    bundle.write_text(Path(certifi.where()).read_text() + "\n" + Path(ca_file).read_text())
    return bundle


@dataclass(frozen=True)
class Reply:
    ok: bool  # what the client code itself reports (the RCA's function returns status == 201)
    status: int | None
    body: Any


def _body(response: httpx.Response) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return response.text


class Observed:
    """The response the RCA's code received, seen through an httpx event hook.

    Kept per asyncio task (a context variable), so concurrent callers each see their own.
    """

    def __init__(self) -> None:
        self.last: contextvars.ContextVar[httpx.Response | None] = contextvars.ContextVar("last_response", default=None)

    def module(self) -> types.SimpleNamespace:
        """What the RCA's code sees as `httpx`: the real module, with an AsyncClient that records responses."""
        observed = self

        async def record(response: httpx.Response) -> None:
            await response.aread()
            observed.last.set(response)

        class AsyncClient(httpx.AsyncClient):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs.setdefault("event_hooks", {"response": [record]})
                super().__init__(*args, **kwargs)

        names = {k: getattr(httpx, k) for k in dir(httpx) if not k.startswith("_")}
        return types.SimpleNamespace(**{**names, "AsyncClient": AsyncClient})


class RestClient(ABC):
    name: ClassVar[str]
    packages: ClassVar[tuple[str, ...]]
    description: ClassVar[str]

    def __init__(self, endpoint: Endpoint, tls: bool, table: str = TABLE) -> None:
        self.endpoint, self.tls, self.table = endpoint, tls, table
        self.base_url = endpoint.url(tls)
        self.key = endpoint.keys["anon"]

    async def open(self) -> None:  # noqa: B027 - most REST clients have nothing to open
        pass

    @abstractmethod
    async def insert(self, row: dict[str, Any]) -> Reply:
        """POST one row, as this client does it."""

    async def close(self) -> None:  # noqa: B027 - nor anything to close
        pass

    @classmethod
    def versions(cls) -> dict[str, str]:
        return package_versions(cls.packages)


class HttpxPerCall(RestClient):
    name = "httpx-per-call"
    packages = ("httpx",)
    description = "the RCA's save_to_supabase_rest, verbatim: a new httpx.AsyncClient per call"

    async def open(self) -> None:
        self.observed = Observed()
        namespace: dict[str, Any] = {
            "SUPABASE_URL": self.base_url,
            "SUPABASE_ANON_KEY": self.key,
            "httpx": self.observed.module(),
        }
        exec(compile(RCA_ATTEMPT_3, "<the RCA: attempt 3>", "exec"), namespace)
        self.save_to_supabase_rest = namespace["save_to_supabase_rest"]

    async def insert(self, row: dict[str, Any]) -> Reply:
        ok = await self.save_to_supabase_rest(self.table, row)
        response = self.observed.last.get()
        return Reply(bool(ok), response.status_code if response else None, _body(response) if response else None)


class HttpxShared(RestClient):
    name = "httpx-shared"
    packages = ("httpx",)
    description = "the RCA's request through one long-lived httpx.AsyncClient (keep-alive)"

    async def open(self) -> None:
        self.client = httpx.AsyncClient(base_url=self.base_url)
        self.headers = {
            "apikey": self.key,
            "Authorization": f"Bearer {self.key}",
            "Content-Type": "application/json",
            "Prefer": "return=representation",
        }

    async def insert(self, row: dict[str, Any]) -> Reply:
        response = await self.client.post(f"/rest/v1/{self.table}", json=row, headers=self.headers)
        return Reply(response.status_code == 201, response.status_code, _body(response))

    async def close(self) -> None:
        await self.client.aclose()


class SupabasePy(RestClient):
    name = "supabase-py"
    packages = ("supabase", "postgrest", "httpx")
    description = "Supabase's Python client: acreate_client(url, anon_key).table(...).insert(...).execute()"

    async def open(self) -> None:
        from supabase import acreate_client

        self.client = await acreate_client(self.base_url, self.key)

    async def insert(self, row: dict[str, Any]) -> Reply:
        # postgrest-py raises APIError on an error status; it does not expose a success status
        response = await self.client.table(self.table).insert(row).execute()
        return Reply(True, None, response.data)

    async def close(self) -> None:
        session = getattr(self.client.postgrest, "session", None)
        if session is not None:
            await session.aclose()


REST_CLIENTS: dict[str, type[RestClient]] = {c.name: c for c in (HttpxPerCall, HttpxShared, SupabasePy)}


def use_trust_bundle(bundle: Path) -> None:
    os.environ["SSL_CERT_FILE"] = str(bundle)
