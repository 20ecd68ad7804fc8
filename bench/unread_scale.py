#!/usr/bin/env python3
"""Unread at scale: ``xmpp-tool unread`` with 1,000 and 10,000 archived unread
messages.

Starts throwaway prosody and ejabberd servers on loopback (the integration tests'
``lab/servers.py``), and for each size N registers a fresh reader and
sender, puts N chat messages in the reader's archive with a plain slixmpp client
(acknowledged by the server, XEP-0198), then measures, REPEAT times each:

* ``xmpp-tool -J unread``    (all N listed, one JSON object per line), with the
  reader's archive index from the previous run, and with none (a first run)
* ``xmpp-tool unread -c``    (only the count, with the index)
* and, as the floor, the same archive read in-process by a plain slixmpp client
  (MAM pages of 250 where the server allows): the server's and the protocol's share.

wall time (median) and peak RSS (max, from wait4's rusage) of the whole process.
The output is checked (N lines, count N) so a fast wrong answer cannot pass.

Goals: ``-J`` at 10,000 <= 1.1x the floor of the same run (one pass over the
archive); RSS <= 100 MB.  Prints a Markdown table; ``--json FILE`` saves the raw
figures, ``--plot FILE.png`` draws time against N (needs matplotlib).

Needs prosody/ejabberd as for the integration tests, root for ejabberd.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.servers import XmppServer, running_servers  # stdlib only

XMPP_TOOL = Path(sys.executable).parent / "xmpp-tool"


@dataclass
class Row:
    server: str
    command: str
    n: int
    wall_s: float  # median
    walls: list[float]
    peak_rss_mb: float  # max over the repeats
    seed_s: float


def machine() -> str:
    return f"{platform.node()}: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float, str, int]:
    """(wall seconds, peak RSS MiB, stdout, exit status) of one run."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        if proc.returncode != 0:
            raise SystemExit(f"{argv[-2:]} exited {proc.returncode}: {err.read().decode()[-500:]}")
    return wall, usage.ru_maxrss / 1024, text, proc.returncode


def seed(server: XmppServer, sender: str, password: str, reader: str, n: int) -> float:
    from lab.slixpeer import peer_for  # slixmpp: not needed for --from-json

    async def run() -> None:
        async with peer_for(server, sender.split("@")[0], password) as peer:
            sent = await peer.seed(reader, n, prefix="scale")
            assert sent == n

    t0 = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - t0


def read_archive(server: XmppServer, reader: str, password: str, n: int) -> float:
    from lab.slixpeer import peer_for

    async def run() -> float:
        async with peer_for(server, reader.split("@")[0], password) as peer:
            t0 = time.perf_counter()
            count = len([m async for m in peer.archive(page=250)])
            wall = time.perf_counter() - t0
        if count != n:
            raise SystemExit(f"{server.kind}: slixmpp read {count} messages, not {n}")
        return wall

    return asyncio.run(run())


