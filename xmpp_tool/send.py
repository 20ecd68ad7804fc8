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

:mod:`.muc` and :mod:`.upload` are imported inside the functions that use them, for
start-up speed: a plain ``send`` (most runs) needs neither.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, BinaryIO

from . import errors, slix
from .config import Settings
from .outgoing import Outcome, OutgoingMessage, message_stanza
from .password import room_password
from .request import SendRequest
from .session import Session, login_password, run_session

if TYPE_CHECKING:
    from .omemo import Device
    from .upload import Upload

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


async def send_direct(
    session: Session, recipients: list[Any], msg: OutgoingMessage, device: Device | None = None
) -> list[Outcome]:
    """One message per recipient, all acknowledged by one ack request and one ping.

    With an OMEMO ``device``, each recipient's message is encrypted for it first; a
    recipient it cannot be encrypted for is refused (never sent in clear), the
    others are sent."""
    client = session.client
    loop = asyncio.get_running_loop()
    stanzas = [message_stanza(client, r.bare, msg) for r in recipients]
    outcomes = [Outcome(str(r.bare), id=s["id"]) for r, s in zip(recipients, stanzas,
                                                                  strict=True)]  # fmt: skip
    if device is not None:
        stanzas, outcomes = await _encrypt_each(device, recipients, stanzas, outcomes)
        if not stanzas:
            return outcomes
    by_id = {str(o.id): o for o in outcomes if o.error is None}
    bounces: dict[str, Any] = {}
    last_id = stanzas[-1]["id"]
    acked: asyncio.Future[None] = loop.create_future()

    def on_error(stanza: Any) -> None:
        if stanza["id"] in by_id:
            bounces.setdefault(stanza["id"], stanza)

    def on_acked(stanza: Any) -> None:
        if stanza["id"] == last_id and not acked.done():
            acked.set_result(None)

    with session.events({"message_error": on_error, "stanza_acked": on_acked}):
        await _send_and_confirm(session, stanzas, by_id, acked)
    for mid, outcome in by_id.items():
        if mid in bounces:
            outcome.error = errors.describe(bounces[mid]["error"])
        else:
            outcome.ok = True
    return outcomes


async def _encrypt_each(device: Device, recipients: list[Any], stanzas: list[Any],
                        outcomes: list[Outcome]) -> tuple[list[Any], list[Outcome]]:
    """Each recipient's stanza encrypted; the ones that cannot be, refused (their
    outcome's error), the rest returned to be sent."""
    ready = []
    for recipient, stanza, outcome in zip(recipients, stanzas, outcomes, strict=True):
        try:
            ready.append(await device.encrypt(stanza, [recipient.bare]))
        except errors.ToolError as exc:
            if exc.code != errors.Exit.PROTOCOL:
                raise
            outcome.error = exc.message
            log.info("%s", exc.message)
    for outcome in outcomes:
        if outcome.error is None:
            outcome.extra["encryption"] = "omemo"
    return ready, outcomes


async def _send_and_confirm(session: Session, stanzas: list[Any], by_id: dict[str, Outcome],
                            acked: asyncio.Future[None]) -> None:
    """Write the stanzas; return once the server has confirmed them all."""
    client = session.client
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
    ping = client.plugin["xep_0199"].send_ping(
        slix.JID(client.boundjid.domain), timeout=session.settings.timeout
    )

    async def barrier() -> None:
        try:
            await ping
        except slix.IqError:
            pass  # an error answer to the ping is an answer all the same
        if use_sm:
            await acked

    what = "waiting for the server to acknowledge the message"
    await session.guard(barrier(), what + ("s" if len(stanzas) > 1 else ""))
    log.info("server acknowledged %d message(s)%s", len(stanzas),
             " (XEP-0198)" if use_sm else " (ping)")  # fmt: skip


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


def send(
    settings: Settings,
    password: str,
    recipients: list[Any],
    msg: OutgoingMessage | None,
    *,
    groupchat: bool = False,
    nick: str | None = None,
    upload: Upload | None = None,
    encrypt: bool = False,
) -> list[Outcome]:
    """Log in once, (upload,) send to every recipient, return their outcomes.

    ``msg`` is None only with ``upload``, whose URL is the body.
    """
    plugins = list(PLUGINS)
    if upload is not None:
        plugins += [p for p in UPLOAD_PLUGINS if p not in plugins]
    if groupchat:
        plugins += [p for p in MUC_PLUGINS if p not in plugins]

    room_secret = room_password(settings) if groupchat else None
    plugin_config: dict[str, dict[str, Any]] = {
        # window: never let slixmpp request acks itself (see send_direct)
        "xep_0198": {"window": 2**31, "allow_resume": False}}
    if encrypt:
        from . import omemo

        plugins += [p for p in omemo.PLUGINS if p not in plugins]
        plugin_config.update(omemo.prepare(settings))

    async def deliver(session: Session) -> list[Outcome]:
        device = None
        if encrypt:
            from .omemo import Device

            device = await Device.open(session)
        message, url = msg, None
        if upload is not None:
            url = await upload.transfer(session)
            # an encrypted file's URL travels only inside the OMEMO message: no XEP-0066
            message = OutgoingMessage(body=upload.message_url(url),
                                      mtype=msg.mtype if msg else "chat",
                                      subject=msg.subject if msg else None,
                                      url=None if upload.sealed else url)  # fmt: skip
        assert message is not None
        if groupchat:
            from . import muc

            outcomes = await muc.send_rooms(session, recipients, message,
                                            nick or session.jid.user, room_secret, device)
        else:
            outcomes = await send_direct(session, recipients, message, device)
        if url is not None:
            for o in outcomes:
                o.extra["url"] = url  # an encrypted file's: without its key
        return outcomes

    return run_session(settings, password, plugins, deliver, plugin_config=plugin_config)


def _check_encryptable(request: SendRequest) -> None:
    """What OMEMO cannot carry here is refused before anything is sent (64)."""
    how = "-e" if request.encrypt else "the account's omemo setting (-E: in clear)"
    if request.subject is not None:
        raise errors.usage(f"-S with {how}: OMEMO does not encrypt a subject")


def command(
    settings: Settings, request: SendRequest, stdin: BinaryIO, stdout: BinaryIO | None = None
) -> None:
    """``xmpp-tool send``: validate everything, get the password, send, report."""
    encrypt = settings.omemo if request.encrypt is None else request.encrypt
    if encrypt:
        _check_encryptable(request)
    msg: OutgoingMessage | None = None
    upload = None
    if request.file is None:
        msg = OutgoingMessage(read_body(request.message, stdin), request.mtype, request.subject)
    else:
        from .upload import Upload, progress_wanted

        upload = Upload.open(request.file, settings, progress=progress_wanted(request.opts.quiet))
        if encrypt:
            upload.seal()
        if request.subject is not None or request.mtype != "chat":
            msg = OutgoingMessage("", request.mtype, request.subject)
    what = "room JID" if request.groupchat else "recipient JID"
    recipients = []
    seen = set()
    for text in request.recipients:
        jid = slix.jid_or_error(text, what)
        if request.groupchat and not jid.user:
            raise errors.dataerr(f"invalid room JID {text!r}: no local part (the room's name)")
        if jid.bare not in seen:  # each recipient gets the message once
            seen.add(jid.bare)
            recipients.append(jid)
    outcomes = send(settings, login_password(settings), recipients, msg,
                    groupchat=request.groupchat, nick=request.nick, upload=upload,
                    encrypt=encrypt)  # fmt: skip
    report(outcomes, stdout if request.opts.json else None)
