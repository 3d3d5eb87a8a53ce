"""The Kafka door's TCP listener: framing, limits, authentication gate and dispatch.

One process per node serves the port: every worker tries to bind it, one succeeds, the others
try again every second (and one of them takes over if that process dies). A connection's
requests are answered one at a time, in order, as a Kafka broker does (clients open more
connections to do more at once: a consumer's group coordinator has one of its own).

Whatever a connection sends, it can only close that connection: a frame whose size is out of
bounds (negative, larger than the limit — 512 KiB before authentication), an API key or version
not served, a request other than ApiVersions/SaslHandshake/SaslAuthenticate before
authentication, bytes kio cannot decode, or a handler's failure. Each closes with one log line
and a count by reason (``cairn_kafka_connections_closed``). An ApiVersions of a version not
served is the exception: it is answered (KIP-511), so a newer client can pick a version.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from typing import Final

import structlog

from api.kafka import codec, sasl
from api.kafka.apis import API_VERSIONS, APIS, unsupported_api_versions
from api.kafka.codec import BadFrame
from api.kafka.door import PRE_AUTH_FRAME_BYTES, Connection, Door

log = structlog.get_logger(component="cairn.kafka")

IDLE_S: Final = 600.0
"""A connection that sends nothing this long is closed (Kafka's connections.max.idle.ms)."""
FRAME_S: Final = 30.0
"""A frame must arrive whole within this long once its size has (no slow drip of bytes)."""
BIND_RETRY_S: Final = 1.0
_SIZE_BYTES: Final = 4


class Closed(Exception):
    """Close the connection; the message is the reason logged and counted."""


class Listener:
    def __init__(self, door: Door) -> None:
        self._door = door
        self._connections: set[asyncio.StreamWriter] = set()
        self.serving = asyncio.Event()

    async def run(self) -> None:
        """Bind the port (waiting while another process of this node has it) and serve."""
        settings = self._door.settings
        waiting_logged = False
        while True:
            try:
                server = await asyncio.start_server(
                    self._serve, settings.host, settings.kafka_port, reuse_address=True
                )
                break
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                if not waiting_logged:
                    log.info("kafka_port_taken_waiting", port=settings.kafka_port)
                    waiting_logged = True
                await asyncio.sleep(BIND_RETRY_S)
        host, port = self._door.nodes.me.host, self._door.nodes.me.port
        log.info(
            "kafka_listening",
            port=settings.kafka_port,
            advertised=f"{host}:{port}",
            node_id=self._door.nodes.me.node_id,
        )
        self.serving.set()
        try:
            async with server:
                await server.serve_forever()
        finally:
            self.serving.clear()
            for writer in list(self._connections):
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        door = self._door
        metrics = door.services.metrics
        peer = _peer(writer)
        conn = Connection.open(peer, door, writer)
        self._connections.add(writer)
        metrics.kafka_connections.inc()
        reason = "closed by the client"
        try:
            await self._requests(conn, reader, writer)
        except Closed as closed:
            reason = str(closed)
        except (asyncio.IncompleteReadError, ConnectionError):
            reason = conn.closing or "closed by the client"
        except TimeoutError:
            reason = "idle or slow"
        except Exception as error:  # a bug: this connection only
            reason = "internal error"
            log.exception("kafka_request_failed", peer=peer, error=str(error))
        finally:
            self._connections.discard(writer)
            metrics.kafka_connections.dec()
            metrics.kafka_connections_closed.labels(_reason_label(reason)).inc()
            if conn.expiry is not None:
                conn.expiry.cancel()
            log.info("kafka_connection_closed", peer=peer, reason=reason)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _requests(
        self, conn: Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        door = self._door
        metrics = door.services.metrics
        while True:
            head = await asyncio.wait_for(reader.readexactly(_SIZE_BYTES), IDLE_S)
            size = int.from_bytes(head, "big", signed=True)
            limit = (
                door.settings.kafka_max_request_bytes
                if conn.principal is not None
                else PRE_AUTH_FRAME_BYTES
            )
            if not 0 <= size <= limit:
                raise Closed(f"a frame of {size} bytes (the limit is {limit})")
            frame = await asyncio.wait_for(reader.readexactly(size), FRAME_S)
            if conn.raw_sasl:  # after a SaslHandshake v0: a bare token, answered bare
                conn.raw_sasl = False
                if sasl.check(door, conn, frame) is None:
                    raise Closed("SASL authentication failed")
                writer.write(b"\0\0\0\0")
                await writer.drain()
                continue
            try:
                key, version, correlation = codec.peek(frame)
            except BadFrame as error:
                raise Closed(f"malformed frame: {error}") from None
            api = APIS.get(key)
            if conn.principal is None and (api is None or not api.before_auth):
                raise Closed(f"API key {key} before authentication")
            if api is None:
                raise Closed(f"unknown API key {key}")
            if not api.versions[0] <= version <= api.versions[1]:
                if key != API_VERSIONS:
                    raise Closed(f"{api.name} version {version} is not served")
                writer.write(codec.encode(correlation, unsupported_api_versions()))
                await writer.drain()
                continue
            try:
                header, request = codec.decode(frame, key, version)
            except BadFrame as error:
                raise Closed(f"malformed {api.name} v{version}: {error}") from None
            conn.client_id = header.client_id
            response = await api.handler(door, conn, request)
            if response is not None:
                metrics.kafka_requests.labels(api.name, codec.first_error(response).name).inc()
                writer.write(codec.encode(correlation, response))
                await writer.drain()
            else:
                metrics.kafka_requests.labels(api.name, "none").inc()
            if conn.closing is not None:
                raise Closed(conn.closing)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


_REASONS: Final = (
    ("closed by the client", "client"),
    ("a frame of", "frame_size"),
    ("before authentication", "unauthenticated"),
    ("unknown API key", "unknown_api"),
    ("is not served", "unsupported_version"),
    ("malformed", "malformed"),
    ("SASL", "sasl"),
    ("token expired", "expired"),
    ("idle", "idle"),
)


def _reason_label(reason: str) -> str:
    """A bounded label for the metric: the kind of reason, not its details."""
    for prefix, label in _REASONS:
        if prefix in reason:
            return label
    return "other"
