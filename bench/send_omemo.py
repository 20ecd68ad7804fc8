#!/usr/bin/env python3
"""``send -e`` (OMEMO) against plain ``send``, wall time and CPU, in the same run.

For each server (the integration servers: the lab's templates on loopback): bob is an
independent OMEMO client (lab/omemo_peer.py) with one device published; alice is
xmpp-tool, whose device is created once (``trust``, its cost printed apart).  Then
REPEAT times, interleaved: ``send bob hi`` and ``send -e bob hi`` (each a whole
process: start, login, OMEMO set-up, device list fetch, encryption, ack).  The figures
are medians of wall time and of CPU (user + system of the process), and their ratio
-e / plain; the load average is printed with each row.  bob's peer reads its archive
at the end and must decrypt every encrypted message (the run fails otherwise).

    flock /work/bench.lock .venv/bin/python -m bench.send_omemo [--repeat 9] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab import servers as lab_servers

XMPP_TOOL = Path(sys.executable).parent / "xmpp-tool"
PASSWORD = secrets.token_hex(8)  # throwaway accounts on throwaway servers
ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stdout) of one process; exits on failure."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=ROOT)  # fmt: skip
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{argv[-4:]}: exit {proc.returncode}: {err.decode()[-800:]}")
    cpu = _child_cpu()
    return wall, cpu, out.decode()


_last_cpu = 0.0


def _child_cpu() -> float:
    """CPU of the child that just ended (the difference of RUSAGE_CHILDREN)."""
    global _last_cpu
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = ru.ru_utime + ru.ru_stime
    used, _last_cpu = total - _last_cpu, total
    return used


def median_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.send_omemo",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="xt-bench-omemo-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMPP_TOOL")}
    env.update(XMPP_TOOL_PASSWORD=PASSWORD, OMEMO_PEER_PASSWORD=PASSWORD,
               XDG_STATE_HOME=str(work / "state"))  # fmt: skip
    rows = []
    try:
        ca = lab_servers.TestCA.create(work)
        for kind in ("prosody", "ejabberd"):
            s = lab_servers.start(kind, ca)
            try:
                alice, bob = s.register("alice", PASSWORD), s.register("bob", PASSWORD)
                tool = [str(XMPP_TOOL), "-C", str(ca.cafile), "-s", s.server, "-u", alice]
                peer = [sys.executable, "-m", "lab.omemo_peer", "--jid", bob, "--host", s.host,
                        "--port", str(s.port), "--cafile", str(ca.cafile),
                        "--state", str(work / f"bob-{kind}.json")]  # fmt: skip
                run([*peer, "publish"], env)
                first = run([*tool, "trust"], env)
                plain: list[tuple[float, float]] = []
                sealed: list[tuple[float, float]] = []
                for i in range(args.repeat):
                    plain.append(run([*tool, "send", bob, f"plain {i}"], env)[:2])
                    sealed.append(run([*tool, "send", "-e", bob, f"sealed {i}"], env)[:2])
                read = run([*peer, "read", alice], env)[2]
                got = [json.loads(line) for line in read.splitlines()]
                opened = [m.get("body") for m in got if m["encrypted"] and m["from"] == alice]
                want = [f"sealed {i}" for i in range(args.repeat)]
                if opened != want:
                    raise SystemExit(f"{kind}: the peer decrypted {opened}, not {want}")
                row = {
                    "server": kind, "repeat": args.repeat, "load": os.getloadavg()[0],
                    "device_creation_ms": first[0] * 1000,
                    "plain_wall_ms": median_ms([w for w, _ in plain]),
                    "omemo_wall_ms": median_ms([w for w, _ in sealed]),
                    "plain_cpu_ms": median_ms([c for _, c in plain]),
                    "omemo_cpu_ms": median_ms([c for _, c in sealed]),
                }  # fmt: skip
                row["wall_ratio"] = row["omemo_wall_ms"] / row["plain_wall_ms"]
                row["cpu_ratio"] = row["omemo_cpu_ms"] / row["plain_cpu_ms"]
                rows.append(row)
                print(f"{kind}: plain {row['plain_wall_ms']:.0f} ms wall / "
                      f"{row['plain_cpu_ms']:.0f} ms CPU; -e {row['omemo_wall_ms']:.0f} ms / "
                      f"{row['omemo_cpu_ms']:.0f} ms; ratio {row['wall_ratio']:.2f}x wall, "
                      f"{row['cpu_ratio']:.2f}x CPU; first run (device) "
                      f"{row['device_creation_ms']:.0f} ms; load {row['load']:.1f}",
                      flush=True)  # fmt: skip
            finally:
                s.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| server | send (wall / CPU) | send -e (wall / CPU) | ratio wall | ratio CPU | "
          "load |\n|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['server']} | {r['plain_wall_ms']:.0f} / {r['plain_cpu_ms']:.0f} ms | "
              f"{r['omemo_wall_ms']:.0f} / {r['omemo_cpu_ms']:.0f} ms | "
              f"{r['wall_ratio']:.2f}x | {r['cpu_ratio']:.2f}x | {r['load']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