def bench(server: XmppServer, n: int, repeat: int) -> list[Row]:
    password = secrets.token_urlsafe(16)
    tag = secrets.token_hex(3)
    sender, reader = server.register_many(
        {f"scale{n}s{tag}": password, f"scale{n}r{tag}": password}
    )
    seed_s = seed(server, sender, password, reader, n)
    print(f"{server.kind}: {n} messages archived in {seed_s:.1f} s", flush=True)
    state = tempfile.mkdtemp(prefix="xt-state-")
    env = {**os.environ, "XMPP_TOOL_PASSWORD": password, "XDG_STATE_HOME": state}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as on a user's machine
    base = [str(XMPP_TOOL), "-C", str(server.cafile), "-s", server.server, "-u", reader]
    rows = []
    # The floor: the same archive read in-process by a plain slixmpp client (no process
    # start, no unread logic): what the server and the protocol cost.
    walls = [read_archive(server, reader, password, n) for _ in range(repeat)]
    rows.append(Row(server.kind, "slixmpp MAM read (floor)", n, statistics.median(walls),
                    walls, 0.0, seed_s))  # fmt: skip
    print(f"  slixmpp MAM read: median {rows[-1].wall_s:.2f} s", flush=True)
    cases: list[tuple[str, list[str], bool, Callable[[str], bool]]] = [
        ("unread -J", [*base, "-J", "unread"], False, lambda out: len(out.splitlines()) == n),
        ("unread -J, no index", [*base, "-J", "unread"], True,
         lambda out: len(out.splitlines()) == n),
        ("unread -c", [*base, "unread", "-c"], False, lambda out: out.strip() == str(n)),
    ]
    measure([*base, "unread", "-c"], env)  # the index, as a previous run leaves it
    for name, argv, cold, check in cases:
        walls, rss = [], []
        for _ in range(repeat):
            run_env = {**env, "XDG_STATE_HOME": tempfile.mkdtemp(dir=state)} if cold else env
            wall, peak, out, _ = measure(argv, run_env)
            if not check(out):
                raise SystemExit(f"{server.kind} {name}: wrong output for {n}: {out[:200]!r}")
            walls.append(wall)
            rss.append(peak)
        rows.append(Row(server.kind, name, n, statistics.median(walls), walls, max(rss), seed_s))
        print(f"  {name}: median {rows[-1].wall_s:.2f} s, peak RSS {max(rss):.0f} MB",
              flush=True)  # fmt: skip
    shutil.rmtree(state, ignore_errors=True)
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| server | command | messages | wall (median) | per message | peak RSS "
        "| per-message cost vs smallest N | goal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        small = [x for x in rows if x.server == r.server and x.command == r.command]
        first = min(small, key=lambda x: x.n)
        ratio = ""
        if r.n != first.n:
            ratio = f"{(r.wall_s / r.n) / (first.wall_s / first.n):.2f}x"
        goal = ""
        rss = f"{r.peak_rss_mb:.0f} MB" if r.peak_rss_mb else "-"
        floor = next((x for x in rows if x.server == r.server and x.n == r.n
                      and "floor" in x.command), None)
        if r.n >= 10_000 and r.command.startswith("unread -J") and floor:
            vs = r.wall_s / floor.wall_s
            goal = (f"{vs:.2f}x floor (<= 1.1x: {'met' if vs <= 1.1 else 'not met'}), "
                    f"RSS <= 100 MB: {'met' if r.peak_rss_mb <= 100 else 'not met'}")
        lines.append(
            f"| {r.server} | {r.command} | {r.n:,} | {r.wall_s:.2f} s "
            f"| {r.wall_s / r.n * 1e6:.0f} µs | {rss} | {ratio} | {goal} |"
        )
    return "\n".join(lines)


def plot(rows: list[Row], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib (pip install matplotlib)") from None
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted({(r.server, r.command) for r in rows}):
        pts = sorted((r.n, r.wall_s) for r in rows if (r.server, r.command) == key)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=" ".join(key))
    ax.set_xlabel("archived unread messages")
    ax.set_ylabel("wall time (s, median)")
    ax.set_title("xmpp-tool unread")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Example: sudo .venv/bin/python -m bench.unread_scale --plot docs/unread.png",
    )
    parser.add_argument("--servers", nargs="+", default=["prosody", "ejabberd"],
                        choices=["prosody", "ejabberd"], help="default: both")  # fmt: skip
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000],
                        help="archive sizes (default: 1000 10000)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="runs per command (default 3)")
    parser.add_argument("--prosody-page", type=int, metavar="N",
                        help="max_archive_query_results (default: the test template's 250, "
                             "as the lab deploys; prosody's own is 50)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--plot", type=Path, help="write a PNG of time against size")
    parser.add_argument("--from-json", type=Path, metavar="FILE",
                        help="table (and --plot) from a saved --json file, no servers")  # fmt: skip
    args = parser.parse_args()
    rows: list[Row] = []
    if args.from_json:
        rows = [Row(**r) for r in json.loads(args.from_json.read_text())]
        print(table(rows))
        if args.plot:
            plot(rows, args.plot)
        return 0
    if not XMPP_TOOL.exists():
        parser.error(f"{XMPP_TOOL} not found: run with the project's .venv/bin/python")
    if any(n < 1 for n in args.sizes) or args.repeat < 1:
        parser.error("sizes and --repeat must be positive")
    print(f"machine: {machine()}")
    extra = ""
    if args.prosody_page:
        extra = f"max_archive_query_results = {args.prosody_page}"
        print(f"prosody: {extra}")
    with running_servers(*args.servers, prosody_config=extra) as servers:
        for kind in args.servers:
            for n in sorted(args.sizes):
                rows.extend(bench(servers[kind], n, args.repeat))
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
