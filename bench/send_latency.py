#!/usr/bin/env python3
"""Send latency: ``xmpp-tool send`` against go-sendxmpp and sendxmpp (issue 5, part 1).

Starts throwaway prosody and ejabberd servers on loopback (the integration tests'
``lab/servers.py``: temporary configs, a throwaway CA, free ports),
registers a sender and a recipient with random passwords, then runs hyperfine on
the three clients sending the same message to the same recipient on the same
server, each verifying TLS against the throwaway CA:

* ``xmpp-tool -C CA -s HOST:PORT -u JID send RCPT BODY`` (password from the
  environment, XMPP_TOOL_PASSWORD); exits once the server acknowledged the stanza.
* ``go-sendxmpp -f CONFIG -j HOST:PORT RCPT`` with ``SSL_CERT_FILE=CA`` (Go's way to
  replace the system roots); password in the 0600 config file; waits for nothing.
* ``sendxmpp -t -a CA -f CONFIG RCPT`` (Net::XMPP; the config's ``component`` is the
  XMPP domain, so the stream is addressed to it while connecting to 127.0.0.1);
  it sleeps one second before disconnecting.

Before timing, each client must succeed once, and must FAIL with the wrong CA (so
"verification on" is checked, not assumed).  Prints a Markdown table: per server
and client the wall time, the CPU time (user+sys, hyperfine's mean), the ratios of
both to go-sendxmpp's in the same hyperfine run, and how busy the host was during
that run (1-minute load average before -> after, and the share of all CPUs in use
according to /proc/stat).  Goals for xmpp-tool: wall <= 1.0x go-sendxmpp, CPU <= 3.0x go-sendxmpp's.
``--floors`` adds, in the same hyperfine run, what any slixmpp client on the same
interpreter pays before its first packet.

``--busy N`` makes the host busy in a bounded way for each timed run: N CPU hogs
(``stress-ng --cpu N``, or N Python busy loops without stress-ng) started
``--busy-warmup`` seconds before hyperfine, so the load average has risen, and
stopped right after it (they also stop by themselves after a fixed time).

Needs: hyperfine, go-sendxmpp, sendxmpp (Debian packages; stress-ng optional),
prosody/ejabberd as for the integration tests, root for ejabberd.  No password is
ever on a command line.  On a shared machine, serialise heavy benchmarks, e.g.
``flock /work/bench.lock .venv/bin/python -m bench.send_latency ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.servers import XmppServer, running_servers

XMPP_TOOL = Path(sys.executable).parent / "xmpp-tool"
MESSAGE = "bench: disk /var is 91% full"


@dataclass
class Client:
    name: str
    argv: list[str]  # given to hyperfine -N (no shell; it splits shell-words)
    wrong_ca_argv: list[str]


@dataclass
class Row:
    """One client's figures from one hyperfine run (seconds)."""

    name: str
    mean: float
    stddev: float
    median: float
    cpu: float  # mean user + system time
    load_before: float  # 1-minute load average
    load_after: float
    busy: float  # share of all CPUs in use during the run, 0..1


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


@contextmanager
def busy_host(workers: int, warmup: float, limit: float) -> Iterator[None]:
    """N CPU hogs for the duration of the block (at most ``limit`` seconds)."""
    if workers <= 0:
        yield
        return
    procs: list[subprocess.Popen[bytes]] = []
    if shutil.which("stress-ng"):
        hogs = ["stress-ng", "--cpu", str(workers), "--timeout", f"{int(limit)}s", "--quiet"]
        procs.append(subprocess.Popen(hogs))
    else:
        loop = f"import time\nend = time.monotonic() + {limit}\nwhile time.monotonic() < end: pass"
        procs = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(workers)]
    try:
        time.sleep(warmup)
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return f"{platform.node()}: {os.cpu_count()} CPUs ({cpu}), load {load:.1f}"


