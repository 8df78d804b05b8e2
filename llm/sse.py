"""An incremental Server-Sent Events parser (the WHATWG event-stream format), shared by the
provider stream decoders.

Bytes arrive in whatever pieces the network made: a piece may end mid-line, mid-UTF-8
character or between the CR and LF of a CRLF. Lines end with CRLF, LF or a lone CR; lines
starting with ``:`` are comments (keep-alives); ``data:`` lines of one event are joined with
``\\n``; ``event:`` names the event; a blank line dispatches it. An event with no data line
is not dispatched (as the spec says). A hostile upstream that never ends a line cannot grow
memory without bound: an event larger than ``max_event_bytes`` raises ``SSEError``.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024


class SSEError(ValueError):
    """The byte stream is not a usable event stream (an event beyond the size cap)."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str  # "message" unless the stream named it
    data: str
    id: str | None = None


class SSEParser:
    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._partial = b""  # the current line so far (no terminator seen yet)
        self._skip_lf = False  # the last piece ended with CR: a leading LF belongs to it
        self._started = False  # a UTF-8 BOM is dropped at the very start only
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._last_id: str | None = None
        self._pending_bytes = 0  # size of the event being collected, for the cap

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            # A CR ending this piece may be the first half of a CRLF: end the line now and
            # swallow the LF if the next piece starts with one.
            self._skip_lf = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if not self._started:
            buffered = self._partial + chunk
            if len(buffered) < 3 and b"\xef\xbb\xbf".startswith(buffered):
                self._partial = buffered  # could still be a BOM
                return []
            self._started = True
            if buffered.startswith(b"\xef\xbb\xbf"):
                buffered = buffered[3:]
            self._partial = b""
            chunk = buffered
        lines = chunk.split(b"\n")
        if self._partial:
            lines[0] = self._partial + lines[0]
        self._partial = lines.pop()
        if len(self._partial) + self._pending_bytes > self.max_event_bytes:
            raise SSEError(f"an event-stream event exceeds {self.max_event_bytes} bytes")
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[SSEEvent]:
        """The stream ended. An event whose lines all arrived but whose blank line did not is
        still dispatched (its lines are whole, so nothing of it is missing); a final line
        without its terminator is dropped, as the spec says."""
        self._partial = b""
        if not self._data:
            return []
        return [self._dispatch()]

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            if self._data:
                return self._dispatch()
            self._reset()
            return None
        if line[0] == 0x3A:  # ":" comment
            return None
        self._pending_bytes += len(line)
        if self._pending_bytes > self.max_event_bytes:
            raise SSEError(f"an event-stream event exceeds {self.max_event_bytes} bytes")
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\x00" not in value:
            self._id = value.decode("utf-8", "replace")
        # "retry" and unknown fields are ignored: reconnection is not ours to do.
        return None

    def _reset(self) -> None:
        self._event = ""
        self._data = []
        self._pending_bytes = 0
        if self._id is not None:
            self._last_id = self._id
            self._id = None

    def _dispatch(self) -> SSEEvent:
        if self._id is not None:
            self._last_id = self._id
            self._id = None
        event = SSEEvent(self._event or "message", "\n".join(self._data), self._last_id)
        self._event = ""
        self._data = []
        self._pending_bytes = 0
        return event
