"""A TCP proxy that adds network latency between the application and PostgreSQL.

Listens on 127.0.0.1 (a free port unless ``--port``), forwards every
connection to PostgreSQL's unix socket, and holds every chunk of bytes for
``--delay-ms`` in each direction before passing it on: a round trip costs
twice that on top of the socket's own. Chunks keep their order and are held
from the moment they arrived, so a burst is delayed once, not once per chunk.

The event loop waits with ``select()``, whose timeout has microsecond
resolution (``epoll`` rounds every wait up to a whole millisecond, which would
double a 0.5 ms delay). Prints ``port <number>`` once it listens; runs until
SIGTERM or SIGINT.

    .venv/bin/python -m bench.latency_proxy --socket /tmp/x/.s.PGSQL.5432 --delay-ms 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import selectors
import signal
import sys
import time

#: Bytes read from a socket at once.
CHUNK = 65536


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived."""
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def receive() -> None:
        while data := await reader.read(CHUNK):
            held.put_nowait((time.monotonic() + delay, data))
        held.put_nowait((0.0, b""))

    receiving = asyncio.ensure_future(receive())
    try:
        while True:
            due, data = await held.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        receiving.cancel()
        writer.close()


async def _serve(socket_path: str, host: str, port: int, delay: float) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter):
        try:
            server_reader, server_writer = await asyncio.open_unix_connection(socket_path)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            _pump(client_reader, server_writer, delay),
            _pump(server_reader, client_writer, delay),
            return_exceptions=True,
        )

    server = await asyncio.start_server(handle, host, port)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    stopping = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set_result, None)
    async with server:
        await stopping


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="PostgreSQL's unix socket (.s.PGSQL.N)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--delay-ms", type=float, default=0.5, help="added latency each way")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(_serve(args.socket, "127.0.0.1", args.port, args.delay_ms / 1000))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
