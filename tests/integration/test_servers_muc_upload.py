"""The test servers serve group chats (XEP-0045) and HTTP File Upload (XEP-0363) as
the lab does (the same templates): plain slixmpp peers and an HTTPS client that
verifies the server against the session CA, not the CLI.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import urllib.error
import urllib.request
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import slixmpp

from lab.servers import XmppServer
from lab.slixpeer import peer_for

T = TypeVar("T")
MAX_SIZE = 20 * 1024 * 1024  # the formulas' default (salt/*/parameters/defaults.yaml)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def accounts(server: XmppServer, *names: str) -> tuple[str, list[str]]:
    tag, password = secrets.token_hex(3), secrets.token_urlsafe(12)
    users = [f"{name}-{tag}" for name in names]
    server.register_many(dict.fromkeys(users, password))
    return password, users


def https(method: str, url: str, cafile: Any, data: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:  # fmt: skip
    """One HTTPS request, the server verified against ``cafile`` (host name = the URL's)."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 - https only
    assert urlsplit(url).scheme == "https"
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=20) as resp:  # noqa: S310
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def test_groupchat_between_two_accounts(xmpp_server: XmppServer) -> None:
    password, (alice, bob) = accounts(xmpp_server, "alice", "bob")
    room = xmpp_server.room(f"lab-{secrets.token_hex(3)}")

    async def go() -> tuple[str, str]:
        async with peer_for(xmpp_server, alice, password) as a, \
                peer_for(xmpp_server, bob, password) as b:  # fmt: skip
            await a.join_room(room, alice)  # creates it (lab accounts may)
            await b.join_room(room, bob)
            await a.send_groupchat(room, "hello room")  # returns once reflected
            got = await b.next_groupchat(room)
            await a.leave_room(room, alice)
            await b.leave_room(room, bob)
            return got

    assert run(go()) == (alice, "hello room")


def test_upload_slot_put_and_verified_get(xmpp_server: XmppServer) -> None:
    password, (alice,) = accounts(xmpp_server, "alice")
    content = secrets.token_bytes(300_000)

    async def slot() -> tuple[str, int, str, dict[str, str], str]:
        async with peer_for(xmpp_server, alice, password) as a:
            service, size = await a.upload_service()
            put, headers, get = await a.upload_slot(
                service, "data.bin", len(content), "application/octet-stream")
            return service, size, put, headers, get

    service, size, put, headers, get = run(slot())
    assert service == xmpp_server.upload_domain
    assert size == MAX_SIZE  # advertised in disco#info (XEP-0363 max-file-size)
    for url in (put, get):  # on the address the certificate has as IP SAN
        assert urlsplit(url).hostname == xmpp_server.host
        assert urlsplit(url).port == xmpp_server.upload_port
    status, _ = https("PUT", put, xmpp_server.cafile, content,
                      {**headers, "Content-Type": "application/octet-stream"})  # fmt: skip
    assert status in (200, 201)
    assert https("GET", get, xmpp_server.cafile) == (200, content)
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        https("GET", get, xmpp_server.wrong_cafile)


def test_upload_over_the_limit_is_refused(xmpp_server: XmppServer) -> None:
    password, (alice,) = accounts(xmpp_server, "alice")

    async def go() -> None:
        async with peer_for(xmpp_server, alice, password) as a:
            service, size = await a.upload_service()
            await a.upload_slot(service, "big.bin", size + 1, "application/octet-stream")

    with pytest.raises(slixmpp.exceptions.IqError) as err:
        run(go())
    assert err.value.iq["error"]["type"] == "modify"  # XEP-0363: file too large
