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
"verification on" is checked, not assumed).  Prints a Markdown table per server
and the ratio of each client's mean to go-sendxmpp's (goal for xmpp-tool: <= 1.0).

Needs: hyperfine, go-sendxmpp, sendxmpp (Debian packages), prosody/ejabberd as for
the integration tests, root for ejabberd.  No password is ever on a command line.
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
    server: XmppServer, sender: str, password: str, rcpt: str, tmp: Path, direct_tls: bool
) -> list[Client]:
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
        xt = [str(XMPP_TOOL), "-C", str(ca), "-s", f"{server.host}:{port}", "-u", sender]
        xt += ["-t"] if direct_tls else []
        xt += ["send", rcpt, MESSAGE]
        go = ["env", f"SSL_CERT_FILE={ca}", "go-sendxmpp", "-f", str(go_cfg)]
        go += ["-t"] if direct_tls else []
        go += ["-j", f"{server.host}:{port}", "-m", str(msgfile), rcpt]
        sx = ["sendxmpp", "-e" if direct_tls else "-t", "-a", str(ca), "-f", str(sx_cfg)]
        sx += ["-m", str(msgfile), rcpt]
        if bucket == "good":
            out = [Client("xmpp-tool", xt, []), Client("go-sendxmpp", go, []),
                   Client("sendxmpp", sx, [])]  # fmt: skip
        else:
            for c, bad in zip(out, (xt, go, sx), strict=True):
                c.wrong_ca_argv = bad
    return out


def check(c: Client, env: dict[str, str]) -> None:
    ok = subprocess.run(c.argv, env=env, capture_output=True, text=True, timeout=60)
    if ok.returncode != 0:
        raise SystemExit(f"{c.name} failed before the benchmark: {ok.stderr.strip()[-300:]}")
    bad = subprocess.run(c.wrong_ca_argv, env=env, capture_output=True, text=True, timeout=60)
    if bad.returncode == 0:
        raise SystemExit(f"{c.name} succeeded with the WRONG CA: TLS is not verified")


def bench_server(
    server: XmppServer, runs: int, warmup: int, direct_tls: bool, only: set[str]
) -> list[tuple[str, float, float, float]]:
    password = secrets.token_urlsafe(16)
    sender, rcpt = server.register_many({"benchsender": password, "benchrcpt": password})
    tmp = Path(tempfile.mkdtemp(prefix="xt-bench-"))
    try:
        env = {**os.environ, "XMPP_TOOL_PASSWORD": password}
        env.pop("SSL_CERT_FILE", None)  # only go-sendxmpp gets it, on its own command
        # As on a user's machine: Python may cache bytecode (this sandbox sets
        # PYTHONDONTWRITEBYTECODE=1, which recompiles the editable xmpp_tool each run).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        chosen = [c for c in clients(server, sender, password, rcpt, tmp, direct_tls)
                  if c.name in only]  # fmt: skip
        for c in chosen:
            check(c, env)
        export = tmp / "hyperfine.json"
        cmd = ["hyperfine", "-N", "--warmup", str(warmup), "--runs", str(runs),
               "--export-json", str(export)]  # fmt: skip
        for c in chosen:
            cmd += ["-n", c.name, shlex.join(c.argv)]
        print(f"\n## {server.kind} ({'direct TLS' if direct_tls else 'STARTTLS'})", flush=True)
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            raise SystemExit(f"hyperfine failed on {server.kind}")
        results = json.loads(export.read_text())["results"]
        return [(r["command"], r["mean"], r["stddev"], r["median"]) for r in results]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Example: sudo .venv/bin/python bench/send_latency.py --runs 30",
    )
    parser.add_argument("--servers", nargs="+", default=["prosody", "ejabberd"],
                        choices=["prosody", "ejabberd"], help="default: both")  # fmt: skip
    parser.add_argument("--runs", type=int, default=20, help="hyperfine runs (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up runs (default 3)")
    parser.add_argument("--direct-tls", action="store_true",
                        help="XEP-0368 direct TLS port instead of STARTTLS")  # fmt: skip
    parser.add_argument("--clients", nargs="+", default=["xmpp-tool", "go-sendxmpp", "sendxmpp"],
                        choices=["xmpp-tool", "go-sendxmpp", "sendxmpp"])  # fmt: skip
    args = parser.parse_args()
    for prog in ("hyperfine", *[c for c in args.clients if c != "xmpp-tool"]):
        if shutil.which(prog) is None:
            parser.error(f"{prog} not found (apt-get install {prog})")
    if not XMPP_TOOL.exists():
        parser.error(f"{XMPP_TOOL} not found: run with the project's .venv/bin/python")
    print(f"machine: {machine()}")
    table: list[str] = []
    with running_servers(*args.servers) as servers:
        for kind in args.servers:
            rows = bench_server(servers[kind], args.runs, args.warmup, args.direct_tls,
                                set(args.clients))  # fmt: skip
            base = next((mean for name, mean, _, _ in rows if name == "go-sendxmpp"), None)
            for name, mean, sd, median in rows:
                ratio = f"{mean / base:.2f}x" if base else "-"
                goal = "<= 1.0x" if name == "xmpp-tool" else ""
                table.append(
                    f"| {kind} | {name} | {mean * 1000:.0f} ± {sd * 1000:.0f} ms "
                    f"| {median * 1000:.0f} ms | {ratio} | {goal} |"
                )
    print("\n| server | client | mean ± sd | median | ratio to go-sendxmpp | goal |")
    print("|---|---|---|---|---|---|")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
