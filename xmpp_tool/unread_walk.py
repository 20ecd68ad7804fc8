"""What is unread, read from the archive at the cost of what is unread (no network code).

The definition (docs/cli.md, "how it decides what is unread"): incoming chat/normal
messages with a body, per contact, after the contact's XEP-0490 pointer when that
names an incoming message of the contact in the archive, else after the account's
own last message to the contact (all of them if it never wrote).

How little is read:

1. **Index.**  A small per-account record (:class:`Index`, kept by
   :mod:`xmpp_tool.statefile`) of how far the archive was scanned and, per contact,
   its newest incoming message, our newest message to it, and how many incoming
   messages came since ours.  Each run reads the archive only *after* the last
   scanned message (RSM ``after``); the first page must begin with that message,
   or the archive changed under us (purged, another server, reset) and the whole
   archive is scanned again.  The new messages ("fresh") are kept, pruned to the
   ones that may be unread, so they are never read twice.
2. **Per contact.**  A contact's cut-off is settled from what is known without a
   query wherever possible (pointer seen among the fresh messages, pointer = the
   contact's newest incoming message, our last message).  Only a contact whose
   unread messages began before this run is asked for, by ``with`` + ``after``
   its cut-off, up to its first fresh message — so a query reads unread messages
   (and our replies in between), never read history.  A pointer that is not
   settled by the index is checked by one ``before`` query of one message.

3. **One conversation** (a room's archive).  Without an index it is read from its
   end back to the cut-off only (:func:`from_the_end`), and the index written is
   partial: a later cut-off that needs what lies before the part read (no valid
   pointer, no message of ours in it) reads the whole archive.

Output order: unread messages that arrived before this run, by archive timestamp
(per contact in archive order), then the fresh ones in archive order.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from . import slix

log = logging.getLogger("xmpp_tool")

PAGE = 250  # messages per MAM page (servers may send fewer: prosody's default cap is 50)
LAST_PAGE = 50  # the first page read backwards from an archive's end: one page everywhere
FRESH_LIMIT = 20_000  # fresh messages kept per run (beyond: per-contact queries)
INDEX_VERSION = 1


# --------------------------------------------------------------------------- messages


@dataclass(slots=True)
class Archived:
    """What we need of one archived message."""

    aid: str  # archive id = stanza-id by our account
    kind: str  # "in" (incoming with body), "out" (ours to contact, with body), "skip"
    contact: str  # bare JID, lowercase
    stamp: str | datetime  # XEP-0082 text until needed (parsing 10,000 costs ~1 s)
    body: str
    nick: str = ""  # in a room: the sender's nickname (the contact is the room)
    mention: bool = False  # in a room: the body mentions the account
    sealed: Any = None  # an OMEMO message: its XML, decrypted only if it is shown

    @property
    def timestamp(self) -> datetime:
        if isinstance(self.stamp, datetime):
            return self.stamp
        return parse_stamp(self.stamp)


def parse_stamp(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            ts = slix.parse_timestamp(text)
        except ValueError:
            return datetime.now(UTC)
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def classify_raw(mtype: str | None, sender: str, to: str, has_body: bool,
                 me: str) -> tuple[str, str]:
    """``("in"|"out"|"skip", contact)`` from a message's attributes (bare JIDs).

    Ours counts only with a body: a message without one (an OMEMO key exchange
    that a client sends by itself after decrypting, a chat state, a marker) is not
    something the user wrote, and must not mark the contact's messages read."""
    if (mtype or "normal") not in ("chat", "normal"):
        return "skip", ""
    if sender == me:
        if to and to != me and has_body:
            return "out", to
        return "skip", ""
    if sender and has_body:
        return "in", sender
    return "skip", ""


# --------------------------------------------------------------------------- archive

# the parts of a MAM result read directly (see xmpp_tool.unread.extract)
FORWARD = "{urn:xmpp:forward:0}forwarded"
DELAY = "{urn:xmpp:delay}delay"
CLIENT_MESSAGE = "{jabber:client}message"
CLIENT_BODY = "{jabber:client}body"


@dataclass
class Page:
    items: list[Archived]
    complete: bool  # the server said this is the last page (MAM <fin complete='true'>)


class UnknownId(Exception):
    """The archive does not know the id given as RSM after/before."""


class Archive(Protocol):
    """A MAM archive: one RSM page of the account's messages, oldest first
    (``before=""``: the archive's last page)."""

    queries: int  # pages asked for
    messages: int  # messages received

    async def page(self, *, with_: str | None = None, after: str | None = None,
                   before: str | None = None, max_: int = PAGE) -> Page: ...


def rsm_query(max_: int, after: str | None, before: str | None) -> dict[str, Any]:
    """The RSM part of one archive page's query (XEP-0059)."""
    rsm: dict[str, Any] = {"max": max_}
    if after is not None:
        rsm["after"] = after
    if before is not None:
        rsm["before"] = before
    return rsm


def last_page(iq: Any) -> bool:
    """Did the server say this page is the archive's last (MAM ``<fin complete>``)?"""
    return str(iq["mam_fin"]["complete"]).lower() in ("true", "1")


def cost(archive: Archive) -> str:
    """What reading ``archive`` took, for the -v line."""
    return (f"{archive.messages} message(s) read in {archive.queries} "
            f"quer{'y' if archive.queries == 1 else 'ies'}")


# An RSM id the archive does not hold: prosody answers item-not-found; ejabberd
# compares its numeric ids and answers even for an id it does not hold (the walk
# checks pointers itself); bad-request is what a stricter server may say.
UNKNOWN_ID_CONDITIONS = ("item-not-found", "bad-request")


async def known_id(aw: Any) -> Any:
    """Await a MAM query; the server's "no such id" answer is :class:`UnknownId`."""
    try:
        return await aw
    except slix.IqError as exc:
        if exc.iq["error"]["condition"] in UNKNOWN_ID_CONDITIONS:
            raise UnknownId(exc.iq["error"]["condition"]) from None
        raise


async def walk(archive: Archive, *, with_: str | None = None,
               after: str | None = None) -> AsyncIterator[Archived]:
    """Every message after ``after`` (None: from the beginning), page by page."""
    while True:
        page = await archive.page(with_=with_, after=after)
        for msg in page.items:
            yield msg
        if page.complete or not page.items:
            return
        after = page.items[-1].aid


# --------------------------------------------------------------------------- index


@dataclass(slots=True)
class Contact:
    last_in: str | None = None  # the contact's newest incoming message
    last_out: str | None = None  # our newest message to the contact
    since_out: int = 0  # incoming messages after last_out (all of them if none)
    pointer: str | None = None  # a pointer found to name an incoming message of the contact
    since_pointer: int = 0  # incoming messages after that one


@dataclass
class Index:
    """How far the archive was scanned, and what each contact's cut-off needs."""

    prev: str | None = None  # the message before `last` (None: `last` is the first)
    last: str | None = None  # the newest message scanned
    contacts: dict[str, Contact] = field(default_factory=dict)
    # read from the end only as far as the cut-off (see from_the_end): what came
    # before is unknown, so a contact with neither a valid pointer nor a message of
    # ours in the part read needs the whole archive
    partial: bool = False

    def feed(self, msg: Archived) -> None:
        self.prev, self.last = self.last, msg.aid
        if msg.kind == "skip":
            return
        c = self.contacts.get(msg.contact)
        if c is None:
            c = self.contacts[msg.contact] = Contact()
        if msg.kind == "out":
            c.last_out, c.since_out = msg.aid, 0
        else:
            c.last_in = msg.aid
            c.since_out += 1
            if c.pointer is not None:
                c.since_pointer += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "version": INDEX_VERSION,
            "prev": self.prev,
            "last": self.last,
            "contacts": {k: [c.last_in, c.last_out, c.since_out, c.pointer, c.since_pointer]
                         for k, c in sorted(self.contacts.items())},
            "partial": self.partial,
        }

    @classmethod
    def from_json(cls, data: Any) -> Index:
        """The index in ``data``; an empty one for anything unexpected."""
        try:
            if data.get("version") != INDEX_VERSION:
                return cls()
            contacts = {
                str(k): Contact(_opt_str(v[0]), _opt_str(v[1]), int(v[2]), _opt_str(v[3]),
                                int(v[4]))
                for k, v in data["contacts"].items()
            }
            partial = data.get("partial", False)
            if not isinstance(partial, bool):
                raise TypeError(partial)
            return cls(_opt_str(data["prev"]), _opt_str(data["last"]), contacts, partial)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            return cls()


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(value)
    return value


