"""A TCP proxy running its own event loop in a thread, for the lab's in-process proxies.

The experiments drive clients with asyncio.run; a proxy on the same loop would stop
whenever a cell's loop ends, so the tracer and the tenant router keep one of their own.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod

from lab.topology.ports import HOST


class ThreadedProxy(ABC):
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=type(self).__name__, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    def __enter__(self) -> ThreadedProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._handle, HOST, 0), self._loop).result(
            10
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @abstractmethod
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None: ...

    @staticmethod
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, observe=None) -> None:
        """Copy one direction until EOF; `observe(data)` sees every chunk first."""
        try:
            while data := await reader.read(65536):
                if observe is not None:
                    observe(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass
