"""``unread``: list unread messages without consuming anything, never sending presence.

What is unread (MAM, XEP-0313, with XEP-0490 displayed pointers):

- Only incoming messages with a body count (type chat/normal; not groupchat,
  headline or error), from anyone but the account itself.
- For a contact with a pointer (PEP node ``urn:xmpp:mds:displayed:0``, item id =
  the contact's bare JID, payload = the stanza-id of the last displayed message):
  the messages after that one in the archive.
- For a contact without a pointer (or whose pointer names no message of the
  archive): the messages after the account's own last message to that contact
  (all of them if the account never wrote to it).
- Oldest first.

The archive is read with RSM paging, one page at a time (never the whole archive in
memory).  The first pass finds, per contact, where its unread messages begin and
counts them (``-c`` needs nothing more); it also keeps up to ``BUFFER`` candidate
messages, so that when the unread ones fit there they are printed at once.  Only
when more are unread does a second pass start at the earliest cut-off and print
them.  Memory: one page, at most ``BUFFER`` messages, a few values per contact.

Without MAM, XEP-0013 "view" (ejabberd) lists the offline messages without
removing them.  ``-m`` publishes the pointers of what was shown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

from . import errors
from .config import Settings
from .render import Message, Writer
from .session import Session, run

log = logging.getLogger("xmpp_tool")

MAM_NS = "urn:xmpp:mam:2"
OFFLINE_NS = "http://jabber.org/protocol/offline"
MDS_NS = "urn:xmpp:mds:displayed:0"
PAGE = 250  # messages per MAM page (servers may send fewer: prosody caps at 50)
BUFFER = 1000  # unread candidates kept from the first pass (else: a second pass)
OFFLINE_CHUNK = 100  # XEP-0013 nodes per view request

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


# --------------------------------------------------------------------------- model


@dataclass
class Archived:
    """What we need of one archived message."""

    aid: str  # archive id = stanza-id by our account
    kind: str  # "in" (incoming with body), "out" (ours to contact), "skip"
    contact: str  # bare JID, lowercase
    stamp: str | datetime  # XEP-0082 text until needed (parsing 10,000 costs ~1 s)
    body: str

    @property
    def timestamp(self) -> datetime:
        if isinstance(self.stamp, datetime):
            return self.stamp
        return parse_stamp(self.stamp)


def parse_stamp(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        from slixmpp.plugins import xep_0082

        try:
            ts = xep_0082.parse(text)
        except ValueError:
            return datetime.now(UTC)
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _bare(jid: str) -> str:
    return jid.split("/", 1)[0].lower()


def classify_raw(mtype: str | None, sender: str, to: str, has_body: bool,
                 me: str) -> tuple[str, str]:
    """``("in"|"out"|"skip", contact)`` from a message's attributes (bare JIDs)."""
    if (mtype or "normal") not in ("chat", "normal"):
        return "skip", ""
    if sender == me:
        if to and to != me:
            return "out", to
        return "skip", ""
    if sender and has_body:
        return "in", sender
    return "skip", ""


def classify(inner: Any, me: str) -> tuple[str, str]:
    """Same, for a slixmpp Message stanza."""
    return classify_raw(inner["type"], inner["from"].bare.lower(), inner["to"].bare.lower(),
                        bool(inner["body"]), me)


FORWARD = "{urn:xmpp:forward:0}forwarded"
DELAY = "{urn:xmpp:delay}delay"
CLIENT_MESSAGE = "{jabber:client}message"
CLIENT_BODY = "{jabber:client}body"


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
    kind, contact = classify_raw(inner.get("type"), _bare(inner.get("from", "")),
                                 _bare(inner.get("to", "")), bool(body), me)
    return Archived(aid, kind, contact, stamp, body if kind == "in" else "")


@dataclass
class Track:
    """Per-contact state of the first pass."""

    pointer: str | None = None  # stanza-id from the displayed pointer
    pointer_ord: int | None = None  # where the pointer's message is in the archive
    after_pointer: int = 0  # incoming messages after the pointer
    last_out_ord: int = -1  # our last message to the contact (-1: none)
    last_out_id: str | None = None
    since_out: int = 0  # incoming messages since our last message

    def unread(self) -> int:
        return self.after_pointer if self.pointer_ord is not None else self.since_out

    def cutoff(self) -> tuple[int, str | None]:
        """(ordinal, archive id) after which this contact's messages are unread."""
        if self.pointer_ord is not None:
            return self.pointer_ord, self.pointer
        return self.last_out_ord, self.last_out_id