# --------------------------------------------------------------------------- the walk


class _Restart(Exception):
    """The index does not describe this archive any more."""


class _Partial(Exception):
    """A cut-off needs what a partial index did not read."""


@dataclass
class Fresh:
    """The messages that arrived since the index's last one, pruned per contact to
    those that may still be unread (plus our messages where a pointer may lose)."""

    pointers: dict[str, str]
    keep: int = FRESH_LIMIT
    items: dict[str, list[tuple[int, Archived]]] = field(default_factory=dict)
    pointer_seen: set[str] = field(default_factory=set)  # pointer matched: cut is in the run
    out_seen: set[str] = field(default_factory=set)  # our message in the run
    first_id: dict[str, str] = field(default_factory=dict)  # contact's first fresh message
    before: dict[str, Contact] = field(default_factory=dict)  # index entries before the run
    kept: int = 0
    overflow: bool = False  # too many kept: fall back to queries for everything
    count: int = 0

    def feed(self, msg: Archived, index: Index) -> None:
        ordinal = self.count
        self.count += 1
        if msg.kind == "skip":
            return
        c = msg.contact
        if c not in self.first_id:
            self.first_id[c] = msg.aid
            old = index.contacts.get(c)
            self.before[c] = replace(old) if old else Contact()
        pointer = self.pointers.get(c)
        if msg.kind == "in" and pointer is not None and msg.aid == pointer:
            self.pointer_seen.add(c)  # displayed: only what follows can be unread
            self._drop(c)
            return
        if msg.kind == "out":
            if c in self.pointer_seen:
                return  # a valid pointer decides; our messages do not matter
            self.out_seen.add(c)
            if pointer is None:
                self._drop(c)  # answered: nothing before this is unread
                return
        if self.overflow:
            return
        self.items.setdefault(c, []).append((ordinal, msg))
        self.kept += 1
        if self.kept > self.keep:
            log.info("more than %d new messages: reading contacts one by one", self.keep)
            self.overflow = True
            self.items.clear()

    def _drop(self, contact: str) -> None:
        self.kept -= len(self.items.pop(contact, ()))

    def incoming(self, contact: str, after_last_out: bool = False) -> list[tuple[int, Archived]]:
        got = self.items.get(contact, [])
        if after_last_out:
            for i in range(len(got) - 1, -1, -1):
                if got[i][1].kind == "out":
                    got = got[i + 1:]
                    break
        return [(o, m) for o, m in got if m.kind == "in"]


@dataclass
class Found:
    counts: dict[str, int]
    messages: list[Archived]  # oldest first; empty with count_only


async def scan(archive: Archive, index: Index, pointers: dict[str, str],
               keep: int = FRESH_LIMIT) -> tuple[Index, Fresh, bool]:
    """Read what arrived since the index's last message; returns the updated index,
    the fresh messages and whether the whole archive was read (from its start)."""
    if index.last is not None:
        try:
            fresh = Fresh(pointers, keep)
            await _scan_from(archive, index, fresh, index.prev, index.last)
            return index, fresh, False
        except (UnknownId, _Restart):
            log.info("archive changed since the last run: reading it again from the start")
    index = Index()
    fresh = Fresh(pointers, keep)
    await _scan_from(archive, index, fresh, None, None)
    return index, fresh, True


async def _scan_from(archive: Archive, index: Index, fresh: Fresh, after: str | None,
                     expect: str | None) -> None:
    async for msg in walk(archive, after=after):
        if expect is not None:
            if msg.aid != expect:
                raise _Restart
            expect = None
            continue
        fresh.feed(msg, index)  # (first: it notes the contact's entry before this message)
        index.feed(msg)
    if expect is not None:
        raise _Restart  # the index's last message is gone


