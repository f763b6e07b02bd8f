"""Run a local cluster: N daphne processes behind one port, plus W media workers.

    REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=postgres://root@127.0.0.1/test \
        python scripts/run_cluster.py --daphne 2 --workers 2 --port 8000

Every process shares Redis (channel layer, media registry) and the database.
A small round-robin TCP balancer listens on --port and spreads connections
(HTTP and WebSocket alike) over the daphne processes on --port+1..--port+N.
Stop with Ctrl-C: every child is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("cluster")
# As in the Makefile: let WebSocket frames up to 2 MiB reach the server's own size check.
DAPHNE_WS_LIMITS = ["--websocket-max-message-size", "2097152", "--websocket-max-frame-size", "2097152"]


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes one way until EOF."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def balance(host: str, port: int, backends: list[int]) -> None:
    """Accept on host:port and splice each connection to the next backend."""
    ring = itertools.cycle(backends)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in backends:
            backend = next(ring)
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend)
                break
            except OSError:
                continue
        else:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, host, port)
    logger.info("balancing %s:%d over daphne ports %s", host, port, backends)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--daphne", type=int, default=2)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not os.environ.get("REDIS_URL"):
        sys.exit("run_cluster needs REDIS_URL (and preferably DATABASE_URL for PostgreSQL)")
    env = dict(os.environ, MEDIA_MODE="workers", DJANGO_SETTINGS_MODULE="conference.settings")
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True)
    children = []
    ports = [args.port + 1 + i for i in range(args.daphne)]
    for port in ports:
        children.append(
            subprocess.Popen(
                [
                    python,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    *DAPHNE_WS_LIMITS,
                    "conference.asgi:application",
                ],
                cwd=ROOT,
                env=env,
            )
        )
    for index in range(args.workers):
        children.append(
            subprocess.Popen(
                [python, "manage.py", "runmedia", "--worker-id", f"worker-{index + 1}"],
                cwd=ROOT,
                env=env,
            )
        )
    try:
        asyncio.run(balance(args.host, args.port, ports))
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    main()
