"""A TCP proxy that adds a fixed one-way delay in each direction: the lab's network.

The kernel here has no netem, and loopback costs nothing, so a round trip of a
real deployment (client in one region, Supabase in another) is injected here:
every chunk read on one side is written to the other `one_way_ms` later, in
order, in both directions, so a request/response exchange costs 2 x one_way_ms,
and a new connection one more round trip, as a TCP handshake would.

It runs as a process of its own (python -m lab.proxies.delay), so the client under
test cannot delay its timers, and with blocking threads rather than an event loop:
a reader and a writer per direction, the writer sleeping until each chunk's due
time with a final short sleep for sub-millisecond precision (an event loop's timers
round to milliseconds and would add most of a millisecond per hop).
"""

from __future__ import annotations

import argparse
import queue
import signal
import socket
import sys
import threading
import time

# Sleep in one go only when this close to the due time: the last sleep is the precise one.
PRECISE_TAIL_S = 0.001


def sleep_until(when: float) -> None:
    while (remaining := when - time.monotonic()) > 0:
        time.sleep(remaining if remaining <= 2 * PRECISE_TAIL_S else remaining - PRECISE_TAIL_S)


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _pump(src: socket.socket, dst: socket.socket, delay_s: float) -> None:
    """Read src until EOF; each chunk is written to dst delay_s after it was read, in order."""
    chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def writer() -> None:
        while True:
            due, data = chunks.get()
            sleep_until(due)
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            data = b""
        chunks.put((time.monotonic() + delay_s, data))
        if not data:
            break
    thread.join()


def _connection(client: socket.socket, target: tuple[str, int], delay_s: float) -> None:
    try:
        # the upstream connection is itself a round trip away (SYN, SYN-ACK)
        sleep_until(time.monotonic() + delay_s)
        upstream = socket.create_connection(target)
        sleep_until(time.monotonic() + delay_s)
    except OSError:
        client.close()
        return
    _nodelay(client)
    _nodelay(upstream)
    back = threading.Thread(target=_pump, args=(upstream, client, delay_s), daemon=True)
    back.start()
    _pump(client, upstream, delay_s)
    back.join()
    for s in (client, upstream):
        try:
            s.close()
        except OSError:
            pass


def serve(listen: tuple[str, int], target: tuple[str, int], one_way_ms: float) -> socket.socket:
    """Listen and proxy in background threads; returns the listening socket."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(listen)
    server.listen(128)
    delay_s = one_way_ms / 1000.0

    def accept() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=_connection, args=(client, target, delay_s), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:0", help="host:port to listen on")
    p.add_argument("--target", required=True, help="host:port to forward to")
    p.add_argument("--one-way-ms", type=float, required=True, help="delay added in each direction")
    args = p.parse_args(argv)
    lh, lp = args.listen.rsplit(":", 1)
    th, tp = args.target.rsplit(":", 1)
    server = serve((lh, int(lp)), (th, int(tp)), args.one_way_ms)
    print(f"listening {lh}:{server.getsockname()[1]}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
