"""``send``: a message to one or more recipients over one login, exit 0 only once
the server has acknowledged every one.

Several recipients: one message each, all written at once, then one ack request
and one ping; each recipient's outcome is "sent" or the error bounced for its
message (matched by id).  Exit 0 if every one got through, else 76 (a bounce),
and ``-J`` prints one JSON line per recipient either way.  Rooms (``-g``) and
uploads (``-F``) are in :mod:`.muc` and :mod:`.upload`.

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
import json
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from . import errors, password
from .config import Settings
from .session import Session, jid_or_error, run

if TYPE_CHECKING:  # pragma: no cover
    from .cli import SendRequest

log = logging.getLogger("xmpp_tool")

MAX_BODY = 1024 * 1024  # bytes; servers refuse far smaller stanzas anyway

PLUGINS = (
    "xep_0198",  # stream management: the server's <a/> for what we sent
    "xep_0199",  # ping: orders bounces before its answer
)
UPLOAD_PLUGINS = (
    "xep_0030",  # service discovery: the upload service and its size limit
    "xep_0066",  # out-of-band data: the URL beside the body
    "xep_0363",  # HTTP file upload: the slot
)
MUC_PLUGINS = (
    "xep_0030",  # service discovery: does the room exist, is it a MUC
    "xep_0045",  # multi-user chat: join, groupchat, leave
    "xep_0359",  # unique and stable stanza ids: origin-id to match the room's echo
)

ROOM_PASSWORD_ENV = "XMPP_TOOL_ROOM_PASSWORD"  # noqa: S105 (a variable name)


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
        return json.dumps(data, ensure_ascii=False)


@dataclass(frozen=True)
class Message:
    """What goes to every recipient."""

    body: str
    mtype: str = "chat"
    subject: str | None = None
    url: str | None = None  # XEP-0066 out-of-band URL (the body is the URL then)


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


def _stanza(client: Any, to: Any, msg: Message) -> Any:
    stanza = client.make_message(mto=to, mbody=msg.body, mtype=msg.mtype,
                                 msubject=msg.subject)  # fmt: skip
    if msg.url is not None:
        stanza["oob"]["url"] = msg.url
    stanza["id"] = client.new_id()
    return stanza


async def send_direct(session: Session, recipients: list[Any], msg: Message) -> list[Outcome]:
    """One message per recipient, all acknowledged by one ack request and one ping."""
    client = session.client
    loop = asyncio.get_running_loop()
    stanzas = [_stanza(client, r.bare, msg) for r in recipients]
    by_id = {s["id"]: Outcome(str(r.bare), id=s["id"]) for r, s in zip(recipients, stanzas,
                                                                          strict=True)}
    bounces: dict[str, Any] = {}
    last_id = stanzas[-1]["id"]
    acked: asyncio.Future[None] = loop.create_future()

    def on_error(stanza: Any) -> None:
        if stanza["id"] in by_id:
            bounces.setdefault(stanza["id"], stanza)

    def on_acked(stanza: Any) -> None:
        if stanza["id"] == last_id and not acked.done():
            acked.set_result(None)

    client.add_event_handler("message_error", on_error)
    client.add_event_handler("stanza_acked", on_acked)

    sm = client.plugin["xep_0198"]
    use_sm = bool(sm.enabled_out)
    log.info(
        "sending to %s (%s)",
        ", ".join(o.recipient for o in by_id.values()),
        "waiting for the XEP-0198 ack" if use_sm else "no stream management: XEP-0199 ping",
    )
    for stanza in stanzas:
        stanza.send()
    if use_sm:
        # Queue the ack request behind the messages.  (slixmpp bug: its own
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

    what = "waiting for the server to acknowledge the message"
    await session.guard(barrier(), what + ("s" if len(stanzas) > 1 else ""))
    for mid, outcome in by_id.items():
        if mid in bounces:
            outcome.error = errors.describe(bounces[mid]["error"])
        else:
            outcome.ok = True
    log.info("server acknowledged %d message(s)%s", len(stanzas),
             " (XEP-0198)" if use_sm else " (ping)")  # fmt: skip
    return list(by_id.values())


async def _send(session: Session, recipient: Any, body: str) -> None:
    """One chat message over ``session`` (not yet started), refused -> 76."""
    await session.start()
    report(await send_direct(session, [recipient], Message(body)), None)


def report(outcomes: list[Outcome], stdout: BinaryIO | None) -> None:
    """``-J`` lines; then exit 76 naming every refused recipient, in one line."""
    if stdout is not None:
        stdout.write("".join(o.as_json() + "\n" for o in outcomes).encode("utf-8"))
        stdout.flush()
    refused = [o for o in outcomes if not o.ok]
    if not refused:
        return
    if len(outcomes) == 1:
        raise errors.protocol(f"message to {refused[0].recipient} refused: {refused[0].error}")
    raise errors.protocol(
        f"{len(refused)} of {len(outcomes)} recipients refused: "
        + "; ".join(f"{o.recipient}: {o.error}" for o in refused)
    )


def room_password(settings: Settings, env: dict[str, str] | None = None) -> str | None:
    """The rooms' password, never from argv: environment ``XMPP_TOOL_ROOM_PASSWORD``,
    else the account's ``room_password_command`` or ``room_password_file`` (read
    like ``password_command``/``password_file``); None if there is none."""
    env = dict(os.environ) if env is None else env
    value = env.get(ROOM_PASSWORD_ENV)
    if value:
        return value
    if settings.room_password_command is None and settings.room_password_file is None:
        return None
    from dataclasses import replace

    only_room = replace(settings, password_command=settings.room_password_command,
                        password_file=settings.room_password_file, inline_password=None)
    try:
        secret, source = password.get_password(only_room, {}, have_tty=lambda: False)
    except errors.ToolError as exc:
        raise errors.config(f"room password: {exc.message}") from None
    log.info("room password from room_%s", source)
    return secret


def send(
    settings: Settings,
    password: str,
    recipients: list[Any],
    msg: Message | None,
    *,
    groupchat: bool = False,
    nick: str | None = None,
    upload: Any = None,
) -> list[Outcome]:
    """Log in once, (upload,) send to every recipient, return their outcomes.

    ``msg`` is None only with ``upload`` (an :class:`.upload.Upload`), whose URL is the body.
    """
    plugins = list(PLUGINS)
    if upload is not None:
        plugins += [p for p in UPLOAD_PLUGINS if p not in plugins]
    if groupchat:
        plugins += [p for p in MUC_PLUGINS if p not in plugins]

    room_secret = room_password(settings) if groupchat else None

    async def main() -> list[Outcome]:
        session = Session(
            settings,
            password,
            plugins,
            # window: never let slixmpp request acks itself (see send_direct)
            plugin_config={"xep_0198": {"window": 2**31, "allow_resume": False}},
        )
        try:
            await session.start()
            message = msg
            if upload is not None:
                url = await upload.run(session)
                message = Message(body=url, mtype=msg.mtype if msg else "chat",
                                  subject=msg.subject if msg else None, url=url)  # fmt: skip
            assert message is not None
            if groupchat:
                from . import muc

                outcomes = await muc.send_rooms(session, recipients, message,
                                                nick or session.jid.user, room_secret)
            else:
                outcomes = await send_direct(session, recipients, message)
            if message.url is not None:
                for o in outcomes:
                    o.extra["url"] = message.url
            return outcomes
        finally:
            await session.close()

    return run(main)


def command(
    settings: Settings, request: SendRequest, stdin: BinaryIO, stdout: BinaryIO | None = None
) -> None:
    """``xmpp-tool send``: validate everything, get the password, send, report."""
    msg: Message | None = None
    upload = None
    if request.file is None:
        msg = Message(read_body(request.message, stdin), request.mtype, request.subject)
    else:
        from .upload import Upload, progress_wanted

        upload = Upload.open(request.file, settings, progress=progress_wanted(request.opts.quiet))
        if request.subject is not None or request.mtype != "chat":
            msg = Message("", request.mtype, request.subject)
    what = "room JID" if request.groupchat else "recipient JID"
    recipients = []
    seen = set()
    for text in request.recipients:
        jid = jid_or_error(text, what)
        if request.groupchat and not jid.user:
            raise errors.dataerr(f"invalid room JID {text!r}: no local part (the room's name)")
        if jid.bare not in seen:  # each recipient gets the message once
            seen.add(jid.bare)
            recipients.append(jid)
    jid_or_error(settings.jid, "account JID")
    outcomes = send(settings, password.obtain(settings), recipients, msg,
                    groupchat=request.groupchat, nick=request.nick, upload=upload)  # fmt: skip
    report(outcomes, stdout if request.opts.json else None)
