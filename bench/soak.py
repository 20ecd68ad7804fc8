#!/usr/bin/env python3
"""The soak, and the partition: the lab's ejabberd cluster under long mixed load.

**soak** (default): for ``--duration`` seconds (1800) paced senders keep a fixed
aggregate rate (``--rate`` msg/s, well under what the 2-core host saturates at) through
``lb``, while ``--visitors`` clients log in now and then, read the latest page of their
archive (MAM) and log out again.  Meanwhile ejabberd is SIGKILLed every ``--kill-every``
seconds (300), alternating between the cluster's nodes, the first half a period in (so
30 minutes hold 6 kills, each with time to rejoin): kill as ``bench/lab_load.py`` does
(the unit stays down), wait ``--down-for`` seconds, re-apply Salt on the node, wait until
every node lists every node, go on.  At the end every acknowledged message is looked up
in the archives (``bench/loadgen.py``'s MAM audit).

**partition** (``--partition SECONDS``): the same load; at ``--partition-at`` the link
between the ejabberd nodes is cut for SECONDS -- their ports on the lab bridge are
isolated from each other (``bridge link set dev PORT isolated on``), so both nodes
stay up and reachable from lb and the host -- then healed (always, in a ``finally``).
Recorded: ``list_cluster`` on each node before, during and after, the ejabberd log
lines about Mnesia (``mnesia_down``, ``inconsistent_database``), the audit through lb
and from each node alone (the other put in haproxy maintenance), first with nothing done
for ``--observe`` seconds (or, with ``--drain``, ``--discard-node`` taken out of lb as soon
as a node lists only itself), then after the recovery: ejabberd restarted on
``--discard-node`` (the node whose writes are given up), audited again.

Reported (JSON with ``--json``, and text): acked, found, lost, refused (acked, then an
error stanza), failed visibly, duplicates, the worst client outage (per client: from a
lost connection -- or a failed visit -- to its next successful login) and, per kill:
kill, unit down, apply time, rejoined at, clients back p50/max; ``/proc/loadavg`` at
the start, at every kill and at the end.

Bounded: the load has a hard deadline, the script exits by itself, and only the
harness's own /24 is ever contacted (``loadgen.check_target``).  The load accounts get
a fresh random password that is never printed and are removed afterwards.  Runs on a
lab started with ``python -m lab.harness up`` + ``apply`` (same XTLAB_PREFIX); needs root.

Exit codes: 0 lost == 0 and every node rejoined (partition: and the cluster is whole
again at the end); 1 something acknowledged was lost or a node did not rejoin; 64 usage;
69 lab unreachable; 77 TLS/auth failure / not root.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from slixmpp.exceptions import IqError, IqTimeout

from bench import lab_load, loadgen

EX_OK, EX_BAD = 0, 1
# Events of bench/loadgen.py (and of the visitors here) that end or start an outage.
DOWN_EVENTS = {"disconnected"}
BACK_EVENTS = {"session", "reconnected", "resumed", "login"}
# ejabberd log lines about the cluster link (Mnesia's system events, Erlang distribution).
CLUSTER_LOG = (r"mnesia_down|inconsistent_database|Mnesia[(]|left our Mnesia|partitioned_network"
               r"|mod_quorum|mod_durable_ack")


def loadavg() -> str:
    """The host's 1/5/15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ----------------------------------------------------------------------- pure parts


def kill_schedule(duration: float, every: float, nodes: tuple[str, ...]) -> list[tuple[float, str]]:
    """(seconds after the load starts, node) of each kill: half a period in, then one
    per period, alternating over ``nodes``, none later than ``duration - every / 2`` (so
    the last node has as long to rejoin as the first had before its kill)."""
    out: list[tuple[float, str]] = []
    t = every / 2
    while t <= duration - every / 2 + 1e-9:
        out.append((round(t, 3), nodes[len(out) % len(nodes)]))
        t += every
    return out


def _client(event: Mapping[str, Any]) -> str | None:
    if "client" in event:
        return str(event["client"])
    if "sender" in event:
        return f"sender{event['sender']}"
    return None


