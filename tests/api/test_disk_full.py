"""A full disk under a running broker: it refuses safely (503), loses and corrupts nothing, and
serves again once space is freed, without a restart.

The store (``cairn.db`` and ``cairn.views.db``, with their WAL files) lives on a small tmpfs
mounted for the test; the log files stay outside it. Most of the disk is taken by a filler
file, the rest by large messages that concurrent publishers send until the store refuses, and
the last pages by a second file. The disk then stays full for a few seconds of commands (while
leases taken before expire, so the sweeper has work it cannot record), and the files are
deleted. Every expectation is collected under the check of the scenario it belongs to, so one
run reports everything that fails:

1. every command answered 2xx before, during and after the full period is stored exactly once
   (and no publish that was refused is stored);
2. while the disk is full, commands that need space answer ``503`` problem+json saying why,
   each within 10 s, and the process stays up (``/healthz`` 200);
3. no store file is corrupted (``PRAGMA integrity_check``) and positions are contiguous 1..head;
4. once space is freed, the same process publishes, delivers, and its read models catch up.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sqlite3
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, make_server

DISK_BYTES = 24 * 1024 * 1024
LEFT_FOR_MESSAGES = 6 * 1024 * 1024  # what the filler leaves for the store to fill
BIG_BODY = 200 * 1024  # under the 256 KiB body limit
BATCH = 4  # 4 x 200 KiB stays under the 1 MiB request limit
PUBLISHERS = 6
FULL_FOR_S = 3.0
ANSWER_WITHIN_S = 10.0
SAYS_WHY = re.compile(r"full|space|unavailable", re.IGNORECASE)
QUEUE, IDLE = "disk", "idle"

CHECKS = {
    1: "every 2xx command stored exactly once",
    2: "503 problem+json within 10 s while full, process up",
    3: "no corruption, contiguous positions",
    4: "the same process serves again once space is freed",
}


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_BYTES, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def free_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def take(path: Path, leave: int = 0) -> None:
    """Create ``path`` taking all the space left on its file system but ``leave`` bytes:
    fallocate, then (with nothing to leave) write page by page until ENOSPC."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        with contextlib.suppress(OSError):
            os.posix_fallocate(fd, 0, max(free_bytes(path.parent) - leave, 1))
        if leave:
            return
        for chunk in (1 << 16, 1 << 12, 1):
            while True:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)


def big(tag: str) -> str:
    return tag + "." * (BIG_BODY - len(tag))


def said(response: httpx.Response | None) -> str:
    return "no answer" if response is None else f"{response.status_code} {response.text[:300]}"


