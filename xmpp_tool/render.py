"""Output: text lines (local time, sender, body), JSON lines (-J), counts (-c)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO


@dataclass(frozen=True)
class UnreadMessage:
    """One unread message as shown to the user."""

    id: str  # the archive's stanza-id (XEP-0359), or the offline node id (XEP-0013)
    sender: str  # bare JID
    timestamp: datetime  # aware
    body: str


def iso_utc(ts: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix (naive datetimes are taken as UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def local_time(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _printable(text: str) -> str:
    """Neutralise terminal control characters (escape sequences in a body must not
    drive the reader's terminal); keep newlines and tabs."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in "\n\t":
            out.append(ch)
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append("\N{REPLACEMENT CHARACTER}")
        else:
            out.append(ch)
    return "".join(out)


def text_line(msg: UnreadMessage) -> str:
    """``YYYY-MM-DD HH:MM:SS sender: body``; continuation lines indented by a tab."""
    body = _printable(msg.body).replace("\r\n", "\n").replace("\n", "\n\t")
    return f"{local_time(msg.timestamp)} {_printable(msg.sender)}: {body}"


def json_line(msg: UnreadMessage) -> str:
    return json.dumps(
        {"id": msg.id, "from": msg.sender, "timestamp": iso_utc(msg.timestamp), "body": msg.body},
        ensure_ascii=False,
    )


def count_text(total: int) -> str:
    return str(total)


def count_json(per_contact: Mapping[str, int]) -> str:
    return json.dumps(
        {"total": sum(per_contact.values()), "contacts": dict(sorted(per_contact.items()))},
        ensure_ascii=False,
    )


class Writer:
    """Writes lines as UTF-8 to a binary stream, flushing each (streamed output)."""

    def __init__(self, stream: BinaryIO, *, as_json: bool) -> None:
        self.stream = stream
        self.as_json = as_json
        self.written = 0

    def line(self, text: str) -> None:
        self.stream.write(text.encode("utf-8", "surrogateescape") + b"\n")
        self.stream.flush()

    def message(self, msg: UnreadMessage) -> None:
        self.line(json_line(msg) if self.as_json else text_line(msg))
        self.written += 1

    def count(self, per_contact: Mapping[str, int]) -> None:
        if self.as_json:
            self.line(count_json(per_contact))
        else:
            self.line(count_text(sum(per_contact.values())))