def outages(events: list[dict[str, Any]], end: float) -> list[dict[str, Any]]:
    """Per client, each span from losing the service to the next successful login.

    ``events`` are loadgen's timeline (``t`` in seconds since the start): a
    ``disconnected`` opens an outage (further ones while it is open don't), a
    ``session``/``reconnected``/``resumed``/``login`` closes it.  A disconnect before a
    client's first login is not an outage (it never had the service).  An outage still
    open at ``end`` lasts until ``end`` and is marked ``open``.
    """
    down: dict[str, float] = {}
    seen_up: set[str] = set()
    out: list[dict[str, Any]] = []
    for ev in sorted(events, key=lambda e: float(e["t"])):
        who = _client(ev)
        if who is None:
            continue
        t = float(ev["t"])
        if ev["event"] in BACK_EVENTS:
            seen_up.add(who)
            if who in down:
                start = down.pop(who)
                out.append(
                    {
                        "client": who,
                        "down_t": start,
                        "back_t": t,
                        "seconds": round(t - start, 3),
                        "open": False,
                    }
                )
        elif ev["event"] in DOWN_EVENTS and who in seen_up and who not in down:
            down[who] = t
    for who, start in down.items():
        out.append(
            {
                "client": who,
                "down_t": start,
                "back_t": None,
                "seconds": round(max(end - start, 0.0), 3),
                "open": True,
            }
        )
    return sorted(out, key=lambda o: (o["down_t"], o["client"]))


def outage_summary(spans: list[dict[str, Any]]) -> dict[str, Any]:
    secs = [float(o["seconds"]) for o in spans]
    worst = max(spans, key=lambda o: float(o["seconds"]), default=None)
    return {
        "outages": len(spans),
        "clients": len({o["client"] for o in spans}),
        "still_down": sum(1 for o in spans if o["open"]),
        "p50_s": loadgen.percentile(secs, 50),
        "worst_s": worst["seconds"] if worst else None,
        "worst_client": worst["client"] if worst else None,
    }


def ack_latency(
    samples: list[tuple[float, float]], windows: list[tuple[float, float]], inside: bool = True
) -> dict[str, Any]:
    """Ack latency (p50/p99/max, ms) of the messages sent inside ``windows`` (or, with
    ``inside=False``, outside all of them); ``samples`` are (sent at s, latency ms)."""

    def within(t: float) -> bool:
        return any(a <= t < b for a, b in windows)

    lat = [ms for t, ms in samples if within(t) == inside]

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    return {
        "messages": len(lat),
        "p50_ms": r(loadgen.percentile(lat, 50)),
        "p99_ms": r(loadgen.percentile(lat, 99)),
        "max_ms": r(max(lat) if lat else None),
    }


