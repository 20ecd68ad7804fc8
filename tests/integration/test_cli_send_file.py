"""xmpp-tool send -F: HTTP File Upload (XEP-0363) on real prosody and ejabberd.

The recipient gets the URL (body and XEP-0066 OOB); an HTTPS GET of it, verified
against the test CA, returns the same bytes; a file over the service's limit is
refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import urllib.request
from pathlib import Path
from typing import Any

from test_cli_send import new_user, one_line, unread_json, xt


def fetch(url: str, cafile: Path) -> bytes:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with urllib.request.urlopen(url, context=ctx, timeout=30) as resp:  # noqa: S310 (https)
        data: bytes = resp.read()
    return data


def upload_limit(server: Any) -> int:
    """The upload service's ``max-file-size``, as its disco#info announces it."""
    from slixmpp import JID

    from lab.slixpeer import peer_for
    from xmpp_tool.upload import max_file_size

    async def main() -> int | None:
        user, password = new_user(server, "disco")
        async with peer_for(server, user.split("@")[0], password) as peer:
            info = await peer.plugin["xep_0030"].get_info(jid=JID(server.upload_domain),
                                                          timeout=10)  # fmt: skip
        return max_file_size(info)

    limit = asyncio.run(main())
    assert limit is not None and limit > 0
    return limit


def test_file_reaches_recipients_and_downloads_the_same(xmpp_server: Any, tmp_path: Path) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    (b, bpw), (c, cpw) = new_user(server, "b"), new_user(server, "c")
    payload = os.urandom(300 * 1024)
    path = tmp_path / "report ✓.bin"
    path.write_bytes(payload)
    res = xt(server, alice, apw, "-J", "send", "-F", str(path), b, c)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # no progress: stderr is not a terminal
    outcomes = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["status"] for o in outcomes] == ["sent", "sent"]
    url = outcomes[0]["url"]
    assert url.startswith("https://") and outcomes[1]["url"] == url
    for jid, pw in ((b, bpw), (c, cpw)):
        assert [m["body"] for m in unread_json(server, jid, pw)] == [url]
    assert fetch(url, server.cafile) == payload


def test_oversize_file_is_refused_before_anything_is_sent(xmpp_server: Any,
                                                          tmp_path: Path) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    bob, bpw = new_user(server, "bob")
    path = tmp_path / "big.bin"
    with path.open("wb") as fh:
        fh.truncate(upload_limit(server) + 1)
    res = xt(server, alice, apw, "-J", "send", "-F", str(path), bob)
    assert res.returncode == 76
    line = one_line(res.stderr)
    assert "more than" in line and "nothing sent" in line
    assert res.stdout == ""
    assert unread_json(server, bob, bpw) == []


def test_file_to_a_room_with_oob(xmpp_server: Any, tmp_path: Path) -> None:
    """-g -F: the room's occupants get the URL as body and as XEP-0066 OOB."""
    from test_cli_send_muc import new_room, wait_for_messages, with_room

    server = xmpp_server
    alice, apw = new_user(server, "alice")
    room = new_room(server)
    payload = os.urandom(64 * 1024)
    path = tmp_path / "shot.png"
    path.write_bytes(payload)

    async def action(owner: Any, got: list[Any]) -> Any:
        res = await asyncio.to_thread(xt, server, alice, apw, "send", "-g", "-F", str(path), room)
        await wait_for_messages(got, 1)
        oob = [m.xml.find("{jabber:x:oob}x/{jabber:x:oob}url") for m in got]
        return res, [(m["body"], o.text if o is not None else None) for m, o in zip(got, oob,
                                                                                     strict=True)]

    res, seen = with_room(server, room, {}, action)
    assert res.returncode == 0, res.stderr
    ((body, oob_url),) = seen
    assert body == oob_url and body.startswith("https://")
    assert fetch(body, server.cafile) == payload
