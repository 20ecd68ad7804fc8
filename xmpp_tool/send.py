"""``send``: one chat message, exit 0 only once the server has acknowledged it.

Acknowledgement: with XEP-0198 stream management (slixmpp's ``xep_0198``, an ack
request after every stanza) the ``<a h=…/>`` covering the message's sequence
number; without stream management, the answer to an XEP-0199 ping sent after the
message (servers handle a client's stanzas in order).

An error bounce for the message (matched by id: unknown user, not allowed, …) can
arrive after the SM ack, so a ping always follows the message: servers process a
stream in order and a local bounce is queued before the ping's answer.  Both the
ack and the ping answer are awaited together, so this costs one round trip.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, BinaryIO

from . import errors, password
from .config import Settings
from .session import Session, jid_or_error, run

log = logging.getLogger("xmpp_tool")

MAX_BODY = 1024 * 1024  # bytes; servers refuse far smaller stanzas anyway

PLUGINS = ("xep_0198", "xep_0199")


def _xml_char_ok(ch: str) -> bool:
    c = ord(ch)
    return (
        c in (0x9, 0xA, 0xD)
        or 0x20 <= c <= 0xD7FF
        or 0xE000 <= c <= 0xFFFD
        or 0x10000 <= c <= 0x10FFFF
    )


def read_body(message: str | None, stdin: BinaryIO) -> str:
    """The body from the operand, or from standard input if it is absent or ``-``."""
    if message is None or message == "-":
        data = stdin.read(MAX_BODY + 1)
        if len(data) > MAX_BODY:
            raise errors.dataerr(f"message body larger than {MAX_BODY} bytes")
        return decode_body(data.rstrip(b"\r\n"))
    try:
        raw = message.encode("utf-8")
    except UnicodeEncodeError:
        # argv bytes that were not UTF-8 arrive as surrogate escapes
        raise errors.dataerr("message body is not valid UTF-8") from None
    if len(raw) > MAX_BODY:
        raise errors.dataerr(f"message body larger than {MAX_BODY} bytes")
    return check_body(message)


def decode_body(data: bytes) -> str:
    """Validate a message body: UTF-8, not empty, only characters XML allows."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.dataerr(f"message body is not valid UTF-8 (byte offset {exc.start})") from None
    return check_body(text)


def check_body(text: str) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise errors.dataerr("message body is empty")
    for ch in text:
        if not _xml_char_ok(ch):
            raise errors.dataerr(
                f"message body contains U+{ord(ch):04X}, which XML does not allow"
            )
    return text


async def _send(session: Session, recipient: Any, body: str) -> None:
    client = session.client
    loop = asyncio.get_running_loop()
    await session.start()

    msg = client.make_message(mto=recipient.bare, mbody=body, mtype="chat")
    msg_id = client.new_id()
    msg["id"] = msg_id

    bounced: asyncio.Future[Any] = loop.create_future()
    acked: asyncio.Future[None] = loop.create_future()

    def on_error(stanza: Any) -> None:
        if stanza["id"] == msg_id and not bounced.done():
            bounced.set_result(stanza)

    def on_acked(stanza: Any) -> None:
        if stanza["id"] == msg_id and not acked.done():
            acked.set_result(None)

    client.add_event_handler("message_error", on_error)
    client.add_event_handler("stanza_acked", on_acked)

    sm = client.plugin["xep_0198"]
    use_sm = bool(sm.enabled_out)
    log.info(
        "sending to %s (%s)",
        recipient.bare,
        "waiting for the XEP-0198 ack" if use_sm else "no stream management: XEP-0199 ping",
    )
    msg.send()
    if use_sm:
        # Queue the ack request behind the message.  (slixmpp bug: its own
        # request_ack(), also the one its ``window`` triggers, writes <r/> with
        # send_raw from inside the send-queue filter, i.e. *before* the stanza
        # that triggered it, so that <a/> would not cover the message.)
        client.send("<r xmlns='urn:xmpp:sm:3'/>", use_filters=False)
    from slixmpp import JID

    ping = client.plugin["xep_0199"].send_ping(
        JID(client.boundjid.domain), timeout=session.settings.timeout
    )

    async def barrier() -> None:
        from slixmpp.exceptions import IqError

        try:
            await ping
        except IqError:
            pass  # an error answer to the ping is an answer all the same
        if use_sm:
            await acked

    await session.guard(barrier(), "waiting for the server to acknowledge the message")
    if bounced.done():
        raise errors.protocol(f"message to {recipient.bare} refused: "
                              f"{errors.describe(bounced.result()['error'])}")
    log.info("server acknowledged the message%s", " (XEP-0198)" if use_sm else " (ping)")


def send(settings: Settings, password: str, recipient_text: str, body: str) -> None:
    recipient = jid_or_error(recipient_text, "recipient JID")

    async def main() -> None:
        session = Session(
            settings,
            password,
            PLUGINS,
            # window: never let slixmpp request acks itself (see _send)
            plugin_config={"xep_0198": {"window": 2**31, "allow_resume": False}},
        )
        try:
            await _send(session, recipient, body)
        finally:
            await session.close()

    run(main)


def command(settings: Settings, recipient: str, message: str | None, stdin: BinaryIO) -> None:
    """``xmpp-tool send``: validate, get the password, send and wait for the ack."""
    body = read_body(message, stdin)
    jid_or_error(recipient, "recipient JID")
    jid_or_error(settings.jid, "account JID")
    send(settings, password.obtain(settings), recipient, body)
