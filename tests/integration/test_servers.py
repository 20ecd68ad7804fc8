"""Smoke tests of the server fixtures, with plain slixmpp (not the CLI).

They pin down what the CLI tests rely on: both listeners, TLS verified against the
session CA (and refused with the wrong one), SCRAM, stream management acks, MAM,
offline storage, and XEP-0490 pointers in PEP.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import slixmpp

from lab.servers import (
    EjabberdServer,
    ProsodyServer,
    ServerError,
    XmppServer,
    _stream_features,
    _which,
)
from lab.slixpeer import Peer, PeerError, peer_for

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class Pair:
    server: XmppServer
    alice: str
    bob: str
    password: str


def make_pair(server: XmppServer) -> Pair:
    tag = secrets.token_hex(3)
    password = secrets.token_urlsafe(12)
    alice, bob = server.register_many({f"alice-{tag}": password, f"bob-{tag}": password})
    return Pair(server, alice, bob, password)


def peer(pair: Pair, jid: str, **kwargs: Any) -> Peer:
    return peer_for(pair.server, jid.split("@")[0], pair.password, **kwargs)


# --------------------------------------------------------------------- listeners


def test_fixture_describes_a_loopback_server(
    xmpp_server: XmppServer, request: pytest.FixtureRequest
) -> None:
    assert request.node.get_closest_marker("servers") is not None  # added by conftest
    assert xmpp_server.kind in ("prosody", "ejabberd")
    assert xmpp_server.domain == f"{xmpp_server.kind}.test"
    assert xmpp_server.host == "127.0.0.1"
    assert xmpp_server.port != xmpp_server.tls_port
    assert xmpp_server.cafile.is_file()
    assert xmpp_server.wrong_cafile.is_file()
    assert xmpp_server.cafile.read_bytes() != xmpp_server.wrong_cafile.read_bytes()


def test_starttls_is_required_and_no_inband_registration(xmpp_server: XmppServer) -> None:
    s = xmpp_server
    before_tls = _stream_features(s.host, s.port, s.domain, direct_tls=False, cafile=s.cafile)
    assert "urn:ietf:params:xml:ns:xmpp-tls" in before_tls
    assert "<required" in before_tls  # c2s requires TLS
    assert "SCRAM-SHA-1" not in before_tls  # no SASL before TLS
    after_tls = _stream_features(s.host, s.tls_port, s.domain, direct_tls=True, cafile=s.cafile)
    assert "SCRAM-SHA-1" in after_tls
    assert "iq-register" not in after_tls  # in-band registration is off


@pytest.mark.parametrize("good", [True, False], ids=["ca", "wrong-ca"])
def test_certificate_names_the_domain_and_chains_to_the_ca(
    xmpp_server: XmppServer, good: bool
) -> None:
    s = xmpp_server
    ctx = ssl.create_default_context(cafile=str(s.cafile if good else s.wrong_cafile))
    with socket.create_connection((s.host, s.tls_port), timeout=5) as raw:
        if good:
            with ctx.wrap_socket(raw, server_hostname=s.domain) as tls:
                cert = tls.getpeercert()
            assert cert is not None
            assert ("DNS", s.domain) in cert["subjectAltName"]
        else:
            with pytest.raises(ssl.SSLCertVerificationError):
                ctx.wrap_socket(raw, server_hostname=s.domain)


def test_missing_program_is_a_clear_error() -> None:
    with pytest.raises(ServerError, match=r"missing program\(s\) no-such-xmpp-server.*apt-get"):
        _which(("no-such-xmpp-server",))


def test_free_port_refuses_connections(free_port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", free_port), timeout=5).close()


# ---------------------------------------------------------------------- sessions


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
def test_message_acked_then_found_in_the_archive(xmpp_server: XmppServer, direct_tls: bool) -> None:
    pair = make_pair(xmpp_server)
    body = f"smoke {secrets.token_hex(4)}"

    async def scenario() -> list[tuple[str, str, str]]:
        async with peer(pair, pair.alice, direct_tls=direct_tls) as alice:
            assert "stream_management" in alice.features
            await alice.send_chat(pair.bob, body)  # returns once the server acked it
        async with peer(pair, pair.bob, direct_tls=direct_tls) as bob:
            return [m async for m in bob.archive(pair.alice)]

    archived = run(scenario())
    assert [(frm, text) for _, frm, text in archived] == [(pair.alice, body)]
    assert archived[0][0]  # the archive's stanza-id, what XEP-0490 pointers refer to


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
def test_wrong_ca_is_refused(xmpp_server: XmppServer, direct_tls: bool) -> None:
    pair = make_pair(xmpp_server)

    async def login() -> None:
        client = peer(pair, pair.alice, direct_tls=direct_tls, cafile=xmpp_server.wrong_cafile)
        await client.start()

    with pytest.raises(PeerError, match="certificate"):
        run(login())


def test_wrong_password_is_refused(xmpp_server: XmppServer) -> None:
    pair = make_pair(xmpp_server)

    async def login() -> None:
        await peer_for(xmpp_server, pair.alice.split("@")[0], pair.password + "x").start()

    with pytest.raises(PeerError, match="authentication"):
        run(login())


#: what each server's registration tool says for an account that exists
ALREADY_EXISTS = {
    "prosody": r"(?s)prosodyctl adduser \S+ failed \(1\): .*That user already exists$",
    # import_piefxis names no reason: it stops at an account it cannot create
    "ejabberd": r"(?s)ejabberdctl import_piefxis \(\S+\) failed \(1\): .*import_failed$",
}


def test_register_twice_fails_and_keeps_the_account(xmpp_server: XmppServer) -> None:
    pair = make_pair(xmpp_server)
    user = pair.alice.split("@")[0]
    with pytest.raises(ServerError, match=ALREADY_EXISTS[xmpp_server.kind]):
        xmpp_server.register(user, "other-password")

    async def login(password: str) -> None:
        async with peer_for(xmpp_server, user, password):
            pass

    run(login(pair.password))  # the account is the first one, unchanged
    with pytest.raises(PeerError, match="authentication"):
        run(login("other-password"))


def test_one_archive_page_holds_250_messages(xmpp_server: XmppServer) -> None:
    """The client's MAM page (250) is served whole: prosody's default cap is 50, the
    template (like the lab) raises it; ejabberd's own cap is 250."""
    pair = make_pair(xmpp_server)

    async def scenario() -> list[int]:
        async with peer(pair, pair.alice) as alice:
            await alice.seed(pair.bob, 260)
        async with peer(pair, pair.bob) as bob:
            # iterator=True gives an async iterator of pages; slixmpp types it Awaitable.
            pages: Any = bob.plugin["xep_0313"].retrieve(
                with_jid=slixmpp.JID(pair.alice), iterator=True, rsm={"max": 250})
            return [len(page["mam"]["results"]) async for page in pages]

    assert run(scenario()) == [250, 10]


