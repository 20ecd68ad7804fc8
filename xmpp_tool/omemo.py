"""OMEMO (XEP-0384): xmpp-tool as one device of the account, for ``send -e``,
``unread`` and ``trust``.

slixmpp-omemo does the protocol (device lists and bundles in PEP, X3DH, the Double
Ratchet, blind trust before verification); this module gives it its storage (the
account's :class:`~xmpp_tool.omemo_state.OmemoState` file), its trust policy, and
turns its outcomes into exit codes:

- **The device** is created on first use and published in both namespaces
  (``eu.siacs.conversations.axolotl``, which the apps speak, and ``urn:xmpp:omemo:2``);
  every later run loads the same one from the state file.
- **Trust**: blind trust before verification (BTBV, what the apps do) unless the
  account's ``omemo_blind_trust`` is false.  A device the user distrusted never gets a
  key; a new device of a contact with a verified device is not trusted until the user
  decides (``xmpp-tool trust``): sending to it is refused, with the command to run.
- **Content** goes in the axolotl namespace: slixmpp-omemo 2.2 cannot yet encrypt or
  decrypt omemo:2 content (it has no XEP-0420 envelope), so omemo:2-only messages are
  listed as not decryptable, with that reason.

The library and its dependencies (~0.5 s to import) are imported inside functions,
for start-up speed: a run without OMEMO never loads them.
"""

from __future__ import annotations

import logging
from copy import copy
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from . import errors, slix
from .config import Settings
from .omemo_state import OmemoState
from .session import Session

log = logging.getLogger("xmpp_tool")

OLDMEMO = "eu.siacs.conversations.axolotl"
TWOMEMO = "urn:xmpp:omemo:2"
ENCRYPTED = (f"{{{OLDMEMO}}}encrypted", f"{{{TWOMEMO}}}encrypted")
MUC_USER = "{http://jabber.org/protocol/muc#user}"
#: what a client without OMEMO shows (the apps' wording)
FALLBACK = "I sent you an OMEMO encrypted message but your client doesn't seem to support that."
#: the trust levels a user sets (``trust -t`` / ``-d``), and blind trust
TRUSTED, DISTRUSTED, BLIND, UNDECIDED = "TRUSTED", "DISTRUSTED", "BLINDLY_TRUSTED", "UNDECIDED"

PLUGINS = (
    "xep_0060",  # publish-subscribe: device lists and bundles
    "xep_0163",  # personal eventing: the account's PEP nodes
    "xep_0380",  # explicit message encryption: names OMEMO for clients that cannot read it
    "xep_0384",  # OMEMO: slixmpp-omemo, with this module's storage and trust (see _plugin)
)


def is_encrypted(inner: Any) -> bool:
    """Does this message element (``{jabber:client}message``) carry OMEMO content?"""
    return any(inner.find(tag) is not None for tag in ENCRYPTED)


# --------------------------------------------------------------------------- the plugin

_registered = False


def prepare(settings: Settings) -> dict[str, dict[str, Any]]:
    """Load the account's device (78 if its file is unusable: before any network)
    and make slixmpp's ``xep_0384`` this module's plugin; returns its plugin config."""
    state = OmemoState.load(settings.jid)
    global _registered
    if not _registered:
        slix.register_plugin(_plugin_class())
        _registered = True
    return {"xep_0384": {"state": state, "blind_trust": settings.omemo_blind_trust}}


def _plugin_class() -> type:
    from omemo.storage import Just, Maybe, Nothing, Storage
    from omemo.types import DeviceInformation, JSONType
    from slixmpp_omemo import XEP_0384

    class StateStorage(Storage):
        """The library's keys, in the account's state file (saved by :class:`Device`)."""

        def __init__(self, state: OmemoState) -> None:
            super().__init__()
            self._state = state

        async def _load(self, key: str) -> Maybe[JSONType]:
            return Just(self._state.get(key)) if self._state.has(key) else Nothing()

        async def _store(self, key: str, value: JSONType) -> None:
            self._state.put(key, value)

        async def _delete(self, key: str) -> None:
            self._state.delete(key)

    class Plugin(XEP_0384):
        name = "xep_0384"
        default_config: ClassVar[dict[str, Any]] = {
            "fallback_message": FALLBACK, "state": None, "blind_trust": True}

        def plugin_init(self) -> None:
            self._storage = StateStorage(self.state)
            super().plugin_init()

        @property
        def storage(self) -> Storage:
            return self._storage

        @property
        def _btbv_enabled(self) -> bool:
            return bool(self.blind_trust)

        async def _devices_blindly_trusted(self, blindly_trusted: frozenset[DeviceInformation],
                                           identifier: str | None) -> None:  # fmt: skip
            for d in sorted(blindly_trusted, key=lambda d: (d.bare_jid, d.device_id)):
                log.info("OMEMO: trusting %s's device %d blindly (not verified)",
                         d.bare_jid, d.device_id)  # fmt: skip

        async def _prompt_manual_trust(self, manually_trusted: frozenset[DeviceInformation],
                                       identifier: str | None) -> None:  # fmt: skip
            # Nobody to ask: a device nobody decided on gets no key, and the user is
            # told how to decide.
            jid = min(d.bare_jid for d in manually_trusted)
            ids = sorted(d.device_id for d in manually_trusted if d.bare_jid == jid)
            raise errors.protocol(
                f"{jid} has {'a device' if len(ids) == 1 else 'devices'} "
                f"{', '.join(map(str, ids))} that nobody decided to trust: "
                f"run xmpp-tool trust -t {jid} DEVICE (or -d to distrust)"
            )

    return Plugin


