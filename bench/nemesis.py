#!/usr/bin/env python3
"""The nemesis: one fault against the lab's ejabberd cluster under paced load, then a
Jepsen-style check of what the servers acknowledged (issue 20, item 1).

Load: ``--senders`` paced clients (``bench/loadgen.py``, XEP-0198 acks, ``--rate``
msg/s in all) send through ``lb`` to ``--recipients`` accounts, the first ``--online``
of them logged in through ``lb`` with presence for the whole run (the others offline).
Which node each client's session landed on is not chosen (lb balances
``leastconn``): it is *recorded*, once everyone is logged in, from
``connected_users_info`` on the nodes (the ``node`` of each session).

One fault (``--fault NAME [SECONDS]``), ``--before`` seconds into the load, on
``--node`` (default: the cluster's last node):

* ``cut-members S``: the node cut off from the other members, both directions, by an
  nftables table of ours *inside* the node (``table inet nemesis``), for S seconds;
* ``isolate S``: the node cut off from everything but its loopback (lb included);
* ``flap [S]``: ``cut-members`` switched on and off every ``--flap-period`` seconds for
  S (120) seconds;
* ``kill-recipients`` / ``kill-senders``: SIGKILL of ``beam.smp`` on the node holding
  most of the online recipients' / the senders' sessions (``--node`` is ignored);
* ``pause S``: SIGSTOP of the node's ``beam.smp``, SIGCONT S seconds later;
* ``restart-lb``: ``systemctl restart haproxy`` on lb under the load.

Then the fault is healed (the table deleted, SIGCONT -- always, in a ``finally``) and
the cluster is left alone: no Salt run, no restart by this tool (a killed node comes
back only if systemd restarts it).  The load goes on for ``--after`` seconds.

Check (``check``, a pure function over the history, unit-tested): every message whose
send was acknowledged (a XEP-0198 ``<a h/>`` covering it) must be in its recipient's
archive, read through lb with MAM, in *every* one of ``--reads`` reads ``--read-every``
seconds apart, the first ``--settle`` seconds after the heal (and after the load).  A
send never acknowledged (timed out, connection lost first) is *unknown*: counted, not
required.  Reported: acked, lost per read, unknown, duplicated (archive entries beyond
the first per message), the longest stretch without any ack for the clients of the
majority side (overall when no side is a majority: any fault on two nodes), and the time
from the heal until every node lists every member again (``list_cluster`` on each node,
polled until the last read; ``never`` is a valid answer).  ``/proc/loadavg`` at start
and end.  JSON with ``--json FILE``, text on stdout.  Not part of the check: one more read
from each node alone (through lb, the other nodes in haproxy maintenance, as
``bench/soak.py`` does; the nodes admit clients from lb only), which tells an
acknowledged message missing from every copy from one unseen from one side.

Bounded: a hard deadline (SIGALRM heals and exits), only the harness's own /24 is
contacted (``loadgen.check_target``), throwaway accounts with a random password never
printed, removed afterwards.  Runs on a lab started with ``python -m lab.harness up`` +
``apply`` (same XTLAB_PREFIX); needs root.

Exit codes: 0 lost == 0 in every read and the cluster whole at the end; 1 otherwise;
64 usage; 69 lab unreachable; 77 not root (or TLS/auth failure).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import lab_load, loadgen, soak

EX_OK, EX_BAD = 0, 1

# name -> (needs SECONDS, default SECONDS)
FAULTS: dict[str, tuple[bool, float]] = {
    "cut-members": (True, 0.0),
    "isolate": (True, 0.0),
    "flap": (False, 120.0),
    "kill-recipients": (False, 0.0),
    "kill-senders": (False, 0.0),
    "pause": (True, 0.0),
    "restart-lb": (False, 0.0),
    # Many faults in one run: every --every seconds the next of SOAK_CYCLE, on the next
    # node in turn, for S (1800) seconds of load.
    "soak": (False, 1800.0),
    # No fault: the same load for S seconds, the peer of a soak's figures.
    "none": (True, 0.0),
}
# A soak's faults, in turn (name, seconds): each is healed before the next one starts.
SOAK_CYCLE: tuple[tuple[str, float], ...] = (
    ("cut-members", 30.0),
    ("kill-senders", 0.0),
    ("isolate", 30.0),
    ("pause", 30.0),
    ("flap", 40.0),
    ("kill-recipients", 0.0),
)
NFT_TABLE = "nemesis"
# loadgen's result fields left out of the report: its own audit is not run (the reads
# after the heal are the check) and the long lists are in the history.
LOAD_LEFT_OUT = frozenset(
    "events lost_ids lost_detail unacked_ids found lost found_unacked duplicates"
    " archive_entries paging_repeats verify_seconds bounced_unarchived".split()
)


# ----------------------------------------------------------------------- the checker


def longest_gap(times: Iterable[float], start: float, end: float) -> dict[str, Any]:
    """The longest stretch of [start, end] with no time of ``times`` inside it.

    ``times`` are ack times; those outside [start, end] are ignored.  With none inside,
    the whole span is one stretch.  Returns seconds and where the stretch lies."""
    points = sorted(t for t in times if start <= t <= end)
    best = (0.0, start, start)
    prev = start
    for t in [*points, end]:
        if t - prev > best[0]:
            best = (t - prev, prev, t)
        prev = t
    return {"seconds": round(best[0], 3), "from_t": round(best[1], 3), "to_t": round(best[2], 3)}


def majority_side(members: Sequence[str], faulted: Iterable[str]) -> list[str] | None:
    """The members on the side of a fault that hold more than half of the cluster (the
    fault's nodes apart), or None when no side does (e.g. one node of two)."""
    cut = set(faulted)
    rest = [m for m in members if m not in cut]
    inside = [m for m in members if m in cut]
    for side in (rest, inside):
        if side and len(side) * 2 > len(members):
            return side
    return None


def time_to_whole(
    snapshots: Sequence[Mapping[str, Any]], heal_t: float, members: Iterable[str]
) -> float | None:
    """Seconds from ``heal_t`` until every node lists every member and keeps doing so
    in every later snapshot; None ("never") when the last snapshot is not whole.

    ``snapshots``: ``{"t": seconds, "nodes": {node: [members it lists]}}`` in time
    order; a node that did not answer lists nothing.  A snapshot before the heal does
    not count; the first whole one after it counts from its own time."""
    want = set(members)
    since: float | None = None
    for snap in snapshots:
        t = float(snap["t"])
        if t < heal_t:
            continue
        nodes: Mapping[str, Iterable[str]] = snap["nodes"]
        whole = all(set(nodes.get(n, [])) == want for n in want) and bool(want)
        if whole and since is None:
            since = t
        elif not whole:
            since = None
    return None if since is None else round(max(since - heal_t, 0.0), 3)


def check(history: Mapping[str, Any]) -> dict[str, Any]:
    """Judge one run.

    ``history``:

    * ``ops``: one per message: ``mid``, ``sender`` (a client name), ``node`` (of the
      sender's session, or None), ``sent_t`` (None: never sent), ``acked_t`` (None: no
      ack), ``refused`` (an error stanza came back after the ack: the sender was told);
    * ``reads``: in order, ``{"t": ..., "counts": {mid: archive entries}}`` or
      ``{"t": ..., "error": text}`` for a read that failed;
    * ``window``: [start, end] of the load (seconds), for the no-ack stretch;
    * ``majority``: the nodes of the majority side, or None.

    Lost in a read: acknowledged, not refused, not in that read.  Unknown: sent and
    never acknowledged (not required, counted; ``unknown_found`` of them were in the
    last read).  Duplicated: the most archive entries beyond the first per message in
    any read.  ``ok``: at least one read, none failed, nothing lost in any."""
    ops = list(history["ops"])
    reads = list(history.get("reads", []))
    acked = [o for o in ops if o.get("acked_t") is not None]
    unknown = [o for o in ops if o.get("sent_t") is not None and o.get("acked_t") is None]
    required = {o["mid"] for o in acked if not o.get("refused")}
    to = {o["mid"]: o.get("recipient") for o in ops}
    node = {o["mid"]: o.get("node") for o in ops}
    per_read: list[dict[str, Any]] = []
    lost_any: set[str] = set()
    lost_every: set[str] | None = None
    dup = 0
    for r in reads:
        if r.get("error") is not None:
            per_read.append({"t": r.get("t"), "error": r["error"]})
            continue
        counts: Mapping[str, int] = r["counts"]
        missing = {m for m in required if counts.get(m, 0) < 1}
        lost_any |= missing
        lost_every = missing if lost_every is None else lost_every & missing
        d = sum(max(n - 1, 0) for n in counts.values())
        dup = max(dup, d)
        per_read.append(
            {
                "t": r.get("t"),
                "found": len(required) - len(missing),
                "lost": len(missing),
                "duplicates": d,
                "unknown_found": sum(1 for o in unknown if counts.get(o["mid"], 0) > 0),
                "lost_ids": sorted(missing)[:20],
                "lost_by_recipient": dict(sorted(Counter(to[m] for m in missing).items())),
                "lost_by_sender_node": dict(sorted(Counter(str(node[m]) for m in missing).items())),
            }
        )
    good = [r for r in per_read if "error" not in r]
    last = good[-1] if good else None
    majority = history.get("majority")
    scope = "majority" if majority else "overall"
    ack_times = [
        float(o["acked_t"]) for o in acked if not majority or o.get("node") in set(majority)
    ]
    start, end = (float(x) for x in history.get("window", (0.0, 0.0)))
    end = max([end, *ack_times])
    return {
        "messages": len(ops),
        "sent": sum(1 for o in ops if o.get("sent_t") is not None),
        "acked": len(acked),
        "refused": sum(1 for o in acked if o.get("refused")),
        "unknown": len(unknown),
        "unknown_found": last["unknown_found"] if last else None,
        "reads": per_read,
        "lost": max((r["lost"] for r in good), default=None),
        "lost_per_read": [r.get("lost") for r in per_read],
        "lost_in_any_read": len(lost_any),
        "lost_in_every_read": len(lost_every or set()),
        "duplicated": dup,
        "no_ack": {"scope": scope, "nodes": majority, **longest_gap(ack_times, start, end)},
        "ok": bool(good) and len(good) == len(per_read) and not lost_any,
    }


def lost_everywhere(history: Mapping[str, Any], reads: Iterable[Mapping[str, Any]]) -> int | None:
    """Acknowledged (not refused) messages found in none of ``reads`` (e.g. one read
    from each node alone): gone from every copy, not just unseen from one side.  None
    unless every read succeeded (a copy not read may hold them)."""
    seen: set[str] = set()
    for r in reads:
        if r.get("error") is not None:
            return None
        seen |= {m for m, n in r["counts"].items() if n > 0}
    required = {
        o["mid"] for o in history["ops"] if o.get("acked_t") is not None and not o.get("refused")
    }
    return len(required - seen)


# What a fault may cost (docs/cluster.md): the cluster is one again this soon after the
# heal, with no action, and the majority's clients wait at most this long for an ack
# while a minority is faulted (haproxy's restart faults every client: not bounded).
WHOLE_WITHIN_S = 60.0
MAJORITY_NO_ACK_S = 10.0


def verdict(report: Mapping[str, Any]) -> list[str]:
    """What is wrong with a report (empty: all good)."""
    bad = []
    c = report.get("check")
    if not c:
        return ["no check was made"]
    if not c["acked"]:
        bad.append("nothing was acknowledged")
    if c["lost_in_any_read"]:
        bad.append(
            f"acknowledged messages lost: {c['lost_per_read']} per read"
            f" ({c['lost_in_any_read']} in some read, {c['lost_in_every_read']} in every read)"
        )
    failed = [r for r in c["reads"] if "error" in r]
    if failed or not c["reads"]:
        bad.append(f"{len(failed)} of {len(c['reads'])} reads failed")
    if not report.get("cluster_whole"):
        bad.append(f"the cluster is not whole at the end: {report.get('cluster_at_end')}")
    whole = report.get("time_to_whole_s", 0.0)
    if whole is None or whole > WHOLE_WITHIN_S:
        bad.append(f"the cluster was not one again within {WHOLE_WITHIN_S:g} s of the heal"
                   f" ({'never' if whole is None else f'{whole:g} s'})")
    for row in report.get("soak_faults", []):
        if row["whole_s"] is None or row["whole_s"] > WHOLE_WITHIN_S:
            bad.append(f"{row['fault']} on {row['node']} at {row['start_t']:g} s: not one"
                       f" again within {WHOLE_WITHIN_S:g} s of its heal")
    gap = c.get("no_ack") or {}
    fault = (report.get("options") or {}).get("fault")
    if gap.get("scope") == "majority" and fault != "restart-lb" \
            and gap.get("seconds", 0.0) > MAJORITY_NO_ACK_S:
        bad.append(f"the majority's clients went {gap['seconds']:g} s without an ack"
                   f" (limit {MAJORITY_NO_ACK_S:g} s)")
    return bad


# ----------------------------------------------------------------------- options


@dataclass
class Options:
    fault: str = "cut-members"
    seconds: float = 10.0
    node: str = lab_load.EJABBERD_NODES[-1]
    rate: float = 10.0
    senders: int = 10
    recipients: int = 6
    online: int = 3
    inflight: int = 2
    before: float = 20.0
    after: float = 30.0
    flap_period: float = 5.0
    settle: float = 30.0
    reads: int = 3
    read_every: float = 30.0
    poll_every: float = 2.0
    every: float = 120.0
    audit_timeout: float = 300.0

    @property
    def fault_span(self) -> float:
        """Seconds the fault lasts (0 for the instant ones)."""
        spans = ("cut-members", "isolate", "pause", "flap", "soak", "none")
        return self.seconds if self.fault in spans else 0.0

    @property
    def load_seconds(self) -> float:
        return self.before + self.fault_span + self.after

    def deadline(self) -> float:
        """Hard limit of the whole run, seconds."""
        reads = self.settle + self.reads * (self.read_every + self.audit_timeout)
        return self.load_seconds + 120.0 + reads + 300.0


def parse_fault(words: Sequence[str]) -> tuple[str, float]:
    """``NAME [SECONDS]`` -> (name, seconds); ValueError with the reason."""
    if not words or words[0] not in FAULTS:
        raise ValueError(f"--fault: one of {', '.join(FAULTS)}")
    name, rest = words[0], list(words[1:])
    needs, default = FAULTS[name]
    if len(rest) > 1:
        raise ValueError(f"--fault {name}: at most one SECONDS")
    if not rest:
        if needs:
            raise ValueError(f"--fault {name} needs SECONDS")
        return name, default
    if name not in ("cut-members", "isolate", "pause", "flap", "soak", "none"):
        raise ValueError(f"--fault {name} takes no SECONDS")
    try:
        secs = float(rest[0])
    except ValueError:
        raise ValueError(f"--fault {name}: SECONDS must be a number, not {rest[0]!r}") from None
    if not secs > 0:
        raise ValueError(f"--fault {name}: SECONDS must be positive")
    return name, secs


def check_options(o: Options, nodes: Sequence[str] = lab_load.EJABBERD_NODES) -> list[str]:
    bad = []
    if not 0 < o.rate <= 20:
        bad.append("--rate must be in (0, 20] (the host is shared)")
    if o.senders < 1 or o.recipients < 1 or o.inflight < 1:
        bad.append("--senders, --recipients and --inflight must be >= 1")
    if not 0 <= o.online <= o.recipients:
        bad.append("--online must be between 0 and --recipients")
    if o.before < 5 or o.after < 0 or o.settle < 0 or o.reads < 1 or not o.read_every > 0:
        bad.append("--before >= 5, --after and --settle >= 0, --reads >= 1, --read-every > 0")
    if o.fault == "flap" and not 0 < o.flap_period < o.seconds:
        bad.append("--flap-period must be positive and shorter than the flap")
    longest = max(secs for _, secs in SOAK_CYCLE)
    if o.fault == "soak" and not (longest + 30 <= o.every <= o.seconds):
        bad.append(f"--every must be at least {longest + 30:g} s (a fault and time to heal)"
                   " and at most the soak")
    if len(nodes) < 2:
        bad.append("the lab needs at least two ejabberd nodes")
    if o.node not in nodes:
        bad.append(f"--node: one of {', '.join(nodes)}")
    return bad


# ----------------------------------------------------------------------- the lab


def nft_rules(fault: str, others: Sequence[str]) -> str:
    """The nftables script that installs our table (replacing an old one, atomically):
    ``cut-members`` drops traffic to and from ``others``; ``isolate`` everything but
    loopback.  Our own table, so the machine's firewall (salt/firewall) is untouched."""
    if fault == "isolate":
        match_in, match_out = 'iifname != "lo"', 'oifname != "lo"'
    else:
        addrs = ", ".join(others)
        match_in, match_out = f"ip saddr {{ {addrs} }}", f"ip daddr {{ {addrs} }}"
    return (
        f"table inet {NFT_TABLE}\n"
        f"delete table inet {NFT_TABLE}\n"
        f"table inet {NFT_TABLE} {{\n"
        "  chain in { type filter hook input priority -10; policy accept;"
        f" {match_in} drop; }}\n"
        "  chain out { type filter hook output priority -10; policy accept;"
        f" {match_out} drop; }}\n"
        "}\n"
    )


def nft_on(node: lab_load.MachineLike, script: str) -> None:
    node.run(["nft", "-f", "-"], input=script, timeout=30)


def nft_off(node: lab_load.MachineLike) -> bool:
    """Delete our table (if there); True when none is left."""
    node.run(["nft", "delete", "table", "inet", NFT_TABLE], check=False, timeout=30)
    res = node.run(["nft", "list", "table", "inet", NFT_TABLE], check=False, timeout=30)
    return bool(res.returncode != 0)


def beam_pid(node: lab_load.MachineLike) -> str:
    pids = node.run(["pgrep", "-x", "beam.smp"], check=False, timeout=30).stdout.split()
    if len(pids) != 1:
        raise loadgen.LoadError(f"{node.name}: beam.smp processes {pids}", loadgen.EX_UNAVAILABLE)
    return str(pids[0])


def signal_beam(node: lab_load.MachineLike, sig: str, pid: str | None = None) -> str:
    pid = pid or beam_pid(node)
    node.run(["kill", f"-{sig}", pid], timeout=30)
    return pid


def unit_state(node: lab_load.MachineLike, unit: str = "ejabberd") -> str:
    res = node.run(["systemctl", "is-active", unit], check=False, timeout=30)
    return str(res.stdout.strip())


def heal_everything(machines: Mapping[str, lab_load.MachineLike], nodes: Sequence[str]) -> None:
    """Best effort, idempotent: our nft table gone and every beam running, everywhere."""
    for n in nodes:
        with contextlib.suppress(Exception):
            nft_off(machines[n])
        with contextlib.suppress(Exception):
            for pid in machines[n].run(["pgrep", "-x", "beam.smp"], check=False).stdout.split():
                machines[n].run(["kill", "-CONT", pid], check=False)


def sessions(node: lab_load.MachineLike) -> list[dict[str, Any]]:
    """``connected_users_info`` (mod_admin_extra) through the node's local ReST API."""
    res = node.run(
        [lab_load.API_COMMAND, "connected_users_info"], input="{}", check=False, timeout=30
    )
    if res.returncode != 0:
        return []
    try:
        data = json.loads(res.stdout)
    except json.JSONDecodeError:
        return []
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def placement(rows: Iterable[Mapping[str, Any]], names: Mapping[str, str]) -> dict[str, str | None]:
    """Client name -> node of its session, from ``connected_users_info`` rows; ``names``
    maps a full JID (user@domain/resource) to the client's name.  The node is given as
    ``ejabberd@NAME``; NAME is returned."""
    out: dict[str, str | None] = dict.fromkeys(names.values())
    for r in rows:
        jid = str(r.get("jid", ""))
        if "/" not in jid and r.get("resource"):
            jid = f"{jid}/{r['resource']}"
        who = names.get(jid)
        if who is not None:
            out[who] = str(r.get("node", "")).split("@")[-1] or None
    return out


def busiest(where: Mapping[str, str | None], prefix: str, nodes: Sequence[str]) -> str:
    """The node holding most sessions of the clients named ``prefix…`` (ties: the last)."""
    counts = {n: 0 for n in nodes}
    for who, node in where.items():
        if who.startswith(prefix) and node in counts:
            counts[node] += 1
    return max(reversed(nodes), key=lambda n: counts[n])


class Listener(loadgen.Reader):
    """An online recipient: logs in through lb WITH presence (so messages are routed to
    its session, and its archive copy is written by that session) and stays; comes back
    after a lost connection until ``stop``.  Records the run's message ids it got."""

    def __init__(self, cfg: loadgen.LoadConfig, account: loadgen.Account, resource: str) -> None:
        super().__init__(cfg, account, resource)
        self.closing = False
        self.got: set[str] = set()
        self.logins = 0
        self.add_event_handler("session_start", self._online)
        self.add_event_handler("message", self._message)
        self.add_event_handler("disconnected", self._lost)

    def _online(self, _event: Any) -> None:
        self.logins += 1
        self.send_presence()

    def _message(self, msg: Any) -> None:
        body = str(msg["body"])
        if body.startswith(loadgen.BODY_PREFIX + " "):
            self.got.add(body[len(loadgen.BODY_PREFIX) + 1 :])

    def _lost(self, _event: Any) -> None:
        if not self.closing:
            self.loop.call_later(1.0, self._again)

    def _again(self) -> None:
        if not self.closing and self.transport is None:
            self.connect(self.cfg.host, self.cfg.port)

    def start(self) -> None:
        self.connect(self.cfg.host, self.cfg.port)

    async def stop(self) -> None:
        self.closing = True
        self.cancel_connection_attempt()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.disconnect(wait=1.0), timeout=3.0)


