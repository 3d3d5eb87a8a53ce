"""A TCP proxy in front of a real server, for the faults a client must survive: it can drop
the answer to a request after the server has sent it (so the server did the work and the
client never hears of it), and cut every open connection (a feed's, say) at once."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from types import TracebackType
from typing import Self


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self._upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._drop: re.Pattern[bytes] | None = None
        self._drops_left = 0
        self._open: set[socket.socket] = set()
        self.requests: list[bytes] = []
        """The request line of every request that went through, in order."""
        self.dropped: list[bytes] = []
        """The request lines whose answers were dropped."""
        self._threads: list[threading.Thread] = []
        self._closing = False

    def drop_answers(self, request_line: str, count: int = 1) -> None:
        """Drop the answers to the next ``count`` requests whose request line matches the
        regular expression ``request_line`` (``POST /v1/queues/q/messages``)."""
        with self._lock:
            self._drop = re.compile(request_line.encode())
            self._drops_left = count

    def sever(self) -> None:
        """Cut every open connection, both ways, as a network failure would."""
        with self._lock:
            doomed = list(self._open)
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Self:
        self._spawn(self._accept)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress
        self._listener.close()
        self.sever()
        for thread in self._threads:
            thread.join(10)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream)
            except OSError:
                downstream.close()  # the server is down: so is the connection
                continue
            with self._lock:
                self._open.update((downstream, upstream))
            pending: list[bytes] = []  # request lines sent on this connection, not answered yet
            self._spawn(self._requests, downstream, upstream, pending)
            self._spawn(self._answers, upstream, downstream, pending)

    def _requests(self, source: socket.socket, sink: socket.socket, pending: list[bytes]) -> None:
        while chunk := _receive(source):
            for line in re.findall(rb"(?:GET|POST|PATCH|DELETE|PUT) [^ ]+ HTTP/1\.1\r\n", chunk):
                line = line.removesuffix(b" HTTP/1.1\r\n")
                with self._lock:
                    self.requests.append(line)
                    pending.append(line)
            if not _send(sink, chunk):
                break
        self._close(source, sink)

    def _answers(self, source: socket.socket, sink: socket.socket, pending: list[bytes]) -> None:
        while chunk := _receive(source):
            with self._lock:
                answering = pending.pop(0) if chunk.startswith(b"HTTP/1.1 ") and pending else b""
                drop = (
                    self._drop is not None
                    and self._drops_left > 0
                    and self._drop.search(answering) is not None
                )
                if drop:
                    self._drops_left -= 1
                    self.dropped.append(answering)
            if drop or not _send(sink, chunk):
                break
        self._close(source, sink)

    def _close(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with self._lock:
                self._open.discard(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _receive(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True
