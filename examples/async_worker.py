"""The worker of ``worker.py`` on asyncio: handlers are tasks, up to 16 at once.

    CAIRN_URL=http://127.0.0.1:8080 python examples/async_worker.py [QUEUE]

Ctrl-C or SIGTERM stops it cleanly: no new receive, the handlers in flight finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys

from cairn_client import AsyncClient, AsyncDelivery, Conflict

log = logging.getLogger("worker")
URL = os.environ.get("CAIRN_URL", "http://127.0.0.1:8080")
TOKEN = os.environ.get("CAIRN_TOKEN")


async def handle(message: AsyncDelivery) -> None:
    await asyncio.sleep(0.1)  # stands for the real work: a call to another service, say
    log.info("handled %r (attempt %d)", message.body, message.receive_count)


async def main() -> None:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    queue = sys.argv[1] if len(sys.argv) > 1 else "orders"
    async with AsyncClient(URL, token=TOKEN) as client:
        with contextlib.suppress(Conflict):  # it exists already
            await client.create_queue(queue)
        await client.consume(queue, handle, concurrency=16)
    log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
