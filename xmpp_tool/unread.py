"""``unread``: list unread messages without consuming anything, never sending presence.

What is unread, and how the archive is read so that a run costs what is unread
rather than what was ever archived: :mod:`xmpp_tool.unread_walk` (MAM, XEP-0313,
with XEP-0490 displayed pointers and a per-account index, :mod:`xmpp_tool.statefile`).
This module is the network side: the MAM queries, the pointers, marking read;
and the run itself: one-to-one chats, then the bookmarked rooms
(:mod:`xmpp_tool.unread_rooms`), each from its own archive.

Without MAM, XEP-0013 "view" (ejabberd) lists the offline messages without
removing them.  ``-m`` publishes the pointers of what was shown.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, BinaryIO

from . import errors, omemo, slix, statefile
from .config import Settings
from .omemo_state import state_path
from .render import UnreadMessage, Writer
from .request import UnreadRequest
from .session import Session, login_password, run_session
from .unread_rooms import Room, mentions, read_bookmarks, room_unread
from .unread_walk import (
    CLIENT_BODY,
    CLIENT_MESSAGE,
    DELAY,
    FORWARD,
    PAGE,
    Archived,
    Index,
    Page,
    classify_raw,
    cost,
    find_unread,
    known_id,
    last_page,
    rsm_query,
)

log = logging.getLogger("xmpp_tool")

MAM_NS = "urn:xmpp:mam:2"
OFFLINE_NS = "http://jabber.org/protocol/offline"
MDS_NS = "urn:xmpp:mds:displayed:0"
OFFLINE_CHUNK = 100  # XEP-0013 nodes per view request

# slixmpp matches every incoming stanza against every handler; 10,000 archived
# messages x ~22 handlers is most of our CPU time.  These are for events we never
# use (and never answer anything), so the session drops them.
UNUSED_HANDLERS = (
    "IM",  # 'message' events (MAM results are collected by their own handler)
    "Forwarded Stanza",
    "Data Form",
    "Entity Capabilities",
    "Presence",
    "Roster Update",
    "Pubsub Event: Items",
    "Pubsub Event: Purge",
    "Pubsub Event: Delete",
    "Pubsub Event: Configuration",
    "Pubsub Event: Subscription",
)

PLUGINS = (
    "xep_0004",
    "xep_0013",
    "xep_0030",
    "xep_0059",
    "xep_0060",
    "xep_0163",
    "xep_0203",
    "xep_0223",
    "xep_0297",
    "xep_0313",
    "xep_0359",
    "xep_0490",
)


# --------------------------------------------------------------------------- reading


def _bare_lowercase(jid: str) -> str:
    """``user@host/resource`` -> ``user@host``, lowercase (text, not a JID object)."""
    return jid.split("/", 1)[0].lower()


def classify(inner: Any, me: str) -> tuple[str, str]:
    """:func:`classify_raw` for a slixmpp Message stanza."""
    return classify_raw(inner["type"], inner["from"].bare.lower(), inner["to"].bare.lower(),
                        bool(inner["body"]), me)


def extract(result: Any, me: str) -> Archived:
    """One MAM result (``<message><result id=…><forwarded>…``) -> :class:`Archived`.

    Reads the XML directly: slixmpp's stanza interface costs ~0.1 ms per access,
    which adds up to seconds for 10,000 messages read twice.
    """
    res = result["mam_result"]
    aid = str(res.xml.get("id", ""))
    fwd = res.xml.find(FORWARD)
    inner = fwd.find(CLIENT_MESSAGE) if fwd is not None else None
    if inner is None:
        return Archived(aid, "skip", "", "", "")
    delay = fwd.find(DELAY) if fwd is not None else None
    stamp = delay.get("stamp", "") if delay is not None else ""
    body_el = inner.find(CLIENT_BODY)
    body = body_el.text or "" if body_el is not None else ""
    kind, contact = classify_raw(inner.get("type"), _bare_lowercase(inner.get("from", "")),
                                 _bare_lowercase(inner.get("to", "")), bool(body), me)
    if kind != "in":
        return Archived(aid, kind, contact, stamp, "")
    return Archived(aid, kind, contact, stamp, body,
                    sealed=inner if omemo.is_encrypted(inner) else None)  # fmt: skip


# --------------------------------------------------------------------------- server


async def read_pointers(session: Session) -> dict[str, str]:
    """XEP-0490 pointers: contact or room bare JID -> stanza-id.  A chat's pointer
    names an id our account's archive assigned (``by`` = the account), a room's one
    the room assigned (``by`` = the room); without ``by`` (slixmpp's own client
    writes none) it is taken as the one that fits."""
    client = session.client
    me = client.boundjid.bare.lower()
    try:
        iq = await session.guard(
            _raw(client.plugin["xep_0490"].catch_up(timeout=session.settings.timeout)),
            "reading the displayed pointers (XEP-0490)",
        )
    except errors.ToolError as exc:
        if exc.code == errors.Exit.PROTOCOL:
            log.info("no displayed pointers: %s", exc.message)
            return {}
        raise
    pointers: dict[str, str] = {}
    for item in iq["pubsub"]["items"]:
        sid = item["displayed"]["stanza_id"]
        by = str(sid["by"] or "").lower()
        chat = str(item["id"]).lower()
        if sid["id"] and by in ("", me, chat):
            pointers[chat] = sid["id"]
    log.info("%d displayed pointer(s)", len(pointers))
    return pointers


async def _raw(aw: Any) -> Any:
    return await aw


class MamArchive:
    """The account's archive (XEP-0313) as :class:`xmpp_tool.unread_walk.Archive`:
    one query per RSM page, ``with`` a contact or not, ``after``/``before`` an id."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.me = session.client.boundjid.bare.lower()
        self.queries = 0
        self.messages = 0

    async def page(self, *, with_: str | None = None, after: str | None = None,
                   before: str | None = None, max_: int = PAGE) -> Page:
        mam: Any = self.session.client.plugin["xep_0313"]
        self.queries += 1
        iq = await self.session.guard(
            known_id(mam.retrieve(with_jid=slix.JID(with_) if with_ else None,
                                  rsm=rsm_query(max_, after, before),
                                  timeout=self.session.settings.timeout)),
            "reading the message archive (MAM)",
        )
        items = [extract(result, self.me) for result in iq["mam"]["results"]]
        self.messages += len(items)
        return Page(items, last_page(iq))


