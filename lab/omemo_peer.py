"""An independent OMEMO client for the tests and benchmarks: slixmpp-omemo's own example
client (``examples/echo_client.py`` in its repository: a JSON file storage, blind trust
before verification), one action per run, in its own process.  It shares no code
with xmpp-tool's OMEMO module: what one encrypts, the other must decrypt.

    OMEMO_PEER_PASSWORD=… python -m lab.omemo_peer --jid alice@prosody.test \\
        --host 127.0.0.1 --port 5222 --cafile ca.crt --state alice.json ACTION …

Actions (one JSON object per line on standard output):

- ``publish``: create (first run) or load the device, publish it; ``{"device", "fingerprint"}``.
- ``send TO BODY``: encrypt for every trusted device of TO (and our own others), send,
  wait for the server's ack; ``{"id", "namespaces"}``.
- ``read WITH``: the archive of the chat with WITH, oldest first, each message decrypted
  if it can be; ``{"archive_id", "from", "encrypted", "body" | "error", "xml", "keys"}``
  (``keys``: the device ids the message carries a key for).
- ``read-room ROOM``: the same for a room's archive (``nick`` too), decrypted from the
  sender's real JID (a non-anonymous room's archive names it).
- ``devices JID``: ``{"device", "fingerprint", "trust"}`` for each device of JID.
- ``trust JID DEVICE LEVEL``: set a device's trust (TRUSTED, DISTRUSTED).

Exit status 0, or 1 with one line on standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

from omemo.storage import Just, Maybe, Nothing, Storage
from omemo.types import DeviceInformation, JSONType
from slixmpp import JID
from slixmpp.plugins import register_plugin
from slixmpp_omemo import XEP_0384

from lab.slixpeer import Peer, PeerError

OLDMEMO = "eu.siacs.conversations.axolotl"
TWOMEMO = "urn:xmpp:omemo:2"


class JsonStorage(Storage):
    """The example's storage: every key in one JSON file, rewritten on each change."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self._data: dict[str, JSONType] = {}
        if path.exists():
            self._data = json.loads(path.read_text(encoding="utf-8"))

    async def _load(self, key: str) -> Maybe[JSONType]:
        return Just(self._data[key]) if key in self._data else Nothing()

    async def _store(self, key: str, value: JSONType) -> None:
        self._data[key] = value
        self._path.write_text(json.dumps(self._data), encoding="utf-8")

    async def _delete(self, key: str) -> None:
        self._data.pop(key, None)
        self._path.write_text(json.dumps(self._data), encoding="utf-8")


class XEP_0384Peer(XEP_0384):
    """The example's plugin: blind trust before verification, never a prompt."""

    name = "xep_0384"
    default_config: ClassVar[dict[str, Any]] = {
        "fallback_message": "This message is OMEMO encrypted.", "json_file_path": None}

    def plugin_init(self) -> None:
        self._storage = JsonStorage(Path(self.json_file_path))
        super().plugin_init()

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _prompt_manual_trust(self, manually_trusted: frozenset[DeviceInformation],
                                   identifier: str | None) -> None:  # fmt: skip
        raise PeerError(f"undecided devices: {sorted(d.device_id for d in manually_trusted)}")


register_plugin(XEP_0384Peer)


class OmemoPeer(Peer):
    def __init__(self, jid: str, password: str, host: str, port: int, cafile: Path,
                 state: Path) -> None:  # fmt: skip
        super().__init__(jid, password, host, port, cafile, timeout=60.0)
        for name in ("xep_0060", "xep_0163", "xep_0280", "xep_0334", "xep_0380"):
            self.register_plugin(name)
        self.register_plugin("xep_0384", {"json_file_path": str(state)},
                             module=sys.modules[__name__])  # fmt: skip

    @property
    def omemo(self) -> Any:
        return self.plugin.get("xep_0384", None)

    async def manager(self) -> Any:
        return await asyncio.wait_for(self.omemo.get_session_manager(), 60)


def fingerprint(identity_key: bytes) -> str:
    return identity_key.hex()


async def publish(peer: OmemoPeer) -> None:
    sm = await peer.manager()
    own, _others = await sm.get_own_device_information()
    print(json.dumps({"device": own.device_id, "fingerprint": fingerprint(own.identity_key)}))


async def send(peer: OmemoPeer, to: str, body: str) -> None:
    omemo = peer.omemo
    await peer.manager()
    # as an app does when a chat is opened: the peer is not online to hear of changes
    await omemo.refresh_device_lists({JID(to)}, force_download=True)
    msg = peer.make_message(mto=JID(to), mtype="chat")
    msg["body"] = body
    encrypted, problems = await omemo.encrypt_message(msg, JID(to))
    if problems:
        print(f"omemo_peer: encryption problems: {problems}", file=sys.stderr)
    if encrypted is None:
        raise PeerError("nothing to send")
    encrypted["eme"]["namespace"] = OLDMEMO
    encrypted["eme"]["name"] = "OMEMO"
    fut = peer._track(encrypted)
    encrypted.send()
    peer.request_ack()
    await asyncio.wait_for(fut, 60)
    print(json.dumps({"id": encrypted["id"], "namespaces": sorted(omemo.is_encrypted(encrypted))}))