class Scan:
    """First pass over the archive: counts and cut-offs per contact."""

    def __init__(self, pointers: dict[str, str]) -> None:
        self.tracks: dict[str, Track] = {c: Track(pointer=p) for c, p in pointers.items()}
        self.end_ord = -1

    def feed(self, ordinal: int, msg: Archived) -> None:
        self.end_ord = ordinal
        if msg.kind == "skip":
            return
        t = self.tracks.get(msg.contact)
        if t is None:
            t = self.tracks[msg.contact] = Track()
        if msg.kind == "out":
            t.last_out_ord, t.last_out_id, t.since_out = ordinal, msg.aid, 0
            return
        if t.pointer is not None and t.pointer_ord is None and msg.aid == t.pointer:
            t.pointer_ord = ordinal  # this one was displayed; the ones after are unread
            return
        t.since_out += 1
        if t.pointer_ord is not None:
            t.after_pointer += 1

    def counts(self) -> dict[str, int]:
        return {c: t.unread() for c, t in self.tracks.items() if t.unread() > 0}

    def start(self) -> tuple[int, str | None]:
        """Where the second pass begins: after (ordinal, id); (-1, None) = beginning."""
        cuts = [t.cutoff() for t in self.tracks.values() if t.unread() > 0]
        if not cuts:
            return self.end_ord, None
        return min(cuts, key=lambda c: c[0])

    def may_be_unread(self, ordinal: int, msg: Archived) -> bool:
        """With what is known so far (a later message of ours may still come)."""
        t = self.tracks.get(msg.contact)
        if msg.kind != "in" or t is None:
            return False
        if t.pointer_ord is not None:
            return ordinal > t.pointer_ord
        return ordinal > t.last_out_ord and msg.aid != t.pointer

    def is_unread(self, ordinal: int, msg: Archived) -> bool:
        if msg.kind != "in" or ordinal > self.end_ord:
            return False
        t = self.tracks.get(msg.contact)
        return t is not None and t.unread() > 0 and ordinal > t.cutoff()[0]


# --------------------------------------------------------------------------- server


async def has_feature(session: Session, jid: Any, feature: str) -> bool:
    info = await session.guard(
        session.client.plugin["xep_0030"].get_info(jid=jid, local=False,
                                                  timeout=session.settings.timeout),
        f"service discovery on {jid}",
    )
    return feature in info["disco_info"]["features"]


async def read_pointers(session: Session) -> dict[str, str]:
    """XEP-0490 pointers: contact bare JID -> stanza-id (by our account)."""
    from slixmpp.exceptions import IqError

    client = session.client
    me = client.boundjid.bare
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
    except IqError:  # pragma: no cover - guard() converts these
        return {}
    pointers: dict[str, str] = {}
    for item in iq["pubsub"]["items"]:
        sid = item["displayed"]["stanza_id"]
        by = str(sid["by"] or "")
        if sid["id"] and (not by or by == me):
            pointers[str(item["id"]).lower()] = sid["id"]
    log.info("%d displayed pointer(s)", len(pointers))
    return pointers


async def _raw(aw: Any) -> Any:
    return await aw


async def archive(session: Session, after: str | None) -> AsyncIterator[Archived]:
    """Stream the account's archive oldest first, one RSM page per request."""
    me = session.client.boundjid.bare.lower()
    rsm: dict[str, Any] = {"max": PAGE}
    if after is not None:
        rsm["after"] = after
    mam: Any = session.client.plugin["xep_0313"]
    pages = mam.retrieve(iterator=True, rsm=rsm, timeout=session.settings.timeout)
    while True:
        try:
            page = await session.guard(_next(pages), "reading the message archive (MAM)")
        except StopAsyncIteration:
            return
        for result in page["mam"]["results"]:
            yield extract(result, me)


async def _next(iterator: Any) -> Any:
    """Next page of the archive.  slixmpp's RSM ResultIterator turns an error
    answer *and an IqTimeout* into StopAsyncIteration (``except XMPPError: raise
    StopAsyncIteration``), so a failed page would look like the end of the
    archive; the swallowed error is still the exception's ``__context__``."""
    from slixmpp.exceptions import IqError, IqTimeout

    try:
        return await iterator.next()
    except StopAsyncIteration as stop:
        cause = stop.__context__
        if isinstance(cause, IqTimeout):
            raise errors.tempfail("reading the message archive (MAM): no answer") from None
        if isinstance(cause, IqError):
            cond = cause.iq["error"]["condition"] or "undefined-condition"
            raise errors.protocol(f"reading the message archive (MAM): {cond}") from None
        raise


# --------------------------------------------------------------------------- marking


def _form(form_type: str, values: dict[str, str]) -> Any:
    from slixmpp.plugins import xep_0004

    form: Any = getattr(xep_0004, "Form")()  # noqa: B009 - untyped in slixmpp
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
    for var, value in values.items():
        form.add_field(var=var, value=value)
    return form


