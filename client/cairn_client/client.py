"""``Client``: the blocking client. Its operations are ``Api``'s; what is its own is how they
run (``SyncDriver``), consuming with threads, and closing."""

from __future__ import annotations

from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import httpx
import msgspec

from cairn_client.api import Api
from cairn_client.deliveries import Deliveries, Delivery
from cairn_client.drivers import SyncDriver
from cairn_client.runners import SyncRunner
from cairn_client.steps import Program, Stream
from cairn_client.threads import ThreadConsumer

T = TypeVar("T")

KEEPALIVE_S: Final = 3.0
"""Idle connections are dropped before the server's keep-alive timeout (5 s by default) can
close them under a request: a receive sent on a connection the server just closed could not
be retried."""


def limits() -> httpx.Limits:
    return httpx.Limits(
        max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_S
    )


class Client(Api, SyncRunner):
    """A blocking client for a Cairn broker at ``url``; safe to share between threads.

    ``token``: a bearer token, or a callable that returns a fresh one for each request.
    ``retries``: how many times a request is sent again after a connection error, a 503 or a
    429 (commands carry an idempotency key, so a retry never does anything twice).
    ``timeout``: seconds to connect, send, and wait for an answer (a long poll adds its
    ``wait_s``)."""

    _receive_answer = msgspec.json.Decoder(Deliveries[Delivery])

    def _open(self) -> None:
        self._driver = SyncDriver(httpx.Client(limits=limits()))
        self._consumers: set[ThreadConsumer] = set()

    def _run(self, program: Program[T]) -> T:
        return self._driver.run(program)

    def _iterate(self, program: Stream[T]) -> Generator[T, None, None]:
        return self._driver.iterate(program)

    def consume(
        self,
        queue: str,
        handler: Callable[[Delivery], Any],
        concurrency: int = 4,
        *,
        visibility_timeout_s: int = 30,
        wait_s: float = 5.0,
    ) -> None:
        """Receive from ``queue`` and call ``handler(delivery)`` in up to ``concurrency``
        threads, until ``stop()`` or SIGINT/SIGTERM (in the main thread). A message is acked
        when its handler returns and nacked with the exception as reason when it raises,
        unless the handler settled it itself; its lease (``visibility_timeout_s``) is
        extended while the handler runs. Long polls wait up to ``wait_s``, which bounds how
        long stopping waits for a receive in flight."""
        consumer = ThreadConsumer(self, queue, handler, concurrency, visibility_timeout_s, wait_s)
        self._consumers.add(consumer)
        try:
            consumer.run()
        finally:
            self._consumers.discard(consumer)

    def stop(self) -> None:
        """Stop every ``consume`` of this client: no new receive; running handlers finish.
        Returns at once; each ``consume`` returns once it has stopped."""
        for consumer in list(self._consumers):
            consumer.stop()

    def close(self) -> None:
        self._driver.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
