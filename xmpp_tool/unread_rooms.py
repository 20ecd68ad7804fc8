"""``unread`` in group chats: the rooms of the account's bookmarks, each read from
the room's own archive, at the cost of what is unread there.

- **Which rooms.**  The account's bookmarks as the chat apps keep them: XEP-0402
  (PEP node ``urn:xmpp:bookmarks:1``, one item per room, item id = the room's JID);
  where the server has no such node, the older XEP-0048 bookmarks in private XML
  storage (XEP-0049).  The bookmark's nick is the account's nick in the room (else
  the account's localpart).
- **What is unread.**  A room's archive is XEP-0313 addressed to the room's JID;
  its ids are the stanza-ids the *room* assigned, which is what a XEP-0490 pointer
  whose item id is the room names.  The walk is the one for chats
  (:func:`xmpp_tool.unread_walk.find_unread`, with its index kept per room), the
  room being the only "contact": messages after the room's pointer; without a
  valid pointer, after the account's own last message in the room; without
  either, the room's newest :data:`NEWEST`.
- **Own messages** (never unread): from the account's nick, or carrying the
  account's real JID (``muc#user`` item, in rooms that show real JIDs).
- **Mentions**: the body names the nick or the bare JID as a word, or a XEP-0372
  reference of type mention points at the account or its occupant JID.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from . import errors, omemo, slix
from .session import Session
from .unread_walk import (
    CLIENT_BODY,
    CLIENT_MESSAGE,
    DELAY,
    FORWARD,
    PAGE,
    Archived,
    Found,
    Index,
    Page,
    cost,
    find_unread,
    known_id,
    last_page,
    rsm_query,
)

log = logging.getLogger("xmpp_tool")

#: Unread in a room with neither a pointer nor a message of the account's: its
#: newest 50 messages.  A room's history is not the account's inbox (a user who
#: never spoke or marked anything did not "miss" years of it); 50 is about what a
#: chat app shows on opening a room, and one page on every server (prosody's
#: default cap per MAM query is 50).
NEWEST = 50

BOOKMARKS_NS = "urn:xmpp:bookmarks:1"  # XEP-0402
LEGACY_BOOKMARKS_NS = "storage:bookmarks"  # XEP-0048, in private XML (XEP-0049)
PRIVATE_NS = "jabber:iq:private"
MUC_USER_ITEM = "{http://jabber.org/protocol/muc#user}x/{http://jabber.org/protocol/muc#user}item"
REFERENCE = "{urn:xmpp:reference:0}reference"  # XEP-0372
MAM_NS = "urn:xmpp:mam:2"


@dataclass(frozen=True)
class Room:
    jid: str  # bare, lowercase
    nick: str  # the account's nickname in the room


# --------------------------------------------------------------------------- bookmarks


async def _await(aw: Any) -> Any:
    return await aw


async def read_bookmarks(session: Session) -> dict[str, str]:
    """Room JID (lowercase) -> the account's nick there ("" if the bookmark has none),
    from XEP-0402, else from XEP-0048 private storage."""
    client = session.client
    try:
        iq = await session.guard(
            _await(client.plugin["xep_0060"].get_items(client.boundjid.bare, BOOKMARKS_NS,
                                                        timeout=session.settings.timeout)),
            "reading the bookmarks (XEP-0402)",
        )
    except errors.Refused as exc:
        log.info("no XEP-0402 bookmarks (%s): reading XEP-0048 private storage", exc.reason)
        return await _legacy_bookmarks(session)
    rooms: dict[str, str] = {}
    for item in iq["pubsub"]["items"]:
        conf = item.xml.find(f"{{{BOOKMARKS_NS}}}conference")
        if conf is not None and item["id"]:
            rooms[str(item["id"]).lower()] = conf.findtext(f"{{{BOOKMARKS_NS}}}nick") or ""
    log.info("%d bookmarked room(s) (XEP-0402)", len(rooms))
    return rooms


async def _legacy_bookmarks(session: Session) -> dict[str, str]:
    client = session.client
    iq = client.make_iq_get()
    ET.SubElement(ET.SubElement(iq.xml, f"{{{PRIVATE_NS}}}query"),
                  f"{{{LEGACY_BOOKMARKS_NS}}}storage")  # fmt: skip
    try:
        res = await session.guard(_await(iq.send(timeout=session.settings.timeout)),
                                  "reading the bookmarks (XEP-0048)")
    except errors.Refused as exc:
        log.info("no XEP-0048 bookmarks either (%s)", exc.reason)
        return {}
    rooms: dict[str, str] = {}
    storage = res.xml.find(f"{{{PRIVATE_NS}}}query/{{{LEGACY_BOOKMARKS_NS}}}storage")
    for conf in storage.findall(f"{{{LEGACY_BOOKMARKS_NS}}}conference") if storage is not None \
            else ():
        if conf.get("jid"):
            rooms[conf.get("jid", "").lower()] = (
                conf.findtext(f"{{{LEGACY_BOOKMARKS_NS}}}nick") or "")
    log.info("%d bookmarked room(s) (XEP-0048)", len(rooms))
    return rooms


# --------------------------------------------------------------------------- reading


def mentions(body: str, nick: str, me: str) -> bool:
    """Does ``body`` name ``nick`` or ``me`` as a word (case-insensitively)?"""
    text = body.casefold()
    for name in (nick, me):
        if name and re.search(r"(?<!\w)" + re.escape(name.casefold()) + r"(?!\w)", text):
            return True
    return False


def extract_room(result: Any, room: Room, me: str) -> Archived:
    """One result of a room's archive -> :class:`Archived` (the contact is the room)."""
    res = result["mam_result"]
    aid = str(res.xml.get("id", ""))
    fwd = res.xml.find(FORWARD)
    inner = fwd.find(CLIENT_MESSAGE) if fwd is not None else None
    if inner is None or inner.get("type") != "groupchat":
        return Archived(aid, "skip", "", "", "")
    body_el = inner.find(CLIENT_BODY)
    body = body_el.text or "" if body_el is not None else ""
    if not body:
        return Archived(aid, "skip", "", "", "")  # a subject change, a marker, a state
    nick = inner.get("from", "").partition("/")[2]
    real = inner.find(MUC_USER_ITEM)
    real_jid = real.get("jid", "").split("/", 1)[0].lower() if real is not None else ""
    if nick == room.nick or real_jid == me:
        return Archived(aid, "out", room.jid, "", "", nick)
    delay = fwd.find(DELAY) if fwd is not None else None
    stamp = delay.get("stamp", "") if delay is not None else ""
    named = {f"xmpp:{me}", f"xmpp:{room.jid}/{room.nick}".lower()}
    mention = mentions(body, room.nick, me) or any(
        ref.get("type") == "mention" and ref.get("uri", "").lower() in named
        for ref in inner.findall(REFERENCE))
    sealed = inner if omemo.is_encrypted(inner) else None
    return Archived(aid, "in", room.jid, stamp, body, nick, mention and sealed is None, sealed)