async def read(peer: OmemoPeer, with_jid: str) -> None:
    omemo = peer.omemo
    await peer.manager()
    async for result in peer.plugin["xep_0313"].iterate(with_jid=JID(with_jid),
                                                         rsm={"max": 100}):  # fmt: skip
        fwd = result["mam_result"]["forwarded"]["stanza"]
        line: dict[str, Any] = {"archive_id": str(result["mam_result"]["id"]),
                                "from": str(fwd["from"].bare), "xml": str(fwd),
                                "encrypted": bool(omemo.is_encrypted(fwd))}  # fmt: skip
        keys = fwd.xml.findall(f".//{{{OLDMEMO}}}key") + fwd.xml.findall(f".//{{{TWOMEMO}}}key")
        line["keys"] = sorted(int(k.get("rid")) for k in keys)
        if line["encrypted"]:
            try:
                plain, _device = await omemo.decrypt_message(fwd)
                line["body"] = str(plain["body"])
            except Exception as exc:  # a message we cannot read is data, not a failure
                line["error"] = f"{type(exc).__name__}: {exc}"
        else:
            line["body"] = str(fwd["body"])
        print(json.dumps(line))


async def read_room(peer: OmemoPeer, room: str) -> None:
    """The room's archive (XEP-0313 to the room), decrypted where it can be.  The
    library decrypts a room's message only for an occupant who saw the sender's
    presence; from the archive, the sender's real JID is in the message's muc#user
    item (a non-anonymous room), so the message is decrypted as if sent from it."""
    from copy import copy

    omemo = peer.omemo
    await peer.manager()
    async for result in peer.plugin["xep_0313"].iterate(jid=JID(room), rsm={"max": 100}):
        fwd = result["mam_result"]["forwarded"]["stanza"]
        item = fwd.xml.find("{http://jabber.org/protocol/muc#user}x/"
                            "{http://jabber.org/protocol/muc#user}item")  # fmt: skip
        real = JID(item.get("jid")).bare if item is not None and item.get("jid") else ""
        line: dict[str, Any] = {"archive_id": str(result["mam_result"]["id"]),
                                "nick": fwd["from"].resource, "from": real, "xml": str(fwd),
                                "encrypted": bool(omemo.is_encrypted(fwd))}  # fmt: skip
        keys = fwd.xml.findall(f".//{{{OLDMEMO}}}key") + fwd.xml.findall(f".//{{{TWOMEMO}}}key")
        line["keys"] = sorted(int(k.get("rid")) for k in keys)
        if line["encrypted"] and real:
            direct = copy(fwd)
            direct["type"] = "chat"
            direct["from"] = JID(real)
            try:
                plain, _device = await omemo.decrypt_message(direct)
                line["body"] = str(plain["body"])
            except Exception as exc:  # a message we cannot read is data, not a failure
                line["error"] = f"{type(exc).__name__}: {exc}"
        elif not line["encrypted"]:
            line["body"] = str(fwd["body"])
        print(json.dumps(line))


async def devices(peer: OmemoPeer, jid: str) -> None:
    sm = await peer.manager()
    await sm.refresh_device_lists(jid)
    for d in sorted(await sm.get_device_information(jid), key=lambda d: d.device_id):
        print(json.dumps({"device": d.device_id, "fingerprint": fingerprint(d.identity_key),
                          "trust": d.trust_level_name}))  # fmt: skip


async def trust(peer: OmemoPeer, jid: str, device: int, level: str) -> None:
    sm = await peer.manager()
    await sm.refresh_device_lists(jid)
    for d in await sm.get_device_information(jid):
        if d.device_id == device:
            await sm.set_trust(jid, d.identity_key, level)
            return
    raise PeerError(f"{jid} has no device {device}")


async def main_async(args: argparse.Namespace) -> None:
    password = os.environ["OMEMO_PEER_PASSWORD"]
    peer = OmemoPeer(args.jid, password, args.host, args.port, args.cafile, args.state)
    async with peer:
        if args.action == "publish":
            await publish(peer)
        elif args.action == "send":
            await send(peer, args.to, args.body)
        elif args.action == "read":
            await read(peer, args.with_jid)
        elif args.action == "read-room":
            await read_room(peer, args.room)
        elif args.action == "devices":
            await devices(peer, args.of)
        elif args.action == "trust":
            await trust(peer, args.of, args.device, args.level)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--jid", "--host", "--cafile", "--state"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, required=True)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("publish")
    p = sub.add_parser("send")
    p.add_argument("to")
    p.add_argument("body")
    sub.add_parser("read").add_argument("with_jid")
    sub.add_parser("read-room").add_argument("room")
    sub.add_parser("devices").add_argument("of")
    p = sub.add_parser("trust")
    p.add_argument("of")
    p.add_argument("device", type=int)
    p.add_argument("level", choices=("TRUSTED", "DISTRUSTED", "BLINDLY_TRUSTED"))
    args = parser.parse_args(argv)
    args.cafile, args.state = Path(args.cafile), Path(args.state)
    try:
        asyncio.run(main_async(args))
    except (PeerError, TimeoutError, OSError, ValueError) as exc:
        print(f"omemo_peer: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
