"""A TCP proxy that adds a fixed one-way delay in each direction: the lab's network.

The kernel here has no netem, and loopback costs nothing, so a round trip of a
real deployment (client in one region, Supabase in another) is injected here:
every chunk read on one side is written to the other `one_way_ms` later, in
order, in both directions, so a request/response exchange costs 2 x one_way_ms.
It runs as a process of its own (python -m lab.delay_proxy) so that the client
under test cannot delay its timers, and it finishes each wait with a short
blocking sleep because the event loop's timers only have millisecond resolution.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import time

# Below this, the event loop's millisecond-rounded timeout could overshoot: sleep the rest precisely.
PRECISE_TAIL_S = 0.0015


async def _deliver_at(when: float) -> None:
    remaining = when - time.monotonic()
    if remaining > PRECISE_TAIL_S:
        await asyncio.sleep(remaining - PRECISE_TAIL_S)
        remaining = when - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            when, data = await queue.get()
            if delay_s:
                await _deliver_at(when)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((time.monotonic() + delay_s, data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def serve(listen_host: str, listen_port: int, target_host: str, target_port: int, one_way_ms: float) -> asyncio.Server:
    delay_s = one_way_ms / 1000.0

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            # the connection to the target is itself a round trip away (SYN/SYN-ACK)
            if delay_s:
                await _deliver_at(time.monotonic() + delay_s)
            server_r, server_w = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_w.close()
            return
        if delay_s:
            await _deliver_at(time.monotonic() + delay_s)
        _nodelay(client_w)
        _nodelay(server_w)
        try:
            await asyncio.gather(_pump(client_r, server_w, delay_s), _pump(server_r, client_w, delay_s))
        finally:
            for w in (client_w, server_w):
                with contextlib.suppress(Exception):
                    w.close()

    return await asyncio.start_server(handle, listen_host, listen_port, reuse_address=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:0", help="host:port to listen on")
    p.add_argument("--target", required=True, help="host:port to forward to")
    p.add_argument("--one-way-ms", type=float, required=True, help="delay added in each direction")
    args = p.parse_args(argv)
    lh, lp = args.listen.rsplit(":", 1)
    th, tp = args.target.rsplit(":", 1)

    async def run() -> None:
        server = await serve(lh, int(lp), th, int(tp), args.one_way_ms)
        port = server.sockets[0].getsockname()[1]
        print(f"listening {lh}:{port}", flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