class Poller:
    """``list_cluster`` on every node every ``every`` s, in a thread, until ``stop``."""

    def __init__(
        self,
        machines: Mapping[str, lab_load.MachineLike],
        nodes: Sequence[str],
        rel: Callable[[], float],
        every: float,
    ) -> None:
        self.machines, self.nodes, self.rel, self.every = machines, nodes, rel, every
        self.snapshots: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def snap(self) -> dict[str, Any]:
        t = self.rel()
        seen = {n: sorted(lab_load.cluster_nodes(self.machines[n])) for n in self.nodes}
        return {"t": t, "nodes": {n: [m.split("@")[-1] for m in v] for n, v in seen.items()}}

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.snapshots.append(self.snap())
            self._stop.wait(self.every)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=60)


def inject(
    machines: Mapping[str, lab_load.MachineLike],
    o: Options,
    node: str,
    lb: str,
    nodes: Sequence[str],
    rel: Callable[[], float],
) -> dict[str, Any]:
    """Do the fault on ``node`` and heal it (always); blocking, run in a thread."""
    from lab import harness

    if o.fault in ("soak", "none"):  # no node of their own: a soak's faults name theirs
        many: dict[str, Any] = {"fault": o.fault, "node": node, "loadavg": soak.loadavg(),
                                "start_t": rel(), "start_wall": datetime.now(UTC).isoformat()}
        if o.fault == "soak":
            many["faults"] = soak_faults(machines, o, lb, nodes, rel)
        else:
            time.sleep(o.seconds)
        many["healed_t"] = rel()
        many["healed_wall"] = datetime.now(UTC).isoformat()
        return many
    m = machines[node]
    others = [harness.ADDRESSES[n] for n in nodes if n != node]
    rec: dict[str, Any] = {"fault": o.fault, "node": node, "loadavg": soak.loadavg()}
    rec["start_t"] = rel()
    rec["start_wall"] = datetime.now(UTC).isoformat()
    pid: str | None = None
    try:
        if o.fault in ("cut-members", "isolate"):
            nft_on(m, nft_rules(o.fault, others))
            time.sleep(o.seconds)
        elif o.fault == "flap":
            end = time.monotonic() + o.seconds
            cut, flips = True, 0
            while time.monotonic() < end:
                if cut:
                    nft_on(m, nft_rules("cut-members", others))
                else:
                    nft_off(m)
                flips += 1
                cut = not cut
                time.sleep(max(0.0, min(o.flap_period, end - time.monotonic())))
            rec["flips"] = flips
        elif o.fault == "pause":
            pid = signal_beam(m, "STOP")
            rec["pid"] = pid
            time.sleep(o.seconds)
        elif o.fault in ("kill-recipients", "kill-senders"):
            rec["pid"] = signal_beam(m, "KILL")
            rec["unit_after_kill"] = unit_state(m)
        elif o.fault == "restart-lb":
            rec["node"] = lb
            r = machines[lb].run(["systemctl", "restart", "haproxy"], check=False, timeout=120)
            rec["restart_rc"] = r.returncode
    except Exception as exc:  # recorded; the heal below still runs
        rec["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if o.fault in ("cut-members", "isolate", "flap"):
            rec["table_gone"] = nft_off(m)
        if pid is not None:
            with contextlib.suppress(Exception):
                signal_beam(m, "CONT", pid)
        rec["healed_t"] = rel()
        rec["healed_wall"] = datetime.now(UTC).isoformat()
    return rec


def soak_faults(
    machines: Mapping[str, lab_load.MachineLike],
    o: Options,
    lb: str,
    nodes: Sequence[str],
    rel: Callable[[], float],
) -> list[dict[str, Any]]:
    """Every ``o.every`` s the next fault of SOAK_CYCLE on the next node, each healed by
    ``inject``, until ``o.seconds`` are over (a fault that would not end by then is not
    started)."""
    start = time.monotonic()
    out: list[dict[str, Any]] = []
    for i in itertools.count():
        name, secs = SOAK_CYCLE[i % len(SOAK_CYCLE)]
        slot = start + i * o.every
        if slot + secs > start + o.seconds:
            break
        time.sleep(max(0.0, slot - time.monotonic()))
        one = dataclasses.replace(o, fault=name, seconds=secs)
        out.append(inject(machines, one, nodes[i % len(nodes)], lb, nodes, rel))
    return out


def soak_rows(
    faults: Sequence[Mapping[str, Any]],
    snapshots: Sequence[Mapping[str, Any]],
    members: Sequence[str],
) -> list[dict[str, Any]]:
    """Per fault of a soak: when, where, and the seconds from its heal until every node
    listed every member (judged on the snapshots before the next fault; None: not by
    then)."""
    rows = []
    for i, f in enumerate(faults):
        until = float(faults[i + 1]["start_t"]) if i + 1 < len(faults) else float("inf")
        window = [s for s in snapshots if float(s["t"]) < until]
        rows.append({
            "fault": f["fault"], "node": f["node"], "start_t": f["start_t"],
            "healed_t": f["healed_t"],
            "whole_s": time_to_whole(window, float(f["healed_t"]), members),
        })
    return rows


def unit_watch(
    machines: Mapping[str, lab_load.MachineLike], node: str, rel: Callable[[], float], secs: float
) -> list[dict[str, Any]]:
    """The ejabberd unit's state on ``node`` every 2 s for ``secs`` s, changes only."""
    out: list[dict[str, Any]] = []
    end = time.monotonic() + secs
    while time.monotonic() < end:
        st = unit_state(machines[node])
        if not out or out[-1]["state"] != st:
            out.append({"t": rel(), "state": st})
        time.sleep(2.0)
    return out


def history_of(
    gen: loadgen.LoadGen,
    where: Mapping[str, str | None],
    reads: list[dict[str, Any]],
    window: tuple[float, float],
    majority: list[str] | None,
) -> dict[str, Any]:
    """The checker's history from the load generator's records (times: s since t0)."""

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - gen.t0, 3)

    ops = [
        {
            "mid": m.mid,
            "sender": f"sender{m.sender}",
            "node": where.get(f"sender{m.sender}"),
            "recipient": m.recipient,
            "sent_t": rel(m.sent_at),
            "acked_t": rel(m.acked_at),
            "refused": m.bounced is not None,
        }
        for m in gen.messages.values()
    ]
    return {"ops": ops, "reads": reads, "window": list(window), "majority": majority}