# --------------------------------------------------------------------------- marking


def _form(form_type: str, values: dict[str, str]) -> Any:
    form = slix.DataForm()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
    for var, value in values.items():
        form.add_field(var=var, value=value)
    return form


async def mark_read(session: Session, shown: dict[str, tuple[str, str]]) -> None:
    """Publish one XEP-0490 pointer per contact or room (the last shown message):
    ``shown`` is chat -> (stanza-id, the JID that assigned it).

    slixmpp's ``xep_0490.flag_chat`` sends publish-options with
    ``pubsub#max_items``/``pubsub#send_last_published_item``, which ejabberd
    rejects (and a node created without ``max_items`` keeps one item only, so one
    contact's pointer would replace another's).  So: publish with the options
    both servers accept, then configure the node ``max_items = max``, then
    publish the rest.
    """
    if not shown:
        return
    client = session.client
    me = client.boundjid.bare
    pubsub: Any = client.plugin["xep_0060"]
    timeout = session.settings.timeout
    options = _form(
        "http://jabber.org/protocol/pubsub#publish-options",
        {"pubsub#persist_items": "true", "pubsub#access_model": "whitelist"},
    )

    def publish(chat: str, sid: tuple[str, str]) -> Any:
        payload = slix.Displayed()
        payload["stanza_id"]["id"], payload["stanza_id"]["by"] = sid
        return pubsub.publish(me, MDS_NS, id=chat, payload=payload, options=options,
                              timeout=timeout)

    items = list(shown.items())
    first, rest = items[0], items[1:]
    await session.guard(_raw(publish(*first)), "marking as read (XEP-0490 publish)")
    config = _form(
        "http://jabber.org/protocol/pubsub#node_config",
        {"pubsub#max_items": "max", "pubsub#send_last_published_item": "never"},
    )
    await session.guard(
        _raw(pubsub.set_node_config(me, MDS_NS, config, timeout=timeout)),
        "marking as read (configuring the XEP-0490 node)",
    )
    if rest:
        await session.guard(
            _raw(asyncio.gather(*(publish(c, a) for c, a in rest))),
            "marking as read (XEP-0490 publish)",
        )
    log.info("marked %d conversation(s) as read", len(items))


# --------------------------------------------------------------------------- actions


@dataclass
class Listing:
    """What one run found: messages in output order, counts, rooms it could not read."""

    messages: list[UnreadMessage] = field(default_factory=list)
    contacts: dict[str, int] = field(default_factory=dict)
    rooms: dict[str, int] = field(default_factory=dict)
    mentions: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # one line per unreadable room
    sealed: dict[str, Any] = field(default_factory=dict)  # OMEMO messages: id -> XML
    scopes: set[str] = field(default_factory=set)  # read whole: "" (chats), room JIDs
    nicks: dict[str, str] = field(default_factory=dict)  # room JID -> our nick there

    def add(self, archived: Archived, nick: str | None = None) -> None:
        self.messages.append(UnreadMessage(
            id=archived.aid, sender=archived.contact, timestamp=archived.timestamp,
            body=archived.body, nick=nick, mention=archived.mention,
            encrypted=archived.sealed is not None))  # fmt: skip
        if archived.sealed is not None:
            self.sealed[sealed_key(self.messages[-1])] = archived.sealed


