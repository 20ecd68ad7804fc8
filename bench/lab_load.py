#!/usr/bin/env python3
"""The lab under load, and failover under load (issue 5, parts 4 and 5).

Drives ``bench/loadgen.py`` against the ejabberd cluster THROUGH ``lb`` of the nspawn
lab (``lab/harness.py``):

* **load**: N senders (throwaway accounts ``load0..``), M messages to R recipients
  (``loadrcpt0..``), XEP-0198 acks, then a MAM audit: lost = acked but not archived.
* **failover**: the same load; once half the messages are acknowledged, ejabberd on
  one node (default: the cluster's last) is killed hard — SIGKILL to every process of the
  unit — and kept down (``systemctl stop`` cancels systemd's Restart=on-failure, as if
  the node had died).  Clients reconnect through lb and land on the other node.
  Reported: lost (must be 0), how long clients took to be back, sends that failed
  visibly.  Then Salt is re-applied on the node, and it must rejoin the cluster
  (``ejabberdctl list_cluster`` on both nodes); the archives are audited again.

The load accounts are created for the run on the seed node through ejabberd's ReST
API on the node's loopback (as ``salt/ejabberd/users`` does: JSON on curl's stdin, so
the password is never on a command line) with a fresh random password that is never
printed, and removed afterwards (``--keep-users`` keeps them).

Lab: ``--attach`` (default) uses machines already started with
``python -m lab.harness up`` + ``apply``; ``--boot RELEASE`` brings a lab
up, applies Salt, runs, and tears it down (refused while other lab machines run).
Needs root.  Only the lab's private subnet is ever targeted.

Exit codes: 0 every run had lost == 0 (and the node rejoined); 1 something was lost or
the node did not rejoin; 64 usage; 69 lab unreachable; 77 TLS/auth failure / not root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench import cpu, loadgen
from lab import manifest
from lab.harness import machine_cgroups

# The ejabberd cluster of the lab manifest (the first is the seed); functions below
# take another list for another manifest (e.g. a three-node lab).
EJABBERD_NODES = tuple(manifest.load()["cluster"]["ejabberd"])
API = "http://127.0.0.1:5280/api"  # salt/ejabberd: admin_ip/admin_port (loopback only)


class MachineLike(Protocol):
    """What we need of lab/harness.py's Machine."""

    name: str

    def run(
        self,
        cmd: Any,
        *,
        check: bool = True,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any: ...

    def apply(self, *args: str) -> Any: ...


# ---------------------------------------------------------------------- lab facts


def attach(state_dir: Path | None) -> tuple[Path, str, dict[str, MachineLike]]:
    """The running harness lab (``python -m lab.harness up`` + ``apply``): its state dir
    (``state_dir`` or the harness's), the ejabberd entry machine (lb) and the machines
    a load run drives, that entry and every ejabberd node."""
    from lab import harness

    entry = manifest.entry(harness.LAB, "ejabberd") or "lb"
    machines: dict[str, MachineLike] = {
        n: harness._attach(n) for n in (entry, *EJABBERD_NODES)
    }
    return (state_dir or harness.STATE_DIR).resolve(), entry, machines


def lab_network() -> dict[str, Any]:
    lab: dict[str, Any] = manifest.load()
    return lab


@dataclass
class Target:
    host: str  # lb's address on the harness's subnet
    port: int
    domain: str
    cafile: Path
    allow_net: str


def lab_target(state_dir: Path, direct_tls: bool = False) -> Target:
    from lab import harness

    entry = manifest.entry(harness.LAB, "ejabberd")
    assert entry is not None, "the lab manifest names no entry machine for ejabberd"
    return Target(
        host=harness.ADDRESSES[entry],
        port=5223 if direct_tls else 5222,
        domain=lab_network()["domains"]["ejabberd"],
        cafile=state_dir / "ca.crt",
        allow_net=f"{harness.SUBNET}.0/24",
    )


# ------------------------------------------------------------- accounts on the node


# Runs INSIDE the node with its python3 (curl is not installed there): one JSON
# document per stdin line is POSTed to the local ReST API (loopback only), so no
# password is ever on a command line; prints only counts, never a request.
API_CLIENT = r"""
import json, sys, urllib.error, urllib.request
endpoint, tolerate = sys.argv[1], sys.argv[2] == "1"
ok = failed = 0
for line in sys.stdin:
    if not line.strip():
        continue
    req = urllib.request.Request(
        "%s/%s" % (API, endpoint), data=line.strip().encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
        ok += 1
    except (urllib.error.URLError, OSError) as e:
        failed += 1
        if not tolerate:
            print("%s failed: %s" % (endpoint, getattr(e, "code", e)), file=sys.stderr)
            sys.exit(1)
print(json.dumps({"ok": ok, "failed": failed}))
"""


def _api(node: MachineLike, endpoint: str, docs: list[dict[str, str]], tolerate: bool) -> Any:
    return node.run(
        ["python3", "-c", f"API = {API!r}\n{API_CLIENT}", endpoint, "1" if tolerate else "0"],
        input="".join(json.dumps(d) + "\n" for d in docs),
        check=False,
        timeout=300,
    )


def register_users(seed: MachineLike, domain: str, users: Mapping[str, str]) -> None:
    """(Re)create the accounts on the cluster (Mnesia replicates them).

    Unregistering first also drops what earlier runs left in their archives and
    offline queues (ejabberd bounces beyond max_user_offline_messages).
    """
    _api(seed, "unregister", [{"user": u, "host": domain} for u in users], tolerate=True)
    docs = [{"user": u, "host": domain, "password": p} for u, p in users.items()]
    res = _api(seed, "register", docs, tolerate=False)
    if res.returncode != 0:
        raise loadgen.LoadError(
            f"registering load accounts on {seed.name} via {API} failed: {res.stderr.strip()}",
            loadgen.EX_UNAVAILABLE,
        )


def unregister_users(seed: MachineLike, domain: str, users: list[str]) -> None:
    _api(seed, "unregister", [{"user": u, "host": domain} for u in users], tolerate=True)


# ------------------------------------------------------------------- the node


# A runtime drop-in (in /run, gone at reboot, removed again once the node is down):
# Restart=no keeps the killed node down until Salt starts it (Debian's unit has
# Restart=on-failure, RestartSec=5).  TimeoutStopSec: inside the nspawn machines
# systemd gets no "cgroup empty" notification (cgroup v1 without a release agent),
# so after the kill the unit would sit in "deactivating (stop-sigterm)" for
# TimeoutSec=300 although no process is left; on a VM it goes down at once.
KILL_DROPIN = "/run/systemd/system/ejabberd.service.d/zz-xmpp-tool-load.conf"
KILL_DROPIN_TEXT = "[Service]\nRestart=no\nTimeoutStopSec=3\n"


def prepare_kill(node: MachineLike) -> None:
    """Install the runtime drop-in before the load starts (daemon-reload is not free)."""
    node.run(
        ["sh", "-c", f'mkdir -p "$(dirname {KILL_DROPIN})" && cat > {KILL_DROPIN}'],
        input=KILL_DROPIN_TEXT,
    )
    node.run(["systemctl", "daemon-reload"])


def undo_prepare_kill(node: MachineLike) -> None:
    node.run(["rm", "-f", KILL_DROPIN], check=False)
    node.run(["systemctl", "daemon-reload"], check=False)


def kill_ejabberd(node: MachineLike, timeout: float = 60.0) -> dict[str, Any]:
    """SIGKILL every process of ejabberd.service (beam.smp and its helpers); wait
    until systemd has the unit down; it stays down (see KILL_DROPIN)."""
    main = node.run(["systemctl", "show", "-p", "MainPID", "--value", "ejabberd"])
    t = time.monotonic()
    node.run(["systemctl", "kill", "--signal=SIGKILL", "ejabberd"])
    killed_s = time.monotonic() - t
    state = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = node.run(["systemctl", "is-active", "ejabberd"], check=False).stdout.strip()
        if state not in ("active", "deactivating", "activating", "reloading"):
            break
        time.sleep(0.5)
    beams = node.run(["pgrep", "-x", "beam.smp"], check=False).stdout.split()
    undo_prepare_kill(node)
    return {
        "node": node.name,
        "main_pid_before": main.stdout.strip(),
        "kill_seconds": round(killed_s, 3),
        "unit_down_seconds": round(time.monotonic() - t, 1),
        "state_after": state,
        "beam_left": beams,
    }


# salt/ejabberd's client of the node's local ReST API (api_client): what its states use.
API_COMMAND = "/usr/local/sbin/ejabberd-api"


def cluster_nodes(node: MachineLike, timeout: float = 20.0) -> set[str]:
    """``list_cluster`` on ``node`` through its local ReST API (empty when it fails or
    hangs). Not ``ejabberdctl``: it boots an Erlang node per call, and on a node
    restarted after a SIGKILL in a three-node cluster it was seen hanging for more
    than 5 minutes (and a call cut off by the timeout stays behind in the machine)."""
    try:
        res = node.run([API_COMMAND, "list_cluster"], input="", check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return set()
    if res.returncode != 0:
        return set()
    try:
        nodes = json.loads(res.stdout)
    except json.JSONDecodeError:
        return set()
    return {str(n) for n in nodes} if isinstance(nodes, list) else set()


def wait_cluster(
    machines: Mapping[str, MachineLike],
    want: set[str],
    timeout: float = 120.0,
    nodes: tuple[str, ...] = EJABBERD_NODES,
) -> dict[str, list[str]]:
    """Poll ``list_cluster`` on every node until all say ``want`` (or time out)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {n: cluster_nodes(machines[n]) for n in nodes}
        if all(v == want for v in seen.values()) or time.monotonic() > deadline:
            return {n: sorted(v) for n, v in seen.items()}
        time.sleep(1.0)


def rejoin(
    machines: Mapping[str, MachineLike],
    name: str,
    nodes: tuple[str, ...] = EJABBERD_NODES,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Re-apply Salt on ``name`` and wait until every node lists the full cluster."""
    want = {f"ejabberd@{n}" for n in nodes}
    t = time.monotonic()
    res = machines[name].apply()
    apply_s = time.monotonic() - t
    ok = bool(getattr(res, "ok", False))
    seen = wait_cluster(machines, want, timeout, nodes)
    rejoined = all(set(v) == want for v in seen.values())
    return {
        "apply_ok": ok,
        "apply_failures": "" if ok else str(getattr(res, "describe_failures", lambda: "")()),
        "apply_seconds": round(apply_s, 1),
        "rejoined": rejoined,
        "rejoin_seconds": round(time.monotonic() - t, 1),
        "list_cluster": seen,
    }


def server_errors(
    machines: Mapping[str, MachineLike], lines: int = 20, nodes: tuple[str, ...] = EJABBERD_NODES
) -> dict[str, list[str]]:
    """The last error lines of each node's ejabberd log (e.g. a MAM write that
    Mnesia aborted): what to look at when an acknowledged message is missing."""
    out: dict[str, list[str]] = {}
    for name in nodes:
        grep = rf"grep -hE '\[(error|critical)\]' /var/log/ejabberd/*.log | tail -{lines}"
        out[name] = machines[name].run(["sh", "-c", grep], check=False).stdout.splitlines()
    return out


# ---------------------------------------------------------------------------- runs


@dataclass
class LoadSpec:
    senders: int = 100
    recipients: int = 20
    messages: int = 10_000
    deadline: float = 300.0
    inflight: int = 5
    direct_tls: bool = False
    kill_node: str = EJABBERD_NODES[-1]
    kill_at: float = 0.5  # fraction of the messages acknowledged before the kill
    keep_users: bool = False
    # The cluster's nodes (the first is the seed, where accounts are registered).
    nodes: tuple[str, ...] = EJABBERD_NODES
    # How long every node may take to list the whole cluster again after the re-apply:
    # right after a restart `ejabberdctl list_cluster` can take up to its 20 s cap per
    # call, and each poll asks every node.
    rejoin_timeout: float = 120.0


def _config(spec: LoadSpec, target: Target, password: str) -> loadgen.LoadConfig:
    return loadgen.LoadConfig(
        host=target.host,
        port=target.port,
        cafile=target.cafile,
        senders=loadgen.accounts("load", spec.senders, target.domain, password),
        recipients=loadgen.accounts("loadrcpt", spec.recipients, target.domain, password),
        messages=spec.messages,
        deadline=spec.deadline,
        inflight=spec.inflight,
        direct_tls=spec.direct_tls,
        allow_nets=[target.allow_net],
    )


def run_lab_load(
    machines: Mapping[str, MachineLike],
    state_dir: Path,
    spec: LoadSpec,
    failover: bool = False,
) -> dict[str, Any]:
    """One run through lb (optionally with the failover); returns the report."""
    target = lab_target(state_dir, spec.direct_tls)
    seed = machines[spec.nodes[0]]
    password = secrets.token_urlsafe(18)
    users = {f"load{i}": password for i in range(spec.senders)}
    users.update({f"loadrcpt{i}": password for i in range(spec.recipients)})
    t = time.monotonic()
    register_users(seed, target.domain, users)
    report: dict[str, Any] = {
        "mode": "failover" if failover else "load",
        "target": f"{target.host}:{target.port}",
        "register_seconds": round(time.monotonic() - t, 1),
    }
    cfg = _config(spec, target, password)
    kill_info: dict[str, Any] = {}
    if failover:
        prepare_kill(machines[spec.kill_node])
    gen_box: list[loadgen.LoadGen] = []

    def setup(gen: loadgen.LoadGen) -> None:
        gen_box.append(gen)
        if not failover:
            return

        async def kill() -> None:
            gen.event("kill", node=spec.kill_node)
            kill_info.update(await asyncio.to_thread(kill_ejabberd, machines[spec.kill_node]))
            gen.event("killed", node=spec.kill_node)

        gen.at_acked(max(1, int(spec.messages * spec.kill_at)), kill)

    try:
        cgroups = {name: machine_cgroups(name) for name in machines}
        before = cpu.take(cgroups)
        res = loadgen.run_load(cfg, setup)
        report["cpu"] = cpu.breakdown(before, cpu.take(cgroups), res.acked)
        report["result"] = res.as_dict(with_latencies=True)
        if failover:
            report["kill"] = kill_info
            report["rejoin"] = rejoin(machines, spec.kill_node, spec.nodes, spec.rejoin_timeout)
            # Audit again with both nodes up: nothing may have vanished meanwhile.
            again = asyncio.run(gen_box[0].audit())
            report["server_errors"] = server_errors(machines, nodes=spec.nodes)
            report["after_rejoin"] = {
                "found": again.found,
                "lost": again.lost,
                "duplicates": again.duplicates,
                "lost_ids": again.lost_ids[:100],
                "lost_detail": again.lost_detail,
                "bounced_unarchived": again.bounced_unarchived,
            }
    finally:
        if failover and not kill_info:
            undo_prepare_kill(machines[spec.kill_node])  # the kill never ran
        if not spec.keep_users:
            unregister_users(seed, target.domain, list(users))
    return report


def verdict(report: dict[str, Any]) -> list[str]:
    """What is wrong with a report (empty: all good)."""
    bad: list[str] = []
    res = report["result"]
    if res["lost"]:
        bad.append(f"{report['mode']}: {res['lost']} acknowledged messages lost")
    if not res["acked"]:
        bad.append(f"{report['mode']}: nothing was acknowledged")
    if "rejoin" in report and not report["rejoin"]["rejoined"]:
        bad.append(f"{report['kill']['node']} did not rejoin: {report['rejoin']['list_cluster']}")
    if "after_rejoin" in report and report["after_rejoin"]["lost"]:
        bad.append(f"{report['after_rejoin']['lost']} acknowledged messages lost after rejoin")
    return bad


def describe(report: dict[str, Any]) -> str:
    r = loadgen.Result(**{k: v for k, v in report["result"].items()})
    lines = [f"== {report['mode']} via lb {report['target']}", loadgen.format_result(r)]
    if "cpu" in report:
        lines.append(cpu.describe(report["cpu"]))
    if "kill" in report:
        k = report["kill"]
        lines.append(
            f"  killed ejabberd on {k.get('node')} (SIGKILL; unit now {k.get('state_after')!r},"
            f" beam left {k.get('beam_left')})"
        )
        rj = report["rejoin"]
        lines.append(
            f"  re-apply on {k.get('node')}: ok={rj['apply_ok']} in {rj['apply_seconds']} s;"
            f" rejoined={rj['rejoined']} after {rj['rejoin_seconds']} s: {rj['list_cluster']}"
        )
        ar = report["after_rejoin"]
        lines.append(
            f"  audit after rejoin: found {ar['found']}, lost {ar['lost']},"
            f" duplicates {ar['duplicates']}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CLI


def add_numeric_options(parser: argparse.ArgumentParser, defaults: object,
                        table: Iterable[tuple[str, str]]) -> None:
    """One ``--name-with-dashes`` option per (field, help) of ``table``, typed and
    defaulted by that field of ``defaults`` (an options dataclass), the default in the help."""
    for name, text in table:
        default = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default,
                            help=f"{text} ({default:g})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.lab_load",
        description=(
            "Load (and failover under load) of the nspawn lab's ejabberd cluster through "
            "lb: lost = acknowledged but not archived (must be 0). Needs root."
        ),
        epilog="exit codes: 0 ok, 1 lost > 0 or no rejoin, 64 usage, 69 unreachable, 77 TLS/auth",
    )
    lab = p.add_mutually_exclusive_group()
    lab.add_argument(
        "--attach",
        action="store_true",
        help="use machines started by `python -m lab.harness up` (default)",
    )
    lab.add_argument(
        "--boot", metavar="RELEASE", help="boot a lab (trixie|bookworm), apply, run, tear down"
    )
    p.add_argument(
        "--state-dir", type=Path, help="the lab's state dir (default: the harness's for --attach)"
    )
    p.add_argument(
        "--mode",
        choices=("load", "failover", "both"),
        default="both",
        help="which runs (default both: load, then failover)",
    )
    p.add_argument("--senders", type=int, default=100, help="concurrent senders (default 100)")
    p.add_argument("--recipients", type=int, default=20, help="recipients (default 20)")
    p.add_argument("--messages", type=int, default=10_000, help="messages per run (default 10000)")
    p.add_argument("--deadline", type=float, default=300.0, help="hard limit per run, s (300)")
    p.add_argument("--inflight", type=int, default=5, help="unacked messages per sender (5)")
    p.add_argument("--direct-tls", action="store_true", help="lb:5223 (XEP-0368), else 5222")
    p.add_argument(
        "--kill-node",
        choices=EJABBERD_NODES,
        default=EJABBERD_NODES[-1],
        help=f"node to kill ({EJABBERD_NODES[-1]})",
    )
    p.add_argument(
        "--kill-at", type=float, default=0.5, help="fraction acked before the kill (0.5)"
    )
    p.add_argument("--keep-users", action="store_true", help="keep the load accounts afterwards")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the reports as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 64
    # slixmpp/asyncio chatter about dropped connections is expected during a failover.
    logging.basicConfig(level=logging.CRITICAL)
    if os.geteuid() != 0:
        print("lab_load: must run as root (nspawn machines)", file=sys.stderr)
        return 77
    if not 0 < args.kill_at < 1:
        print("lab_load: --kill-at must be between 0 and 1", file=sys.stderr)
        return 64
    from lab import harness

    spec = LoadSpec(
        senders=args.senders,
        recipients=args.recipients,
        messages=args.messages,
        deadline=args.deadline,
        inflight=args.inflight,
        direct_tls=args.direct_tls,
        kill_node=args.kill_node,
        kill_at=args.kill_at,
        keep_users=args.keep_users,
    )
    modes = ["load", "failover"] if args.mode == "both" else [args.mode]
    reports: list[dict[str, Any]] = []
    try:
        if args.boot:
            if args.boot not in harness.RELEASES:
                raise loadgen.LoadError(f"--boot: one of {', '.join(harness.RELEASES)}", 64)
            if harness._nspawn_pids():
                raise loadgen.LoadError(
                    "lab machines are already running (someone's tests?): use --attach or "
                    "`python -m lab.harness down` first",
                    loadgen.EX_USAGE,
                )
            state_dir = harness.make_state_dir(
                (args.state_dir or harness.RUN_DIR / "load-state").resolve()
            )
            with harness.lab(args.boot, state_dir) as the_lab:
                first = the_lab.apply_all()
                bad = [n for n, r in first.items() if not r.ok]
                if bad:
                    raise loadgen.LoadError(f"Salt apply failed on {bad}", loadgen.EX_UNAVAILABLE)
                for mode in modes:
                    reports.append(
                        run_lab_load(the_lab.machines, state_dir, spec, mode == "failover")
                    )
                    print(describe(reports[-1]), flush=True)
        else:
            state_dir, _, machines = attach(args.state_dir)
            for mode in modes:
                reports.append(run_lab_load(machines, state_dir, spec, mode == "failover"))
                print(describe(reports[-1]), flush=True)
    except loadgen.LoadError as exc:
        print(f"lab_load: {exc}", file=sys.stderr)
        return int(exc.code)
    except harness.HarnessError as exc:
        print(f"lab_load: {exc}", file=sys.stderr)
        return 69
    finally:
        if args.json and reports:
            args.json.write_text(json.dumps(reports, indent=1) + "\n")
    problems = [b for r in reports for b in verdict(r)]
    for b in problems:
        print(f"lab_load: {b}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