class Ledger:
    """Every 2xx answer (what it says it stored), every refusal, and what went wrong, by check
    number; shared by the publisher threads."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.lock = threading.Lock()
        self.failed: dict[int, list[str]] = defaultdict(list)
        self.notes: list[str] = []
        self.published: dict[str, int] = {}  # message id -> position
        self.publish_answers: list[str] = []  # every id answered, a repeat included
        self.appended: dict[int, tuple[str, str | None]] = {}  # position -> (type, message id)
        self.received: Counter[str] = Counter()  # message id -> times delivered
        self.refused: Counter[str] = Counter()
        self.slowest = 0.0
        self.details: Counter[str] = Counter()

    def expect(self, check: int, condition: bool, message: str) -> bool:
        if not condition:
            with self.lock:
                self.failed[check].append(message)
        return condition

    def note(self, message: str) -> None:
        with self.lock:
            self.notes.append(message)

    def client(self) -> httpx.Client:
        http = httpx.Client(base_url=self.server.url, timeout=ANSWER_WITHIN_S)
        self.server.clients.append(http)  # closed by server.stop()
        return http

    def call(
        self, http: httpx.Client, check: int, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        """One request; one that does not answer within 10 s fails ``check``."""
        started = time.monotonic()
        try:
            response = http.request(method, url, **kwargs)
        except httpx.TimeoutException:
            self.expect(check, False, f"{method} {url} did not answer within 10 s")
            return None
        except httpx.TransportError as error:
            self.expect(check, False, f"{method} {url}: {error!r} (did the process die?)")
            return None
        took = time.monotonic() - started
        self.slowest = max(self.slowest, took)
        self.expect(check, took < ANSWER_WITHIN_S, f"{method} {url} took {took:.1f} s")
        return response

    def publish(
        self, http: httpx.Client, check: int, bodies: list[Any], **fields: Any
    ) -> httpx.Response | None:
        """Publish ``bodies`` (one, with ``fields``, or a batch); record what a 2xx answer
        says it stored (a dedup repeat stores nothing)."""
        queue = QUEUE
        if len(bodies) == 1:
            url, payload = f"/v1/queues/{queue}/messages", {"body": bodies[0], **fields}
        else:
            url = f"/v1/queues/{queue}/messages/batch"
            payload = {"messages": [{"body": body} for body in bodies]}
        response = self.call(http, check, "POST", url, json=payload)
        if response is not None and response.is_success:
            answer = response.json()
            with self.lock:
                for result in answer.get("results", [answer]):
                    if result["duplicate"]:
                        continue
                    self.published[result["id"]] = result["position"]
                    self.publish_answers.append(result["id"])
                    self.appended[result["position"]] = ("message.published", result["id"])
        return response

    def receive(
        self, http: httpx.Client, check: int, queue: str = QUEUE, **fields: Any
    ) -> tuple[httpx.Response | None, list[dict[str, Any]]]:
        response = self.call(http, check, "POST", f"/v1/queues/{queue}/receive", json=fields)
        messages: list[dict[str, Any]] = []
        if response is not None and response.status_code == 200:
            messages = response.json()["messages"]
            with self.lock:
                self.received.update(m["id"] for m in messages)
        return response, messages

    def ack(self, http: httpx.Client, check: int, message: dict[str, Any]) -> httpx.Response | None:
        response = self.call(
            http,
            check,
            "POST",
            f"/v1/queues/{QUEUE}/messages/{message['id']}/ack",
            json={"receipt": message["receipt"]},
        )
        if response is not None and response.status_code == 204:
            with self.lock:
                position = int(response.headers["x-cairn-position"])
                self.appended[position] = ("message.acked", message["id"])
        return response

    def while_full(
        self, what: str, response: httpx.Response | None, *domain: int
    ) -> httpx.Response | None:
        """A command while the disk is full: 2xx (then recorded), one of the ``domain``
        refusals it may legitimately get, or a 503 problem+json that says why."""
        if response is None or response.is_success:
            return response
        if response.status_code in domain:
            with self.lock:
                self.refused[f"{what}: {response.status_code}"] += 1
            return response
        with self.lock:
            self.refused[f"{what}: {response.status_code}"] += 1
        if not self.expect(
            2, response.status_code == 503, f"{what} answered {said(response)}, not 503"
        ):
            return response
        self.expect(
            2,
            response.headers.get("content-type") == "application/problem+json",
            f"{what}: 503 with content-type {response.headers.get('content-type')}",
        )
        detail = str(response.json().get("detail", ""))
        with self.lock:
            self.details[detail] += 1
        self.expect(2, bool(SAYS_WHY.search(detail)), f"{what}: 503 whose detail is {detail!r}")
        return response

    def alive(self, http: httpx.Client, check: int) -> None:
        assert self.server.process is not None
        self.expect(
            check,
            self.server.process.poll() is None,
            f"the server exited with {self.server.process.returncode}",
        )
        health = self.call(http, check, "GET", "/healthz")
        self.expect(
            check,
            health is not None and health.status_code == 200,
            f"/healthz answered {said(health)}",
        )

    def report(self, logs: list[Path]) -> str:
        lines = []
        for check in sorted(self.failed):
            lines.append(f"check {check} ({CHECKS[check]}) FAILED:")
            lines += [f"  - {message}" for message in self.failed[check][:12]]
            if len(self.failed[check]) > 12:
                lines.append(f"  ... and {len(self.failed[check]) - 12} more")
        lines += ["notes:", *(f"  {note}" for note in self.notes)]
        for log in logs:
            if log.exists():
                errors = [
                    line[:400]
                    for line in log.read_text(errors="replace").splitlines()
                    if '"level":"error"' in line or "Traceback" in line
                ]
                lines.append(f"{log.name}: {len(errors)} error lines, the first and last:")
                lines += [f"  {line}" for line in errors[:2] + errors[-2:]]
        return "\n".join(lines)


def test_a_full_disk_refuses_with_503_loses_nothing_and_recovers(
    tmp_path: Path, disk: Path
) -> None:
    server = make_server(tmp_path)  # the log files stay in tmp_path, off the small disk
    server.database = disk / "cairn.db"
    server.args[server.args.index("--database-url") + 1] = f"sqlite:///{server.database}"
    views = disk / "cairn.views.db"
    logs = [server.log, server.log.with_name("cairn.projector.log")]
    filler, top_off = disk / "filler", disk / "top-off"
    server.start()
    ledger = Ledger(server)
    try:
        http = ledger.client()
        for name in (QUEUE, IDLE):
            created = ledger.call(http, 1, "POST", "/v1/queues", json={"name": name})
            assert created is not None and created.status_code == 201, said(created)
            ledger.appended[created.json()["position"]] = ("queue.created", None)

        # Before: small messages, two of them leased for a second (they expire while full).
        for i in range(5):
            response = ledger.publish(http, 1, [{"before": i}])
            assert response is not None and response.status_code == 201, said(response)
        _, leased = ledger.receive(http, 1, max_messages=2, visibility_timeout_s=1)
        assert len(leased) == 2, leased

        # Fill: most of the disk with a file, the rest with concurrent publishes of large
        # batches (and small ones) until the store refuses, then the last pages.
        take(filler, leave=LEFT_FOR_MESSAGES)
        refused = threading.Event()

        def publisher(n: int) -> None:
            mine = ledger.client()
            for i in range(2 * LEFT_FOR_MESSAGES // (BATCH * BIG_BODY)):
                if i % 3 == 2:
                    response = ledger.publish(mine, 1, [{"filling": n, "i": i}])
                else:
                    response = ledger.publish(
                        mine, 1, [big(f"fill-{n}-{i}-{j}") for j in range(BATCH)]
                    )
                if response is None or not response.is_success:
                    ledger.while_full("a publish that found the disk full", response)
                    refused.set()
                if refused.is_set():
                    return

        with ThreadPoolExecutor(PUBLISHERS) as pool:
            for done in [pool.submit(publisher, n) for n in range(PUBLISHERS)]:
                done.result()
        assert refused.is_set(), f"{free_bytes(disk)} bytes left and no publish refused"
        ledger.note(
            f"the store refused after {len(ledger.published)} answered publishes,"
            f" {free_bytes(disk)} bytes free"
        )
        take(top_off)
        assert free_bytes(disk) == 0

        # Full, for a few seconds: what cannot be stored is refused with a 503. (SQLite may
        # still find room, reusing its WAL file once a checkpoint completes: what it stores is
        # answered 2xx, and checked like the rest.)
        full_since, rounds, big_refused = time.monotonic(), 0, 0
        dedup = ledger.while_full(
            "a publish with a dedup id", ledger.publish(http, 2, [{"d": 1}], dedup_id="full")
        )
        while rounds < 3 or time.monotonic() - full_since < FULL_FOR_S:
            rounds += 1
            take(top_off)  # whatever was freed since, say by a checkpoint, is taken again
            response = ledger.publish(http, 2, [big(f"full-{rounds}")])
            ledger.while_full("a 200 KiB publish", response)
            big_refused += response is not None and response.status_code == 503
            response = ledger.publish(http, 2, [big(f"full-{rounds}-{j}") for j in range(BATCH)])
            ledger.while_full("a batch of 4 x 200 KiB", response)
            big_refused += response is not None and response.status_code == 503
            ledger.while_full("a small publish", ledger.publish(http, 2, [{"full": rounds}]))
            ledger.while_full(
                "a queue creation",
                ledger.call(http, 2, "POST", "/v1/queues", json={"name": f"during-{rounds}"}),
            )
            ledger.while_full("a receive", ledger.receive(http, 2, max_messages=2)[0])
            # 409 when a receive here found room and re-leased the message: a domain answer.
            ledger.while_full("an ack", ledger.ack(http, 2, leased[rounds % 2]), 409)
            ledger.while_full("a long poll", ledger.receive(http, 2, IDLE, wait_s=1)[0])
            read = ledger.call(http, 2, "GET", f"/v1/queues/{QUEUE}")
            ledger.expect(2, read is not None and read.status_code == 200, f"a read: {said(read)}")
            ledger.alive(http, 2)
        ready = ledger.call(http, 2, "GET", "/readyz")
        ledger.expect(
            2,
            ready is not None and ready.status_code == 503,
            f"/readyz while writes are refused: {said(ready)}",
        )
        lag = ledger.call(http, 2, "GET", "/v1/projections")
        ledger.expect(2, big_refused > 0, f"none of {2 * rounds} large publishes was refused")
        ledger.note(f"{rounds} rounds of commands over {time.monotonic() - full_since:.1f} s full")
        ledger.note(f"refusals while full: {dict(ledger.refused)}")
        ledger.note(f"503 details: {dict(ledger.details)}")
        ledger.note(f"the slowest answer so far took {ledger.slowest:.2f} s")
        ledger.note(f"/readyz while full: {said(ready)}; /v1/projections: {said(lag)}")

        # Free the space: the same process must serve again.
        filler.unlink()
        top_off.unlink()
        recovered: httpx.Response | None = None
        answers: list[str] = []
        deadline = time.monotonic() + 15
        while recovered is None and time.monotonic() < deadline:
            response = ledger.publish(http, 4, [{"after": len(answers)}])
            answers.append(said(response)[:80])
            if response is not None and response.status_code == 201:
                recovered = response
            else:
                time.sleep(0.2)  # polling for recovery, with a deadline
        ledger.note(f"publishes after freeing the space answered {answers[:5]}")
        if ledger.expect(4, recovered is not None, f"no 201 within 15 s: {answers[-3:]}"):
            ledger.expect(4, len(answers) == 1, f"the first publishes answered {answers[:5]}")
            ready = ledger.call(http, 4, "GET", "/readyz")
            ready_by = time.monotonic() + 15  # a refusal keeps it 503 for a few seconds
            while (ready is None or ready.status_code != 200) and time.monotonic() < ready_by:
                time.sleep(0.2)  # polling the probe, with a deadline
                ready = ledger.call(http, 4, "GET", "/readyz")
            ledger.expect(
                4, ready is not None and ready.status_code == 200, f"/readyz after: {said(ready)}"
            )
            response = ledger.publish(http, 4, [big(f"after-{j}") for j in range(BATCH)])
            ledger.expect(
                4,
                response is not None and response.status_code == 201,
                f"a batch after recovery: {said(response)}",
            )
            again = ledger.publish(http, 4, [{"d": 2}], dedup_id="full")
            if dedup is not None and dedup.is_success:  # stored while full: a repeat now
                ledger.expect(
                    4,
                    again is not None
                    and again.status_code == 200
                    and again.json()["id"] == dedup.json()["id"],
                    f"a dedup repeat of a stored publish answered {said(again)}",
                )
            else:  # refused while full: it left no dedup entry behind
                ledger.expect(
                    4,
                    again is not None and again.status_code == 201,
                    f"a dedup id refused while full, again: {said(again)}",
                )
            response, messages = ledger.receive(http, 4, max_messages=3)
            ledger.expect(4, len(messages) == 3, f"a receive after recovery: {said(response)}")
            for message in messages:
                ack = ledger.ack(http, 4, message)
                ledger.expect(4, ack is not None and ack.status_code == 204, f"ack: {said(ack)}")

        # The read models catch up with everything answered.
        last = max(ledger.appended)
        stats: dict[str, Any] | None = None
        deadline = time.monotonic() + 20
        while stats is None and time.monotonic() < deadline:
            read = ledger.call(http, 4, "GET", f"/v1/queues/{QUEUE}", params={"min_position": last})
            if read is not None and read.status_code == 200:
                stats = read.json()["stats"]
            else:
                time.sleep(0.1)  # polling the read model, with a deadline
        lag = ledger.call(http, 4, "GET", "/v1/projections")
        ledger.note(f"/v1/projections after recovery: {said(lag)}")
        if ledger.expect(4, stats is not None, f"the read model never reached {last}"):
            assert stats is not None
            ledger.expect(
                4,
                stats["published_total"] == len(ledger.published),
                f"published_total {stats['published_total']}, answered {len(ledger.published)}",
            )

        # Check 1: the log and the message list hold every answered command exactly once.
        ledger.expect(
            1,
            len(ledger.publish_answers) == len(set(ledger.publish_answers)),
            "one message id was answered twice",
        )
        logged: list[dict[str, Any]] = []
        after = 0
        while True:
            page = ledger.call(http, 1, "GET", "/v1/events", params={"after": after, "limit": 500})
            assert page is not None and page.status_code == 200, said(page)
            if not page.json()["events"]:
                break
            logged += page.json()["events"]
            after = page.json()["next_after"]
        positions = [event["position"] for event in logged]
        ledger.expect(
            3,
            positions == list(range(1, len(positions) + 1)),
            f"GET /v1/events positions are not contiguous 1..{len(positions)}",
        )
        by_position = {event["position"]: event for event in logged}
        for position, (type_, message_id) in sorted(ledger.appended.items()):
            event = by_position.get(position, {})
            ledger.expect(
                1,
                event.get("type") == type_
                and (message_id is None or event["message_id"] == message_id),
                f"answered {type_} {message_id} at {position}; the log has {event or 'nothing'}",
            )
        published = Counter(e["message_id"] for e in logged if e["type"] == "message.published")
        for message_id in ledger.published:
            ledger.expect(
                1,
                published[message_id] == 1,
                f"{message_id} has {published[message_id]} message.published events",
            )
        extra = set(published) - set(ledger.published)
        ledger.expect(1, not extra, f"{len(extra)} publishes that were refused are in the log")
        leases = Counter(e["message_id"] for e in logged if e["type"] == "message.leased")
        ledger.expect(
            1,
            leases == ledger.received,
            f"message.leased events {dict(leases)} != deliveries {dict(ledger.received)}",
        )
        listed: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500} | ({"after": cursor} if cursor else {})
            page = ledger.call(http, 1, "GET", f"/v1/queues/{QUEUE}/messages", params=params)
            assert page is not None and page.status_code == 200, said(page)
            listed += [message["id"] for message in page.json()["messages"]]
            cursor = page.json()["next"]
            if not cursor:
                break
        ledger.expect(1, len(listed) == len(set(listed)), "a message is listed twice")
        ledger.expect(
            1,
            set(listed) == set(ledger.published),
            f"listed {len(listed)} messages, answered {len(ledger.published)}:"
            f" {len(set(ledger.published) - set(listed))} missing,"
            f" {len(set(listed) - set(ledger.published))} extra",
        )
        ledger.alive(http, 4)
    finally:
        code = server.stop()
        filler.unlink(missing_ok=True)
        top_off.unlink(missing_ok=True)
    ledger.note(f"the server exited with {code} on SIGTERM")

    # Check 3: the files are whole, and the log's positions contiguous.
    for path in (server.database, views):
        with contextlib.closing(sqlite3.connect(path)) as conn:
            result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        ledger.expect(3, result == ["ok"], f"{path.name}: integrity_check says {result}")
    with contextlib.closing(sqlite3.connect(server.database)) as conn:
        stored = [row[0] for row in conn.execute("SELECT position FROM events ORDER BY position")]
    ledger.expect(
        3, stored == list(range(1, len(stored) + 1)), "positions in cairn.db are not 1..head"
    )
    ledger.expect(3, stored == positions, "cairn.db and GET /v1/events disagree")

    print(ledger.report(logs))  # shown with -s or -rP: what the full disk did
    assert not ledger.failed, ledger.report(logs)