async def read_alone(
    gen: loadgen.LoadGen,
    lb: lab_load.MachineLike,
    node: str,
    nodes: Sequence[str],
    rel: Callable[[], float],
) -> dict[str, Any]:
    """One read of the archives through lb with every other node in haproxy maintenance
    (``soak.only_node``): the readers all land on ``node`` (the nodes' firewall admits
    clients from lb only)."""
    t = rel()
    try:
        with soak.only_node(lb, node, tuple(nodes)):
            a = await gen.audit()
        return {"t": t, "counts": a.counts}
    except loadgen.LoadError as exc:
        return {"t": t, "error": str(exc)}


async def drive(
    machines: Mapping[str, lab_load.MachineLike],
    o: Options,
    cfg: loadgen.LoadConfig,
    lb: str,
    nodes: Sequence[str],
    report: dict[str, Any],
) -> None:
    gen = loadgen.LoadGen(cfg)

    def rel() -> float:
        return round(time.monotonic() - gen.t0, 3)

    online = cfg.recipients[: o.online]
    listeners = [Listener(cfg, a, f"nemesis-{gen.run_id}") for a in online]
    for li in listeners:
        li.start()
    deadline = time.monotonic() + cfg.login_timeout
    while time.monotonic() < deadline and not all(li.logins for li in listeners):
        await asyncio.sleep(0.2)
    report["online_logged_in"] = sum(1 for li in listeners if li.logins)
    names = {f"{a.jid}/load-{gen.run_id}": f"sender{i}" for i, a in enumerate(cfg.senders)}
    names.update({f"{a.jid}/nemesis-{gen.run_id}": f"online{i}" for i, a in enumerate(online)})
    where: dict[str, str | None] = {}
    fault: dict[str, Any] = {}
    poller = Poller(machines, nodes, rel, o.poll_every)

    async def chaos() -> None:
        origin = gen.pace_origin or time.monotonic()
        # Where the sessions are, once every client had time to log in.
        await asyncio.sleep(max(0.0, origin + max(2.0, o.before - 5) - time.monotonic()))
        rows = await asyncio.to_thread(sessions, machines[nodes[0]])
        where.update(placement(rows, names))
        target = lb if o.fault == "restart-lb" else o.node
        if o.fault in ("soak", "none"):
            target = "in turn" if o.fault == "soak" else "none"
        elif o.fault == "kill-recipients":
            target = busiest(where, "online", nodes)
        elif o.fault == "kill-senders":
            target = busiest(where, "sender", nodes)
        report["target"] = target
        report["log_mark"] = soak.log_mark()
        poller.start()
        await asyncio.sleep(max(0.0, origin + o.before - time.monotonic()))
        gen.event("fault", node=target)
        fault.update(await asyncio.to_thread(inject, machines, o, target, lb, nodes, rel))
        gen.event("healed", node=target)
        if o.fault.startswith("kill"):
            fault["unit"] = await asyncio.to_thread(
                unit_watch, machines, target, rel, max(10.0, o.after - 5)
            )

    gen.at_acked(1, chaos)
    try:
        res = await gen.run()
        report["load"] = {k: v for k, v in res.as_dict().items() if k not in LOAD_LEFT_OUT}
        report["events"] = [e for e in res.events if e["event"] not in ("milestone",)][:400]
        report["fault"] = fault
        if "healed_t" not in fault:
            raise loadgen.LoadError("the fault never ran (no ack?)", loadgen.EX_UNAVAILABLE)
        reads: list[dict[str, Any]] = []
        first = gen.t0 + float(fault["healed_t"]) + o.settle
        for i in range(o.reads):
            await asyncio.sleep(max(0.0, first + i * o.read_every - time.monotonic()))
            t = rel()
            try:
                a = await gen.audit()
                reads.append({"t": t, "counts": a.counts})
            except loadgen.LoadError as exc:
                reads.append({"t": t, "error": str(exc)})
        node_reads = {n: await read_alone(gen, machines[lb], n, nodes, rel) for n in nodes}
        poller.stop()
        origin = (gen.pace_origin or gen.t0) - gen.t0
        window = (round(origin, 3), round(origin + o.load_seconds, 3))
        # A soak faults every node in turn, so no side stays the majority: overall.
        many = o.fault in ("soak", "none")
        majority = None if many else majority_side(nodes, [report["target"]])
        hist = history_of(gen, where, reads, window, majority)
        report["check"] = check(hist)
        # Not part of the check (clients read through lb): each node's own copy.
        report["node_reads"] = {
            n: {k: v for k, v in check({**hist, "reads": [r]})["reads"][0].items()}
            for n, r in node_reads.items()
        }
        report["lost_everywhere"] = lost_everywhere(hist, node_reads.values())
        report["placement"] = where
        report["online_received"] = sum(len(li.got) for li in listeners)
        report["list_cluster"] = poller.snapshots
        report["time_to_whole_s"] = time_to_whole(poller.snapshots, fault["healed_t"], nodes)
        if o.fault == "soak":
            report["soak_faults"] = soak_rows(fault.get("faults", []), poller.snapshots, nodes)
        report["history_ops"] = hist["ops"]
    finally:
        poller.stop()
        await asyncio.gather(*(li.stop() for li in listeners), return_exceptions=True)


