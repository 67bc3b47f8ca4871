"""Base-protocol framing (``Content-Length`` headers + JSON bodies), without I/O.

pygls's own reader matched ``Content-Length: N\\r\\n`` byte for byte, never resynchronized and
had no size limit: one lower-case header or a length off by a few bytes left the server deaf,
and a huge length raised MemoryError. `MessageFramer` turns a byte stream into bodies and errors:

- header names are case-insensitive, ``\\n`` alone ends a header line too;
- a bad header or garbage before a header is reported once, then the stream is scanned for the
  next ``Content-Length`` header (anywhere in a line: the tail of a short body may precede it);
- a body above `max_bytes` is reported and skipped as it streams by, never held in memory; if a
  header shows up inside it, the length was a lie and framing resumes there (valid JSON cannot
  contain a raw ``Content-Length: N`` line: strings hold no raw line breaks);
- a body with a header inside it, or with bytes after its JSON value (the length was too
  long), is cut there and the rest re-read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

# A body larger than this is refused (an LSP message is text: 64 MiB is a huge document).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# A header line longer than this is garbage, not a header.
MAX_HEADER_LINE = 8 * 1024

_HEADER = re.compile(rb"content-length[ \t]*:[ \t]*", re.IGNORECASE)
_HEADER_IN_BODY = re.compile(rb"content-length[ \t]*:[ \t]*\d+[ \t]*\r?\n", re.IGNORECASE)
# Bytes to keep across chunks while scanning a skipped body, so a header split by a read is seen.
_SCAN_OVERLAP = 64


@dataclass(frozen=True)
class Body:
    """One message body, as announced by its header (not parsed yet)."""

    data: bytes
    note: str = ""  # why the body was not taken as announced, if it was not


@dataclass(frozen=True)
class FramingError:
    """Something in the stream that is not a message; the client deserves an error response."""

    message: str


Event = Body | FramingError


def _end_of_json_value(data: bytes) -> int | None:
    """Where the JSON value at the start of `data` ends, when bytes that are not whitespace
    follow it (the start of the next header); None when `data` is one value or not JSON."""
    try:
        text = data.decode("utf-8")
        start = len(text) - len(text.lstrip())
        _, end = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    if not text[end:].strip():
        return None
    return len(text[:end].encode("utf-8"))


class MessageFramer:
    """Feed bytes in, get `Body` and `FramingError` events out (sans-I/O, so tests are plain)."""

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._length: int | None = None  # announced length, once its header line is read
        self._in_body = False  # the blank line after the headers has been read
        self._skip = 0  # bytes of an oversized body still to drop
        self._body_length = 0
        self._resync = False  # scanning for the next header after an error
        self._quiet = False  # the error that started this scan was reported already
        self._garbage = 0  # bytes dropped before a header (reported once per run)

    def resynchronize(self) -> None:
        """A body did not parse (its length was probably wrong): drop what follows it, quietly,
        up to the next header."""
        self._resync = self._quiet = True

    def feed(self, data: bytes) -> Iterator[Event]:
        self._buffer += data
        while True:
            event, progressed = self._step()
            if event is not None:
                yield event
            if not progressed:
                return

    # ------------------------------------------------------------------ states

    def _step(self) -> tuple[Event | None, bool]:
        if self._skip:
            return self._skip_body()
        if self._in_body:
            return self._read_body()
        return self._read_header_line()

    def _read_header_line(self) -> tuple[Event | None, bool]:
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_LINE:  # no line end in sight: drop all but a tail
                drop = len(self._buffer) - _SCAN_OVERLAP
                self._garbage += drop
                del self._buffer[:drop]
                self._resync = True
            return None, False
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        stripped = line.strip()
        if not stripped:
            if self._length is not None and not self._resync:
                return self._start_body(), True
            return None, True  # a stray blank line between messages
        # The last header in the line: a short body's tail may precede it.
        match = next(reversed(list(_HEADER.finditer(line))), None)
        if match is not None:
            garbage = match.start()
            error = self._garbage_error(garbage)
            self._resync = self._quiet = False
            value = line[match.end() :].strip()
            if not value.isdigit():
                self._length = None
                self.resynchronize()
                shown = value[:40].decode("latin-1")
                return FramingError(f"Content-Length is not a number: {shown!r}"), True
            self._length = int(value)
            return error, True
        if self._resync or (self._length is None and b":" not in stripped):
            self._garbage += len(line)
            self._resync = True
            return None, True
        return None, True  # another header (Content-Type): ignored

    def _garbage_error(self, extra: int) -> FramingError | None:
        dropped = self._garbage + extra
        self._garbage = 0
        if not dropped or self._quiet:
            return None
        return FramingError(f"skipped {dropped} bytes that were not a message")

    def _start_body(self) -> Event | None:
        length = self._length or 0
        self._length = None
        if length > self.max_bytes:
            self._skip = length
            return FramingError(
                f"message of {length} bytes is larger than the limit of {self.max_bytes}; skipped"
            )
        self._in_body = True
        self._body_length = length
        return None

    def _read_body(self) -> tuple[Event | None, bool]:
        length = self._body_length
        if len(self._buffer) < length:
            return None, False
        data = bytes(self._buffer[:length])
        del self._buffer[:length]
        self._in_body = False
        inner = _HEADER_IN_BODY.search(data)
        end = inner.start() if inner is not None else _end_of_json_value(data)
        if end is None:
            return Body(data), True
        # The announced length ran into the next message: re-read from where the body ended.
        self._buffer[:0] = data[end:]
        note = f"Content-Length {length} ran into the next message; the body ended after {end}"
        return Body(data[:end], note + " bytes"), True

    def _skip_body(self) -> tuple[Event | None, bool]:
        if not self._buffer:
            return None, False
        take = min(self._skip, len(self._buffer))
        inner = _HEADER_IN_BODY.search(self._buffer, 0, take + _SCAN_OVERLAP)
        if inner is not None and inner.start() < take:
            del self._buffer[: inner.start()]  # the length was a lie: frame from this header on
            self._skip = 0
            return None, True
        keep = min(_SCAN_OVERLAP, take)  # a header may start in the last bytes of this chunk
        drop = take - keep if self._skip > take else take
        del self._buffer[:drop]
        self._skip -= drop
        if drop == 0:
            return None, False
        return None, True
