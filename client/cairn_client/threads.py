"""``Client.consume``: handlers in a pool of threads, one thread that keeps their leases, and
the calling thread receiving (see ``consuming.py`` for the rules both consumers follow)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import TYPE_CHECKING

from cairn_client import consuming
from cairn_client.errors import CairnError, ConnectionFailed

if TYPE_CHECKING:
    from cairn_client.client import Client
    from cairn_client.deliveries import Delivery


class ThreadConsumer(consuming.Consumer["Client", "Delivery", Callable[["Delivery"], object]]):
    _client: Client

    def _prepare(self) -> None:
        # Reentrant: stop() may run in a signal handler, on a thread that holds it already.
        self._changed = threading.Condition(threading.RLock())
        self._stopping = False
        self._finished = False
        self._running = 0

    def stop(self) -> None:
        """Ask it to stop; ``run()`` returns once it has."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def run(self) -> None:
        consuming.log_started(self._queue, self._concurrency)
        keeper = threading.Thread(target=self._keep_leases, name="cairn-leases", daemon=True)
        keeper.start()
        try:
            with (
                self._stop_on_signals(),
                ThreadPoolExecutor(self._concurrency, "cairn-handler") as pool,
            ):
                self._poll(pool)
                consuming.log_stopping(self._queue, self._running)
        finally:  # the pool has let every handler finish: no lease needs keeping any more
            with self._changed:
                self._finished = True
                self._changed.notify_all()
            keeper.join()

    def _poll(self, pool: ThreadPoolExecutor) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._stopping or self._running < self._concurrency)
                if self._stopping:
                    return
                free = self._concurrency - self._running
            try:
                deliveries = self._client.receive(self._queue, **self._batch(free))
            except Exception as error:
                self._receive_failed(error)
                with self._changed:
                    self._changed.wait_for(lambda: self._stopping, consuming.RECEIVE_PAUSE_S)
                continue
            with self._changed:
                stopping = self._stopping
                if not stopping:
                    now = time.monotonic()
                    for delivery in deliveries:
                        self._leases.add(delivery, now)
                    self._running += len(deliveries)
                    self._changed.notify_all()
            if stopping:
                for delivery in deliveries:
                    self._settle(delivery, consuming.RELEASE_REASON)
                return
            for delivery in deliveries:
                pool.submit(self._handle, delivery)

    def _handle(self, delivery: Delivery) -> None:
        try:
            reason = None
            try:
                self._handler(delivery)
            except Exception as error:
                consuming.log_handler_failed(delivery, error)
                reason = consuming.reason_of(error)
            finally:  # settled or not, its lease is no longer extended
                with self._changed:
                    self._leases.remove(delivery)
            self._settle(delivery, reason)
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    @staticmethod
    def _settle(delivery: Delivery, nack_reason: str | None) -> None:
        """Ack, or nack with a reason; unless the handler settled the message itself."""
        if delivery.settled:
            return
        try:
            if nack_reason is None:
                delivery.ack()
            else:
                delivery.nack(reason=nack_reason)
        except (CairnError, ConnectionFailed) as error:
            consuming.settle_failed(delivery, "ack" if nack_reason is None else "nack", error)

    def _keep_leases(self) -> None:
        while True:
            with self._changed:
                while not self._finished and not (due := self._leases.due(time.monotonic())):
                    self._changed.wait(self._leases.wait(time.monotonic()))
                if self._finished:
                    return
            for delivery in due:
                try:
                    delivery.extend(self._lease_s)
                except (CairnError, ConnectionFailed) as error:
                    with self._changed:
                        held = delivery in self._leases
                    consuming.extend_failed(delivery, error, held)

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM stop the consumer, when it runs in the main thread (the only
        one Python delivers signals to)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {number: signal.getsignal(number) for number in consuming.STOP_SIGNALS}

        def on_signal(number: int, frame: FrameType | None) -> None:
            consuming.restore_signals(previous)  # a second signal does what it did before
            consuming.log.info("cairn_client received %s", signal.Signals(number).name)
            self.stop()

        for number in consuming.STOP_SIGNALS:
            signal.signal(number, on_signal)
        try:
            yield
        finally:
            consuming.restore_signals(previous)
