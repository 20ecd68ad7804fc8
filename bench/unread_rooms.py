#!/usr/bin/env python3
"""unread in rooms with a long read history: ``xmpp-tool -J unread -g`` for a
member of 10 rooms holding 1,000 messages each that it already read, plus 3 new
per room; against the same for 10 rooms whose history is empty (3 new each), and
against the floor: a plain slixmpp client that reads the pointers (XEP-0490) and
asks each room's archive (XEP-0313) for what follows its pointer, nothing else.

For each server: a sender fills the rooms (a plain slixmpp client in each room);
two readers bookmark them (XEP-0402), ``long`` the 10 full rooms, ``empty`` the 10
empty ones; each reader runs ``-J unread -g -m`` once (marks what it was shown as
read, as a user would, and writes its index); 3 new messages arrive in every room.
Then REPEAT times each, output checked (30 messages): the long reader, the empty
reader, the floor (for the long rooms).

Goal: time(long) <= 1.5 x time(empty), on both servers.  Prints a Markdown table
with the ratios *of the same run* and the load average; ``--json FILE`` saves the
raw figures.  Needs prosody/ejabberd as for the integration tests (root for
ejabberd).  Run it alone (``flock /work/bench.lock …`` on a shared host).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.unread_scale import XMPP_TOOL, machine, measure
from lab.servers import XmppServer, running_servers

FLOOR = Path(__file__).with_name("room_floor.py")  # run as a script: it imports slixmpp only
ROOMS = 10
READ = 1_000
NEW = 3


@dataclass
class Row:
    server: str
    case: str  # "long", "empty", "floor"
    wall_s: float  # median
    walls: list[float]
    peak_rss_mb: float
    load: float  # 1-minute load average when the row was measured


# ----------------------------------------------------------------- set-up


async def _fill(server: XmppServer, sender: str, password: str, rooms: list[str],
                bodies: list[str], *, create: bool = False) -> None:
    """``sender`` says ``bodies`` in each room (pipelined, then every reflection
    awaited: the room has archived them); ``create``: make them persistent rooms."""
    from lab.slixpeer import peer_for

    async with peer_for(server, sender.split("@")[0], password) as peer:
        for room in rooms:
            await peer.join_room(room, "sender")
            if create:
                await peer.configure_room(room, {"muc#roomconfig_persistentroom": True})
            for body in bodies:
                peer.make_message(mto=room, mbody=body, mtype="groupchat").send()
            for _ in bodies:
                await peer.next_groupchat(room)
            await peer.leave_room(room, "sender")


async def _bookmark(server: XmppServer, reader: str, password: str, rooms: list[str]) -> None:
    from lab.slixpeer import peer_for

    async with peer_for(server, reader.split("@")[0], password) as peer:
        for room in rooms:
            await peer.bookmark(room, "reader")


def bench(server: XmppServer, repeat: int, state: Path) -> list[Row]:
    password = secrets.token_urlsafe(16)
    tag = secrets.token_hex(3)
    sender, long_reader, empty_reader = server.register_many(
        {f"rs{tag}": password, f"rl{tag}": password, f"re{tag}": password})
    long_rooms = [server.room(f"long{tag}{i}") for i in range(ROOMS)]
    empty_rooms = [server.room(f"empty{tag}{i}") for i in range(ROOMS)]
    print(f"  {server.kind}: filling {ROOMS} rooms with {READ:,} messages each", flush=True)
    asyncio.run(_fill(server, sender, password, long_rooms, [f"old {i}" for i in range(READ)],
                      create=True))
    asyncio.run(_fill(server, sender, password, empty_rooms, [], create=True))
    asyncio.run(_bookmark(server, long_reader, password, long_rooms))
    asyncio.run(_bookmark(server, empty_reader, password, empty_rooms))
    env = {**os.environ, "XMPP_TOOL_PASSWORD": password, "XDG_STATE_HOME": str(state)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as on a user's machine

    def argv(reader: str, *args: str) -> list[str]:
        return [str(XMPP_TOOL), "-C", str(server.cafile), "-s", server.server, "-u", reader,
                *args]

    for reader in (long_reader, empty_reader):
        measure(argv(reader, "-J", "unread", "-g", "-m"), env)  # marked read, index written
    new = [f"new {i}" for i in range(NEW)]
    asyncio.run(_fill(server, sender, password, long_rooms + empty_rooms, new))
    spec = {"jid": long_reader, "password": password, "host": server.host, "port": server.port,
            "cafile": str(server.cafile), "rooms": long_rooms}
    spec_file = state / f"floor-{tag}.json"
    spec_file.write_text(json.dumps(spec))
    cases = {
        "long": argv(long_reader, "-J", "unread", "-g"),
        "empty": argv(empty_reader, "-J", "unread", "-g"),
        "floor": [sys.executable, str(FLOOR), str(spec_file)],
    }
    rows = []
    for name, command in cases.items():
        walls, rss = [], []
        for _ in range(repeat):
            wall, peak, out, _ = measure(command, env)
            if len(out.splitlines()) != ROOMS * NEW:
                raise SystemExit(f"{server.kind} {name}: wrong output {out[:300]!r}")
            walls.append(wall)
            rss.append(peak)
        rows.append(Row(server.kind, name, statistics.median(walls), walls, max(rss),
                        os.getloadavg()[0]))
        print(f"  {server.kind} {name}: median {rows[-1].wall_s:.3f} s "
              f"(load {rows[-1].load:.1f})", flush=True)
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| server | case | wall (median) | vs empty histories | vs the floor | peak RSS "
             "| load | goal |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        same = {x.case: x for x in rows if x.server == r.server}
        vs_empty = f"{r.wall_s / same['empty'].wall_s:.2f}x" if "empty" in same else ""
        vs_floor = f"{r.wall_s / same['floor'].wall_s:.2f}x" if "floor" in same else ""
        goal = ""
        if r.case == "long" and "empty" in same:
            met = r.wall_s <= 1.5 * same["empty"].wall_s
            goal = f"<= 1.5x empty: {'met' if met else 'not met'}"
        lines.append(f"| {r.server} | {r.case} | {r.wall_s:.3f} s | {vs_empty} | {vs_floor} "
                     f"| {r.peak_rss_mb:.0f} MB | {r.load:.1f} | {goal} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--servers", nargs="+", default=["prosody", "ejabberd"],
                        choices=["prosody", "ejabberd"])
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (default 5)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()
    if not XMPP_TOOL.exists():
        parser.error(f"{XMPP_TOOL} not found: run with the project's .venv/bin/python")
    print(f"machine: {machine()}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="xt-state-") as state, \
            running_servers(*args.servers) as servers:
        for kind in args.servers:
            rows.extend(bench(servers[kind], args.repeat, Path(state)))
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