async def find_unread(archive: Archive, index: Index, pointers: dict[str, str], *,
                      count_only: bool, keep: int = FRESH_LIMIT, newest: int | None = None,
                      conversation: str | None = None) -> tuple[Index, Found]:
    """The unread messages (or only their counts) and the index to keep.

    ``newest``: where a contact has neither a valid pointer nor a message of ours,
    only its newest ``newest`` incoming messages are unread (a room: see
    :data:`xmpp_tool.unread_rooms.NEWEST`); None: all of them (a chat).
    ``conversation``: the archive holds one conversation, with that contact (a
    room's archive); without an index it is read from its end (:func:`from_the_end`)."""
    try:
        if index.last is None and conversation is not None:
            index = await from_the_end(archive, conversation, pointers.get(conversation))
        return await _find_unread(archive, index, pointers, count_only, keep, newest)
    except (UnknownId, _Partial) as exc:
        if index.last is None:
            raise
        log.info("%s: reading the archive from the start",
                 "a cut-off before the part read" if isinstance(exc, _Partial)
                 else "a message the index names left the archive")
        return await _find_unread(archive, Index(), pointers, count_only, keep, newest)


async def _find_unread(archive: Archive, index: Index, pointers: dict[str, str],
                       count_only: bool, keep: int,
                       newest: int | None) -> tuple[Index, Found]:
    index, fresh, whole = await scan(archive, index, pointers, keep)
    older: list[tuple[datetime, int, Archived]] = []  # unread, arrived before this run
    newer: list[tuple[int, Archived]] = []  # unread, arrived in this run
    counts: dict[str, int] = {}

    async def incoming_after(contact: str, after: str | None) -> list[Archived]:
        return [m async for m in walk(archive, with_=contact, after=after) if m.kind == "in"]

    for contact, entry in index.contacts.items():
        if entry.last_in is None:
            continue  # never wrote to us
        pointer = pointers.get(contact)
        before = fresh.before.get(contact, entry)
        first = None if fresh.overflow else fresh.first_id.get(contact)
        old: list[Archived] | None = None  # None: no valid pointer
        new: list[tuple[int, Archived]] = []
        if pointer is not None:
            if contact in fresh.pointer_seen or pointer == before.last_in:
                # a valid pointer, and nothing before this run is unread
                if fresh.overflow:
                    old = await incoming_after(contact, pointer)
                else:
                    old, new = [], fresh.incoming(contact)
            elif pointer == before.pointer:  # found valid by an earlier run
                if fresh.overflow:
                    old = await incoming_after(contact, pointer)
                elif count_only:  # the index knows how many came before this run
                    old, new = [], fresh.incoming(contact)
                    counts[contact] = before.since_pointer + len(new)
                    entry.since_pointer = counts[contact]
                    if not counts[contact]:
                        del counts[contact]
                    continue
                else:
                    old = []
                    if before.since_pointer > 0:
                        old = [m for m in await _until(archive, contact, pointer, first)
                               if m.kind == "in"]
                    new = fresh.incoming(contact)
            elif not whole:  # (after a whole scan, an unseen pointer names nothing)
                old = await _after_pointer(archive, contact, pointer, first)
                if old is not None and not fresh.overflow:
                    new = fresh.incoming(contact)
            if old is not None:  # remember: the next run needs no check
                entry.pointer, entry.since_pointer = pointer, len(old) + len(new)
        if old is None:
            if index.partial and entry.last_out is None:
                raise _Partial  # did we ever write? not in the part read
            if entry.since_out == 0:
                continue
            if newest is not None and entry.last_out is None:
                counts[contact] = min(entry.since_out, newest)
                if not count_only:
                    got = await _newest_incoming(archive, contact, counts[contact])
                    older.extend((m.timestamp, len(older), m) for m in got)
                continue
            if count_only:
                counts[contact] = entry.since_out
                continue
            if fresh.overflow:
                old = await incoming_after(contact, entry.last_out)
            elif contact in fresh.out_seen:
                old, new = [], fresh.incoming(contact, after_last_out=True)
            else:
                old = []
                if before.since_out > 0:
                    old = [m for m in await _until(archive, contact, before.last_out, first)
                           if m.kind == "in"]
                new = fresh.incoming(contact)
        total = len(old) + len(new)
        if total:
            counts[contact] = total
            if not count_only:
                older.extend((m.timestamp, len(older), m) for m in old)
                newer.extend(new)
    messages: list[Archived] = []
    if not count_only:
        older.sort(key=lambda t: (t[0], t[1]))
        newer.sort(key=lambda t: t[0])
        messages = [m for _, _, m in older] + [m for _, m in newer]
    return index, Found(counts, messages)