def sealed_key(m: UnreadMessage) -> str:
    """An OMEMO message's key in the device's file: the archive's id, in its room's
    archive for a room's message (ids are unique per archive only)."""
    return f"{m.room}/{m.id}" if m.room else m.id


#: why an OMEMO message is not shown decrypted when the account has no device here
NO_DEVICE = ("xmpp-tool has no OMEMO device for this account on this machine "
             "(xmpp-tool trust creates it; what was sent before cannot be read)")


async def _decrypt(session: Session, shown: list[UnreadMessage], found: Listing,
                   marked: set[str]) -> list[UnreadMessage]:
    """The shown OMEMO messages decrypted (or with the reason they cannot be), by
    this account's device if it has one here; the device forgets the texts of
    messages no longer unread.  A run without OMEMO messages loads nothing."""
    if not any(m.encrypted for m in shown):
        return shown
    settings = session.settings
    if not (settings.omemo or state_path(settings.jid).exists()):
        return [replace(m, undecrypted=NO_DEVICE) if m.encrypted else m for m in shown]
    config = omemo.prepare(settings)
    for name in omemo.PLUGINS:
        session.client.register_plugin(name, config.get(name))
    device = await omemo.Device.open(session)
    me = str(session.client.boundjid.bare).lower()
    out = []
    for m in shown:
        if m.encrypted:
            text = await device.decrypt(sealed_key(m), found.sealed[sealed_key(m)])
            m = replace(m, body=text.body or "", undecrypted=None if text.body is not None
                        else text.reason)  # fmt: skip
            if m.room and text.body is not None:  # the fallback text mentioned nobody
                m = replace(m, mention=mentions(text.body, found.nicks.get(m.room, ""), me))
        out.append(m)
    device.state.forget_except({sealed_key(m) for m in found.messages if m.encrypted}
                               - marked, found.scopes)
    device.save()
    return out


async def _chats_mam(session: Session, pointers: dict[str, str], index: Index,
                     count_only: bool, found: Listing) -> Index:
    """The account's own archive: unread one-to-one messages."""
    archive = MamArchive(session)
    index, unread = await find_unread(archive, index, pointers, count_only=count_only)
    found.scopes.add("")
    log.info("archive: %s", cost(archive))
    found.contacts = unread.counts
    for m in unread.messages:
        found.add(m)
    return index


async def _rooms(session: Session, request: UnreadRequest, pointers: dict[str, str],
                 indexes: dict[str, Index], found: Listing) -> dict[str, Index]:
    """Each room's archive, one after the other; a room that cannot be read is a
    line in ``found.failed`` and the others are still read."""
    bookmarks = await read_bookmarks(session)
    names = sorted(request.rooms) if request.rooms else sorted(bookmarks)
    default_nick = session.client.boundjid.user
    kept = dict(indexes) if request.rooms else {}
    for jid in names:
        room = Room(jid, bookmarks.get(jid) or default_nick)
        found.nicks[jid] = room.nick
        try:
            kept[jid], unread = await room_unread(session, room, indexes.get(jid, Index()),
                                                  pointers.get(jid))
        except errors.ToolError as exc:
            if exc.code != errors.Exit.PROTOCOL:
                raise  # the session, not the room
            found.failed.append(exc.message)
            kept.pop(jid, None)
            continue
        found.scopes.add(jid)
        if unread.messages:
            found.rooms[jid] = len(unread.messages)
            mentioned = sum(m.mention for m in unread.messages)
            if mentioned:
                found.mentions[jid] = mentioned
        for m in unread.messages:
            found.add(m, m.nick)
    return kept


async def _list_unread(session: Session, out: Writer, request: UnreadRequest) -> None:
    """Chats from the account's archive (else from offline storage), then rooms from
    their archives; print, mark what was shown, report the rooms that failed."""
    account = session.client.boundjid.bare
    count_only, limit = request.count, request.limit
    found = Listing()
    index, room_indexes = statefile.load_all(account)
    pointers: dict[str, str] | None = None
    if request.scope != "rooms":
        features = await session.disco_features(slix.JID(account),
                                                f"service discovery on {account}")
        if MAM_NS in features:
            log.info("using the message archive (XEP-0313) and displayed pointers (XEP-0490)")
            pointers = await read_pointers(session)
            index = await _chats_mam(session, pointers, index, count_only, found)
        else:
            await _chats_offline(session, request, found)
    if request.scope != "chats":
        if pointers is None:
            pointers = await read_pointers(session)
        room_indexes = await _rooms(session, request, pointers, room_indexes, found)
    statefile.save(account, index, room_indexes)
    if count_only:
        out.count(found.contacts, found.rooms, found.mentions)
    else:
        shown = found.messages[:limit]
        marked = {sealed_key(m) for m in shown} if request.mark else set()
        for msg in await _decrypt(session, shown, found, marked):
            out.message(msg)
        if request.mark:
            await mark_read(session, {
                (m.room or m.sender): (m.id, m.room or account) for m in shown})
    for line in found.failed[:-1]:
        log.error("%s", line)
    if found.failed:
        raise errors.protocol(found.failed[-1])


