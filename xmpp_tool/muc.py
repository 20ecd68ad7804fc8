"""``send -g``: a message to group chats (XEP-0045 rooms), exit 0 only once each
room has reflected it.

Rooms are named explicitly (``-g``), not guessed by disco: a bare JID that is not
a room would otherwise get a chat message, and every recipient would cost a
disco round trip.  Each room is still asked for its disco#info first, because
joining a room that does not exist *creates* it on both servers (for accounts
allowed to create rooms); so "no such room" is item-not-found from disco, and
nothing is created.

Per room: disco#info (exists, is a MUC, needs a password?), join with the
nickname and ``maxstanzas=0`` (no history), send ``type=groupchat`` with an id
and an XEP-0359 origin-id, wait for the room's echo of it (the MUC's own ack),
leave.  A room's failure (not a member, banned, nickname in use, wrong password,
no such room) is that room's outcome, with the XMPP condition; the other rooms
are still tried.

With OMEMO (``send -e``), as the apps do it: only a room that is non-anonymous and
members-only (disco#info), encrypted for every member (the affiliation lists the
room lets us read, and the occupants' real JIDs); a member without a device makes
the room's outcome a refusal, never clear text.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from . import errors, slix
from .outgoing import Outcome, OutgoingMessage, message_stanza
from .password import ROOM_ENV_VAR
from .session import Session

if TYPE_CHECKING:
    from .omemo import Device

log = logging.getLogger("xmpp_tool")

MUC_FEATURE = "http://jabber.org/protocol/muc"
PASSWORD_FEATURE = "muc_passwordprotected"  # noqa: S105 (a disco feature)
#: what an OMEMO room must be: every member's real JID known, nobody else reading
OMEMO_ROOM = {"muc_nonanonymous": "non-anonymous", "muc_membersonly": "members-only"}
AFFILIATIONS = ("owner", "admin", "member")
#: disco#info error conditions that mean the room does not exist
NO_ROOM = ("item-not-found", "remote-server-not-found", "service-unavailable")


class RoomRefused(Exception):
    """The room's condition, as one line."""


async def _check_room(session: Session, room: Any) -> set[str]:
    """disco#info of the room: it exists and is a MUC.  Returns its features."""
    try:
        features = await session.disco_features(room, f"{room}: disco#info")
    except errors.Refused as exc:
        if exc.condition in NO_ROOM:
            raise RoomRefused(f"no such room: {exc.reason}") from None
        raise RoomRefused(exc.reason) from None
    if MUC_FEATURE not in features:
        raise RoomRefused("not a group chat (no XEP-0045 feature in its disco#info)")
    return features


async def _members(session: Session, room: Any) -> list[str]:
    """The real bare JIDs of the room's members (its affiliation lists, where the room
    lets us read them) and of its occupants (a non-anonymous room shows them), not ours."""
    muc = session.client.plugin["xep_0045"]
    found: set[str] = set()
    for affiliation in AFFILIATIONS:
        try:
            jids = await muc.get_affiliation_list(room, affiliation,
                                                  timeout=session.settings.timeout)  # fmt: skip
        except (slix.IqError, slix.IqTimeout) as exc:
            log.info("%s: %s list not readable (%s)", room, affiliation, type(exc).__name__)
            continue
        found.update(str(slix.JID(j).bare).lower() for j in jids)
    for nick in muc.get_roster(room) or ():
        jid = muc.get_jid_property(room, nick, "jid")
        if jid:
            found.add(str(slix.JID(jid).bare).lower())
    found.discard(str(session.client.boundjid.bare).lower())
    return sorted(found)


