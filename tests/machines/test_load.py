"""A cluster grown by the manifest alone, under load and failover under load.

The lab here is the committed manifest (three ejabberd nodes) plus one machine,
``ejabberd4`` (a copy of ``ejabberd3`` at the next address) -- nothing else changed: the
harness boots it, Salt joins it, haproxy balances across all four.  prosody is left out
(not needed here).  Every node must list all four in ``list_cluster``.  Then 10 senders,
500 messages through lb, acknowledged with XEP-0198 and looked up in the recipients'
archives (MAM): nothing acknowledged may be missing.  Then the same load while ejabberd
on ejabberd4 is SIGKILLed midway and kept down; afterwards Salt is re-applied there and
the node must rejoin (every node lists all four again).

This is a test, not a benchmark: it asserts counts, never times (the full-size runs
and their figures are ``bench/lab_load.py``, see docs/benchmarks.md).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from bench import lab_load, loadgen
from lab import harness, manifest
from tests.machines.conftest import LabRun

pytestmark = [pytest.mark.machines, pytest.mark.root]

# One release is enough for the load test (the lab itself is proven on both by
# test_lab.py).
RELEASE = "trixie"
NEW, LIKE, ADDRESS = "ejabberd4", "ejabberd3", "192.168.56.15"




@pytest.fixture(scope="module")
def lab(rootfs_builds: dict[str, Future[Path]],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    """The committed manifest + ejabberd4, booted (cluster + balancer) and applied."""
    if RELEASE in rootfs_builds:
        rootfs_builds[RELEASE].result()
    work = tmp_path_factory.mktemp("grown-cluster")
    grown = work / "manifest.json"
    raw = json.loads(manifest.MANIFEST.read_text())
    grown.write_text(json.dumps(manifest.with_machine(raw, NEW, LIKE, ADDRESS), indent=2))
    spec = manifest.load(path=grown)
    names = [*spec["cluster"]["ejabberd"], manifest.entry(spec, "ejabberd") or "lb"]
    state_dir = harness.make_state_dir(work / "state", manifest_path=grown)
    accounts = tomllib.loads((state_dir / "client.toml").read_text())["accounts"]
    with harness.lab(RELEASE, state_dir, names, manifest_path=grown) as the_lab:
        first = the_lab.apply_all()
        yield LabRun(the_lab, state_dir, first, accounts)


def keep(report: dict[str, Any]) -> None:
    """The run's report next to the harness's apply log (figures for docs/benchmarks.md)."""
    out = harness.CACHE / f"grown-cluster-{report['mode']}.json"
    out.write_text(json.dumps({k: v for k, v in report.items() if k != "result"}
                              | {"result": {k: v for k, v in report["result"].items()
                                            if k not in ("latencies", "events")}},
                              indent=1, default=str) + "\n")


def nodes(lab: LabRun) -> tuple[str, ...]:
    return tuple(lab.lab.spec["cluster"]["ejabberd"])


def spec(lab: LabRun) -> Any:
    # Rejoin: one run took 117 s until all three listed all three (Salt's apply 3 s).
    return lab_load.LoadSpec(senders=10, recipients=4, messages=500, deadline=120.0, inflight=5,
                             kill_node=NEW, nodes=nodes(lab), rejoin_timeout=300.0)


def _ejabberd_logs(lab: LabRun, name: str) -> str:
    """What a node that failed its apply said: its unit's journal and ejabberd's logs
    (a grown node once stayed down after join_cluster's restart, and no log was kept)."""
    out = lab.lab[name].run(
        "journalctl -u ejabberd --no-pager -n 60; "
        "tail -n 60 /var/log/ejabberd/ejabberd.log /var/log/ejabberd/error.log "
        "/var/log/ejabberd/crash.log",
        check=False, timeout=60)
    text = out.stdout + out.stderr
    (harness.CACHE / f"grown-cluster-{name}-logs.txt").write_text(text)
    return text[-6000:]


def test_cluster_grown_by_the_manifest_alone(lab: LabRun) -> None:
    bad = {n: r.describe_failures() for n, r in lab.first.items() if not r.ok}
    assert not bad, (bad, {n: _ejabberd_logs(lab, n) for n in bad if n in nodes(lab)})
    assert nodes(lab) == ("ejabberd1", "ejabberd2", "ejabberd3", NEW)
    want = {f"ejabberd@{n}" for n in nodes(lab)}
    seen = lab_load.wait_cluster(lab.lab.machines, want, timeout=60, nodes=nodes(lab))
    assert all(set(v) == want for v in seen.values()), seen
    balancer = manifest.entry(lab.lab.spec, "ejabberd") or "lb"
    cfg = lab.lab[balancer].run(["cat", "/etc/haproxy/haproxy.cfg"]).stdout
    for n in nodes(lab):
        assert f"server {n} {lab.lab.addresses[n]}:5222 " in cfg


def _explain(report: dict[str, Any]) -> str:
    res = report["result"]
    keys = ("acked", "found", "lost", "lost_ids", "unacked", "failed_visibly", "duplicates",
            "paging_repeats", "found_unacked", "bounced", "bounced_unarchived", "errors")
    out = {k: res[k] for k in keys}
    # Enough to tell a server that lost an acknowledged message from a client that
    # counted an ack wrongly: each lost message's history and the run's timeline.
    out["lost_detail"] = res.get("lost_detail")
    out["events"] = [e for e in res["events"] if e["event"] not in ("disconnected",)][:40]
    out["kill"] = report.get("kill")
    out["server_errors"] = report.get("server_errors")
    out["after_rejoin"] = report.get("after_rejoin")
    return str(out)


def test_load_through_lb_loses_nothing(lab: LabRun) -> None:
    report = lab_load.run_lab_load(lab.lab.machines, lab.state_dir, spec(lab))
    keep(report)
    res = report["result"]
    assert res["acked"] > 0, _explain(report)
    assert res["lost"] == 0, _explain(report)
    assert res["found"] == res["acked"], _explain(report)
    # Nothing disturbed this run: every message was sent and acknowledged.
    assert res["acked"] == 500, _explain(report)
    # Where the CPU went: every node's own cgroup was read (a count, not a time).
    assert set(nodes(lab)) <= set(report["cpu"]["parts"]), report["cpu"]
    assert all(report["cpu"]["parts"][n]["cpu_s"] > 0 for n in nodes(lab)), report["cpu"]


def test_failover_under_load_loses_nothing_and_node_rejoins(lab: LabRun) -> None:
    report = lab_load.run_lab_load(lab.lab.machines, lab.state_dir, spec(lab), failover=True)
    keep(report)
    res = report["result"]
    kill = report["kill"]
    # The node really died midway and stayed down until Salt brought it back.
    assert kill, "the kill never ran (not enough messages acknowledged?)"
    assert kill["state_after"] != "active" and not kill["beam_left"], kill
    assert any(e["event"] == "killed" for e in res["events"])
    # Clients on the killed node noticed (leastconn spreads the sessions over all four).
    assert res["disconnects"] > 0, _explain(report)
    assert res["acked"] > 0, _explain(report)
    assert res["lost"] == 0, _explain(report)
    rejoin = report["rejoin"]
    assert rejoin["apply_ok"], rejoin["apply_failures"]
    assert rejoin["rejoined"], rejoin["list_cluster"]
    # With every node up again, every acknowledged message is still archived.
    assert report["after_rejoin"]["lost"] == 0, report["after_rejoin"]


def test_loadgen_refuses_foreign_targets() -> None:
    """The generator only ever aims at loopback or the lab's own subnet."""
    with pytest.raises(loadgen.LoadError):
        loadgen.check_target("192.0.2.1", ["10.213.56.0/24"])
    with pytest.raises(loadgen.LoadError):
        loadgen.check_target("10.213.56.13", ["0.0.0.0/0"])
    assert loadgen.check_target("10.213.56.13", ["10.213.56.0/24"]) == ["10.213.56.13"]
    assert loadgen.check_target("127.0.0.1", []) == ["127.0.0.1"]
