"""The mock's test-facing state: armed faults and the log of received requests.

Both live in one process's memory: with ``--workers`` above 1 each worker has its own,
so arming faults is refused there (a benchmark needs none) and the log shows only the
worker that answered ``GET /_mock/requests``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson

Json = dict[str, Any]

KINDS = ("openai", "azure-openai", "mistral", "openai-compatible", "anthropic", "gemini")
KIND_ALIASES = {"azure": "azure-openai", "compatible": "openai-compatible"}
FAULTS = (
    "status",  # answer `status` (default 500) in the provider's error shape; 429 with retry-after
    "context_length",  # the provider's 400 for a prompt over the model's context window
    "slow_first_byte",  # wait `ms` before the answer's head
    "slow_stream",  # wait `ms` between stream events
    "cut_stream",  # send `after_events` events (default: half) then close without the end
    "stream_error",  # send `after_events` events, then the provider's in-band error event, no end marker
    "no_usage",  # leave usage out of the answer
    "bad_json",  # a 200 whose body (or one stream event) is not valid JSON
    "hang",  # never answer
    "off_schema",  # a 200 saying `text` (default: prose, not JSON): a JSON-mode answer that does not conform
)
MATCH_FIELDS = ("kind", "model", "key_last4", "stream", "endpoint")
SECRET_HEADERS = (b"authorization", b"api-key", b"x-api-key", b"x-goog-api-key")
LOG_SIZE = 1000


class ControlError(ValueError):
    pass


def normalize_kind(kind: str) -> str:
    return KIND_ALIASES.get(kind, kind)


def last4(secret: str) -> str:
    return secret[-4:]


@dataclass(slots=True)
class Fault:
    id: int
    name: str
    match: Json
    times: int  # answers still to fault; -1: every one until reset
    params: Json

    def matches(self, kind: str, model: str, key_last4: str, stream: bool, endpoint: str) -> bool:
        match = self.match
        if not match:
            return True
        return (
            ("kind" not in match or match["kind"] == kind)
            and ("model" not in match or match["model"] == model)
            and ("key_last4" not in match or match["key_last4"] == key_last4)
            and ("stream" not in match or match["stream"] == stream)
            and ("endpoint" not in match or match["endpoint"] == endpoint)
        )

    def to_json(self) -> Json:
        return {"id": self.id, "fault": self.name, "match": self.match, "times": self.times, **self.params}


@dataclass(slots=True)
class Record:
    seq: int
    at: float
    kind: str
    endpoint: str
    model: str
    stream: bool
    method: str
    target: str
    raw_headers: list[tuple[bytes, bytes]]
    body: bytes
    key_last4: str
    problems: list[str] | None  # None: conformance not checked (--no-check)
    status: int = 0
    fault: str | None = None

    def to_json(self) -> Json:
        """Built only when asked for, so the hot path stores bytes and does no JSON work."""
        try:
            body: Any = orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError:
            body = self.body.decode("utf-8", "replace")
        path, _, query = self.target.partition("?")
        return {
            "seq": self.seq,
            "at": self.at,
            "kind": self.kind,
            "endpoint": self.endpoint,
            "model": self.model,
            "stream": self.stream,
            "method": self.method,
            "path": path,
            "query": {name: values[-1] for name, values in parse_qs(query).items() if name != "key"},
            "headers": {name.decode("latin-1"): _redacted(name, value) for name, value in self.raw_headers},
            "key_last4": self.key_last4,
            "body": body,
            "conformance": (
                "unchecked" if self.problems is None else {"ok": not self.problems, "problems": self.problems}
            ),
            "status": self.status,
            "fault": self.fault,
        }


def _redacted(name: bytes, value: bytes) -> str:
    text = value.decode("latin-1")
    if name not in SECRET_HEADERS:
        return text
    scheme, _, secret = text.rpartition(" ")
    return f"{scheme + ' ' if scheme else ''}...{last4(secret)}"


@dataclass(slots=True)
class Control:
    faults: list[Fault] = field(default_factory=list)
    log: deque[Record] = field(default_factory=lambda: deque(maxlen=LOG_SIZE))
    seq: int = 0
    next_fault_id: int = 1

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def record(self, record: Record) -> None:
        self.log.append(record)

    def take_fault(self, kind: str, model: str, key_last4: str, stream: bool, endpoint: str) -> Fault | None:
        """The first armed fault matching this request, consumed once."""
        for fault in self.faults:
            if fault.matches(kind, model, key_last4, stream, endpoint):
                if fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                return fault
        return None

    def arm(self, spec: Any) -> Fault:
        if not isinstance(spec, dict):
            raise ControlError("A fault is a JSON object.")
        name = spec.get("fault")
        if name not in FAULTS:
            raise ControlError(f"Unknown fault {name!r}; one of {', '.join(FAULTS)}.")
        match = spec.get("match") or {}
        if not isinstance(match, dict) or set(match) - set(MATCH_FIELDS):
            raise ControlError(f"match is an object with any of {', '.join(MATCH_FIELDS)}.")
        if "kind" in match:
            match = {**match, "kind": normalize_kind(str(match["kind"]))}
            if match["kind"] not in KINDS:
                raise ControlError(f"match.kind is one of {', '.join(KINDS)}.")
        times = spec.get("times", 1)
        if not isinstance(times, int) or isinstance(times, bool) or times == 0 or times < -1:
            raise ControlError("times is a positive integer, or -1 for every request until reset.")
        params = {k: v for k, v in spec.items() if k not in ("fault", "match", "times")}
        for number in ("ms", "after_events", "retry_after", "status"):
            value = params.get(number)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise ControlError(f"{number} is a non-negative number.")
        status = params.get("status")
        if status is not None and not 400 <= status <= 599:
            raise ControlError("status is an error status (400-599).")
        fault = Fault(self.next_fault_id, name, match, times, params)
        self.next_fault_id += 1
        self.faults.append(fault)
        return fault

    def reset(self) -> None:
        self.faults.clear()
        self.log.clear()

    def requests(self, query: str) -> list[Json]:
        wanted = {name: values[-1] for name, values in parse_qs(query).items()}
        kind = normalize_kind(wanted.get("kind", ""))
        model = wanted.get("model")
        limit = int(wanted["limit"]) if wanted.get("limit", "").isdigit() else LOG_SIZE
        chosen = [r for r in self.log if (not kind or r.kind == kind) and (model is None or r.model == model)]
        return [r.to_json() for r in chosen[-limit:]] if limit else []
