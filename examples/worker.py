"""A worker: handles the messages of a queue, four at a time, until Ctrl-C or SIGTERM.

    CAIRN_URL=http://127.0.0.1:8080 python examples/worker.py [QUEUE]

Each message is acked when ``handle`` returns and nacked, with the exception as its reason,
when it raises; after five failed attempts the broker moves it to ``<QUEUE>-dlq``. While
``handle`` runs, its lease is extended, so a slow order is never handled twice. On SIGTERM
the worker stops receiving, lets the orders in hand finish, and exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

from cairn_client import Client, Conflict, Delivery, Forbidden

log = logging.getLogger("worker")
URL = os.environ.get("CAIRN_URL", "http://127.0.0.1:8080")
TOKEN = os.environ.get("CAIRN_TOKEN")  # a token with consume:<queue>, when auth is on


def handle(message: Delivery) -> None:
    order = message.body
    if not isinstance(order, dict) or "order" not in order:
        raise ValueError(f"not an order: {order!r}")  # nacked; dead-lettered after 5 tries
    log.info("handled order %s (attempt %d)", order["order"], message.receive_count)


def main() -> None:
    # Handlers run in threads: logging writes whole lines (print may interleave them).
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    queue = sys.argv[1] if len(sys.argv) > 1 else "orders"
    dead_letters = f"{queue}-dlq"
    with Client(URL, token=TOKEN) as client:
        # Conflict: it exists already. Forbidden: this token may only consume (then the queue
        # is someone else's to create).
        with contextlib.suppress(Conflict, Forbidden):
            client.create_queue(dead_letters)
        with contextlib.suppress(Conflict, Forbidden):
            client.create_queue(queue, max_receive_count=5, dead_letter_queue=dead_letters)
        client.consume(queue, handle, concurrency=4)
    log.info("worker stopped")


if __name__ == "__main__":
    main()