async def _join(session: Session, room: Any, nick: str, password: str | None) -> None:
    """Join with no history (maxstanzas=0); a presence error -> RoomRefused.

    (slixmpp 1.17 bug: xep_0045 recognises a join's presence error only if it
    carries the <x xmlns='http://jabber.org/protocol/muc'/> child, which prosody's
    errors do not, so ``join_muc_wait`` would wait until its timeout.  The
    generic ``presence_error`` event from the room is watched as well.)
    """
    client = session.client
    refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_error(pres: Any) -> None:
        if pres["from"].bare == room.bare and not refused.done():
            refused.set_result(pres)

    with session.events({"presence_error": on_error}):
        joining = asyncio.ensure_future(client.plugin["xep_0045"].join_muc_wait(
            room, nick, password=password, maxstanzas=0, timeout=session.settings.timeout))
        try:
            await asyncio.wait({joining, refused}, return_when=asyncio.FIRST_COMPLETED)
            if not joining.done():
                joining.cancel()
                raise RoomRefused(f"cannot join: {errors.describe(refused.result()['error'])}")
            try:
                joining.result()
            except slix.PresenceError as exc:
                raise RoomRefused(
                    f"cannot join: {errors.describe(exc.presence['error'])}") from None
            except TimeoutError:
                raise errors.tempfail(f"joining {room}: no answer from the room") from None
        finally:
            if not joining.done():
                joining.cancel()


async def _send_one(
    session: Session, room: Any, msg: OutgoingMessage, nick: str, password: str | None,
    outcome: Outcome, device: Device | None = None,
) -> None:
    client = session.client
    muc = client.plugin["xep_0045"]
    loop = asyncio.get_running_loop()
    features = await _check_room(session, room)
    if device is not None and not set(OMEMO_ROOM) <= features:
        lacks = " and ".join(w for f, w in OMEMO_ROOM.items() if f not in features)
        raise RoomRefused(f"OMEMO in a room needs it {' and '.join(OMEMO_ROOM.values())}; "
                          f"it is not {lacks}: not sent")
    if PASSWORD_FEATURE in features and password is None:
        raise RoomRefused(f"the room is password-protected: set {ROOM_ENV_VAR} or "
                          "the account's room_password_command/room_password_file")
    log.info("joining %s as %s", room, nick)
    await session.guard(_join(session, room, nick, password), f"joining {room}")
    joined_nick = muc.our_nicks.get(None, {}).get(room, nick)
    try:
        stanza = message_stanza(client, room, msg, room=True)
        mid = stanza["id"]
        outcome.id = mid
        if device is not None:
            members = await _members(session, room)
            if not members:
                raise RoomRefused("no other member to encrypt for: not sent")
            try:
                stanza = await device.encrypt(stanza, members)
            except errors.ToolError as exc:
                if exc.code != errors.Exit.PROTOCOL:
                    raise
                raise RoomRefused(exc.message) from None
            stanza["origin_id"]["id"] = mid  # the echo is matched by it
            outcome.extra["encryption"] = "omemo"
        echoed: asyncio.Future[Any] = loop.create_future()

        def on_message(m: Any) -> None:
            if m["from"].bare != room.bare or echoed.done():
                return
            if m["id"] == mid or m["origin_id"]["id"] == mid:
                echoed.set_result(m)

        with session.events({"groupchat_message": on_message, "message_error": on_message}):
            stanza.send()
            log.info("sent to %s, waiting for the room's echo", room)
            echo = await session.guard(echoed, f"waiting for {room} to reflect the message")
        if echo["type"] == "error":
            raise RoomRefused(f"message refused: {errors.describe(echo['error'])}")
        log.info("%s reflected the message", room)
    finally:
        muc.leave_muc(room, joined_nick)


async def send_rooms(
    session: Session, rooms: list[Any], msg: OutgoingMessage, nick: str, password: str | None,
    device: Device | None = None,
) -> list[Outcome]:
    """Each room in turn; a room's refusal is its outcome, a session failure ends all."""
    outcomes = []
    for room in rooms:
        outcome = Outcome(str(room.bare))
        try:
            await _send_one(session, slix.JID(room.bare), msg, nick, password, outcome, device)
            outcome.ok = True
        except RoomRefused as exc:
            outcome.error = str(exc)
        except errors.ToolError as exc:
            if session.failure.done():
                raise
            outcome.error = exc.message
        outcomes.append(outcome)
    return outcomes

