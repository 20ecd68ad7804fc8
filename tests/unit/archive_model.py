"""The reference definition of unread (a full scan of the archive, as xmpp-tool did
it before it kept an index) and a fake MAM archive that answers ``with`` /
``after`` / ``before`` queries the way prosody and ejabberd do."""

from __future__ import annotations

from dataclasses import dataclass

from xmpp_tool.unread_walk import Archived, Page, UnknownId


@dataclass
class _Track:
    pointer: str | None = None
    pointer_ord: int | None = None
    after_pointer: int = 0
    last_out_ord: int = -1
    since_out: int = 0

    def unread(self) -> int:
        return self.after_pointer if self.pointer_ord is not None else self.since_out

    def cutoff(self) -> int:
        return self.pointer_ord if self.pointer_ord is not None else self.last_out_ord


def reference(archive: list[Archived], pointers: dict[str, str]) -> tuple[dict[str, int],
                                                                          list[str]]:
    """(unread count per contact, unread archive ids oldest first), by reading the
    whole archive: a contact's unread messages are its incoming ones after its
    pointer if the pointer names one of them, else after our last message to it."""
    tracks = {c: _Track(pointer=p) for c, p in pointers.items()}
    for ordinal, msg in enumerate(archive):
        if msg.kind == "skip":
            continue
        t = tracks.setdefault(msg.contact, _Track())
        if msg.kind == "out":
            t.last_out_ord, t.since_out = ordinal, 0
            continue
        if t.pointer is not None and t.pointer_ord is None and msg.aid == t.pointer:
            t.pointer_ord = ordinal
            continue
        t.since_out += 1
        if t.pointer_ord is not None:
            t.after_pointer += 1
    counts = {c: t.unread() for c, t in tracks.items() if t.unread() > 0}
    shown = [
        m.aid for i, m in enumerate(archive)
        if m.kind == "in" and tracks[m.contact].unread() > 0
        and i > tracks[m.contact].cutoff()
    ]
    return counts, shown


class FakeArchive:
    """An account's archive as a MAM server serves it.

    ``flavour="prosody"``: ids are opaque; an RSM id the archive does not hold is
    item-not-found; pages hold at most 50 messages whatever is asked.
    ``flavour="ejabberd"``: ids are increasing integers (timestamps) and RSM
    ``after``/``before`` compare them, whether or not such a message exists.
    ``before=""`` (an empty ``<before/>``) is the archive's last page.
    """

    def __init__(self, messages: list[Archived], flavour: str = "prosody",
                 cap: int | None = None, peers: list[str] | None = None) -> None:
        self.messages = 0
        self.queries = 0
        self.log: list[tuple[str | None, str | None, str | None]] = []
        self.flavour = flavour
        self.archive = messages
        # whom each message is with (a skipped one, e.g. a headline, still has a peer)
        self.peers = peers if peers is not None else [m.contact for m in messages]
        self.cap = cap if cap is not None else (50 if flavour == "prosody" else 250)

    def _position(self, aid: str) -> float:
        if self.flavour == "ejabberd":
            try:
                return float(int(aid))
            except ValueError:
                raise UnknownId(aid) from None
        for i, m in enumerate(self.archive):
            if m.aid == aid:
                return float(i)
        raise UnknownId(aid)

    def _key(self, i: int) -> float:
        return float(int(self.archive[i].aid)) if self.flavour == "ejabberd" else float(i)

    async def page(self, *, with_: str | None = None, after: str | None = None,
                   before: str | None = None, max_: int = 250) -> Page:
        self.queries += 1
        self.log.append((with_, after, before))
        size = min(max_, self.cap)
        lo = self._position(after) if after is not None else float("-inf")
        hi = self._position(before) if before else float("inf")  # "": the last page
        matching = [
            m for i, m in enumerate(self.archive)
            if lo < self._key(i) < hi and (with_ is None or self.peers[i] == with_)
        ]
        if before is not None:  # the page just before `before`
            items = matching[-size:] if size else []
            complete = len(items) == len(matching)
        else:
            items = matching[:size]
            complete = len(items) == len(matching)
        self.messages += len(items)
        return Page(list(items), complete)