def run(
    machines: Mapping[str, lab_load.MachineLike],
    state_dir: Path,
    o: Options,
    lb: str = "lb",
    nodes: Sequence[str] = lab_load.EJABBERD_NODES,
) -> dict[str, Any]:
    target = lab_load.lab_target(state_dir)
    seed = machines[nodes[0]]
    password = secrets.token_urlsafe(18)
    users = {f"nem{i}": password for i in range(o.senders)}
    users.update({f"nemrcpt{i}": password for i in range(o.recipients)})
    report: dict[str, Any] = {
        "target_address": f"{target.host}:{target.port}",
        "options": vars(o).copy(),
        "loadavg_start": soak.loadavg(),
        "started": datetime.now(UTC).isoformat(),
    }
    print(
        f"nemesis: {o.fault} {o.fault_span:g} s; loadavg at start {report['loadavg_start']}",
        flush=True,
    )
    want = set(nodes)
    lab_load.register_users(seed, target.domain, users)
    cfg = loadgen.LoadConfig(
        host=target.host,
        port=target.port,
        cafile=target.cafile,
        senders=loadgen.accounts("nem", o.senders, target.domain, password),
        recipients=loadgen.accounts("nemrcpt", o.recipients, target.domain, password),
        messages=max(1, int(o.rate * o.load_seconds)),
        # A soak's stalls add up; its senders may need longer than the plan to catch up.
        deadline=o.load_seconds + 120.0 + (o.seconds / 10 if o.fault == "soak" else 0.0),
        inflight=o.inflight,
        allow_nets=[target.allow_net],
        rate=o.rate,
        verify_timeout=o.audit_timeout,
        verify=False,  # the reads come after the heal and the settle
    )
    try:
        asyncio.run(drive(machines, o, cfg, lb, nodes, report))
        last = report["list_cluster"][-1]["nodes"] if report.get("list_cluster") else {}
        report["cluster_at_end"] = last
        report["cluster_whole"] = bool(last) and all(set(v) == want for v in last.values())
        if report.get("log_mark"):
            report["cluster_log"] = soak.cluster_log(machines, tuple(nodes), report["log_mark"])
    finally:
        heal_everything(machines, nodes)
        report["loadavg_end"] = soak.loadavg()
        report["ended"] = datetime.now(UTC).isoformat()
        with contextlib.suppress(Exception):
            lab_load.unregister_users(seed, target.domain, list(users))
    return report


