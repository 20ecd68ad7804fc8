"""Output: text lines (local time, sender, body), JSON lines (-J), counts (-c).

A room's message shows its sender as the occupant JID (``room@service/nick``) and,
when it mentions the account, ``(mention)`` after it; its JSON line has the room
and the nick apart, and ``"mention": true``.  An OMEMO message shows ``(OMEMO)``
after its sender and its decrypted text, or ``[OMEMO, not decrypted: why]``; its
JSON line has ``"encryption": "omemo"``, ``"decrypted"`` and then ``"undecrypted"``
(why) with a null body."""

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
    sender: str  # bare JID (a chat), or the room's bare JID (a room)
    timestamp: datetime  # aware
    body: str
    nick: str | None = None  # a room's message: the sender's nick (None: a chat)
    mention: bool = False  # a room's message that mentions the account
    encrypted: bool = False  # OMEMO: body is the decrypted text, unless undecrypted
    undecrypted: str | None = None  # OMEMO: why it could not be decrypted (body unknown)

    @property
    def room(self) -> str | None:
        return self.sender if self.nick is not None else None

    @property
    def from_(self) -> str:
        """The sender's JID: a contact's bare JID, or an occupant JID ``room/nick``."""
        return self.sender if self.nick is None else f"{self.sender}/{self.nick}"


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
    text = msg.body if msg.undecrypted is None else f"[OMEMO, not decrypted: {msg.undecrypted}]"
    body = _printable(text).replace("\r\n", "\n").replace("\n", "\n\t")
    flag = " (mention)" if msg.mention else ""
    flag += " (OMEMO)" if msg.encrypted and msg.undecrypted is None else ""
    return f"{local_time(msg.timestamp)} {_printable(msg.from_)}{flag}: {body}"


def json_line(msg: UnreadMessage) -> str:
    data = {"id": msg.id, "from": msg.from_, "timestamp": iso_utc(msg.timestamp),
            "body": msg.body if msg.undecrypted is None else None,
            "room": msg.room, "nick": msg.nick, "mention": msg.mention,
            "encryption": "omemo" if msg.encrypted else None,
            "decrypted": (msg.undecrypted is None) if msg.encrypted else None}
    if msg.undecrypted is not None:
        data["undecrypted"] = msg.undecrypted
    return json.dumps(data, ensure_ascii=False)


def count_text(total: int) -> str:
    return str(total)


def count_json(per_contact: Mapping[str, int], per_room: Mapping[str, int],
               mentions: Mapping[str, int]) -> str:
    return json.dumps(
        {"total": sum(per_contact.values()) + sum(per_room.values()),
         "contacts": dict(sorted(per_contact.items())),
         "rooms": dict(sorted(per_room.items())),
         "mentions": dict(sorted(mentions.items()))},
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

    def count(self, per_contact: Mapping[str, int], per_room: Mapping[str, int] | None = None,
              mentions: Mapping[str, int] | None = None) -> None:
        """The total (text), or per contact and per room with the rooms' mentions (JSON)."""
        per_room = per_room or {}
        if self.as_json:
            self.line(count_json(per_contact, per_room, mentions or {}))
        else:
            self.line(count_text(sum(per_contact.values()) + sum(per_room.values())))
