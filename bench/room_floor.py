#!/usr/bin/env python3
"""The floor for bench/unread_rooms.py: a plain slixmpp client that logs in, reads
the XEP-0490 pointers, and asks each room's archive (XEP-0313) for what follows its
pointer; prints the bodies.  Run as a script (``python bench/room_floor.py SPEC``),
so that it imports slixmpp and nothing of the project."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from typing import Any

import slixmpp


async def floor(spec: dict[str, Any]) -> int:
    client = slixmpp.ClientXMPP(spec["jid"], spec["password"],
                                ssl_context=ssl.create_default_context(cafile=spec["cafile"]))
    client.enable_direct_tls = False
    client.enable_plaintext = False
    client.register_plugin("xep_0313")  # MAM
    client.register_plugin("xep_0490")  # MDS: the displayed pointers
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    client.add_event_handler("session_start", lambda _e: started.set_result(None))
    client.connect(spec["host"], spec["port"])
    await asyncio.wait_for(started, 30)
    items = await client.plugin["xep_0490"].catch_up(timeout=30)
    pointers = {str(i["id"]): i["displayed"]["stanza_id"]["id"] for i in items["pubsub"]["items"]}
    read = 0
    for room in spec["rooms"]:
        iq = await client.plugin["xep_0313"].retrieve(
            jid=slixmpp.JID(room), rsm={"max": 250, "after": pointers[room]}, timeout=30)
        for result in iq["mam"]["results"]:
            print(result["mam_result"]["forwarded"]["stanza"]["body"])
            read += 1
    await client.disconnect()
    return read


if __name__ == "__main__":
    asyncio.run(floor(json.loads(open(sys.argv[1], encoding="utf-8").read())))