async def from_the_end(archive: Archive, contact: str, pointer: str | None) -> Index:
    """The index of a one-conversation archive (a room's), read backwards from its
    end only as far as the cut-off: the pointer's message if it is the contact's,
    else our newest message; and as far as the contact's newest message and one
    more (the index's ``prev``).  The whole archive when the cut-off is not found.

    So a first run costs what is unread (and the pages it lies in), not the room's
    history.  The index is then partial (:attr:`Index.partial`)."""
    newest_first: list[Archived] = []
    cut = newest_in = newest_out = None  # positions in newest_first
    before, size = "", LAST_PAGE
    while True:
        page = await archive.page(with_=contact, before=before, max_=size)
        size = PAGE
        for msg in reversed(page.items):
            pos = len(newest_first)
            newest_first.append(msg)
            if msg.kind == "in" and newest_in is None:
                newest_in = pos
            if msg.kind == "out" and newest_out is None:
                newest_out = pos
            if cut is None and pointer is not None and msg.aid == pointer:
                if msg.kind == "in":
                    cut = pos
                else:  # names no message of the contact: our newest message decides
                    pointer = None
                    cut = newest_out
            elif cut is None and pointer is None and msg.kind == "out":
                cut = pos
        if cut is not None and newest_in is not None:
            start = max(cut, newest_in)
            if len(newest_first) > start + 1 or page.complete or not page.items:
                break
        elif page.complete or not page.items:
            break
        before = page.items[0].aid
    if cut is None or newest_in is None:  # the whole archive: the index of a full scan
        index = Index()
        for msg in reversed(newest_first):
            index.feed(msg)
        return index
    index = Index(last=newest_first[start + 1].aid if len(newest_first) > start + 1 else None,
                  partial=True)
    for msg in reversed(newest_first[: start + 1]):
        index.feed(msg)
        if msg.aid == pointer and msg.kind == "in":
            entry = index.contacts[contact]
            entry.pointer, entry.since_pointer = pointer, 0
    log.info("read %d message(s) from the end of the archive", len(newest_first))
    return index


async def _newest_incoming(archive: Archive, contact: str, count: int) -> list[Archived]:
    """The contact's newest ``count`` incoming messages, read backwards from the end."""
    got: list[Archived] = []
    before = ""
    while len(got) < count:
        page = await archive.page(with_=contact, before=before, max_=min(count, LAST_PAGE))
        got[:0] = [m for m in page.items if m.kind == "in"]
        if page.complete or not page.items:
            break
        before = page.items[0].aid
    return got[-count:]


async def _until(archive: Archive, contact: str, after: str | None,
                 stop: str | None) -> list[Archived]:
    """The contact's messages after ``after`` up to (without) ``stop``."""
    got: list[Archived] = []
    async for msg in walk(archive, with_=contact, after=after):
        if msg.aid == stop:
            break
        got.append(msg)
    return got


async def _after_pointer(archive: Archive, contact: str, pointer: str,
                         stop: str | None) -> list[Archived] | None:
    """The contact's incoming messages after its pointer and before ``stop``, or None
    when the pointer names no incoming message of the contact.

    An unknown RSM id is an error on some servers (prosody: item-not-found) and a
    plain comparison on others (ejabberd's ids are timestamps), so the message just
    before the first one returned must be the pointer's."""
    first: Archived | None = None
    got: list[Archived] = []
    try:
        async for msg in walk(archive, with_=contact, after=pointer):
            if first is None:
                first = msg
            if msg.aid == stop:
                break
            got.append(msg)
    except UnknownId:
        return None
    if first is None:
        return None  # nothing after it, yet it is not the contact's newest: not a message
    try:
        page = await archive.page(with_=contact, before=first.aid, max_=1)
    except UnknownId:  # pragma: no cover - first came from the server
        return None
    if not page.items:
        return None
    named = page.items[-1]
    if named.aid != pointer or named.kind != "in" or named.contact != contact:
        return None
    return [m for m in got if m.kind == "in"]


def marks(messages: list[Archived]) -> dict[str, str]:
    """The XEP-0490 pointers that mark ``messages`` read: each contact's last one."""
    return {m.contact: m.aid for m in messages}