class RoomArchive:
    """A room's archive (XEP-0313 to the room's JID) as
    :class:`xmpp_tool.unread_walk.Archive`; ``with_`` is always the room itself."""

    def __init__(self, session: Session, room: Room) -> None:
        self.session = session
        self.room = room
        self.me = session.client.boundjid.bare.lower()
        self.queries = 0
        self.messages = 0

    async def page(self, *, with_: str | None = None, after: str | None = None,
                   before: str | None = None, max_: int = PAGE) -> Page:
        if before == "":
            return await self._last_page(max_)
        mam: Any = self.session.client.plugin["xep_0313"]
        query = mam.retrieve(jid=slix.JID(self.room.jid), rsm=rsm_query(max_, after, before),
                             timeout=self.session.settings.timeout)
        if after or before:
            query = known_id(query)  # (without an id, item-not-found means no such room)
        self.queries += 1
        iq = await self.session.guard(_await(query), "reading its archive (MAM)")
        items = [extract_room(result, self.room, self.me) for result in iq["mam"]["results"]]
        self.messages += len(items)
        return Page(items, last_page(iq))

    async def _last_page(self, max_: int) -> Page:
        """The archive's newest ``max_`` messages (RSM with an empty ``<before/>``;
        callers ask for at most one server page, 50, so that this is one query).

        slixmpp bug: ``xep_0313.retrieve`` sends every RSM value through ``str()``,
        so ``before=True`` (the empty element) goes out as the id "True" (prosody:
        item-not-found).  Its ``iterate(reverse=True)`` sets the empty element
        itself: read that one newest-first until ``max_`` messages."""
        mam: Any = self.session.client.plugin["xep_0313"]
        results = mam.iterate(jid=slix.JID(self.room.jid), reverse=True, rsm={"max": max_})
        items: list[Archived] = []
        self.queries += 1
        try:
            while len(items) < max_:
                try:
                    result = await self.session.guard(_anext(results),
                                                      "reading its archive (MAM)")
                except StopAsyncIteration:
                    break
                items.append(extract_room(result, self.room, self.me))
        finally:
            await results.aclose()
        items.reverse()
        self.messages += len(items)
        return Page(items, len(items) < max_)


async def _anext(results: Any) -> Any:
    return await results.__anext__()


#: what a room's refusal most likely means
_HINTS = {
    "forbidden": " (not a member?)",
    "registration-required": " (not a member?)",
    "item-not-found": " (no such room?)",
    "remote-server-not-found": " (no such service?)",
    "feature-not-implemented": " (the room keeps no archive)",
    "service-unavailable": " (no archive, or no such room)",
}


async def room_unread(session: Session, room: Room, index: Index,
                      pointer: str | None) -> tuple[Index, Found]:
    """The room's unread messages (with their mention flags) and its index to keep.

    Raises :class:`xmpp_tool.errors.ToolError` (76) with a one-line reason when the
    room's archive cannot be read.  A room that keeps no archive may answer with an
    empty one (prosody does): so a room whose archive looks empty must announce
    XEP-0313 in its disco#info (one query, only while it looks empty)."""
    archive = RoomArchive(session, room)
    try:
        index, found = await find_unread(archive, index, {room.jid: pointer} if pointer else {},
                                         count_only=False, newest=NEWEST,
                                         conversation=room.jid)
        if index.last is None and MAM_NS not in await session.disco_features(
                slix.JID(room.jid), "asking what it supports (disco#info)"):
            raise errors.protocol(f"{room.jid}: the room keeps no archive (XEP-0313)")
    except errors.Refused as exc:
        raise errors.protocol(f"{room.jid}: cannot read the room's archive: server answered "
                              f"{exc.reason}{_HINTS.get(exc.condition, '')}") from None
    log.info("room %s: %s", room.jid, cost(archive))
    return index, found
