"""The client configurations under test, by name."""

from __future__ import annotations

from lab.clients.asyncpg_client import AsyncpgClient, AsyncpgNoCacheClient
from lab.clients.base import Client
from lab.clients.psycopg2_client import Psycopg2Client
from lab.clients.psycopg_client import PsycopgAsyncClient, PsycopgAsyncNoPrepareClient, PsycopgSyncClient
from lab.clients.sqlalchemy_client import (
    SqlalchemyAsyncpgClient,
    SqlalchemyAsyncpgPgbouncerClient,
    SqlalchemyPsycopgClient,
)
from lab.names import pick

CLIENTS: dict[str, type[Client]] = {
    cls.name: cls
    for cls in (
        AsyncpgClient,
        AsyncpgNoCacheClient,
        PsycopgAsyncClient,
        PsycopgAsyncNoPrepareClient,
        PsycopgSyncClient,
        Psycopg2Client,
        SqlalchemyAsyncpgClient,
        SqlalchemyAsyncpgPgbouncerClient,
        SqlalchemyPsycopgClient,
    )
}


def client_class(name: str) -> type[Client]:
    return pick("client", name, CLIENTS)
