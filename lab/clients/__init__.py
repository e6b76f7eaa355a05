"""The client configurations under test, by name."""

from __future__ import annotations

from lab.clients.asyncpg_client import AsyncpgClient, AsyncpgNoCacheClient, AsyncpgUniqueNamesClient
from lab.clients.base import Client
from lab.clients.psycopg2_client import Psycopg2Client
from lab.clients.psycopg_client import (
    PsycopgAsyncClient,
    PsycopgAsyncNoPrepareClient,
    PsycopgAsyncPrepareFirstClient,
    PsycopgSyncClient,
    PsycopgSyncNoPrepareClient,
    PsycopgSyncPrepareFirstClient,
)
from lab.clients.rca import RcaAttempt1, RcaAttempt1AlterRole, RcaAttempt2, RcaAttempt2AlterRole
from lab.clients.sqlalchemy_client import (
    SqlalchemyAsyncpgClient,
    SqlalchemyAsyncpgNoCacheClient,
    SqlalchemyAsyncpgPgbouncerClient,
    SqlalchemyPsycopgClient,
    SqlalchemyPsycopgNoPrepareClient,
)
from lab.names import pick

#: The driver configurations: every experiment that compares drivers runs each of these.
DRIVERS: dict[str, type[Client]] = {
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
#: Configurations the matrix runs beside the drivers: the fixes the report recommends, each a cell of its own,
#: and psycopg preparing at the first execution (the setting that makes a name collision show at once).
FIXES: dict[str, type[Client]] = {
    cls.name: cls
    for cls in (
        PsycopgSyncNoPrepareClient,
        SqlalchemyPsycopgNoPrepareClient,
        SqlalchemyAsyncpgNoCacheClient,
        AsyncpgUniqueNamesClient,
        PsycopgAsyncPrepareFirstClient,
        PsycopgSyncPrepareFirstClient,
    )
}
#: Every client configuration of the matrix: the drivers, the fixes, the RCA's attempts 1 and 2 as written, and the
#: same pools with jit=off as a role setting (ALTER ROLE) instead of a startup parameter.
CLIENTS: dict[str, type[Client]] = {
    **DRIVERS,
    **FIXES,
    **{c.name: c for c in (RcaAttempt1, RcaAttempt2, RcaAttempt1AlterRole, RcaAttempt2AlterRole)},
}


def client_class(name: str) -> type[Client]:
    return pick("client", name, CLIENTS)
