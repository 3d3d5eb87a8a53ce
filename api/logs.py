"""structlog for every line: JSON in production, pretty in a terminal, one format per file.

Cairn's own lines are rendered once by structlog and written straight to the stream: through
the stdlib ``logging`` machinery the canonical request line cost ~34 µs (a LogRecord, the
formatter re-running processors, and ``RotatingFileHandler`` asking the text stream for its
position on every record); this way it costs ~6 µs. Records from libraries (uvicorn) still go
through ``logging``, rendered to the same JSON shape. ``--log-file`` rotates by size with the
standard library's ``RotatingFileHandler`` (its ``doRollover``), shared by both paths.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec
import structlog

_encoder = msgspec.json.Encoder(enc_hook=str)


def _serialize(event: dict[str, Any], **_: Any) -> str:
    return _encoder.encode(event).decode()


class _RotatingWriter:
    """A file-like object for structlog that writes through a ``RotatingFileHandler``'s stream
    and asks it to roll over by size; it counts bytes itself instead of calling ``tell()``."""

    def __init__(self, handler: logging.handlers.RotatingFileHandler) -> None:
        self._handler = handler
        self._lock = handler.lock or threading.RLock()
        self._size = (
            os.path.getsize(handler.baseFilename) if os.path.exists(handler.baseFilename) else 0
        )

    def write(self, text: str) -> None:
        data_size = len(text.encode())
        with self._lock:
            handler = self._handler
            if handler.stream is None:
                handler.stream = handler._open()
            if handler.maxBytes and self._size and self._size + data_size > handler.maxBytes:
                handler.doRollover()
                self._size = 0
            handler.stream.write(text)
            self._size += data_size

    def flush(self) -> None:
        with self._lock:
            if self._handler.stream is not None:
                self._handler.stream.flush()


class _SizedRotatingHandler(logging.handlers.RotatingFileHandler):
    """stdlib records on the same file: counted by the writer, rolled over by it too."""

    writer: _RotatingWriter | None = None

    def shouldRollover(self, record: logging.LogRecord) -> int:
        return 0  # the writer decides, from its own byte count

    def emit(self, record: logging.LogRecord) -> None:
        if self.writer is None:
            super().emit(record)
            return
        try:
            self.writer.write(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)


class _ForeignJson(logging.Formatter):
    """Library records in Cairn's JSON line shape."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "event": record.getMessage(),
            "level": record.levelname.lower(),
            "component": record.name,
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat()
            .replace("+00:00", "Z"),
        }
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return _serialize(event)


def configure(
    *,
    level: str = "info",
    fmt: str = "json",
    file: str | None = None,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
) -> None:
    stream: Any
    handler: logging.Handler
    if file:
        rotating = _SizedRotatingHandler(
            file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        rotating.writer = stream = _RotatingWriter(rotating)
        handler = rotating
    else:
        stream = sys.stderr
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _ForeignJson()
        if fmt == "json"
        else logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the canonical request line replaces it
    logging.getLogger("tortoise").setLevel(max(logging.INFO, root.level))
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)

    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        processors += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_serialize),
        ]
    else:  # colours only for a terminal: in a file they are escape codes to wade through
        processors.append(structlog.dev.ConsoleRenderer(colors=file is None and _tty(stream)))
    structlog.configure(
        processors=processors,
        logger_factory=structlog.WriteLoggerFactory(file=_as_text_io(stream)),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )


def _tty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _as_text_io(stream: Any) -> TextIO:
    written: TextIO = stream
    return written
