"""bench/soak.py's pure parts: the kill schedule, client outages from the event
timeline, the per-kill rows, the option checks and the verdict (no lab needed)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import soak

NODES = ("ejabberd1", "ejabberd2")


def test_thirty_minutes_hold_six_kills_alternating() -> None:
    plan = soak.kill_schedule(1800, 300, NODES)
    assert [t for t, _ in plan] == [150, 450, 750, 1050, 1350, 1650]
    assert [n for _, n in plan] == ["ejabberd1", "ejabberd2"] * 3


def test_no_kill_without_half_a_period_left_to_rejoin() -> None:
    assert soak.kill_schedule(120, 60, NODES) == [(30, "ejabberd1"), (90, "ejabberd2")]
    assert soak.kill_schedule(100, 300, NODES) == []


def ev(t: float, event: str, **who: Any) -> dict[str, Any]:
    return {"t": t, "event": event, **who}


def test_an_outage_runs_from_the_first_disconnect_to_the_next_login() -> None:
    events = [
        ev(0.5, "session", sender=0),
        ev(10.0, "disconnected", sender=0),
        ev(11.0, "disconnected", sender=0),  # a retry refused: the same outage
        ev(13.5, "reconnected", sender=0),
        ev(20.0, "disconnected", sender=0),
        ev(20.2, "resumed", sender=0),
    ]
    spans = soak.outages(events, end=30.0)
    assert [(o["client"], o["down_t"], o["seconds"]) for o in spans] == [
        ("sender0", 10.0, 3.5),
        ("sender0", 20.0, 0.2),
    ]
    assert not any(o["open"] for o in spans)


def test_a_disconnect_before_the_first_login_is_no_outage() -> None:
    events = [ev(0.1, "disconnected", sender=1), ev(2.0, "session", sender=1)]
    assert soak.outages(events, end=5.0) == []


def test_visitors_and_senders_are_apart_and_open_outages_last_until_the_end() -> None:
    events = [
        ev(1.0, "login", client="visitor0"),
        ev(1.0, "session", sender=0),
        ev(40.0, "disconnected", client="visitor0"),
        ev(41.0, "disconnected", sender=0),
        ev(45.0, "reconnected", sender=0),
        ev(50.0, "kill", node="ejabberd1"),  # no client: ignored
    ]
    spans = soak.outages(events, end=100.0)
    by = {o["client"]: o for o in spans}
    assert by["sender0"]["seconds"] == 4.0 and not by["sender0"]["open"]
    assert by["visitor0"]["seconds"] == 60.0 and by["visitor0"]["open"]
    summary = soak.outage_summary(spans)
    assert summary == {
        "outages": 2,
        "clients": 2,
        "still_down": 1,
        "p50_s": 4.0,
        "worst_s": 60.0,
        "worst_client": "visitor0",
    }


def test_no_outage_at_all() -> None:
    assert soak.outage_summary([]) == {
        "outages": 0,
        "clients": 0,
        "still_down": 0,
        "p50_s": None,
        "worst_s": None,
        "worst_client": None,
    }


def kill(t: float, node: str, rejoined: bool = True) -> dict[str, Any]:
    return {
        "node": node,
        "t": t,
        "loadavg": "1.0 1.0 1.0",
        "unit_down_seconds": 3.1,
        "rejoined_t": t + 40,
        "rejoin": {"apply_seconds": 12.0, "apply_ok": True, "rejoined": rejoined},
    }


def test_each_kill_owns_the_outages_until_the_next_kill() -> None:
    spans = [
        {"client": "sender0", "down_t": 150.2, "seconds": 1.0, "open": False},
        {"client": "sender1", "down_t": 151.0, "seconds": 3.0, "open": False},
        {"client": "sender2", "down_t": 152.0, "seconds": 2.0, "open": False},
        {"client": "sender0", "down_t": 451.0, "seconds": 0.5, "open": False},
        {"client": "visitor1", "down_t": 10.0, "seconds": 9.0, "open": False},  # before any kill
    ]
    rows = soak.kill_rows([kill(150, "ejabberd1"), kill(450, "ejabberd2", False)], spans)
    assert [(r["clients"], r["back_p50_s"], r["back_max_s"]) for r in rows] == [
        (3, 2.0, 3.0),
        (1, 0.5, 0.5),
    ]
    assert [r["rejoined"] for r in rows] == [True, False]
    assert rows[0]["apply_s"] == 12.0 and rows[0]["unit_down_s"] == 3.1


def test_a_kill_that_failed_still_has_its_row() -> None:
    rows = soak.kill_rows([{"node": "ejabberd1", "t": 150, "error": "HarnessError: gone"}], [])
    assert rows[0]["rejoined"] is False and rows[0]["error"] == "HarnessError: gone"
    assert rows[0]["clients"] == 0 and rows[0]["back_max_s"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"duration": 0}, "--duration"),
        ({"rate": 0}, "--rate"),
        ({"senders": 0}, "--senders"),
        ({"visitors": -1}, "--visitors"),
        ({"kill_every": 0}, "--kill-every"),
        ({"down_for": 300}, "--down-for"),
        ({"duration": 100}, "too short"),
        ({"mode": "partition", "partition": 0}, "--partition must be positive"),
        ({"mode": "partition", "partition": 60, "partition_at": 1790}, "before --duration"),
        ({"mode": "partition", "partition": 60, "discard_node": "lb"}, "--discard-node"),
    ],
)
def test_bad_options_are_named(change: dict[str, Any], message: str) -> None:
    o = soak.Options(**{"discard_node": NODES[-1], **change})
    bad = soak.check_options(o, NODES)
    assert len(bad) == 1 and message in bad[0]


def test_defaults_are_fine() -> None:
    assert soak.check_options(soak.Options(), NODES) == []
    partition = soak.Options(mode="partition", partition=60, discard_node=NODES[-1])
    assert soak.check_options(partition, NODES) == []
    assert soak.check_options(soak.Options(), ("ejabberd1",)) == [
        "the lab needs at least two ejabberd nodes"
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--duration", "0"],
        ["--kill-every", "x"],
        ["--partition", "60", "--partition-at", "1800"],
        ["--no-such-option"],
    ],
)
def test_cli_usage_errors_exit_64_before_touching_the_lab(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert soak.main(argv) == 64
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_verdict() -> None:
    ok = {"result": {"acked": 10, "lost": 0}, "kills": soak.kill_rows([kill(1, "ejabberd1")], [])}
    assert soak.verdict(ok) == []
    lost = {"result": {"acked": 10, "lost": 2}, "kills": []}
    assert soak.verdict(lost) == ["2 acknowledged messages lost"]
    stuck = {
        "result": {"acked": 10, "lost": 0},
        "kills": soak.kill_rows([kill(1, "ejabberd2", False)], []),
    }
    assert soak.verdict(stuck) == ["ejabberd2 (killed at 1 s) did not rejoin"]
    # partition: the final audit (after the recovery) decides, and the cluster must be whole
    part = {
        "result": {"acked": 10, "lost": 0},
        "final_audit": {"lost": 3},
        "cluster_at_end": {"ejabberd1": ["ejabberd@ejabberd1"]},
        "cluster_whole": False,
    }
    assert soak.verdict(part) == [
        "3 acknowledged messages lost",
        "the cluster is not whole at the end: {'ejabberd1': ['ejabberd@ejabberd1']}",
    ]


def test_ack_latency_inside_and_outside_the_kill_windows() -> None:
    samples = [(10.0, 5.0), (150.5, 4000.0), (160.0, 6000.0), (200.0, 7.0), (460.0, 3000.0)]
    kills = [kill(150, "ejabberd1"), kill(450, "ejabberd2")]  # rejoined 40 s after each
    windows = soak.kill_windows(kills)
    assert windows == [(150.0, 190.0), (450.0, 490.0)]
    assert soak.ack_latency(samples, windows) == {
        "messages": 3,
        "p50_ms": 4000.0,
        "p99_ms": 6000.0,
        "max_ms": 6000.0,
    }
    outside = soak.ack_latency(samples, windows, inside=False)
    assert (outside["messages"], outside["max_ms"]) == (2, 7.0)
    rows = soak.kill_rows(kills, [], samples)
    assert [r["ack_until_rejoined"]["messages"] for r in rows] == [2, 1]


def test_a_kill_that_never_rejoined_lasts_until_the_next() -> None:
    kills = [{"node": "ejabberd1", "t": 150}, {"node": "ejabberd2", "t": 450, "rejoined_t": 500}]
    assert soak.kill_windows(kills) == [(150.0, 450.0), (450.0, 500.0)]
    assert soak.kill_windows(kills[:1]) == [(150.0, float("inf"))]
    assert soak.ack_latency([], [(0.0, 1.0)])["p50_ms"] is None


def test_a_split_is_a_node_that_lists_fewer_than_all() -> None:
    both = ["ejabberd@ejabberd1", "ejabberd@ejabberd2"]
    assert not soak.split({"ejabberd1": both, "ejabberd2": both})
    assert soak.split({"ejabberd1": both[:1], "ejabberd2": both[1:]})
    assert not soak.split({"ejabberd1": both, "ejabberd2": []})  # no answer is no evidence