# ----------------------------------------------------------------------- offline


def test_ejabberd_offline_count_is_an_oracle(ejabberd_server: EjabberdServer) -> None:
    pair = make_pair(ejabberd_server)
    user = pair.bob.split("@")[0]
    assert ejabberd_server.offline_count(user) == 0

    async def send(n: int) -> None:
        async with peer(pair, pair.alice) as alice:
            await alice.send_many(pair.bob, (f"offline {i}" for i in range(n)))

    async def read_archive() -> int:
        async with peer(pair, pair.bob) as bob:  # no presence: offline storage stays
            return len([m async for m in bob.archive(pair.alice)])

    run(send(3))
    assert ejabberd_server.offline_count(user) == 3
    assert run(read_archive()) == 3
    assert ejabberd_server.offline_count(user) == 3


def test_prosody_has_no_offline_count(prosody_server: ProsodyServer) -> None:
    with pytest.raises(NotImplementedError):
        prosody_server.offline_count("anyone")


# ------------------------------------------------------------------- XEP-0490


def test_displayed_pointers_for_two_contacts(xmpp_server: XmppServer) -> None:
    """Publishing XEP-0490 pointers for two contacts keeps both.

    Quirk (ejabberd 23.01): slixmpp's ``xep_0490.flag_chat`` (publish-options
    pubsub#max_items=max and pubsub#send_last_published_item=never) is refused with
    <resource-constraint/> "Unknown field 'pubsub#max_items' of type
    ...#publish-options".  Publishing with only persist_items + access_model and then
    configuring the node (pubsub#max_items=max) works, and keeps one item per
    contact.  prosody 0.12 accepts slixmpp's publish-options as they are.
    """
    pair = make_pair(xmpp_server)
    carol = f"carol-{secrets.token_hex(3)}@{xmpp_server.domain}"

    async def scenario() -> tuple[dict[str, str], list[str]]:
        async with peer(pair, pair.alice) as alice:
            await alice.send_many(pair.bob, ["one", "two"])
        async with peer(pair, pair.bob) as bob:
            ids = [sid async for sid, _, _ in bob.archive(pair.alice)]
            assert await bob.mds_pointers() == {}
            try:
                await bob.mds_publish(pair.alice, ids[0])
                await bob.mds_publish(carol, ids[1])
            except slixmpp.exceptions.IqError as exc:
                if xmpp_server.kind != "ejabberd":
                    raise
                assert exc.condition == "resource-constraint"
                await bob.mds_publish_minimal(pair.alice, ids[0])
                await bob.mds_publish_minimal(carol, ids[1])
        async with peer(pair, pair.bob) as bob:  # read back in a new session
            return await bob.mds_pointers(), ids

    pointers, ids = run(scenario())
    assert pointers == {pair.alice: ids[0], carol: ids[1]}