def kill_windows(kills: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(kill, rejoined) of each kill; a kill that never rejoined lasts until the next one
    (or for ever)."""
    out = []
    for i, k in enumerate(kills):
        nxt = float(kills[i + 1]["t"]) if i + 1 < len(kills) else float("inf")
        end = k.get("rejoined_t")
        out.append((float(k["t"]), float(end) if end is not None else nxt))
    return out


def kill_rows(
    kills: list[dict[str, Any]],
    spans: list[dict[str, Any]],
    samples: list[tuple[float, float]] | None = None,
) -> list[dict[str, Any]]:
    """One row per kill: the outages that began between this kill and the next are
    this kill's (clients back p50/max); the ack latency of the messages sent from the
    kill until every node listed every node again."""
    rows = []
    windows = kill_windows(kills)
    for i, k in enumerate(kills):
        start = float(k["t"])
        stop = float(kills[i + 1]["t"]) if i + 1 < len(kills) else float("inf")
        mine = [float(o["seconds"]) for o in spans if start <= float(o["down_t"]) < stop]
        rj = k.get("rejoin") or {}
        rows.append(
            {
                "node": k["node"],
                "kill_t": k["t"],
                "loadavg": k.get("loadavg"),
                "unit_down_s": k.get("unit_down_seconds"),
                "apply_s": rj.get("apply_seconds"),
                "apply_ok": rj.get("apply_ok"),
                "rejoined": bool(rj.get("rejoined")),
                "rejoined_t": k.get("rejoined_t"),
                "clients": len(mine),
                "back_p50_s": loadgen.percentile(mine, 50),
                "back_max_s": max(mine) if mine else None,
                "error": k.get("error"),
                "ack_until_rejoined": ack_latency(samples or [], [windows[i]]),
            }
        )
    return rows


@dataclass
class Options:
    mode: str = "soak"  # or "partition"
    duration: float = 1800.0
    rate: float = 100.0
    senders: int = 100
    recipients: int = 20
    inflight: int = 5
    visitors: int = 10
    visit_every: float = 30.0
    kill_every: float = 300.0
    down_for: float = 20.0
    rejoin_timeout: float = 180.0
    partition: float = 0.0
    partition_at: float = 60.0
    observe: float = 120.0
    discard_node: str = lab_load.EJABBERD_NODES[-1]
    drain: bool = False  # partition: take discard_node out of lb once the split shows
    recovery: str = "restart"  # partition: of discard_node: "restart" or Salt's "apply"
    audit_timeout: float = 1800.0


def check_options(o: Options, nodes: tuple[str, ...] = lab_load.EJABBERD_NODES) -> list[str]:
    """What is wrong with the options (empty: fine)."""
    bad = []
    if not o.duration > 0:
        bad.append("--duration must be positive")
    if not o.rate > 0:
        bad.append("--rate must be positive")
    if o.senders < 1 or o.recipients < 1 or o.inflight < 1:
        bad.append("--senders, --recipients and --inflight must be >= 1")
    if o.visitors < 0 or not o.visit_every > 0:
        bad.append("--visitors must be >= 0 and --visit-every positive")
    if len(nodes) < 2:
        bad.append("the lab needs at least two ejabberd nodes")
    if o.mode == "soak":
        if not o.kill_every > 0:
            bad.append("--kill-every must be positive")
        elif o.down_for < 0 or o.down_for >= o.kill_every:
            bad.append("--down-for must be >= 0 and shorter than --kill-every")
        elif o.duration > 0 and not kill_schedule(o.duration, o.kill_every, nodes):
            bad.append("--duration is too short for one kill (at half of --kill-every)")
    else:
        if not o.partition > 0:
            bad.append("--partition must be positive")
        elif o.partition_at < 0 or o.partition_at + o.partition >= o.duration:
            bad.append("--partition-at + --partition must end before --duration")
        if o.discard_node not in nodes:
            bad.append(f"--discard-node: one of {', '.join(nodes)}")
    return bad


def verdict(report: dict[str, Any]) -> list[str]:
    """What is wrong with a report (empty: all good)."""
    bad = []
    res = report["result"]
    if not res["acked"]:
        bad.append("nothing was acknowledged")
    final = report.get("final_audit") or {"lost": res["lost"]}
    if final["lost"]:
        bad.append(f"{final['lost']} acknowledged messages lost")
    for row in report.get("kills", []):
        if not row["rejoined"]:
            bad.append(f"{row['node']} (killed at {row['kill_t']} s) did not rejoin")
    if "cluster_at_end" in report and not report.get("cluster_whole"):
        bad.append(f"the cluster is not whole at the end: {report['cluster_at_end']}")
    return bad


def describe(report: dict[str, Any]) -> str:
    res = report["result"]
    o = report["outage"]
    lines = [
        f"== {report['mode']} via lb {report['target']}: {report['options']['duration']:.0f} s at"
        f" {report['options']['rate']} msg/s, {res['senders']} senders,"
        f" {report['options']['visitors']} visitors ({report['visits']['ok']} visits,"
        f" {report['visits']['failed']} failed)",
        f"  loadavg start {report['loadavg_start']}  end {report['loadavg_end']}",
        f"  acked {res['acked']}  found {res['found']}  LOST {res['lost']}  refused"
        f" {res['bounced']} (not archived {res['bounced_unarchived']})  failed visibly"
        f" {res['failed_visibly']} (resent {res['resent']})  duplicates {res['duplicates']}"
        f"  unacked {res['unacked']}  never sent {res['never_sent']}",
        f"  ack p50 {res['p50_ms']} ms  p99 {res['p99_ms']} ms  max {res['max_ms']} ms;"
        f" {res['msgs_per_s']} msg/s",
        f"  outages {o['outages']} ({o['clients']} clients), p50 {o['p50_s']} s, worst"
        f" {o['worst_s']} s ({o['worst_client']}), still down at the end {o['still_down']}",
    ]
    for r in report.get("kills", []):
        lines.append(
            f"  kill {r['node']} at {r['kill_t']} s (load {r['loadavg']}): down"
            f" {r['unit_down_s']} s, apply {r['apply_s']} s ok={r['apply_ok']}, rejoined"
            f" {r['rejoined']} at {r['rejoined_t']} s; clients back {r['clients']} p50"
            f" {r['back_p50_s']} s max {r['back_max_s']} s"
            + (f"  ERROR {r['error']}" if r["error"] else "")
        )
        a = r["ack_until_rejoined"]
        lines.append(
            f"    ack latency until rejoined: {a['messages']} msgs, p50 {a['p50_ms']} ms,"
            f" p99 {a['p99_ms']} ms, max {a['max_ms']} ms"
        )
    if "ack_outside_kills" in report:
        a = report["ack_outside_kills"]
        lines.append(
            f"  ack latency outside the kill windows: {a['messages']} msgs, p50"
            f" {a['p50_ms']} ms, p99 {a['p99_ms']} ms, max {a['max_ms']} ms"
        )
    for why, n in report.get("refused_reasons", {}).items():
        lines.append(f"  refused {n}x: {why}")
    if "partition" in report:
        p = report["partition"]
        if "drained_t" in p:
            lines.append(f"  {report['options']['discard_node']} drained at {p['drained_t']} s")
        lines.append(
            f"  partition {p.get('start_t')}..{p.get('healed_t')} s ({p.get('start_wall')} .."
            f" {p.get('healed_wall')}): {p.get('ports')}; error {p.get('error')}"
        )
        for snap in p.get("list_cluster", []):
            lines.append(f"    list_cluster at {snap['t']} s ({snap['phase']}): {snap['nodes']}")
        for node, loglines in p.get("logs", {}).items():
            for line in loglines[:8]:
                lines.append(f"    {node}: {line[:200]}")
        for stage in report.get("audits", []):
            lines.append(
                f"  audit {stage['stage']} via {stage['via']}: found {stage.get('found')}"
                f" lost {stage.get('lost')} duplicates {stage.get('duplicates')}"
                + (f" ERROR {stage['error']}" if stage.get("error") else "")
            )
        if "recovery" in report:
            rc = report["recovery"]
            lines.append(
                f"  recovery: {rc.get('how', 'restart')} on {rc['node']}: rc {rc['rc']},"
                f" whole again {rc['whole']} after {rc['seconds']} s"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- the lab


def kill_cycle(
    machines: Mapping[str, lab_load.MachineLike],
    node: str,
    o: Options,
    rel: Any,
    nodes: tuple[str, ...],
) -> dict[str, Any]:
    """Kill ejabberd on ``node`` (as lab_load does), keep it down ``down_for`` s,
    re-apply Salt there and wait for the rejoin.  Blocking: run in a thread."""
    rec: dict[str, Any] = {
        "node": node,
        "t": rel(),
        "wall": datetime.now(UTC).isoformat(),
        "loadavg": loadavg(),
    }
    try:
        lab_load.prepare_kill(machines[node])
        t = time.monotonic()
        rec.update(lab_load.kill_ejabberd(machines[node]))
        rec["down_t"] = rel()
        time.sleep(max(0.0, o.down_for - (time.monotonic() - t)))
        rec["apply_t"] = rel()
        rec["rejoin"] = lab_load.rejoin(machines, node, nodes, o.rejoin_timeout)
        rec["rejoined_t"] = rel()
    except Exception as exc:  # recorded: the report (and the exit code) tells
        lab_load.undo_prepare_kill(machines[node])
        rec["error"] = f"{type(exc).__name__}: {exc}"
    return rec


def isolate(nodes: tuple[str, ...], on: bool) -> list[str]:
    """Set the nodes' bridge ports isolated (or not); returns the ports.  Isolated
    ports reach the other (non-isolated) ports -- lb, the host -- but not each other:
    the nodes' link alone is cut."""
    from lab import harness

    ports = [harness.bridge_port(n) for n in nodes]
    for port in ports:
        cmd = ["bridge", "link", "set", "dev", port, "isolated", "on" if on else "off"]
        subprocess.run(
            ["ip", "netns", "exec", harness.BRIDGE_NS, *cmd],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
    return ports


def log_mark() -> str:
    """Now, as ejabberd's log entries begin (the machines share the host's clock)."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def cluster_log(
    machines: Mapping[str, lab_load.MachineLike], nodes: tuple[str, ...], since: str
) -> dict[str, list[str]]:
    """Each node's ejabberd log entries about the cluster link from ``since`` on.

    ejabberd.log has every level; it is rotated at 10 MB (ejabberd's default
    ``log_rotate_size``), minutes under this load, so the previous file is read too.
    The modules' "Unexpected info" repeats of one Mnesia event are left out."""
    out = {}
    for n in nodes:
        # An Erlang term in a log entry spans lines: join them to the entry first.
        cmd = (
            "cd /var/log/ejabberd && cat ejabberd.log.0 ejabberd.log 2>/dev/null"
            f" | {JOIN_ENTRIES} | awk -v since='{since}' '$0 >= since'"
            f" | grep -E '{CLUSTER_LOG}' | grep -v 'Unexpected info' | head -40"
        )
        out[n] = machines[n].run(["sh", "-c", cmd], check=False).stdout.splitlines()
    return out


JOIN_ENTRIES = (
    "awk '/^[0-9][0-9][0-9][0-9]-/ {if (e) print e; e = $0; next}"
    ' {sub(/^ +/, " "); e = e $0} END {if (e) print e}\''
)


# haproxy's admin socket, one command per connection (run by the lb's python3).
HAPROXY_CLIENT = r"""
import socket, sys
path = [l.split()[2] for l in open('/etc/haproxy/haproxy.cfg')
        if l.split()[:2] == ['stats', 'socket']][0]
for cmd in sys.stdin.read().splitlines():
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall((cmd + '\n').encode())
    while True:
        b = s.recv(65536)
        if not b:
            break
        sys.stdout.write(b.decode())
    s.close()
"""


def haproxy(lb: lab_load.MachineLike, *commands: str) -> str:
    res = lb.run(
        ["python3", "-c", HAPROXY_CLIENT], input="\n".join(commands) + "\n", check=False, timeout=30
    )
    if res.returncode != 0:
        raise loadgen.LoadError(
            f"haproxy admin socket on {lb.name}: {res.stderr.strip()}", loadgen.EX_UNAVAILABLE
        )
    return str(res.stdout)


def servers(lb: lab_load.MachineLike, names: set[str]) -> list[str]:
    """``backend/server`` of every haproxy server named in ``names`` (all frontends)."""
    state = haproxy(lb, "show servers state")
    return [
        f"{f[1]}/{f[3]}"
        for f in (line.split() for line in state.splitlines())
        if len(f) > 3 and f[0].isdigit() and f[3] in names
    ]


def drain(lb: lab_load.MachineLike, node: str, nodes: tuple[str, ...], on: bool) -> None:
    """``node`` out of (maintenance, its client sessions closed) or back into haproxy."""
    if on:
        targets = servers(lb, {node})
        haproxy(lb, *(f"set server {t} state maint" for t in targets))
        haproxy(lb, *(f"shutdown sessions server {t}" for t in targets))
    else:
        haproxy(lb, *(f"set server {t} state ready" for t in servers(lb, {node})))


@contextlib.contextmanager
def only_node(lb: lab_load.MachineLike, node: str, nodes: tuple[str, ...]) -> Iterator[None]:
    """New connections through lb go to ``node`` alone: the others are in haproxy
    maintenance (connections already open stay); back to ready afterwards."""
    others = servers(lb, set(nodes) - {node})
    try:
        haproxy(lb, *(f"set server {t} state maint" for t in others))
        yield
    finally:
        haproxy(lb, *(f"set server {t} state ready" for t in others))


def split(snapshot: Mapping[str, list[str]]) -> bool:
    """Does any node's ``list_cluster`` (that answered) lack a node?"""
    want = len(snapshot)
    return any(0 < len(seen) < want for seen in snapshot.values())


def partition_cycle(
    machines: Mapping[str, lab_load.MachineLike],
    o: Options,
    rel: Any,
    nodes: tuple[str, ...],
    lb: str = "lb",
) -> dict[str, Any]:
    """Cut the nodes' link for ``o.partition`` s, heal it, watch ``o.observe`` s (with
    ``o.drain``: take ``o.discard_node`` out of lb as soon as the split shows)."""
    rec: dict[str, Any] = {
        "seconds": o.partition,
        "list_cluster": [],
        "loadavg": loadavg(),
    }

    def snap(phase: str) -> None:
        rec["list_cluster"].append(
            {
                "t": rel(),
                "phase": phase,
                "nodes": {n: sorted(lab_load.cluster_nodes(machines[n])) for n in nodes},
            }
        )

    mark = log_mark()
    snap("before")
    try:
        rec["start_t"] = rel()
        rec["start_wall"] = datetime.now(UTC).isoformat()
        rec["ports"] = isolate(nodes, True)
        end = time.monotonic() + o.partition
        while time.monotonic() < end - 10:
            time.sleep(min(10.0, max(0.0, end - 10 - time.monotonic())))
            snap("cut")
        time.sleep(max(0.0, end - time.monotonic()))
    except Exception as exc:
        rec["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        isolate(nodes, False)
        rec["healed_t"] = rel()
        rec["healed_wall"] = datetime.now(UTC).isoformat()
    end = time.monotonic() + o.observe
    while time.monotonic() < end:
        snap("healed")
        if o.drain and "drained_t" not in rec and split(rec["list_cluster"][-1]["nodes"]):
            drain(machines[lb], o.discard_node, nodes, True)
            rec["drained_t"] = rel()
        time.sleep(min(15.0, max(0.0, end - time.monotonic())))
    snap("healed")
    rec["logs"] = cluster_log(machines, nodes, mark)
    rec["mark"] = mark
    return rec


# ----------------------------------------------------------------------- visitors


class Visitor(loadgen.Reader):
    """A client that logs in (no presence), reads the newest page of its archive and
    leaves: the log-in/log-out part of the mix."""

    def __init__(self, cfg: loadgen.LoadConfig, account: loadgen.Account, resource: str) -> None:
        super().__init__(cfg, account, resource)
        self.login_at: float | None = None
        self.add_event_handler("session_start", self._logged_in)

    def _logged_in(self, _event: Any) -> None:
        self.login_at = time.monotonic()

    async def visit(self, since: datetime, page: int = 10) -> int:
        """Log in, read one MAM page, log out; the number of entries read."""
        self.connect(self.cfg.host, self.cfg.port)
        try:
            await asyncio.wait_for(self.started.wait(), timeout=self.cfg.login_timeout)
            if self.fatal:
                raise loadgen.LoadError(f"visitor login failed: {self.fatal}", loadgen.EX_NOPERM)
            iq = await self.plugin["xep_0313"].retrieve(start=since, rsm={"max": page}, timeout=30)
            return len(iq["mam"]["results"])
        finally:
            self.cancel_connection_attempt()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.disconnect(wait=1.0), timeout=3.0)


async def visitors(gen: loadgen.LoadGen, o: Options, stats: dict[str, int]) -> None:
    """``o.visitors`` clients visiting every ~``visit_every`` s until the load ends.

    A failed visit opens an outage for that client at the visit's start (the event
    timeline of the run, as the senders'); the next successful login closes it."""
    recips = gen.cfg.recipients

    async def one(i: int) -> None:
        who = f"visitor{i}"
        account = recips[i % len(recips)]
        rng = random.Random(i)  # noqa: S311 -- spreads the visits; nothing secret
        await asyncio.sleep(rng.uniform(0, o.visit_every))
        while time.monotonic() < (gen.pace_origin or gen.t0) + o.duration:
            start = time.monotonic()
            client = Visitor(gen.cfg, account, f"visit-{gen.run_id}-{i}-{secrets.token_hex(2)}")
            try:
                await asyncio.wait_for(
                    client.visit(datetime.now(UTC) - timedelta(seconds=60)),
                    timeout=gen.cfg.login_timeout + 35,
                )
                gen.event("login", client=who, t=client.login_at or time.monotonic())
                stats["ok"] += 1
            except (loadgen.LoadError, IqError, IqTimeout, TimeoutError, OSError) as exc:
                gen.event("disconnected", client=who, t=start, why=type(exc).__name__)
                stats["failed"] += 1
            await asyncio.sleep(rng.uniform(0.5, 1.5) * o.visit_every)

    await asyncio.gather(*(one(i) for i in range(o.visitors)))


# ------------------------------------------------------------------------------ runs


def audit_stage(gen: loadgen.LoadGen, stage: str, via: str) -> dict[str, Any]:
    try:
        a = asyncio.run(gen.audit())
    except loadgen.LoadError as exc:
        return {"stage": stage, "via": via, "error": str(exc)}
    return {
        "stage": stage,
        "via": via,
        "found": a.found,
        "lost": a.lost,
        "duplicates": a.duplicates,
        "found_unacked": a.found_unacked,
        "bounced_unarchived": a.bounced_unarchived,
        "lost_ids": a.lost_ids[:50],
    }


def audits_per_node(
    machines: Mapping[str, lab_load.MachineLike],
    gen: loadgen.LoadGen,
    stage: str,
    lb: str,
    nodes: tuple[str, ...],
) -> list[dict[str, Any]]:
    out = [audit_stage(gen, stage, "lb")]
    for n in nodes:
        try:
            with only_node(machines[lb], n, nodes):
                out.append(audit_stage(gen, stage, n))
        except loadgen.LoadError as exc:
            out.append({"stage": stage, "via": n, "error": str(exc)})
    return out


def run(
    machines: Mapping[str, lab_load.MachineLike],
    state_dir: Path,
    o: Options,
    lb: str = "lb",
    nodes: tuple[str, ...] = lab_load.EJABBERD_NODES,
) -> dict[str, Any]:
    target = lab_load.lab_target(state_dir)
    seed = machines[nodes[0]]
    password = secrets.token_urlsafe(18)
    users = {f"load{i}": password for i in range(o.senders)}
    users.update({f"loadrcpt{i}": password for i in range(o.recipients)})
    report: dict[str, Any] = {
        "mode": o.mode,
        "target": f"{target.host}:{target.port}",
        "options": vars(o).copy(),
        "loadavg_start": loadavg(),
        "started": datetime.now(UTC).isoformat(),
    }
    lab_load.register_users(seed, target.domain, users)
    messages = max(1, int(o.rate * o.duration))
    cfg = loadgen.LoadConfig(
        host=target.host,
        port=target.port,
        cafile=target.cafile,
        senders=loadgen.accounts("load", o.senders, target.domain, password),
        recipients=loadgen.accounts("loadrcpt", o.recipients, target.domain, password),
        messages=messages,
        deadline=o.duration + 300.0,
        inflight=o.inflight,
        allow_nets=[target.allow_net],
        rate=o.rate,
        verify_timeout=o.audit_timeout,
    )
    kills: list[dict[str, Any]] = []
    part: dict[str, Any] = {}
    visits = {"ok": 0, "failed": 0}
    box: list[loadgen.LoadGen] = []

    def setup(gen: loadgen.LoadGen) -> None:
        box.append(gen)

        def rel() -> float:
            return round(time.monotonic() - gen.t0, 3)

        async def chaos() -> None:
            origin = gen.pace_origin or time.monotonic()
            if o.mode == "soak":
                for at, node in kill_schedule(o.duration, o.kill_every, nodes):
                    await asyncio.sleep(max(0.0, origin + at - time.monotonic()))
                    gen.event("kill", node=node)
                    kills.append(await asyncio.to_thread(kill_cycle, machines, node, o, rel, nodes))
                    gen.event("rejoin done", node=node)
                    if "error" in kills[-1]:
                        break
            else:
                await asyncio.sleep(max(0.0, origin + o.partition_at - time.monotonic()))
                gen.event("partition")
                part.update(await asyncio.to_thread(partition_cycle, machines, o, rel, nodes, lb))
                gen.event("partition observed")

        async def visit() -> None:
            await visitors(gen, o, visits)

        gen.at_acked(1, chaos)
        gen.at_acked(1, visit)

    try:
        res = loadgen.run_load(cfg, setup)
        gen = box[0]
        report["result"] = res.as_dict()
        report["visits"] = visits
        # What the refusals said (error stanzas after the ack), by condition and text.
        report["refused_reasons"] = dict(
            collections.Counter(m.bounced for m in gen.messages.values() if m.bounced)
        )
        end = float(res.events[-1]["t"]) if res.events else 0.0
        spans = outages(res.events, end)
        report["outages"] = spans
        report["outage"] = outage_summary(spans)
        if o.mode == "soak":
            report["kills_raw"] = kills
            samples = [
                (m.sent_at - gen.t0, m.latency * 1000.0)
                for m in gen.messages.values()
                if m.sent_at is not None and m.latency is not None
            ]
            report["kills"] = kill_rows(kills, spans, samples)
            report["ack_outside_kills"] = ack_latency(samples, kill_windows(kills), False)
        else:
            report["partition"] = part
            if "drained_t" in part:  # the load is over: the audits may read from it again
                drain(machines[lb], o.discard_node, nodes, False)
            stage = "after heal, " + (
                f"{o.discard_node} drained" if "drained_t" in part else "nothing done"
            )
            report["audits"] = audits_per_node(machines, gen, stage, lb, nodes)
            t = time.monotonic()
            if o.recovery == "apply":  # salt/ejabberd/cluster joins a node that lacks the seed
                applied = machines[o.discard_node].apply()
                rc = 0 if getattr(applied, "ok", False) else 1
            else:
                rc = (
                    machines[o.discard_node]
                    .run(["systemctl", "restart", "ejabberd"], check=False, timeout=300)
                    .returncode
                )
            seen = lab_load.wait_cluster(
                machines, {f"ejabberd@{n}" for n in nodes}, o.rejoin_timeout, nodes
            )
            report["recovery"] = {
                "node": o.discard_node,
                "how": o.recovery,
                "rc": rc,
                "list_cluster": seen,
                "whole": all(len(v) == len(nodes) for v in seen.values()),
                "seconds": round(time.monotonic() - t, 1),
                "logs": cluster_log(machines, nodes, part.get("mark", "")),
            }
            report["audits"] += audits_per_node(
                machines, gen, f"after the {o.recovery} of {o.discard_node}", lb, nodes
            )
            last = report["audits"][-len(nodes) - 1]
            report["final_audit"] = {"lost": last.get("lost", res.lost)}
        want = {f"ejabberd@{n}" for n in nodes}
        at_end = lab_load.wait_cluster(machines, want, 60.0, nodes)
        report["cluster_at_end"] = at_end
        report["cluster_whole"] = all(set(v) == want for v in at_end.values())
        report["server_errors"] = lab_load.server_errors(machines, nodes=nodes)
    finally:
        report["loadavg_end"] = loadavg()
        report["ended"] = datetime.now(UTC).isoformat()
        lab_load.unregister_users(seed, target.domain, list(users))
    return report


# ------------------------------------------------------------------------------ CLI


# The numeric options: (field of Options, help); the flag is the field's name with
# dashes, its type and default the field's.
NUMERIC = (
    ("duration", "seconds of load"),
    ("rate", "messages per second, all senders together"),
    ("senders", "paced senders"),
    ("recipients", "recipients of the messages (the visitors log in as them)"),
    ("inflight", "unacknowledged messages per sender"),
    ("visitors", "clients that log in, read their archive's newest page, log out"),
    ("visit_every", "mean seconds between a visitor's visits"),
    ("kill_every", "seconds between kills, the first at half of it"),
    ("down_for", "seconds a killed node stays down before the re-apply"),
    ("rejoin_timeout", "seconds for every node to list every node again"),
    ("partition", "instead of kills: cut the nodes' link for this many seconds"),
    ("partition_at", "seconds into the load when the link is cut"),
    ("observe", "seconds to watch after the heal before the audits"),
)


def build_parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=(
            "Long mixed load on the nspawn lab's ejabberd cluster through lb, with a node "
            "SIGKILLed every --kill-every s (or the nodes' link cut: --partition); then every "
            "acknowledged message is looked up in the archives. Needs root and a lab "
            "started with `python -m lab.harness up` + `apply`."
        ),
        epilog="exit codes: 0 lost 0 and rejoined, 1 lost > 0 or no rejoin, 64 usage, "
        "69 unreachable, 77 TLS/auth or not root",
    )
    p.add_argument("--state-dir", type=Path, help="the lab's state dir (default: the harness's)")
    lab_load.add_numeric_options(p, d, NUMERIC)
    p.add_argument(
        "--discard-node",
        choices=lab_load.EJABBERD_NODES,
        default=d.discard_node,
        help=f"partition: the node restarted to recover ({d.discard_node})",
    )
    p.add_argument(
        "--drain",
        action="store_true",
        help="partition: once a node lists only itself, put --discard-node in haproxy "
        "maintenance and close its sessions (writes go to the kept node only)",
    )
    p.add_argument(
        "--recovery",
        choices=("restart", "apply"),
        default=d.recovery,
        help="partition: restart ejabberd on --discard-node, or re-apply Salt there (restart)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    return p


def options(args: argparse.Namespace) -> Options:
    return Options(
        mode="partition" if args.partition else "soak",
        discard_node=args.discard_node,
        drain=args.drain,
        recovery=args.recovery,
        **{name: getattr(args, name) for name, _ in NUMERIC},
    )


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else loadgen.EX_USAGE
    o = options(args)
    bad = check_options(o)
    if bad:
        print(f"soak: {bad[0]}", file=sys.stderr)
        return loadgen.EX_USAGE
    if os.geteuid() != 0:
        print("soak: must run as root (nspawn machines)", file=sys.stderr)
        return loadgen.EX_NOPERM
    # slixmpp/asyncio chatter about dropped connections is expected here.
    logging.basicConfig(level=logging.CRITICAL)
    from lab import harness

    report: dict[str, Any] = {}
    try:
        state_dir, lb, machines = lab_load.attach(args.state_dir)
        report = run(machines, state_dir, o, lb)
    except loadgen.LoadError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return int(exc.code)
    except harness.HarnessError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return loadgen.EX_UNAVAILABLE
    finally:
        if args.json and report:
            args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(describe(report), flush=True)
    problems = verdict(report)
    for b in problems:
        print(f"soak: {b}", file=sys.stderr)
    return EX_BAD if problems else EX_OK


if __name__ == "__main__":
    sys.exit(main())