def describe(report: Mapping[str, Any]) -> str:
    o = report["options"]
    c = report.get("check") or {}
    f = report.get("fault") or {}
    ld = report.get("load") or {}
    whole = report.get("time_to_whole_s")
    na = c.get("no_ack") or {}
    lines = [
        f"== nemesis {o['fault']}"
        + (
            f" {o['seconds']:g} s"
            if o["fault"] not in ("kill-recipients", "kill-senders", "restart-lb")
            else ""
        )
        + f" on {report.get('target')} via lb {report['target_address']}: {o['rate']:g} msg/s,"
        f" {o['senders']} senders, {o['recipients']} recipients ({o['online']} online)",
        f"  loadavg start {report['loadavg_start']}  end {report.get('loadavg_end')}",
        f"  placement: {report.get('placement')}",
        f"  fault {f.get('start_t')} .. healed {f.get('healed_t')} s"
        + (f"  ERROR {f['error']}" if f.get("error") else "")
        + (f"  unit: {f['unit']}" if f.get("unit") else ""),
        f"  acked {c.get('acked')}  LOST per read {c.get('lost_per_read')}  unknown"
        f" {c.get('unknown')} (found {c.get('unknown_found')})  duplicated {c.get('duplicated')}"
        f"  refused {c.get('refused')}  never sent {ld.get('never_sent')}",
        f"  longest stretch without an ack ({na.get('scope')}): {na.get('seconds')} s"
        f" ({na.get('from_t')} .. {na.get('to_t')})",
        f"  disconnects {ld.get('disconnects')}, reconnects {ld.get('reconnects')}, ack p50"
        f" {ld.get('p50_ms')} ms p99 {ld.get('p99_ms')} ms max {ld.get('max_ms')} ms",
        "  time from heal to every node listing every member: "
        + ("never (within the observation)" if whole is None else f"{whole} s")
        + f"; at the end {report.get('cluster_at_end')}",
    ]
    for row in report.get("soak_faults", []):
        w = row["whole_s"]
        lines.append(
            f"  soak: {row['fault']} on {row['node']} {row['start_t']} .. {row['healed_t']} s,"
            f" whole {'not before the next fault' if w is None else f'{w} s'} after the heal"
        )
    for r in c.get("reads", []):
        lines.append(
            f"  read at {r.get('t')} s: "
            + (
                f"ERROR {r['error']}"
                if "error" in r
                else f"found {r['found']} lost {r['lost']} duplicates {r['duplicates']}"
                + (
                    f" (by recipient {r['lost_by_recipient']}, by the sender's node"
                    f" {r['lost_by_sender_node']})"
                    if r["lost"]
                    else ""
                )
            )
        )
    for n, r in (report.get("node_reads") or {}).items():
        lines.append(
            f"  read from {n} alone at {r.get('t')} s: "
            + (f"ERROR {r['error']}" if "error" in r else f"found {r['found']} lost {r['lost']}")
        )
    if "lost_everywhere" in report:
        lines.append(f"  acknowledged and in no node's copy: {report['lost_everywhere']}")
    for node, loglines in (report.get("cluster_log") or {}).items():
        for line in loglines[:6]:
            lines.append(f"    {node}: {line[:180]}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CLI

NUMERIC = (
    ("rate", "messages per second, all senders together (<= 20)"),
    ("senders", "paced senders through lb"),
    ("recipients", "recipient accounts"),
    ("online", "recipients logged in (with presence) for the whole run; the rest offline"),
    ("inflight", "unacknowledged messages per sender"),
    ("before", "seconds of load before the fault"),
    ("after", "seconds of load after the heal"),
    ("flap_period", "flap: seconds cut, then seconds healed"),
    ("settle", "seconds after the heal before the first read"),
    ("reads", "archive reads through lb after the settle"),
    ("read_every", "seconds between the reads"),
    ("poll_every", "seconds between list_cluster polls"),
    ("every", "soak: seconds from one fault's start to the next's"),
)


def build_parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(
        prog="python -m bench.nemesis",
        description=(
            "One fault against the nspawn lab's ejabberd cluster under paced load through lb, "
            "healed and left alone; then every acknowledged message must be in every archive "
            "read. Needs root and a lab started with `python -m lab.harness up` + `apply`."
        ),
        epilog="faults: cut-members S, isolate S, flap [S], kill-recipients, kill-senders, "
        "pause S, restart-lb, soak [S] (the others in turn, every --every s), none S (the "
        "load alone, a soak's peer). exit codes: 0 lost 0 and cluster whole, 1 otherwise, "
        "64 usage, 69 lab unreachable, 77 not root",
    )
    p.add_argument("--fault", nargs="+", required=True, metavar="NAME [SECONDS]")
    p.add_argument("--node", default=d.node, help=f"the node faulted ({d.node})")
    p.add_argument("--state-dir", type=Path, help="the lab's state dir (default: the harness's)")
    lab_load.add_numeric_options(p, d, NUMERIC)
    p.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    return p


def options(args: argparse.Namespace) -> Options:
    fault, secs = parse_fault(args.fault)
    return Options(
        fault=fault, seconds=secs, node=args.node, **{n: getattr(args, n) for n, _ in NUMERIC}
    )


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    try:
        args = p.parse_args(argv)
        o = options(args)
    except SystemExit as exc:
        return 0 if exc.code == 0 else loadgen.EX_USAGE
    except ValueError as exc:
        print(f"nemesis: {exc}", file=sys.stderr)
        return loadgen.EX_USAGE
    bad = check_options(o)
    if bad:
        print(f"nemesis: {bad[0]}", file=sys.stderr)
        return loadgen.EX_USAGE
    if os.geteuid() != 0:
        print("nemesis: must run as root (nspawn machines)", file=sys.stderr)
        return loadgen.EX_NOPERM
    logging.basicConfig(level=logging.CRITICAL)
    from lab import harness

    report: dict[str, Any] = {}
    try:
        state_dir, lb, machines = lab_load.attach(args.state_dir)
    except harness.HarnessError as exc:
        print(f"nemesis: {exc}", file=sys.stderr)
        return loadgen.EX_UNAVAILABLE

    def too_late(_sig: int, _frame: FrameType | None) -> None:
        heal_everything(machines, lab_load.EJABBERD_NODES)
        print(f"nemesis: hard deadline ({o.deadline():.0f} s) reached; healed", file=sys.stderr)
        os._exit(EX_BAD)

    signal.signal(signal.SIGALRM, too_late)
    signal.alarm(int(o.deadline()))
    try:
        report = run(machines, state_dir, o, lb)
    except loadgen.LoadError as exc:
        print(f"nemesis: {exc}", file=sys.stderr)
        return int(exc.code)
    except harness.HarnessError as exc:
        print(f"nemesis: {exc}", file=sys.stderr)
        return loadgen.EX_UNAVAILABLE
    finally:
        signal.alarm(0)
        heal_everything(machines, lab_load.EJABBERD_NODES)
        if args.json and report:
            args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(describe(report), flush=True)
    print(f"nemesis: loadavg at end {report.get('loadavg_end')}", flush=True)
    problems = verdict(report)
    for b in problems:
        print(f"nemesis: {b}", file=sys.stderr)
    return EX_BAD if problems else EX_OK


if __name__ == "__main__":
    sys.exit(main())
