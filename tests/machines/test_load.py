"""The lab under load and failover under load, at a reduced size (issue 5, part 6).

10 senders, 500 messages through lb into the ejabberd cluster, acknowledged with
XEP-0198 and then looked up in the recipients' archives (MAM): nothing acknowledged
may be missing.  Then the same load while ejabberd on ejabberd2 is SIGKILLed midway
and kept down; afterwards Salt is re-applied there and the node must rejoin.

This is a test, not a benchmark: it asserts counts, never times (the full-size runs
and their figures are ``bench/lab_load.py``, see docs/benchmarks.md).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

import pytest

from tests.machines.conftest import CHECKOUT, LabRun

pytestmark = [pytest.mark.machines, pytest.mark.root]

# One release is enough for the load test (the lab itself is proven on both by
# test_lab.py); each module gets its own lab from the module-scoped fixture.
RELEASE = "trixie"


def _bench(name: str) -> ModuleType:
    """bench/ is a directory of scripts, not a package: load one by path."""
    path = CHECKOUT / "bench" / f"{name}.py"
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


lab_load = _bench("lab_load")


def spec() -> Any:
    return lab_load.LoadSpec(senders=10, recipients=4, messages=500, deadline=120.0, inflight=5)


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


@pytest.mark.parametrize("lab", [RELEASE], indirect=True)
def test_load_through_lb_loses_nothing(lab: LabRun) -> None:
    report = lab_load.run_lab_load(lab.lab.machines, lab.state_dir, spec())
    res = report["result"]
    assert res["acked"] > 0, _explain(report)
    assert res["lost"] == 0, _explain(report)
    assert res["found"] == res["acked"], _explain(report)
    # Nothing disturbed this run: every message was sent and acknowledged.
    assert res["acked"] == 500, _explain(report)


@pytest.mark.parametrize("lab", [RELEASE], indirect=True)
def test_failover_under_load_loses_nothing_and_node_rejoins(lab: LabRun) -> None:
    report = lab_load.run_lab_load(lab.lab.machines, lab.state_dir, spec(), failover=True)
    res = report["result"]
    kill = report["kill"]
    # The node really died midway and stayed down until Salt brought it back.
    assert kill, "the kill never ran (not enough messages acknowledged?)"
    assert kill["state_after"] != "active" and not kill["beam_left"], kill
    assert any(e["event"] == "killed" for e in res["events"])
    # Clients on the killed node noticed (leastconn spreads 10 sessions over both).
    assert res["disconnects"] > 0, _explain(report)
    assert res["acked"] > 0, _explain(report)
    assert res["lost"] == 0, _explain(report)
    rejoin = report["rejoin"]
    assert rejoin["apply_ok"], rejoin["apply_failures"]
    assert rejoin["rejoined"], rejoin["list_cluster"]
    # With both nodes up again, every acknowledged message is still archived.
    assert report["after_rejoin"]["lost"] == 0, report["after_rejoin"]


def test_loadgen_refuses_foreign_targets() -> None:
    """The generator only ever aims at loopback or the lab's own subnet."""
    loadgen = _bench("loadgen")
    with pytest.raises(loadgen.LoadError):
        loadgen.check_target("192.0.2.1", ["10.213.56.0/24"])
    with pytest.raises(loadgen.LoadError):
        loadgen.check_target("10.213.56.13", ["0.0.0.0/0"])
    assert loadgen.check_target("10.213.56.13", ["10.213.56.0/24"]) == ["10.213.56.13"]
    assert loadgen.check_target("127.0.0.1", []) == ["127.0.0.1"]