async def _chats_offline(session: Session, request: UnreadRequest, found: Listing) -> None:
    domain = slix.JID(session.client.boundjid.domain)
    if OFFLINE_NS in await session.disco_features(domain, f"service discovery on {domain}"):
        if request.mark:
            raise errors.protocol(
                "server has no message archive (XEP-0313): cannot mark as read (-m); "
                "run without -m to view offline messages (XEP-0013)"
            )
        log.info("no message archive: viewing offline messages (XEP-0013)")
        await _unread_offline(session, found, request.count, request.limit)
        if request.limit is None:  # else the listing stops early: keep every kept text
            found.scopes.add("")
        return
    raise errors.protocol(
        "server supports neither message archive (XEP-0313 MAM) nor flexible "
        "offline message retrieval (XEP-0013)"
    )


async def _unread_offline(session: Session, found: Listing, count_only: bool,
                          limit: int | None) -> None:
    """XEP-0013: view the offline messages (ejabberd) without removing them."""
    client = session.client
    me = client.boundjid.bare
    timeout = session.settings.timeout
    offline: Any = client.plugin["xep_0013"]
    headers = await session.guard(
        _raw(offline.get_headers(timeout=timeout)),
        "listing offline messages (XEP-0013)",
    )
    # (disco_items["items"] is a set: read the substanzas to keep the server's order)
    nodes = [
        str(item["node"])
        for item in headers["disco_items"]["substanzas"]
        if item.name == "item" and item["node"]
    ]
    # ejabberd lists the nodes in hash order; its node ids are arrival times in
    # microseconds, so numeric ids are sorted (and each chunk by delay stamp).
    if all(n.isdigit() for n in nodes):
        nodes.sort(key=int)
    counts = found.contacts
    for i in range(0, len(nodes), OFFLINE_CHUNK):
        chunk = nodes[i : i + OFFLINE_CHUNK]
        # slixmpp bug: xep_0013.view() calls its callback unconditionally and
        # crashes without one; pass a no-op.  (Its fetch() is not used: it sends
        # type='set', which ejabberd rightly answers with bad-request.)
        iq = await session.guard(
            _raw(offline.view(chunk, timeout=timeout, callback=lambda _iq: None)),
            "viewing offline messages (XEP-0013)",
        )
        for msg in sorted(iq["offline"]["results"], key=_delay_key):
            kind, contact = classify(msg, me)
            if kind != "in":
                continue
            contact = contact.lower()
            counts[contact] = counts.get(contact, 0) + 1
            if count_only:
                continue
            stamp = msg["delay"]["stamp"]
            if not isinstance(stamp, datetime):
                stamp = datetime.now(UTC)  # no XEP-0203 delay: it arrived just now
            sealed = omemo.is_encrypted(msg.xml)
            found.messages.append(UnreadMessage(id=_offline_node(msg) or msg["id"] or "",
                                                sender=contact, timestamp=stamp,
                                                body=msg["body"], encrypted=sealed))
            if sealed:
                found.sealed[found.messages[-1].id] = msg.xml
            if limit is not None and len(found.messages) >= limit:
                return


def _delay_key(msg: Any) -> datetime:
    stamp = msg["delay"]["stamp"]
    return stamp if isinstance(stamp, datetime) else datetime.max.replace(tzinfo=UTC)


def _offline_node(msg: Any) -> str:
    for sub in msg["offline"]["substanzas"]:
        if sub.name == "item" and sub["node"]:
            return str(sub["node"])
    return ""


def command(settings: Settings, request: UnreadRequest, stdout: BinaryIO) -> None:
    """``xmpp-tool unread``: validate, get the password, read and print."""
    request = replace(request, rooms=tuple(_room_jid(room) for room in request.rooms))
    unread(settings, login_password(settings), request, stdout)


def _room_jid(text: str) -> str:
    jid = slix.jid_or_error(text, "room (-r)")
    if not jid.user:
        raise errors.dataerr(f"invalid room (-r) {text!r}: a room's JID has a local part")
    return str(jid.bare).lower()


def unread(settings: Settings, secret: str, request: UnreadRequest, stdout: BinaryIO) -> None:
    out = Writer(stdout, as_json=request.opts.json)

    async def list_unread(session: Session) -> None:
        await _list_unread(session, out, request)

    run_session(settings, secret, PLUGINS, list_unread, unused_handlers=UNUSED_HANDLERS)
