"""Run a media worker process (MEDIA_MODE=workers); start one per core."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from django.core.management.base import BaseCommand

from media_relay.registry import LOOP_STALL_SECONDS

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run a media relay worker that takes publish/play work through the channel layer."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--worker-id", default=None, help="A stable id for this worker (default: pid-random).")
        parser.add_argument(
            "--loop-stall-seconds",
            type=float,
            default=LOOP_STALL_SECONDS,
            help="Let this worker be reaped when its event loop has not turned for this long (a wedged loop; a busy "
            f"one turns and stays alive). Default {LOOP_STALL_SECONDS:.0f}; media_relay/liveness.py.",
        )
        parser.add_argument(
            "--test-block-loop",
            default="",
            metavar="SECONDS[,SECONDS...]",
            help="Tests only: on SIGUSR1, block the event loop (busy, holding the GIL) for each duration in turn, "
            "yielding briefly between them: a saturated or wedged loop on demand (tests/test_media_workers.py).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        import uvloop

        # The worker's own lines (start, channel, failed commands) at INFO even under LOG_LEVEL=WARNING: they go to
        # the console handler, which supervisord captures (deploy/supervisord.conf, runmedia-N.log).
        relay = logging.getLogger("media_relay")
        if relay.getEffectiveLevel() > logging.INFO:
            relay.setLevel(logging.INFO)
        # And aioice's "Consent to send expired": the worker's own ICE consent checks (RFC 7675; aioice allows 0.5 s per
        # check, 6 misses in a row) dropped a peer that stopped answering, which then ends as "the peer closed its
        # connection".  Its other INFO lines (one per state change and peer connection) are left out.
        ice = logging.getLogger("aioice.ice")
        if ice.getEffectiveLevel() > logging.INFO:
            ice.setLevel(logging.INFO)
            ice.addFilter(lambda record: record.levelno >= logging.WARNING or "Consent" in str(record.msg))

        from media_relay.metrics_publisher import publish_forever
        from media_relay.worker import MediaWorker

        blocks = [float(s) for s in options["test_block_loop"].split(",") if s.strip()]

        async def main() -> None:
            worker = MediaWorker(options["worker_id"], loop_stall_seconds=options["loop_stall_seconds"])
            await worker.start()
            logger.info("media worker %s listening on %s", worker.worker_id, worker.channel)
            task = asyncio.ensure_future(worker.run())
            # Its counters into Redis for daphne's /metrics (media_relay/metrics_publisher.py).
            publisher = asyncio.ensure_future(publish_forever(worker.worker_id))
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, task.cancel)
            if blocks:
                loop.add_signal_handler(signal.SIGUSR1, lambda: asyncio.ensure_future(_block_loop(blocks)))
            try:
                await task
            except asyncio.CancelledError:
                pass
            finally:
                publisher.cancel()
                await asyncio.gather(publisher, return_exceptions=True)

        uvloop.run(main())


async def _block_loop(blocks: list[float]) -> None:
    """Tests only (--test-block-loop): hog the event loop, as a flood of media work would."""
    for seconds in blocks:
        logger.warning("test: blocking the event loop for %.1f s", seconds)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        await asyncio.sleep(0.2)
    logger.warning("test: event loop unblocked")
