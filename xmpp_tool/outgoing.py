"""What ``send`` sends and what became of it: the message every recipient gets,
the one stanza that carries it (to a contact or into a room), and each
recipient's outcome (``-J`` prints one JSON line per recipient).

``json`` is imported inside :meth:`Outcome.as_json`, for start-up speed: only ``-J``
needs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OutgoingMessage:
    """What goes to every recipient."""

    body: str
    mtype: str = "chat"
    subject: str | None = None
    url: str | None = None  # XEP-0066 out-of-band URL (the body is the URL then)


@dataclass
class Outcome:
    """One recipient's result (``-J`` prints it as one JSON line)."""

    recipient: str
    ok: bool = False
    error: str | None = None
    id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> str:
        data: dict[str, Any] = {"recipient": self.recipient,
                                "status": "sent" if self.ok else "refused"}  # fmt: skip
        if self.error:
            data["error"] = self.error
        if self.id:
            data["id"] = self.id
        data.update(self.extra)
        import json

        return json.dumps(data, ensure_ascii=False)


def message_stanza(client: Any, to: Any, msg: OutgoingMessage, *, room: bool = False) -> Any:
    """The message stanza for ``to``, with a fresh id and the upload's URL as
    XEP-0066 out-of-band data.  Into a ``room`` (XEP-0045) it is ``groupchat``,
    without a subject (that would change the room's topic), and carries its id
    as XEP-0359 origin-id too, by which the room's echo is recognised."""
    stanza = client.make_message(mto=to, mbody=msg.body,
                                 mtype="groupchat" if room else msg.mtype,
                                 msubject=None if room else msg.subject)  # fmt: skip
    if msg.url is not None:
        stanza["oob"]["url"] = msg.url
    stanza["id"] = client.new_id()
    if room:
        stanza["origin_id"]["id"] = stanza["id"]
    return stanza