async def mark_read(session: Session, shown: dict[str, str]) -> None:
    """Publish one XEP-0490 pointer per contact (the last shown message).

    slixmpp's ``xep_0490.flag_chat`` sends publish-options with
    ``pubsub#max_items``/``pubsub#send_last_published_item``, which ejabberd
    rejects (and a node created without ``max_items`` keeps one item only, so one
    contact's pointer would replace another's).  So: publish with the options
    both servers accept, then configure the node ``max_items = max``, then
    publish the rest.
    """
    if not shown:
        return
    from slixmpp.plugins.xep_0490.stanza import Displayed

    client = session.client
    me = client.boundjid.bare
    pubsub: Any = client.plugin["xep_0060"]
    timeout = session.settings.timeout
    options = _form(
        "http://jabber.org/protocol/pubsub#publish-options",
        {"pubsub#persist_items": "true", "pubsub#access_model": "whitelist"},
    )

    def publish(contact: str, aid: str) -> Any:
        payload = Displayed()
        payload["stanza_id"]["id"] = aid
        payload["stanza_id"]["by"] = me
        return pubsub.publish(me, MDS_NS, id=contact, payload=payload, options=options,
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


async def _unread_mam(
    session: Session, out: Writer, count_only: bool, mark: bool, limit: int | None
) -> None:
    pointers = await read_pointers(session)
    scan = Scan(pointers)
    buffer: list[tuple[int, Archived]] | None = None if count_only else []
    ordinal = -1
    async for msg in archive(session, None):
        ordinal += 1
        scan.feed(ordinal, msg)
        if buffer is not None and msg.kind == "in":
            buffer.append((ordinal, msg))
            if len(buffer) > BUFFER:
                buffer = [(o, m) for o, m in buffer if scan.may_be_unread(o, m)]
                if len(buffer) > BUFFER:
                    buffer = None  # too many: print them from a second pass
    log.info("archive: %d message(s) read", ordinal + 1)
    counts = scan.counts()
    if count_only:
        out.count(counts)
        return
    if not counts:
        return

    shown: dict[str, str] = {}

    def show(ordinal: int, msg: Archived) -> bool:
        """Print if unread; False once the limit is reached."""
        if scan.is_unread(ordinal, msg):
            out.message(Message(id=msg.aid, sender=msg.contact, timestamp=msg.timestamp,
                                body=msg.body))
            shown[msg.contact] = msg.aid
        return limit is None or out.written < limit

    if buffer is not None:
        for o, m in buffer:
            if not show(o, m):
                break
    else:
        start_ord, start_id = scan.start()
        log.info("more than %d unread: second pass over the archive", BUFFER)
        ordinal = start_ord
        async for msg in archive(session, start_id):
            ordinal += 1
            if ordinal > scan.end_ord or not show(ordinal, msg):
                break
    if mark:
        await mark_read(session, shown)


async def _unread_offline(
    session: Session, out: Writer, count_only: bool, limit: int | None
) -> None:
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
    counts: dict[str, int] = {}
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
            if count_only:
                counts[contact] = counts.get(contact, 0) + 1
                continue
            stamp = msg["delay"]["stamp"]
            if not isinstance(stamp, datetime):
                stamp = datetime.now(UTC)  # no XEP-0203 delay: it arrived just now
            out.message(Message(id=_offline_node(msg) or msg["id"] or "",
                                sender=contact, timestamp=stamp, body=msg["body"]))
            if limit is not None and out.written >= limit:
                return
    if count_only:
        out.count(counts)


def _delay_key(msg: Any) -> datetime:
    stamp = msg["delay"]["stamp"]
    return stamp if isinstance(stamp, datetime) else datetime.max.replace(tzinfo=UTC)


def _offline_node(msg: Any) -> str:
    for sub in msg["offline"]["substanzas"]:
        if sub.name == "item" and sub["node"]:
            return str(sub["node"])
    return ""


async def _unread(
    session: Session, out: Writer, count_only: bool, mark: bool, limit: int | None
) -> None:
    await session.start()
    client = session.client
    from slixmpp import JID

    if await has_feature(session, JID(client.boundjid.bare), MAM_NS):
        log.info("using the message archive (XEP-0313) and displayed pointers (XEP-0490)")
        await _unread_mam(session, out, count_only, mark, limit)
        return
    if await has_feature(session, JID(client.boundjid.domain), OFFLINE_NS):
        if mark:
            raise errors.protocol(
                "server has no message archive (XEP-0313): cannot mark as read (-m); "
                "run without -m to view offline messages (XEP-0013)"
            )
        log.info("no message archive: viewing offline messages (XEP-0013)")
        await _unread_offline(session, out, count_only, limit)
        return
    raise errors.protocol(
        "server supports neither message archive (XEP-0313 MAM) nor flexible "
        "offline message retrieval (XEP-0013)"
    )


def unread(
    settings: Settings,
    password: str,
    stdout: BinaryIO,
    *,
    as_json: bool,
    count_only: bool,
    mark: bool,
    limit: int | None,
) -> None:
    out = Writer(stdout, as_json=as_json)

    async def main() -> None:
        session = Session(settings, password, PLUGINS)
        # slixmpp matches every incoming stanza against every handler; 10,000
        # archived messages x ~22 handlers is most of our CPU time.  These are
        # for events we never use (and never answer anything), so drop them.
        for name in UNUSED_HANDLERS:
            session.client.remove_handler(name)
        try:
            await _unread(session, out, count_only, mark, limit)
        finally:
            await session.close()

    run(main)
