#!/usr/bin/env python3
"""Unread with a long read history: ``xmpp-tool unread`` for a reader whose archive
holds N messages it already read (N = 0, 1,000, 10,000) plus 5 new ones.

For each server and N: a fresh reader and sender; N chat messages put in the
reader's archive by a plain slixmpp client; the reader runs ``-J unread -m`` once
(marks them read, as a user would, which also writes its archive index); 5 new
messages arrive.  Then, REPEAT times each:

* ``xmpp-tool unread -c`` and ``xmpp-tool -J unread`` with the reader's index
  (the everyday case), output checked (5);
* ``xmpp-tool -J unread`` with no index (another machine's first run: the worst
  case, a scan of the whole archive).

Goal: time(N = 10,000) <= 1.5 x time(N = 0) for the indexed runs, on both
servers, and <= 0.5 s wall on a quiet host.  Prints a Markdown table with the
ratio against N = 0 *of the same run* and the load average; ``--json FILE`` saves
the raw figures.

Needs prosody/ejabberd as for the integration tests (root for ejabberd).  Run it
alone (``flock /work/bench.lock …`` on a shared host): it measures wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.unread_scale import XMPP_TOOL, machine, measure, seed
from lab.servers import running_servers


@dataclass
class Row:
    server: str
    command: str
    n: int  # already-read messages in the archive
    wall_s: float  # median
    walls: list[float]
    peak_rss_mb: float
    load: float  # 1-minute load average when the row was measured


def bench(server: object, n: int, repeat: int, state: Path) -> list[Row]:
    from lab.servers import XmppServer

    assert isinstance(server, XmppServer)
    password = secrets.token_urlsafe(16)
    tag = secrets.token_hex(3)
    sender, reader = server.register_many(
        {f"hist{n}s{tag}": password, f"hist{n}r{tag}": password})
    if n:
        seed(server, sender, password, reader, n)
    env = {**os.environ, "XMPP_TOOL_PASSWORD": password, "XDG_STATE_HOME": str(state)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as on a user's machine
    base = [str(XMPP_TOOL), "-C", str(server.cafile), "-s", server.server, "-u", reader]
    if n:
        _, _, out, _ = measure([*base, "-J", "unread", "-m"], env)
        assert len(out.splitlines()) == n, "the history was not listed whole"
    seed(server, sender, password, reader, 5)
    rows = []
    cases = (
        ("unread -c", [*base, "unread", "-c"], False, lambda out: out.strip() == "5"),
        ("-J unread", [*base, "-J", "unread"], False, lambda out: len(out.splitlines()) == 5),
        ("-J unread, no index", [*base, "-J", "unread"], True,
         lambda out: len(out.splitlines()) == 5),
    )
    for name, argv, cold, check in cases:
        walls, rss = [], []
        for _ in range(repeat):
            run_env = env
            if cold:  # another machine: an empty state directory each time
                run_env = {**env, "XDG_STATE_HOME": tempfile.mkdtemp(dir=state)}
            wall, peak, out, _ = measure(argv, run_env)
            if not check(out):
                raise SystemExit(f"{server.kind} {name} N={n}: wrong output {out[:200]!r}")
            walls.append(wall)
            rss.append(peak)
        rows.append(Row(server.kind, name, n, statistics.median(walls), walls, max(rss),
                        os.getloadavg()[0]))
        print(f"  {server.kind} N={n} {name}: median {rows[-1].wall_s:.3f} s "
              f"(load {rows[-1].load:.1f})", flush=True)
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| server | command | read history N | wall (median) | vs N = 0 | peak RSS "
             "| load | goal |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        zero = next((x for x in rows if (x.server, x.command, x.n) == (r.server, r.command, 0)),
                    None)
        ratio = f"{r.wall_s / zero.wall_s:.2f}x" if zero and r.n else ""
        goal = ""
        if r.n >= 10_000 and "no index" not in r.command:
            ok = zero is not None and r.wall_s <= 1.5 * zero.wall_s
            goal = f"<= 1.5x: {'met' if ok else 'not met'}; <= 0.5 s: " \
                   f"{'met' if r.wall_s <= 0.5 else 'not met'}"
        lines.append(f"| {r.server} | `{r.command}` | {r.n:,} | {r.wall_s:.3f} s | {ratio} "
                     f"| {r.peak_rss_mb:.0f} MB | {r.load:.1f} | {goal} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--servers", nargs="+", default=["prosody", "ejabberd"],
                        choices=["prosody", "ejabberd"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[0, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (default 5)")
    parser.add_argument("--prosody-page", type=int, metavar="N",
                        help="prosody's max_archive_query_results (default: the template's, "
                             "as the lab)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()
    if not XMPP_TOOL.exists():
        parser.error(f"{XMPP_TOOL} not found: run with the project's .venv/bin/python")
    print(f"machine: {machine()}")
    rows: list[Row] = []
    extra = f"max_archive_query_results = {args.prosody_page}" if args.prosody_page else ""
    with tempfile.TemporaryDirectory(prefix="xt-state-") as state, \
            running_servers(*args.servers, prosody_config=extra) as servers:
        for kind in args.servers:
            for n in sorted(args.sizes):
                rows.extend(bench(servers[kind], n, args.repeat, Path(state)))
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
