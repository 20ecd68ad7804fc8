"""``unread``: list unread messages without consuming anything, never sending presence.

What is unread, and how the archive is read so that a run costs what is unread
rather than what was ever archived: :mod:`xmpp_tool.unread_walk` (MAM, XEP-0313,
with XEP-0490 displayed pointers and a per-account index, :mod:`xmpp_tool.statefile`).
This module is the network side: the MAM queries, the pointers, marking read.

Without MAM, XEP-0013 "view" (ejabberd) lists the offline messages without
removing them.  ``-m`` publishes the pointers of what was shown.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, BinaryIO

from . import errors, slix, statefile
from .config import Settings
from .render import UnreadMessage, Writer
from .session import Session, login_password, run_session
from .unread_walk import PAGE, Archived, Page, UnknownId, classify_raw, find_unread, marks

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
    kind, contact = classify_raw(inner.get("type"), _bare_lowercase(inner.get("from", "")),
                                 _bare_lowercase(inner.get("to", "")), bool(body), me)
    return Archived(aid, kind, contact, stamp, body if kind == "in" else "")


# --------------------------------------------------------------------------- server


async def read_pointers(session: Session) -> dict[str, str]:
    """XEP-0490 pointers: contact bare JID -> stanza-id (by our account)."""
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


# An RSM id the archive does not hold: prosody answers item-not-found; ejabberd
# compares its numeric ids and answers even for an id it does not hold (the walk
# checks pointers itself); bad-request is what a stricter server may say.
UNKNOWN_ID_CONDITIONS = ("item-not-found", "bad-request")


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
        rsm: dict[str, Any] = {"max": max_}
        if after is not None:
            rsm["after"] = after
        if before is not None:
            rsm["before"] = before
        mam: Any = self.session.client.plugin["xep_0313"]
        self.queries += 1
        iq = await self.session.guard(
            _known_id(mam.retrieve(with_jid=slix.JID(with_) if with_ else None, rsm=rsm,
                                   timeout=self.session.settings.timeout)),
            "reading the message archive (MAM)",
        )
        items = [extract(result, self.me) for result in iq["mam"]["results"]]
        self.messages += len(items)
        return Page(items, str(iq["mam_fin"]["complete"]).lower() in ("true", "1"))


async def _known_id(aw: Any) -> Any:
    try:
        return await aw
    except slix.IqError as exc:
        if exc.iq["error"]["condition"] in UNKNOWN_ID_CONDITIONS:
            raise UnknownId(exc.iq["error"]["condition"]) from None
        raise


# --------------------------------------------------------------------------- marking


def _form(form_type: str, values: dict[str, str]) -> Any:
    form = slix.DataForm()
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
    client = session.client
    me = client.boundjid.bare
    pubsub: Any = client.plugin["xep_0060"]
    timeout = session.settings.timeout
    options = _form(
        "http://jabber.org/protocol/pubsub#publish-options",
        {"pubsub#persist_items": "true", "pubsub#access_model": "whitelist"},
    )

    def publish(contact: str, aid: str) -> Any:
        payload = slix.Displayed()
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
    account = session.client.boundjid.bare
    index, found = await find_unread(MamArchive(session), statefile.load(account), pointers,
                                     count_only=count_only)
    statefile.save(account, index)
    if count_only:
        out.count(found.counts)
        return
    shown = found.messages[:limit]
    for msg in shown:
        out.message(UnreadMessage(id=msg.aid, sender=msg.contact, timestamp=msg.timestamp,
                                  body=msg.body))
    if mark:
        await mark_read(session, marks(shown))


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
            out.message(UnreadMessage(id=_offline_node(msg) or msg["id"] or "",
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


async def _list_unread(
    session: Session, out: Writer, count_only: bool, mark: bool, limit: int | None
) -> None:
    """From the archive if the account has one, else from offline storage."""
    account = slix.JID(session.client.boundjid.bare)
    if MAM_NS in await session.disco_features(account, f"service discovery on {account}"):
        log.info("using the message archive (XEP-0313) and displayed pointers (XEP-0490)")
        await _unread_mam(session, out, count_only, mark, limit)
        return
    domain = slix.JID(session.client.boundjid.domain)
    if OFFLINE_NS in await session.disco_features(domain, f"service discovery on {domain}"):
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


def command(settings: Settings, stdout: BinaryIO, *, as_json: bool, count_only: bool,
            mark: bool, limit: int | None) -> None:
    """``xmpp-tool unread``: validate, get the password, read and print."""
    unread(settings, login_password(settings), stdout, as_json=as_json,
           count_only=count_only, mark=mark, limit=limit)


def unread(
    settings: Settings,
    secret: str,
    stdout: BinaryIO,
    *,
    as_json: bool,
    count_only: bool,
    mark: bool,
    limit: int | None,
) -> None:
    out = Writer(stdout, as_json=as_json)

    async def list_unread(session: Session) -> None:
        await _list_unread(session, out, count_only, mark, limit)

    run_session(settings, secret, PLUGINS, list_unread, unused_handlers=UNUSED_HANDLERS)
