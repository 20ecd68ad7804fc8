"""OMEMO on real prosody and ejabberd, against an independent peer: slixmpp-omemo's own
example client (lab/omemo_peer.py, its own process and state file, none of xmpp-tool's
code).  What the peer encrypts, ``unread`` lists decrypted; what ``send -e`` sends, the
peer decrypts, and the stanza on the server holds no plaintext; a distrusted device
gets no key; a recipient without a device is refused (76), never sent in clear; a file
goes up encrypted (XEP-0454); a private room's members can read what ``send -e -g`` says.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from slixmpp import JID
from test_cli_unread import new_user, with_peer, xt

from lab.slixpeer import Peer
from xmpp_tool.omemo_state import state_path

OLDMEMO = "eu.siacs.conversations.axolotl"


def peer(server: Any, jid: str, password: str, state: Path, *args: str) -> list[dict[str, Any]]:
    """One action of the independent OMEMO client (``state``: its device's file)."""
    env = dict(os.environ, OMEMO_PEER_PASSWORD=password)
    res = subprocess.run(
        [sys.executable, "-m", "lab.omemo_peer", "--jid", jid, "--host", server.host,
         "--port", str(server.port), "--cafile", str(server.cafile), "--state", str(state),
         *args],
        capture_output=True, text=True, timeout=180, check=False, env=env,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return [json.loads(line) for line in res.stdout.splitlines()]


def listed(server: Any, jid: str, password: str, *args: str) -> list[dict[str, Any]]:
    res = xt(server, jid, password, "-J", "unread", *args)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    return [json.loads(line) for line in res.stdout.splitlines()]


def own_device(server: Any, jid: str, password: str) -> dict[str, Any]:
    """``trust`` on the account: creates and publishes xmpp-tool's device."""
    res = xt(server, jid, password, "-J", "trust")
    assert res.returncode == 0, res.stderr
    mine = [d for d in map(json.loads, res.stdout.splitlines()) if d["own"]]
    assert len(mine) == 1, res.stdout
    device: dict[str, Any] = mine[0]
    return device


@pytest.fixture
def pair(xmpp_server: Any, tmp_path: Path) -> tuple[Any, dict[str, tuple[str, str]], Path]:
    users = {name: new_user(xmpp_server, name) for name in ("alice", "bob")}
    return xmpp_server, users, tmp_path


Pair = tuple[Any, dict[str, tuple[str, str]], Path]


def test_unread_decrypts_what_the_peer_encrypted_and_again_on_the_next_run(pair: Pair) -> None:
    server, users, tmp = pair
    (alice, apw), (bob, bpw) = users["alice"], users["bob"]
    device = own_device(server, bob, bpw)
    assert state_path(bob).stat().st_mode & 0o777 == 0o600
    secrets = [f"secret {uuid.uuid4().hex}" for _ in range(2)]
    for text in secrets:
        sent = peer(server, alice, apw, tmp / "alice.json", "send", bob, text)
        assert sent[0]["namespaces"] == [OLDMEMO]

    first = listed(server, bob, bpw)
    assert [m["body"] for m in first] == secrets
    assert all(m["encryption"] == "omemo" and m["decrypted"] for m in first)
    # a message's keys are single-use: the second run shows what the first decrypted
    assert listed(server, bob, bpw) == first
    # the device is the same one on every run
    assert own_device(server, bob, bpw)["device"] == device["device"]
    index = (Path(os.environ["XDG_STATE_HOME"]) / "xmpp-tool" / "unread").glob("*.json")
    for path in index:
        assert not any(text in path.read_text() for text in secrets), path


def test_send_e_is_decrypted_by_the_peer_and_the_server_never_sees_the_text(pair: Pair) -> None:
    server, users, tmp = pair
    (alice, apw), (bob, bpw) = users["alice"], users["bob"]
    alices = peer(server, alice, apw, tmp / "alice.json", "publish")[0]
    text = f"disk full on db1 {uuid.uuid4().hex}"
    res = xt(server, bob, bpw, "-J", "send", "-e", alice, text)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["encryption"] == "omemo"

    archived = [m for m in peer(server, alice, apw, tmp / "alice.json", "read", bob)
                if m["from"] == bob]  # fmt: skip
    assert [m["body"] for m in archived] == [text]
    stanza = archived[0]["xml"]
    assert text not in stanza and "disk full" not in stanza
    assert alices["device"] in archived[0]["keys"]


def test_a_distrusted_device_gets_no_key(pair: Pair) -> None:
    server, users, tmp = pair
    (alice, apw), (bob, bpw) = users["alice"], users["bob"]
    phone = peer(server, alice, apw, tmp / "phone.json", "publish")[0]["device"]
    laptop = peer(server, alice, apw, tmp / "laptop.json", "publish")[0]["device"]
    res = xt(server, bob, bpw, "-J", "trust", alice)
    assert res.returncode == 0, res.stderr
    listed_devices = {d["device"]: d for d in map(json.loads, res.stdout.splitlines())}
    assert set(listed_devices) == {phone, laptop}
    res = xt(server, bob, bpw, "-J", "trust", "-d", alice, str(laptop))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["trust"] == "distrusted"
    # a decision ends blind trust for alice: her undecided phone gets no key either
    text = f"only for the phone {uuid.uuid4().hex}"
    res = xt(server, bob, bpw, "send", "-e", alice, text)
    assert res.returncode == 76 and f"trust -t {alice}" in res.stderr, res.stderr
    fingerprint = listed_devices[phone]["fingerprint"]
    res = xt(server, bob, bpw, "-J", "trust", "-t", alice, fingerprint)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["trust"] == "trusted"

    res = xt(server, bob, bpw, "send", "-e", alice, text)
    assert res.returncode == 0, res.stderr
    on_phone = [m for m in peer(server, alice, apw, tmp / "phone.json", "read", bob)
                if m["from"] == bob]  # fmt: skip
    assert [m.get("body") for m in on_phone] == [text]
    assert phone in on_phone[0]["keys"] and laptop not in on_phone[0]["keys"]
    on_laptop = [m for m in peer(server, alice, apw, tmp / "laptop.json", "read", bob)
                 if m["from"] == bob]  # fmt: skip
    assert "body" not in on_laptop[0] and "MessageNotForUs" in on_laptop[0]["error"]


def test_a_recipient_without_a_device_is_refused_never_sent_in_clear(pair: Pair) -> None:
    server, users, tmp = pair
    (alice, apw), (bob, bpw) = users["alice"], users["bob"]
    carol, _cpw = new_user(server, "carol")
    res = xt(server, bob, bpw, "send", "-e", carol, "for carol")
    assert res.returncode == 76, res.stderr
    assert res.stderr.count("\n") == 1 and carol in res.stderr and "OMEMO" in res.stderr
    res = xt(server, bob, bpw, "trust", carol)
    assert (res.returncode, res.stdout) == (0, ""), res.stderr
    assert res.stderr.count("\n") == 1 and "has no OMEMO device" in res.stderr

    peer(server, alice, apw, tmp / "alice.json", "publish")
    res = xt(server, bob, bpw, "-J", "send", "-e", "-m", "to both", alice, carol)
    assert res.returncode == 76, res.stderr
    outcomes = {o["recipient"]: o for o in map(json.loads, res.stdout.splitlines())}
    assert outcomes[alice]["status"] == "sent" and outcomes[carol]["status"] == "refused"
    got = peer(server, alice, apw, tmp / "alice.json", "read", bob)
    assert [m.get("body") for m in got if m["from"] == bob] == ["to both"]


def test_what_was_not_encrypted_for_this_device_is_listed_with_a_marker(pair: Pair) -> None:
    server, users, tmp = pair
    (alice, apw), (bob, bpw) = users["alice"], users["bob"]
    # bob's phone exists; xmpp-tool has no device yet
    peer(server, bob, bpw, tmp / "bobs-phone.json", "publish")
    peer(server, alice, apw, tmp / "alice.json", "send", bob, "before xmpp-tool's device")
    [before] = listed(server, bob, bpw)
    assert before["body"] is None and before["decrypted"] is False
    assert "no OMEMO device" in before["undecrypted"]

    own_device(server, bob, bpw)
    peer(server, alice, apw, tmp / "alice.json", "send", bob, "after it")
    old, new = listed(server, bob, bpw)
    assert (old["body"], old["decrypted"]) == (None, False)
    assert "not encrypted for this device" in old["undecrypted"]
    assert (new["body"], new["decrypted"]) == ("after it", True)
    res = xt(server, bob, bpw, "unread")
    assert "[OMEMO, not decrypted: not encrypted for this device]" in res.stdout
    assert "(OMEMO): after it" in res.stdout


def test_send_e_F_uploads_the_file_encrypted_as_the_apps_do(pair: Pair) -> None:
    server, users, tmp = pair
    (alice, apw), (bob, bpw) = users["alice"], users["bob"]
    peer(server, alice, apw, tmp / "alice.json", "publish")
    data = os.urandom(100_000)
    (tmp / "report.pdf").write_bytes(data)
    res = xt(server, bob, bpw, "-J", "send", "-e", "-F", str(tmp / "report.pdf"), alice)
    assert res.returncode == 0, res.stderr
    url = json.loads(res.stdout)["url"]
    assert url.startswith("https://") and "#" not in url  # -J never prints the key

    [got] = [m for m in peer(server, alice, apw, tmp / "alice.json", "read", bob)
             if m["from"] == bob]  # fmt: skip
    sealed_url = got["body"]
    assert sealed_url.startswith("aesgcm://") and sealed_url not in got["xml"]
    where, fragment = sealed_url.removeprefix("aesgcm://").split("#")
    assert "https://" + where == url and len(fragment) == 88  # XEP-0454: IV (12) + key (32)
    iv, key = bytes.fromhex(fragment[:24]), bytes.fromhex(fragment[24:])
    assert url.startswith("https://")
    tls = ssl.create_default_context(cafile=str(server.cafile))
    stored = urllib.request.urlopen(url, context=tls, timeout=30).read()  # noqa: S310
    assert data not in stored and len(stored) == len(data) + 16
    assert AESGCM(key).decrypt(iv, stored, None) == data


def omemo_room(server: Any, owner: tuple[str, str], members: list[str], *,
               anonymous: bool = False) -> str:
    """A persistent members-only room, non-anonymous unless ``anonymous``."""
    room = server.room(f"omemo{uuid.uuid4().hex[:10]}")

    async def create(p: Peer) -> None:
        await p.join_room(room, "owner")
        await p.configure_room(room, {"muc#roomconfig_persistentroom": True,
                                      "muc#roomconfig_membersonly": True,
                                      "muc#roomconfig_whois": "moderators" if anonymous
                                      else "anyone"})  # fmt: skip
        for member in members:
            await p.plugin["xep_0045"].set_affiliation(JID(room), "member", jid=JID(member),
                                                       timeout=20)  # fmt: skip
        await p.leave_room(room, "owner")

    with_peer(server, owner[0], owner[1], create)
    return str(room)


def test_send_e_g_encrypts_for_every_member_of_a_private_room(pair: Pair) -> None:
    server, users, tmp = pair
    (alice, apw), (bob, bpw) = users["alice"], users["bob"]
    owner = new_user(server, "owner")
    peer(server, owner[0], owner[1], tmp / "owner.json", "publish")
    alices = peer(server, alice, apw, tmp / "alice.json", "publish")[0]["device"]
    carol, cpw = new_user(server, "carol")  # another xmpp-tool, on another account
    own_device(server, carol, cpw)
    room = omemo_room(server, owner, [alice, bob, carol])
    text = f"for the members only, {carol.split('@')[0]}: {uuid.uuid4().hex}"
    res = xt(server, bob, bpw, "-J", "send", "-e", "-g", "-m", text, room)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["encryption"] == "omemo"

    [got] = [m for m in peer(server, alice, apw, tmp / "alice.json", "read-room", room)
             if m["from"] == bob]  # fmt: skip
    assert got["body"] == text and text not in got["xml"] and alices in got["keys"]
    [owners] = [m for m in peer(server, owner[0], owner[1], tmp / "owner.json", "read-room",
                                room) if m["from"] == bob]  # fmt: skip
    assert owners["body"] == text
    # unread decrypts a room's message from the room's archive, twice the same
    [seen] = listed(server, carol, cpw, "-r", room)
    assert (seen["body"], seen["decrypted"], seen["room"]) == (text, True, room)
    assert seen["mention"] is True  # found in the decrypted text
    assert listed(server, carol, cpw, "-r", room) == [seen]


def test_send_e_g_refuses_a_room_that_is_not_private_or_a_member_without_a_device(
        pair: Pair) -> None:
    server, users, tmp = pair
    (alice, _apw), (bob, bpw) = users["alice"], users["bob"]
    owner = new_user(server, "owner")
    peer(server, owner[0], owner[1], tmp / "owner.json", "publish")
    semi = omemo_room(server, owner, [alice, bob], anonymous=True)
    res = xt(server, bob, bpw, "send", "-e", "-g", "-m", "hi", semi)
    assert res.returncode == 76 and "non-anonymous" in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1
    private = omemo_room(server, owner, [alice, bob])  # alice has no device
    res = xt(server, bob, bpw, "send", "-e", "-g", "-m", "hi", private)
    assert res.returncode == 76 and alice in res.stderr and "OMEMO" in res.stderr, res.stderr
    archived = peer(server, owner[0], owner[1], tmp / "owner.json", "read-room", private)
    assert not [m for m in archived if m["from"] == bob]  # nothing went out, not even in clear