def write_secret(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def clients(
    server: XmppServer, sender: str, password: str, rcpt: str, tmp: Path, direct_tls: bool,
    xmpp_tools: dict[str, Path] | None = None,
) -> list[Client]:
    """The clients, each with its wrong-CA twin; ``xmpp_tools``: label -> console
    script (several: e.g. before and after a change, side by side in one run)."""
    tools = xmpp_tools or {"xmpp-tool": XMPP_TOOL}
    port = server.tls_port if direct_tls else server.port
    msgfile = tmp / "message.txt"
    msgfile.write_text(MESSAGE + "\n")
    go_cfg = write_secret(tmp / f"go-{server.kind}", f"username: {sender}\npassword: {password}\n")
    sx_cfg = write_secret(
        tmp / f"sx-{server.kind}",
        f"username: {sender.split('@')[0]}\njserver: {server.host}\nport: {port}\n"
        f"password: {password}\ncomponent: {server.domain}\n",
    )
    out: list[Client] = []
    for ca, bucket in ((server.cafile, "good"), (server.wrong_cafile, "bad")):
        xts = []
        for exe in tools.values():
            xt = [str(exe), "-C", str(ca), "-s", f"{server.host}:{port}", "-u", sender]
            xt += ["-t"] if direct_tls else []
            xts.append([*xt, "send", rcpt, MESSAGE])
        go = ["env", f"SSL_CERT_FILE={ca}", "go-sendxmpp", "-f", str(go_cfg)]
        go += ["-t"] if direct_tls else []
        go += ["-j", f"{server.host}:{port}", "-m", str(msgfile), rcpt]
        sx = ["sendxmpp", "-e" if direct_tls else "-t", "-a", str(ca), "-f", str(sx_cfg)]
        sx += ["-m", str(msgfile), rcpt]
        if bucket == "good":
            out = [*(Client(label, xt, []) for label, xt in zip(tools, xts, strict=True)),
                   Client("go-sendxmpp", go, []), Client("sendxmpp", sx, [])]  # fmt: skip
        else:
            for c, bad in zip(out, (*xts, go, sx), strict=True):
                c.wrong_ca_argv = bad
    return out


#: what any client on xmpp-tool's interpreter pays before its first packet: start-up,
#: asyncio and ssl (slixmpp's base), and slixmpp itself as xmpp-tool prepares it
FLOORS = {
    "floor: python start": "import os; os._exit(0)",
    "floor: import asyncio, ssl": "import asyncio, ssl, os; os._exit(0)",
    "floor: import slixmpp": "from xmpp_tool import slix; slix.prepare(need_dns=False); "
                             "import os; os._exit(0)",
}


def floors(xmpp_tool: Path) -> list[Client]:
    """The floors, run by the interpreter of ``xmpp_tool`` (its console script's
    ``#!`` line); nothing to verify, so no wrong-CA twin."""
    python = xmpp_tool.read_text().split("\n", 1)[0].removeprefix("#!").strip()
    return [Client(name, [python, "-c", code], []) for name, code in FLOORS.items()]


def check(c: Client, env: dict[str, str]) -> None:
    ok = subprocess.run(c.argv, env=env, capture_output=True, text=True, timeout=60)
    if ok.returncode != 0:
        raise SystemExit(f"{c.name} failed before the benchmark: {ok.stderr.strip()[-300:]}")
    bad = subprocess.run(c.wrong_ca_argv, env=env, capture_output=True, text=True, timeout=60)
    if bad.returncode == 0:
        raise SystemExit(f"{c.name} succeeded with the WRONG CA: TLS is not verified")


def bench_server(
    server: XmppServer, runs: int, warmup: int, direct_tls: bool, only: set[str],
    busy: int = 0, busy_warmup: float = 20.0, xmpp_tools: dict[str, Path] | None = None,
    with_floors: bool = False,
) -> list[Row]:
    password = secrets.token_urlsafe(16)
    sender, rcpt = server.register_many({"benchsender": password, "benchrcpt": password})
    tmp = Path(tempfile.mkdtemp(prefix="xt-bench-"))
    try:
        env = {**os.environ, "XMPP_TOOL_PASSWORD": password}
        env.pop("SSL_CERT_FILE", None)  # only go-sendxmpp gets it, on its own command
        # As on a user's machine: Python may cache bytecode (this sandbox sets
        # PYTHONDONTWRITEBYTECODE=1, which recompiles the editable xmpp_tool each run).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        every = clients(server, sender, password, rcpt, tmp, direct_tls, xmpp_tools)
        chosen = [c for c in every if c.name in only or
                  (c.name.startswith("xmpp-tool") and "xmpp-tool" in only)]  # fmt: skip
        for c in chosen:
            check(c, env)
        if with_floors:
            chosen += floors(next(iter((xmpp_tools or {"": XMPP_TOOL}).values())))
        export = tmp / "hyperfine.json"
        cmd = ["hyperfine", "-N", "--warmup", str(warmup), "--runs", str(runs),
               "--export-json", str(export)]  # fmt: skip
        for c in chosen:
            cmd += ["-n", c.name, shlex.join(c.argv)]
        print(f"\n## {server.kind} ({'direct TLS' if direct_tls else 'STARTTLS'})", flush=True)
        # a bound for the hogs: every run of every client well within the timeout
        limit = busy_warmup + (runs + warmup) * len(chosen) * 5 + 60
        with busy_host(busy, busy_warmup, limit):
            load_before = os.getloadavg()[0]
            cpu_before = cpu_times()
            if subprocess.run(cmd, env=env, check=False).returncode != 0:
                raise SystemExit(f"hyperfine failed on {server.kind}")
            cpu_after = cpu_times()
            load_after = os.getloadavg()[0]
        busy_share = (cpu_after[0] - cpu_before[0]) / max(1, cpu_after[1] - cpu_before[1])
        results = json.loads(export.read_text())["results"]
        return [Row(r["command"], r["mean"], r["stddev"], r["median"], r["user"] + r["system"],
                    load_before, load_after, busy_share) for r in results]  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Example: sudo .venv/bin/python -m bench.send_latency --runs 30",
    )
    parser.add_argument("--servers", nargs="+", default=["prosody", "ejabberd"],
                        choices=["prosody", "ejabberd"], help="default: both")  # fmt: skip
    parser.add_argument("--runs", type=int, default=20, help="hyperfine runs (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up runs (default 3)")
    parser.add_argument("--direct-tls", action="store_true",
                        help="XEP-0368 direct TLS port instead of STARTTLS")  # fmt: skip
    parser.add_argument("--clients", nargs="+", default=["xmpp-tool", "go-sendxmpp", "sendxmpp"],
                        choices=["xmpp-tool", "go-sendxmpp", "sendxmpp"])  # fmt: skip
    parser.add_argument("--xmpp-tool", action="append", metavar="[LABEL=]PATH",
                        help="an xmpp-tool console script to time (default: this venv's); "
                             "repeat it to time several side by side, e.g. "
                             "--xmpp-tool xmpp-tool-before=/tmp/old/bin/xmpp-tool "
                             "--xmpp-tool xmpp-tool=.venv/bin/xmpp-tool; labels start with "
                             "xmpp-tool")  # fmt: skip
    parser.add_argument("--floors", action="store_true",
                        help="also time what any slixmpp client pays before its first "
                             "packet (start-up, asyncio+ssl, slixmpp), same run")  # fmt: skip
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="N CPU hogs during each timed run (default 0: none)")  # fmt: skip
    parser.add_argument("--busy-warmup", type=float, default=20.0, metavar="S",
                        help="start the hogs S seconds before timing (default 20)")  # fmt: skip
    args = parser.parse_args()
    for prog in ("hyperfine", *[c for c in args.clients if c != "xmpp-tool"]):
        if shutil.which(prog) is None:
            parser.error(f"{prog} not found (apt-get install {prog})")
    xmpp_tools: dict[str, Path] = {}
    for spec in args.xmpp_tool or [str(XMPP_TOOL)]:
        label, _, path = spec.rpartition("=")
        label = label or ("xmpp-tool" if not xmpp_tools else f"xmpp-tool-{len(xmpp_tools) + 1}")
        if not label.startswith("xmpp-tool") or label in xmpp_tools:
            parser.error(f"--xmpp-tool {spec}: labels start with xmpp-tool and differ")
        exe = Path(path).absolute()
        if not exe.exists():
            parser.error(f"{exe} not found: run with the project's .venv/bin/python")
        xmpp_tools[label] = exe
    print(f"machine: {machine()}; busy: "
          + (f"{args.busy} CPU hogs" if args.busy else "nothing added"))  # fmt: skip
    table: list[str] = []
    with running_servers(*args.servers) as servers:
        for kind in args.servers:
            rows = bench_server(servers[kind], args.runs, args.warmup, args.direct_tls,
                                set(args.clients), args.busy, args.busy_warmup,
                                xmpp_tools, args.floors)  # fmt: skip
            base = next((r for r in rows if r.name == "go-sendxmpp"), None)
            for r in rows:
                ratio = f"{r.mean / base.mean:.2f}x" if base else "-"
                cpu_ratio = f"{r.cpu / base.cpu:.1f}x" if base else "-"
                goal = "wall <= 1.0x, CPU <= 3.0x" if r.name.startswith("xmpp-tool") else ""
                table.append(
                    f"| {kind} | {r.name} | {r.mean * 1000:.0f} ± {r.stddev * 1000:.0f} ms "
                    f"| {r.median * 1000:.0f} ms | {r.cpu * 1000:.0f} ms | {ratio} | {cpu_ratio} "
                    f"| {r.load_before:.1f} -> {r.load_after:.1f}, {r.busy:.0%} | {goal} |"
                )
    print("\n| server | client | mean ± sd | median | CPU (user+sys) | wall ratio to "
          "go-sendxmpp (mean) | CPU ratio | load avg, CPUs busy | goal |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
