"""Faults against the committed cluster under paced load: nothing acknowledged is lost.

A short set of ``bench/nemesis.py``'s faults, each on the lab's own machines (the
committed manifest's ejabberd cluster and its balancer; prosody is not needed), each
injected inside the machines (nftables, signals), healed, and left alone:

* one node cut off from the other members for longer than the members' probe allows
  (``mod_quorum``'s ``down_after``): the majority disconnects it and goes on, the node
  fences itself and, once the cut heals, restarts and rejoins by itself;
* SIGKILL of the node holding the most recipients' sessions (the recipients' archive
  copies are written before the ack: ``mod_durable_ack``);
* one node SIGSTOPped and woken up the moment the first other member gives up on it,
  before the next one does: without more, the first member's Mnesia leaves it out
  and the second's keeps it, each side keeps a majority in its own view and the
  cluster never becomes whole again; the member that gave up has the others drop it
  too, so it fences itself and restarts;
* two of the three members stopped: the one left fences itself, so ``xmpp-tool send``
  through lb is refused (a non-zero exit, one line) instead of acknowledged; once the
  two are back it restarts itself and a new message goes through -- the refused one
  is in no archive.

Each run must end with every acknowledged message in every archive read through lb,
the cluster whole again within ``nemesis.WHOLE_WITHIN_S`` of the heal with no action,
and the majority's clients never waiting longer than ``nemesis.MAJORITY_NO_ACK_S`` for
an ack.  The full set, longer cuts and their figures are ``python -m bench.nemesis``
(docs/benchmarks.md).  These assert counts and the acceptance bounds, not speed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from bench import nemesis
from lab import harness, manifest
from tests.machines.conftest import LabRun, fresh_state, xmpp_tool
from tests.machines.test_exposure import wait_states
from tests.machines.test_lab import (
    LB,
    bodies,
    have_cli,  # noqa: F401  (fixture)
    send,
    token,
    wait_cluster,
)

pytestmark = [pytest.mark.machines, pytest.mark.root]

# The release every CI run faults; bookworm is measured from bench/ (docs/benchmarks.md).
RELEASE = "trixie"

# Short, but every phase is there: load before, the fault, load after, reads after a
# settle.  A 20 s cut outlasts mod_quorum's down_after (5 s) four times over.
def short(fault: str, seconds: float, node: str) -> nemesis.Options:
    return nemesis.Options(fault=fault, seconds=seconds, node=node, before=10.0, after=10.0,
                           settle=10.0, reads=2, read_every=5.0)


FAULTS = [("cut-members", 20.0), ("kill-recipients", 0.0)]


@pytest.fixture(scope="module")
def lab(rootfs_builds: dict[str, Future[Path]],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    """The committed manifest's cluster and balancer, booted and applied."""
    state_dir, accounts = fresh_state(RELEASE, rootfs_builds, tmp_path_factory)
    spec = manifest.load()
    names = [*spec["cluster"]["ejabberd"], manifest.entry(spec, "ejabberd") or "lb"]
    with harness.lab(RELEASE, state_dir, names) as the_lab:
        first = the_lab.apply_all()
        yield LabRun(the_lab, state_dir, first, accounts)


def test_the_cluster_is_up(lab: LabRun) -> None:
    bad = {n: r.describe_failures() for n, r in lab.first.items() if not r.ok}
    assert not bad, bad


@pytest.mark.parametrize(("fault", "seconds"), FAULTS, ids=[f for f, _ in FAULTS])
def test_fault_loses_nothing_acknowledged(lab: LabRun, fault: str, seconds: float) -> None:
    nodes = tuple(lab.lab.spec["cluster"]["ejabberd"])
    o = short(fault, seconds, nodes[-1])
    assert nemesis.check_options(o, nodes) == []
    report = nemesis.run(lab.lab.machines, lab.state_dir, o, nodes=nodes)
    out = harness.CACHE / f"nemesis-{fault}.json"
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(nemesis.describe(report))
    c = report["check"]
    assert c["acked"] > 0, nemesis.describe(report)
    assert c["lost_in_any_read"] == 0, nemesis.describe(report)
    assert nemesis.verdict(report) == [], nemesis.describe(report)


LOG = "/var/log/ejabberd/ejabberd.log"


