"""Wake-ups between the processes of one machine that share a SQLite store: SQLite's own
answer to PostgreSQL's LISTEN/NOTIFY, so that no process polls the log in a tight loop.

Every process that wants to hear about commits binds a Unix datagram socket in Linux's
abstract namespace, named after the store (``@cairn-<digest of its path>-<pid>-<n>``): nothing
on disk, and the kernel frees the name the moment the process dies, even by kill -9. A process
that commits sends one datagram per batch (``"<head> <queue> ..."``, as PostgreSQL's payload) to
every such socket, which it finds in ``/proc/net/unix`` (looked up again at most once a
second, and when a send finds a peer gone). Sending is non-blocking and best-effort: a peer
whose buffer is full misses a wake-up, and its slow fallback poll (``api/runtime.py``) catches
it up, so a datagram can only ever make a process look sooner, never make it miss an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import socket
import time
from collections.abc import Callable
from typing import Final

_RESCAN_S: Final = 1.0
_MAX_DATAGRAM: Final = 4096
_PROC: Final = "/proc/net/unix"
_counter = itertools.count()


def _prefix(store_path: str) -> str:
    digest = hashlib.sha256(os.path.realpath(store_path).encode()).hexdigest()[:16]
    return f"cairn-{digest}-"


class Datagrams:
    """The wake-up channel of one store, for one process: ``send`` to every other listener,
    ``listen`` to hear them."""

    def __init__(self, store_path: str) -> None:
        self._prefix = _prefix(store_path)
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._peers: list[bytes] = []
        self._scanned = 0.0
        self._receiver: socket.socket | None = None
        self._name = f"{self._prefix}{os.getpid()}-{next(_counter)}"

    def close(self) -> None:
        if self._receiver is not None:
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().remove_reader(self._receiver.fileno())
            self._receiver.close()
            self._receiver = None
        self._sender.close()

    def listen(self, handle: Callable[[str], None]) -> None:
        """Call ``handle(payload)`` on this loop for every datagram sent to this store."""
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.setblocking(False)
        receiver.bind("\0" + self._name)
        self._receiver = receiver

        def readable() -> None:
            while True:
                try:
                    data = receiver.recv(_MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                handle(data.decode("utf-8", "replace"))

        asyncio.get_running_loop().add_reader(receiver.fileno(), readable)

    def send(self, payload: str) -> None:
        data = payload.encode()[:_MAX_DATAGRAM]
        now = time.monotonic()
        if now - self._scanned > _RESCAN_S:
            self._scan(now)
        gone = False
        for peer in self._peers:
            try:
                self._sender.sendto(data, peer)
            except (BlockingIOError, InterruptedError):
                continue  # its buffer is full: its fallback poll will notice
            except OSError:
                gone = True  # it has exited (or is exiting): look again next time
        if gone:
            self._scanned = 0.0

    def _scan(self, now: float) -> None:
        self._scanned = now
        own = "@" + self._name
        try:
            with open(_PROC) as table:
                names = [line.rsplit(None, 1)[-1] for line in table if f"@{self._prefix}" in line]
        except OSError:
            names = []
        self._peers = [b"\0" + name[1:].encode() for name in names if name != own]