# --------------------------------------------------------------------------- the device


@dataclass(frozen=True)
class DeviceInfo:
    """One OMEMO device of an account, as ``trust`` lists it."""

    jid: str
    device: int
    fingerprint: str  # the identity key, hex, as the apps show it (grouped by 8)
    trust: str  # trusted, distrusted, blind, undecided
    namespaces: tuple[str, ...]
    active: bool
    own: bool = False  # this xmpp-tool device

    def as_json(self) -> dict[str, Any]:
        return {"jid": self.jid, "device": self.device, "fingerprint": self.fingerprint,
                "trust": self.trust, "active": self.active, "own": self.own,
                "namespaces": list(self.namespaces)}  # fmt: skip


TRUST_WORDS = {TRUSTED: "trusted", DISTRUSTED: "distrusted", BLIND: "blind",
               UNDECIDED: "undecided"}  # fmt: skip


def fingerprint(identity_key: bytes) -> str:
    """The identity key as hex in groups of 8, as Conversations and Gajim show it."""
    text = identity_key.hex()
    return " ".join(text[i:i + 8] for i in range(0, len(text), 8))


@dataclass
class Decrypted:
    """What became of one encrypted message: its text, or why there is none."""

    body: str | None
    reason: str = ""  # when body is None


class Device:
    """This account's OMEMO device for one session (open with :meth:`open`)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.plugin = session.client.plugin["xep_0384"]
        self.state: OmemoState = self.plugin.state
        self.manager: Any = None

    @classmethod
    async def open(cls, session: Session) -> Device:
        """Load or create the device, publish it if needed, save the state."""
        device = cls(session)
        new = not device.state.existed
        device.manager = await session.guard(device.plugin.get_session_manager(),
                                             "setting up the OMEMO device")  # fmt: skip
        device.save()
        own, _ = await device.manager.get_own_device_information()
        log.info("OMEMO device %d of %s (%s)", own.device_id, own.bare_jid,
                 "new, published" if new else "from the state file")  # fmt: skip
        return device

    def save(self) -> None:
        self.state.save()

    # ------------------------------------------------------------------ send

    async def encrypt(self, stanza: Any, recipients: list[Any]) -> Any:
        """The OMEMO version of ``stanza`` for every device of ``recipients`` (bare
        JIDs) and our other devices; 76 (one line) if one of them has no device
        that may get a key."""
        from omemo.session_manager import NoEligibleDevices

        jids = {slix.JID(str(r)) for r in recipients}
        names = ", ".join(sorted(str(j) for j in jids))
        # The library keeps a contact's device list fresh from PEP notifications once
        # it has subscribed; a short-lived client that sends no presence gets none,
        # so the lists are fetched on every send (two queries per contact), or a
        # contact's new device would never get a key.
        await self.session.guard(self.plugin.refresh_device_lists(jids, force_download=True),
                                 f"fetching the OMEMO devices of {names}")  # fmt: skip
        try:
            encrypted, problems = await self.session.guard(
                self.plugin.encrypt_message(stanza, jids), f"encrypting for {names}")
        except NoEligibleDevices as exc:
            who = ", ".join(sorted(exc.bare_jids)) or names
            raise errors.protocol(
                f"{who} {'has' if len(exc.bare_jids) < 2 else 'have'} no OMEMO device that "
                "may get a key (none published, or every one distrusted): not sent"
            ) from None
        finally:
            self.save()  # the ratchets moved: keep them before anything goes out
        for problem in problems:
            log.info("OMEMO: %s's device %s skipped: %s", problem.bare_jid, problem.device_id,
                     type(problem.exception).__name__)  # fmt: skip
        if encrypted is None:
            raise errors.protocol(f"nothing to encrypt for {names}")
        encrypted["eme"]["namespace"] = OLDMEMO
        encrypted["eme"]["name"] = "OMEMO"
        return encrypted

    # ------------------------------------------------------------------ unread

    async def decrypt(self, archive_id: str, inner: Any) -> Decrypted:
        """The text of an encrypted archived message (``inner``: its stanza), from the
        state file if this device decrypted it before."""
        kept = self.state.read.get(archive_id)
        if kept is not None:
            return Decrypted(kept.get("body", ""))
        from omemo.session_manager import MessageNotForUs, SenderDistrusted

        message = slix.Message(xml=inner)
        if message["type"] == "groupchat":
            # The library decrypts a room's message only for an occupant that saw the
            # sender's presence.  From an archive, a non-anonymous room names the
            # sender's real JID in the message itself: decrypt it as from that JID.
            item = inner.find(f"{MUC_USER}x/{MUC_USER}item")
            real = item.get("jid", "") if item is not None else ""
            if not real:
                return Decrypted(None, "the room hides who sent it (not non-anonymous)")
            message = copy(message)
            message["type"] = "chat"
            message["from"] = slix.JID(real).bare
        try:
            plain, sender = await self.session.guard(self.plugin.decrypt_message(message),
                                                     "decrypting an OMEMO message")  # fmt: skip
        except errors.ToolError:
            raise
        except MessageNotForUs:
            return Decrypted(None, "not encrypted for this device")
        except SenderDistrusted:
            return Decrypted(None, "from a device you distrusted")
        except NotImplementedError:
            return Decrypted(None, "OMEMO 2 content, which xmpp-tool cannot read yet")
        except Exception as exc:  # the library's many ways of not decrypting one message
            log.info("OMEMO: message %s not decrypted: %s", archive_id, type(exc).__name__)
            return Decrypted(None, "cannot be decrypted by this device (its keys were "
                                   "used already, or the message is damaged)")  # fmt: skip
        finally:
            self.save()
        body = str(plain["body"])
        self.state.remember(archive_id, body, sender.device_id)
        return Decrypted(body)

    # ------------------------------------------------------------------ trust

    async def _fetch(self, jid: str) -> list[tuple[Any, DeviceInfo]]:
        """The devices of ``jid`` (its device lists fetched now): the library's record
        and ours of each, ours marked."""
        manager = self.manager
        own, _ = await manager.get_own_device_information()
        if jid != own.bare_jid:
            await self.session.guard(self.plugin.refresh_device_lists({slix.JID(jid)},
                                                                       force_download=True),
                                     f"fetching {jid}'s OMEMO devices")  # fmt: skip
        else:
            await self.session.guard(manager.refresh_device_lists(jid),
                                     "fetching the account's OMEMO devices")  # fmt: skip
        found = await self.session.guard(manager.get_device_information(jid),
                                         f"reading {jid}'s OMEMO devices")  # fmt: skip
        self.save()
        return [(d, DeviceInfo(jid=d.bare_jid, device=d.device_id,
                               fingerprint=fingerprint(d.identity_key),
                               trust=TRUST_WORDS.get(d.trust_level_name,
                                                     d.trust_level_name.lower()),
                               namespaces=tuple(sorted(d.namespaces)),
                               active=any(active for _ns, active in d.active),
                               own=d.device_id == own.device_id and jid == own.bare_jid))
                for d in sorted(found, key=lambda d: d.device_id)]  # fmt: skip

    async def devices(self, jid: str) -> list[DeviceInfo]:
        """The devices of ``jid`` (its device lists fetched now), ours marked."""
        return [info for _d, info in await self._fetch(jid)]

    async def set_trust(self, jid: str, wanted: list[str], level: str) -> list[DeviceInfo]:
        """Trust or distrust the devices of ``jid`` named by ``wanted`` (each by its id,
        or its fingerprint with or without spaces)."""
        known = await self._fetch(jid)
        decided = []
        for name in wanted:
            key = name.replace(" ", "").lower()
            match = [(d, info) for d, info in known
                     if key in (str(info.device), info.fingerprint.replace(" ", ""))]  # fmt: skip
            if not match:
                raise errors.dataerr(f"{jid} has no OMEMO device {name!r} "
                                     f"(xmpp-tool trust {jid} lists them)")  # fmt: skip
            d, info = match[0]
            if info.own:
                raise errors.dataerr("this is xmpp-tool's own device: nothing to decide")
            await self.manager.set_trust(jid, d.identity_key, level)
            decided.append(replace(info, trust=TRUST_WORDS[level]))
        self.save()
        return decided
