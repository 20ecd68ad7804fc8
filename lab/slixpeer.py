"""A plain slixmpp client for the tests and benchmarks ("another client", not the CLI).

It never sends presence (presence would make both servers flood and then delete the
account's offline messages), verifies TLS against the given CA file, and waits for
the server's XEP-0198 acknowledgement of what it sends.

    async with Peer(jid, password, server) as alice:
        await alice.send_chat("bob@prosody.test", "hi")   # returns once acked
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import slixmpp
from slixmpp import JID
from slixmpp.plugins.xep_0004 import Form

MDS_NODE = "urn:xmpp:mds:displayed:0"
BOOKMARKS_NODE = "urn:xmpp:bookmarks:1"  # XEP-0402
UPLOAD_NS = "urn:xmpp:http:upload:0"  # XEP-0363 (slixmpp's plugin needs aiohttp)

PLUGINS = (
    "xep_0030",  # disco
    "xep_0045",  # MUC
    "xep_0059",  # RSM
    "xep_0060",  # pubsub
    "xep_0163",  # PEP
    "xep_0198",  # stream management
    "xep_0199",  # ping
    "xep_0223",  # PEP private storage
    "xep_0313",  # MAM
    "xep_0359",  # stanza-id
    "xep_0490",  # MDS
)


class PeerError(Exception):
    """Login, TLS or protocol failure of the test client."""


class Peer(slixmpp.ClientXMPP):
    """A minimal client bound to one server address.

    Create it inside the coroutine that uses it: slixmpp binds to the event loop
    that is current at construction time.
    """

    def __init__(
        self,
        jid: str,
        password: str,
        host: str,
        port: int,
        cafile: Path,
        *,
        direct_tls: bool = False,
        timeout: float = 20.0,
    ) -> None:
        # Trust exactly ``cafile``.  Passing the context to the constructor also
        # skips slixmpp's default one, which loads the system CA store twice
        # (create_default_context + set_default_verify_paths: 60-300 ms here).
        super().__init__(jid, password, ssl_context=ssl.create_default_context(cafile=str(cafile)))
        self._address = (host, port)
        self._timeout = timeout
        # Given an address, slixmpp tries direct TLS first and then STARTTLS on
        # the same port: allow exactly one of them.
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        for name in PLUGINS:
            self.register_plugin(name)
        self._ready: asyncio.Future[None] | None = None
        self._acks: dict[str, asyncio.Future[None]] = {}
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("sm_enabled", self._on_sm_enabled)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("ssl_invalid_chain", self._on_bad_cert)
        self.add_event_handler("connection_failed", self._on_connection_failed)
        self.add_event_handler("stanza_acked", self._on_acked)
        self._session = False
        self._sm = False
        self._groupchat: dict[str, asyncio.Queue[tuple[str, str]]] = {}
        self._self_status: dict[str, set[str]] = {}

    # ----------------------------------------------------------------- events

    def _fail(self, exc: Exception) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(exc)
        self.cancel_connection_attempt()
        self.abort()

    def _check_ready(self) -> None:
        if self._session and self._sm and self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    def _on_session_start(self, _event: Any) -> None:
        self._session = True  # no presence, no roster request: on purpose
        self._check_ready()

    def _on_sm_enabled(self, _event: Any) -> None:
        self._sm = True
        self._check_ready()

    def _on_failed_auth(self, _event: Any) -> None:
        self._fail(PeerError("authentication failed"))

    def _on_bad_cert(self, exc: Any) -> None:
        self._fail(PeerError(f"certificate not trusted: {exc}"))

    def _on_connection_failed(self, exc: Any) -> None:
        if isinstance(exc, ssl.SSLError):
            self._fail(PeerError(f"certificate not trusted: {exc}"))
        else:
            self._fail(PeerError(f"connection failed: {exc}"))

    def _on_acked(self, stanza: Any) -> None:
        fut = self._acks.pop(stanza["id"], None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    # ------------------------------------------------------------------ life

    async def start(self) -> Peer:
        """Connect, authenticate, bind, enable stream management; raise PeerError."""
        self._ready = asyncio.get_running_loop().create_future()
        self.connect(*self._address)
        try:
            await asyncio.wait_for(self._ready, self._timeout)
        except TimeoutError:
            self.abort()
            await self._end_tasks()
            raise PeerError(f"no session within {self._timeout} s") from None
        except PeerError:
            await self._end_tasks()
            raise
        return self

    async def stop(self) -> None:
        if self.transport is not None:
            await self.disconnect(wait=2.0)
        await self._end_tasks()

    async def _end_tasks(self) -> None:
        # slixmpp leaves its send-queue task running after a disconnect; cancel it
        # so that asyncio.run() does not warn "Task was destroyed but it is pending".
        task = getattr(self, "_run_out_filters", None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Peer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -------------------------------------------------------------- messages

    def request_ack(self) -> None:
        """Queue an XEP-0198 <r/> behind the stanzas already queued.

        slixmpp's own ``plugin['xep_0198'].request_ack()`` writes <r/> at once with
        send_raw, ahead of stanzas still in the send queue, so the server's answer
        may not cover the message just "sent" (seen with slixmpp 1.17.0).
        """
        self.send("<r xmlns='urn:xmpp:sm:3'/>", use_filters=False)

    def _track(self, stanza: Any) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[stanza["id"]] = fut
        return fut

    async def send_chat(self, to: str, body: str) -> str:
        """Send a chat message and wait for the server's SM ack; returns its id."""
        msg = self.make_message(mto=JID(to), mbody=body, mtype="chat")
        msg["id"] = self.new_id()
        fut = self._track(msg)
        msg.send()
        self.request_ack()
        await asyncio.wait_for(fut, self._timeout)
        return str(msg["id"])

    async def send_many(self, to: str, bodies: Iterable[str], window: int = 200) -> int:
        """Send many chat messages, at most ``window`` unacknowledged at a time."""
        pending: list[asyncio.Future[None]] = []
        count = 0
        for body in bodies:
            msg = self.make_message(mto=JID(to), mbody=body, mtype="chat")
            msg["id"] = self.new_id()
            pending.append(self._track(msg))
            msg.send()
            count += 1
            if len(pending) >= window:
                self.request_ack()
                await asyncio.wait_for(asyncio.gather(*pending), self._timeout * 3)
                pending = []
        if pending:
            self.request_ack()
            await asyncio.wait_for(asyncio.gather(*pending), self._timeout * 3)
        return count

    # ------------------------------------------------------------ XEP-0045

    async def join_room(self, room: str, nick: str) -> None:
        """Join ``room`` (no history); a room this join created is unlocked as an
        instant room (XEP-0045 10.1.2), so that others can join it.  Joining sends
        directed presence to the room only (no broadcast, no offline flood)."""
        muc: Any = self.plugin["xep_0045"]
        self._groupchat.setdefault(room, asyncio.Queue())
        self.add_event_handler(f"muc::{room}::message", self._on_groupchat)
        self.add_event_handler(f"muc::{room}::self-presence", self._on_self_presence)
        await muc.join_muc_wait(JID(room), nick, maxstanzas=0, timeout=self._timeout)
        if "201" in self._self_status.get(room, set()):
            form: Any = Form()  # type: ignore[no-untyped-call]
            form["type"] = "submit"
            await muc.set_room_config(JID(room), form, timeout=self._timeout)

    def _on_self_presence(self, pres: Any) -> None:
        codes = {str(code) for code in pres["muc"]["status_codes"]}
        self._self_status[str(pres["from"].bare)] = codes

    def _on_groupchat(self, msg: Any) -> None:
        if msg["body"]:
            self._groupchat.setdefault(str(msg["from"].bare), asyncio.Queue()).put_nowait(
                (str(msg["from"].resource), str(msg["body"]))
            )

    async def send_groupchat(self, room: str, body: str) -> None:
        """Send ``body`` to the room (we must have joined) and wait until the room
        reflects it back to us (the MUC's acknowledgement)."""
        msg = self.make_message(mto=JID(room), mbody=body, mtype="groupchat")
        msg["id"] = self.new_id()
        msg.send()
        while True:
            _nick, got = await self.next_groupchat(room)
            if got == body:
                return

    async def next_groupchat(self, room: str) -> tuple[str, str]:
        """(nick, body) of the next groupchat message from ``room`` (joined)."""
        queue = self._groupchat.setdefault(room, asyncio.Queue())
        return await asyncio.wait_for(queue.get(), self._timeout)

    async def leave_room(self, room: str, nick: str) -> None:
        self.plugin["xep_0045"].leave_muc(JID(room), nick)

    # ------------------------------------------------------------ XEP-0363

    async def upload_service(self) -> tuple[str, int]:
        """(JID, max-file-size in bytes or 0) of the domain's XEP-0363 service,
        found by disco#items + disco#info on our domain."""
        disco: Any = self.plugin["xep_0030"]
        items = await disco.get_items(jid=self.boundjid.domain, timeout=self._timeout)
        for item_jid, _node, _name in items["disco_items"]["items"]:
            info = await disco.get_info(jid=item_jid, timeout=self._timeout)
            if UPLOAD_NS not in info["disco_info"]["features"]:
                continue
            size = 0
            for field in info.xml.iter("{jabber:x:data}field"):
                value = field.find("{jabber:x:data}value")
                if field.get("var") == "max-file-size" and value is not None and value.text:
                    size = int(value.text)
            return str(item_jid), size
        raise PeerError(f"no {UPLOAD_NS} service on {self.boundjid.domain}")

    async def upload_slot(
        self, service: str, filename: str, size: int, content_type: str
    ) -> tuple[str, dict[str, str], str]:
        """Ask ``service`` for a slot: (PUT URL, headers to send with the PUT, GET URL)."""
        from xml.etree import ElementTree as ET

        iq: Any = self.make_iq_get(ito=JID(service))
        iq.append(ET.Element(f"{{{UPLOAD_NS}}}request", {
            "filename": filename, "size": str(size), "content-type": content_type}))  # fmt: skip
        result = await iq.send(timeout=self._timeout)
        slot = result.xml.find(f"{{{UPLOAD_NS}}}slot")
        put = slot.find(f"{{{UPLOAD_NS}}}put") if slot is not None else None
        get = slot.find(f"{{{UPLOAD_NS}}}get") if slot is not None else None
        if put is None or get is None:
            raise PeerError(f"no slot in the answer of {service}")
        headers = {h.get("name", ""): h.text or "" for h in put.iter(f"{{{UPLOAD_NS}}}header")}
        return put.get("url", ""), headers, get.get("url", "")

    async def set_archiving(self, default: str) -> None:
        """XEP-0313 preferences: ``always``, ``roster`` or ``never`` (slixmpp 1.17
        has no API for it).  A seeding sender with ``never`` spares the server half
        of the archive writes."""
        from xml.etree import ElementTree as ET

        iq: Any = self.make_iq_set()
        iq.append(ET.Element("{urn:xmpp:mam:2}prefs", {"default": default}))
        await iq.send(timeout=self._timeout)

    async def seed(self, to: str, count: int, prefix: str = "seed") -> int:
        """Put ``count`` chat messages in ``to``'s archive quickly (bodies
        ``f"{prefix} {i}"``, i from 0), with this account's own archiving off.

        ejabberd's Mnesia archive is a bag per user: each insert costs O(messages
        already there), so 10,000 messages take about a minute on a quiet machine
        (prosody + SQLite: ~5 ms per message).
        """
        await self.set_archiving("never")
        try:
            return await self.send_many(to, (f"{prefix} {i}" for i in range(count)))
        finally:
            await self.set_archiving("always")

    async def archive(
        self, with_jid: str | None = None, page: int = 250
    ) -> AsyncIterator[tuple[str, str, str]]:
        """(stanza-id in the archive, from, body) of archived messages, oldest first."""
        mam = self.plugin["xep_0313"]
        async for result in mam.iterate(
            with_jid=JID(with_jid) if with_jid else None, rsm={"max": page}
        ):
            fwd = result["mam_result"]["forwarded"]["stanza"]
            yield str(result["mam_result"]["id"]), str(fwd["from"].bare), str(fwd["body"])

    async def room_archive(self, room: str, page: int = 250) -> list[tuple[str, str, str]]:
        """(stanza-id the room assigned, sender's nick, body) of the room's archive
        (XEP-0313 addressed to the room's JID), oldest first."""
        out = []
        async for result in self.plugin["xep_0313"].iterate(jid=JID(room), rsm={"max": page}):
            fwd = result["mam_result"]["forwarded"]["stanza"]
            out.append((str(result["mam_result"]["id"]), str(fwd["from"].resource),
                        str(fwd["body"])))  # fmt: skip
        return out

    # ------------------------------------------------------------ XEP-0402

    async def bookmarks(self) -> dict[str, tuple[str, str]]:
        """room JID -> (name, nick) of the account's XEP-0402 bookmarks (PEP node
        urn:xmpp:bookmarks:1, read with pubsub as any client does)."""
        try:
            iq = await self.plugin["xep_0060"].get_items(  # type: ignore[no-untyped-call]
                self.boundjid.bare, BOOKMARKS_NODE, timeout=self._timeout)
        except slixmpp.exceptions.IqError as exc:
            if exc.condition == "item-not-found":
                return {}
            raise
        out = {}
        for item in iq["pubsub"]["items"]:
            conf = item.xml.find(f"{{{BOOKMARKS_NODE}}}conference")
            if conf is not None:
                nick = conf.findtext(f"{{{BOOKMARKS_NODE}}}nick") or ""
                out[str(item["id"])] = (conf.get("name", ""), nick)
        return out

    async def bookmark(self, room: str, nick: str, name: str = "") -> None:
        """Bookmark ``room`` (XEP-0402) as a chat app does: one PEP item per room.
        Published with the options both servers accept, then the node set to keep
        every item (see _publish_private)."""
        from xml.etree import ElementTree as ET

        conf = ET.Element(f"{{{BOOKMARKS_NODE}}}conference",
                          {"name": name or room, "autojoin": "true"})  # fmt: skip
        ET.SubElement(conf, f"{{{BOOKMARKS_NODE}}}nick").text = nick
        await self._publish_private(BOOKMARKS_NODE, room, conf)

    async def legacy_bookmarks(self, rooms: dict[str, str]) -> None:
        """Store ``rooms`` (room JID -> nick) as XEP-0048 bookmarks in private XML
        storage (XEP-0049), the way clients did before XEP-0402."""
        from xml.etree import ElementTree as ET

        iq: Any = self.make_iq_set()
        storage = ET.SubElement(ET.SubElement(iq.xml, "{jabber:iq:private}query"),
                                "{storage:bookmarks}storage")  # fmt: skip
        for room, nick in rooms.items():
            conf = ET.SubElement(storage, "{storage:bookmarks}conference",
                                 {"jid": room, "autojoin": "false"})  # fmt: skip
            ET.SubElement(conf, "{storage:bookmarks}nick").text = nick
        await iq.send(timeout=self._timeout)

    async def configure_room(self, room: str, fields: dict[str, Any]) -> list[str]:
        """Set those of ``fields`` that the room's config form has (we own it);
        returns the form's field names."""
        muc: Any = self.plugin["xep_0045"]
        form: Any = await muc.get_room_config(JID(room), timeout=self._timeout)
        known = form.get_fields()
        submit: Any = Form()  # type: ignore[no-untyped-call]
        submit["type"] = "submit"
        submit.add_field(var="FORM_TYPE", ftype="hidden",
                         value="http://jabber.org/protocol/muc#roomconfig")  # fmt: skip
        for var, value in fields.items():
            if var in known:
                submit.add_field(var=var, value=value, ftype=known[var]["type"] or None)
        await muc.set_room_config(JID(room), submit, timeout=self._timeout)
        return list(known)

    # ------------------------------------------------------------ XEP-0490

    async def mds_pointers(self) -> dict[str, str]:
        """contact bare JID -> stanza-id, as slixmpp's own XEP-0490 client reads them."""
        try:
            iq = await self.plugin["xep_0490"].catch_up(timeout=self._timeout)
        except slixmpp.exceptions.IqError as exc:
            if exc.condition == "item-not-found":
                return {}
            raise
        out: dict[str, str] = {}
        for item in iq["pubsub"]["items"]:
            out[str(item["id"])] = str(item["payload"].find(".//{urn:xmpp:sid:0}stanza-id")
                                       .get("id"))  # fmt: skip
        return out

    async def mds_publish(self, contact: str, stanza_id: str) -> None:
        """Publish a pointer the way slixmpp's XEP-0490 plugin does (publish-options
        max_items=max, send_last_published_item=never, access_model=whitelist)."""
        await self.plugin["xep_0490"].flag_chat(contact, stanza_id, timeout=self._timeout)

    async def mds_publish_minimal(self, contact: str, stanza_id: str) -> None:
        """ejabberd workaround: publish with only the options ejabberd accepts, then
        configure the node to keep many items (see test_servers for the quirk)."""
        from slixmpp.plugins.xep_0490.stanza import Displayed

        displayed = Displayed()
        displayed["stanza_id"]["id"] = stanza_id
        await self._publish_private(MDS_NODE, contact, displayed)

    async def _publish_private(self, node: str, item_id: str, payload: Any) -> None:
        """Publish to our own PEP ``node`` with the only publish-options ejabberd
        accepts (persist_items, access_model whitelist), then configure the node to
        keep every item (created without max_items, it keeps one)."""
        form: Any = Form()  # type: ignore[no-untyped-call]  # slixmpp is untyped here
        form.add_field(var="FORM_TYPE", ftype="hidden",
                       value="http://jabber.org/protocol/pubsub#publish-options")  # fmt: skip
        form.add_field(var="pubsub#persist_items", value=True)
        form.add_field(var="pubsub#access_model", value="whitelist")
        pubsub: Any = self.plugin["xep_0060"]
        await pubsub.publish(
            self.boundjid.bare, node, id=item_id, payload=payload, options=form,
            timeout=self._timeout,
        )  # fmt: skip
        await self.configure_max_items(node)

    async def configure_max_items(self, node: str, value: str = "max") -> None:
        pubsub: Any = self.plugin["xep_0060"]
        form: Any = Form()  # type: ignore[no-untyped-call]
        form["type"] = "submit"
        form.add_field(var="FORM_TYPE", ftype="hidden",
                       value="http://jabber.org/protocol/pubsub#node_config")  # fmt: skip
        form.add_field(var="pubsub#max_items", value=value)
        await pubsub.set_node_config(self.boundjid.bare, node, form, timeout=self._timeout)


def peer_for(server: Any, user: str, password: str, *, direct_tls: bool = False,
             cafile: Path | None = None) -> Peer:  # fmt: skip
    """A Peer for ``user`` on an XmppServer (STARTTLS port, or the direct TLS one)."""
    port = server.tls_port if direct_tls else server.port
    return Peer(
        f"{user}@{server.domain}", password, server.host, port,
        cafile if cafile is not None else server.cafile, direct_tls=direct_tls,
    )  # fmt: skip
