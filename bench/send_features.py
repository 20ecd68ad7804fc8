"""Wall time of ``xmpp-tool send`` to 1 and to 10 recipients (one login) and of a
10 MiB ``send -F`` (upload + message), against the integration servers (the lab's
templates on loopback, lab/servers.py).  On a shared host: flock LOCKFILE first.

    .venv/bin/python -m bench.send_features
"""

from __future__ import annotations

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


def timed(ca: lab_servers.TestCA, server: lab_servers.XmppServer, jid: str, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMPP_TOOL")}
    env["XMPP_TOOL_PASSWORD"] = PASSWORD
    argv = [str(XMPP_TOOL), "-C", str(ca.cafile), "-s", server.server, "-u", jid, *args]
    t0 = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{argv}: exit {res.returncode}: {res.stderr}")
    return elapsed


def summary(xs: list[float]) -> str:
    return (f"median {statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, "
            f"max {max(xs) * 1000:.0f}, n={len(xs)})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(
        prog="python -m bench.send_features",
        description="Time xmpp-tool send to 1 and to 10 recipients and a 10 MiB send -F "
        "against the integration servers on loopback (needs root for ejabberd).",
    ).parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="xt-bench-send-"))
    try:
        ca = lab_servers.TestCA.create(work)
        payload = work / "ten.bin"
        payload.write_bytes(os.urandom(10 * 1024 * 1024))
        started = [lab_servers.start_prosody(ca), lab_servers.start_ejabberd(ca)]
        try:
            for s in started:
                alice = s.register("alice", PASSWORD)
                rcpts = [s.register(f"r{i}", PASSWORD) for i in range(10)]
                one = [timed(ca, s, alice, "send", rcpts[0], "hi") for _ in range(7)]
                ten = [timed(ca, s, alice, "send", "-m", "hi", *rcpts) for _ in range(7)]
                upload = [timed(ca, s, alice, "send", "-F", str(payload), rcpts[0])
                          for _ in range(3)]  # fmt: skip
                print(f"{s.kind}: send to 1: {summary(one)}; send -m to 10: {summary(ten)}; "
                      f"send -F 10 MiB to 1: {summary(upload)}", flush=True)  # fmt: skip
        finally:
            for s in started:
                s.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
