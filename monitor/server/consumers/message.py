"""What a broker message holds: its kind (from the subject), its records (the HTTP body format),
and which of them this consumer may write.

A message carries the body of one HTTP ingest request: ``{"records": [...]}`` as JSON, or gzipped
as the SDK sends it (recognised by the gzip magic bytes, since MQTT 3.1.1 has no headers). The
last token of its subject (NATS, ``.``-separated) or topic (MQTT, ``/``-separated) says the kind:
``predictions`` or ``ground-truth``. A message that cannot be read at all is a :class:`Poison`:
it is dead-lettered whole, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from monitor.errors import WireError
from monitor.server.consumers.sink import Kind, batch_records
from monitor.server.services.payload import decode_body, is_gzip

#: Last subject token -> kind.
SUFFIXES: Final[dict[str, Kind]] = {
    "predictions": "predictions",
    "ground-truth": "ground_truth",
    "ground_truth": "ground_truth",
}


class Poison(Exception):
    """A message that holds no records cvmon can read; the text is the reason, for the dead letter."""


@dataclass(frozen=True, slots=True)
class Batch:
    """The records of one message, split by permission: ``records`` (the original indices in
    ``indices``) may be stored; ``refused`` are (index, reason) pairs for the dead letter."""

    kind: Kind
    records: list[Any]
    indices: list[int]
    refused: list[tuple[int, str]]
    total: int


def kind_of(subject: str, separator: str) -> Kind:
    last = subject.rsplit(separator, 1)[-1]
    kind = SUFFIXES.get(last)
    if kind is None:
        noun = "topic" if separator == "/" else "subject"
        raise Poison(
            f"the {noun} {subject[:200]!r} must end in {separator}predictions or {separator}ground-truth "
            "to say what the message holds"
        )
    return kind


def read_message(subject: str, payload: bytes, *, separator: str, limit: int, scope: ModelScope) -> Batch:
    """The records of a message, or :class:`Poison` saying why there are none to read."""
    kind = kind_of(subject, separator)
    try:
        body = decode_body(payload, gzipped=is_gzip(payload), limit=limit)
    except WireError as exc:  # LimitExceeded included
        raise Poison(f"payload is {exc}") from None
    try:
        records = batch_records(body)
    except WireError as exc:
        raise Poison(str(exc)) from None
    keep, indices, refused = scope.split(records)
    return Batch(kind, keep, indices, refused, len(records))


class ModelScope:
    """The models a consumer may write, like the models an API key is bound to (None: any)."""

    def __init__(self, models: Iterable[str] | None) -> None:
        self.models = None if models is None else frozenset(models)

    def __repr__(self) -> str:
        return "ModelScope(any model)" if self.models is None else f"ModelScope({sorted(self.models)})"

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models

    def split(self, records: list[Any]) -> tuple[list[Any], list[int], list[tuple[int, str]]]:
        """(allowed records, their indices, refused (index, reason)). A record without a model name
        is let through: the ingest service rejects it with the precise reason."""
        if self.models is None:
            return records, list(range(len(records))), []
        keep: list[Any] = []
        indices: list[int] = []
        refused: list[tuple[int, str]] = []
        for i, record in enumerate(records):
            model = record.get("model") if isinstance(record, dict) else None
            if isinstance(model, str) and model not in self.models:
                refused.append((i, f"this consumer may not write model {model[:128]!r} (it is bound to {', '.join(sorted(self.models))})"))
            else:
                keep.append(record)
                indices.append(i)
        return keep, indices, refused


def filter_reaches(subject_filter: str, prefix: str, *, separator: str, one: str, rest: str) -> bool:
    """Whether a subscription filter matches some subject under ``prefix`` (NATS: ``.``, ``*``,
    ``>``; MQTT: ``/``, ``+``, ``#``). A consumer whose filter reaches its own dead-letter subjects
    would take its dead letters for ingest batches, and dead-letter them again, for ever."""
    tokens = subject_filter.split(separator)
    wanted = prefix.split(separator)
    for i, token in enumerate(wanted):
        if i >= len(tokens):
            return False
        if tokens[i] == rest:
            return True
        if tokens[i] not in (one, token):
            return False
    return len(tokens) > len(wanted)
