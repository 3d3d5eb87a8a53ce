"""A TCP proxy that speaks just enough Kafka to lose one answer on purpose: it reads the API key
of each request a client sends, and, when armed, closes the client's connection instead of
passing on the first Produce answer. The client has sent its batch and never hears back, so it
retries it on a new connection: a real retry, made by the real client."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Final

from tests.kafka.conftest import read_exactly

PRODUCE: Final = 0


class DroppingProxy:
    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._armed = threading.Event()
        self.dropped = threading.Event()
        self._sockets: list[socket.socket] = []
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_next_produce_answer(self) -> None:
        self.dropped.clear()
        self._armed.set()

    def close(self) -> None:
        self._closing = True
        self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._target)
            except OSError:  # the broker is gone (stopped after a test module)
                client.close()
                continue
            self._sockets += [client, server]
            kinds: dict[int, int] = {}  # correlation id -> API key, of requests in flight
            threading.Thread(
                target=self._pump, args=(client, server, kinds, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, kinds, False), daemon=True
            ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, kinds: dict[int, int], requests: bool
    ) -> None:
        try:
            while True:
                head = read_exactly(source, 4)
                frame = read_exactly(source, struct.unpack(">i", head)[0])
                if requests:
                    key, _, correlation = struct.unpack_from(">hhi", frame)
                    kinds[correlation] = key
                else:
                    correlation = struct.unpack_from(">i", frame)[0]
                    if kinds.pop(correlation, None) == PRODUCE and self._armed.is_set():
                        self._armed.clear()
                        self.dropped.set()
                        raise ConnectionError("answer dropped")
                sink.sendall(head + frame)
        except (OSError, ConnectionError, struct.error):
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
