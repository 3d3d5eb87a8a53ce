"""A consumer in a process of its own, for the signal tests:
``python consumer_script.py URL QUEUE sync|async SECONDS``. Each handler takes SECONDS and
says when it starts and finishes; the process says when ``consume`` has returned."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

from cairn_client import AsyncClient, AsyncDelivery, Client, Delivery

_saying = threading.Lock()


def say(what: str, message_id: str) -> None:
    with _saying:  # handlers run in threads: one whole line at a time
        print(what, message_id, flush=True)


def run_sync(url: str, queue: str, seconds: float) -> None:
    def handler(delivery: Delivery) -> None:
        say("started", delivery.id)
        time.sleep(seconds)
        say("finished", delivery.id)

    with Client(url) as client:
        client.consume(queue, handler, concurrency=2, wait_s=1)


async def run_async(url: str, queue: str, seconds: float) -> None:
    async def handler(delivery: AsyncDelivery) -> None:
        say("started", delivery.id)
        await asyncio.sleep(seconds)
        say("finished", delivery.id)

    async with AsyncClient(url) as client:
        await client.consume(queue, handler, concurrency=2, wait_s=1)


if __name__ == "__main__":
    url, queue, mode, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    if mode == "sync":
        run_sync(url, queue, seconds)
    else:
        asyncio.run(run_async(url, queue, seconds))
    say("stopped", queue)