def log_mark(lab: LabRun, node: str) -> int:
    """The number of lines in ``node``'s ejabberd log now (wait_log looks after them)."""
    return int(lab.lab[node].run(["sh", "-c", f"wc -l < {LOG}"]).stdout.strip() or 0)


def log_line(lab: LabRun, node: str, since: int, pattern: str) -> str | None:
    """The first line after line ``since`` of ``node``'s ejabberd log that matches
    ``pattern`` (grep -E), if there is one yet."""
    res = lab.lab[node].run(
        ["sh", "-c", f'tail -n +{since + 1} {LOG} | grep -m1 -E "$0"', pattern], check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def wait_log(lab: LabRun, node: str, since: int, pattern: str, timeout: float) -> str:
    """log_line, waited for up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while (line := log_line(lab, node, since, pattern)) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"{node}: no log line {pattern!r} within {timeout:g} s")
        time.sleep(1)
    return line


@pytest.mark.usefixtures("have_cli")
def test_a_lone_member_refuses_then_heals_by_itself(lab: LabRun) -> None:
    nodes = tuple(lab.lab.spec["cluster"]["ejabberd"])
    lone, gone = nodes[0], nodes[1:]
    full = {f"ejabberd@{n}" for n in nodes}
    for n in nodes:
        assert wait_cluster(lab, n, full, timeout=120) == full, n
    mark = log_mark(lab, lone)
    for n in gone:
        lab.lab[n].run(["systemctl", "stop", "ejabberd"])
    try:
        wait_log(lab, lone, mark, "mod_quorum: fenced", timeout=60)
        refused = token("while alone")
        res = xmpp_tool(lab, "alice@ejabberd", LB, "send", lab.accounts["bob@ejabberd"]["jid"],
                        refused, timeout=120)
        assert res.returncode in (69, 75), (res.returncode, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    finally:
        for n in gone:
            lab.lab[n].run(["systemctl", "start", "ejabberd"], check=False, timeout=300)
    # (ejabberd's logger wraps the member lists: the words are on a line of their own)
    wait_log(lab, lone, mark, "serve again: restarting", timeout=180)
    for n in nodes:
        assert wait_cluster(lab, n, full, timeout=180) == full, n
    for n in nodes:
        wait_states(lab, n, "UP", timeout=60)
    sent = token("after the heal")
    send(lab, "alice@ejabberd", LB, "bob@ejabberd", sent)
    got = bodies(lab, "bob@ejabberd", LB)
    assert sent in got and refused not in got


@pytest.mark.usefixtures("have_cli")
def test_a_member_woken_between_two_verdicts_rejoins(lab: LabRun) -> None:
    nodes = tuple(lab.lab.spec["cluster"]["ejabberd"])
    wedged, others = nodes[-1], nodes[:-1]
    full = {f"ejabberd@{n}" for n in nodes}
    for n in nodes:
        assert wait_cluster(lab, n, full, timeout=120) == full, n
    marks = {n: log_mark(lab, n) for n in others}
    beam = lab.lab[wedged].run(["pgrep", "-o", "-u", "ejabberd", "beam.smp"]).stdout.strip()
    assert beam
    lab.lab[wedged].run(["kill", "-STOP", beam])
    try:
        # The first member to give up on it; the others have not yet (one probe apart).
        verdict = f"ejabberd@{wedged} has not answered"
        deadline = time.monotonic() + 60
        first = None
        while first is None and time.monotonic() < deadline:
            first = next((n for n in others if log_line(lab, n, marks[n], verdict)), None)
            if first is None:
                time.sleep(0.2)
        assert first is not None, f"no member gave up on {wedged} within 60 s"
    finally:
        lab.lab[wedged].run(["kill", "-CONT", beam])
    # Every other member heard the first one and dropped it too (or gave up itself).
    for n in others:
        if n != first:
            wait_log(lab, n, marks[n],
                     f"(found ejabberd@{wedged} silent|ejabberd@{wedged} has not answered)",
                     timeout=60)
    for n in nodes:
        assert wait_cluster(lab, n, full, timeout=nemesis.WHOLE_WITHIN_S * 2) == full, n
    for n in nodes:
        wait_states(lab, n, "UP", timeout=60)
    sent = token("after the wake-up")
    send(lab, "alice@ejabberd", LB, "bob@ejabberd", sent)
    assert sent in bodies(lab, "bob@ejabberd", LB)
