"""``trust``: the OMEMO devices of a JID with their fingerprints and trust, or a
decision about some of them.

Listing the account's own devices creates and publishes xmpp-tool's device if it
does not exist yet: ``xmpp-tool trust`` is the way to set it up before anyone
encrypts for it.  Text: one line per device (``*`` marks xmpp-tool's own); ``-J``:
one JSON object per device.
"""

from __future__ import annotations

import json
import logging
from typing import BinaryIO

from . import omemo, slix
from .config import Settings
from .omemo import DeviceInfo
from .request import TrustRequest
from .session import Session, login_password, run_session

log = logging.getLogger("xmpp_tool")

LEVELS = {"trusted": omemo.TRUSTED, "distrusted": omemo.DISTRUSTED}


def line(info: DeviceInfo) -> str:
    mark = "*" if info.own else " "
    state = "" if info.active else " (inactive)"
    return f"{mark} {info.device:>10}  {info.trust:<10}  {info.fingerprint}{state}"


def command(settings: Settings, request: TrustRequest, stdout: BinaryIO) -> None:
    jid = None
    if request.jid is not None:
        jid = str(slix.jid_or_error(request.jid, "JID").bare).lower()
    config = omemo.prepare(settings)

    async def act(session: Session) -> list[DeviceInfo]:
        device = await omemo.Device.open(session)
        whose = jid or str(session.client.boundjid.bare)
        if request.level is None:
            return await device.devices(whose)
        level = LEVELS[request.level]
        return await device.set_trust(whose, list(request.devices), level)

    found = run_session(settings, login_password(settings), omemo.PLUGINS, act,
                        plugin_config=config)  # fmt: skip
    if not found:
        log.warning("%s has no OMEMO device (send -e to it would be refused)", jid)
    out = "".join((json.dumps(d.as_json()) if request.opts.json else line(d)) + "\n"
                  for d in found)  # fmt: skip
    stdout.write(out.encode("utf-8"))
    stdout.flush()
