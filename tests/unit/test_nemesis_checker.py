"""bench/nemesis.py's checker on hand-made histories (no machines): what is lost,
unknown and duplicated, the longest stretch without an ack, the time until the
cluster is whole again, the majority side, the fault words and the verdict."""

from __future__ import annotations

from typing import Any

import pytest

from bench import nemesis

NODES = ("ejabberd1", "ejabberd2")


def op(
    mid: str,
    sent: float | None = 1.0,
    acked: float | None = 1.1,
    node: str | None = "ejabberd1",
    refused: bool = False,
) -> dict[str, Any]:
    return {
        "mid": mid,
        "sender": "sender0",
        "node": node,
        "recipient": "r@x",
        "sent_t": sent,
        "acked_t": acked,
        "refused": refused,
    }


def hist(ops: list[dict[str, Any]], *reads: dict[str, int], **kw: Any) -> dict[str, Any]:
    return {
        "ops": ops,
        "reads": [{"t": 100.0 + 30 * i, "counts": r} for i, r in enumerate(reads)],
        "window": kw.get("window", [0.0, 10.0]),
        "majority": kw.get("majority"),
    }


def test_every_acknowledged_message_in_every_read_is_ok() -> None:
    c = nemesis.check(hist([op("a"), op("b")], {"a": 1, "b": 1}, {"a": 1, "b": 1}))
    assert c["ok"]
    assert (c["acked"], c["lost"], c["unknown"], c["duplicated"]) == (2, 0, 0, 0)
    assert c["lost_per_read"] == [0, 0]


def test_an_acked_message_missing_from_one_read_is_lost_in_that_read() -> None:
    # The two nodes' views alternate: b is in the first read, not in the second.
    c = nemesis.check(hist([op("a"), op("b")], {"a": 1, "b": 1}, {"a": 1}, {"a": 1, "b": 1}))
    assert not c["ok"]
    assert c["lost_per_read"] == [0, 1, 0]
    assert c["lost"] == 1
    assert (c["lost_in_any_read"], c["lost_in_every_read"]) == (1, 0)
    assert c["reads"][1]["lost_ids"] == ["b"]


def test_lost_in_every_read() -> None:
    c = nemesis.check(hist([op("a"), op("b")], {"a": 1}, {"a": 1}))
    assert (c["lost_in_any_read"], c["lost_in_every_read"], c["lost"]) == (1, 1, 1)


def test_a_send_without_ack_is_unknown_either_way() -> None:
    ops = [op("a"), op("u1", acked=None), op("u2", acked=None), op("never", sent=None, acked=None)]
    c = nemesis.check(hist(ops, {"a": 1, "u1": 1}))
    assert c["ok"]
    assert (c["sent"], c["acked"], c["unknown"], c["unknown_found"]) == (3, 1, 2, 1)
    assert c["lost"] == 0


def test_duplicates_are_counted_not_lost() -> None:
    c = nemesis.check(hist([op("a"), op("b")], {"a": 3, "b": 1}, {"a": 2, "b": 2}))
    assert c["ok"]
    assert c["duplicated"] == 2
    assert [r["duplicates"] for r in c["reads"]] == [2, 2]


def test_refused_after_the_ack_is_not_required() -> None:
    c = nemesis.check(hist([op("a"), op("r", refused=True)], {"a": 1}))
    assert c["ok"]
    assert c["refused"] == 1


def test_a_failed_read_is_not_ok_and_no_read_is_not_ok() -> None:
    h = hist([op("a")], {"a": 1})
    h["reads"].append({"t": 200.0, "error": "MAM audit incomplete"})
    c = nemesis.check(h)
    assert not c["ok"]
    assert c["lost"] == 0
    assert c["lost_per_read"] == [0, None]
    assert not nemesis.check(hist([op("a")]))["ok"]


def test_longest_gap_counts_the_edges() -> None:
    g = nemesis.longest_gap([2.0, 3.0, 9.0], 0.0, 10.0)
    assert (g["seconds"], g["from_t"], g["to_t"]) == (6.0, 3.0, 9.0)
    assert nemesis.longest_gap([], 5.0, 20.0)["seconds"] == 15.0
    # acks outside the window are ignored; a stall until the end counts until the end
    assert nemesis.longest_gap([-1.0, 1.0, 30.0], 0.0, 10.0)["seconds"] == 9.0


def test_no_ack_stretch_overall_without_majority() -> None:
    ops = [op("a", acked=1.0), op("b", acked=2.0, node="ejabberd2"), op("c", acked=9.0)]
    c = nemesis.check(hist(ops, {"a": 1, "b": 1, "c": 1}, window=[0.0, 10.0]))
    assert c["no_ack"]["scope"] == "overall"
    assert c["no_ack"]["seconds"] == 7.0


def test_no_ack_stretch_of_the_majority_side_only() -> None:
    ops = [
        op("a", acked=1.0, node="n1"),
        op("b", acked=5.0, node="n3"),  # the minority's ack does not count
        op("c", acked=8.0, node="n2"),
    ]
    c = nemesis.check(
        hist(ops, {"a": 1, "b": 1, "c": 1}, window=[0.0, 10.0], majority=["n1", "n2"])
    )
    assert c["no_ack"]["scope"] == "majority"
    assert c["no_ack"]["seconds"] == 7.0


def test_the_window_end_grows_to_the_last_ack() -> None:
    # Acks stopped at 2 s and came back only at 40 s, after the paced load's end (10 s).
    c = nemesis.check(hist([op("a", acked=2.0), op("b", acked=40.0)], {"a": 1, "b": 1}))
    assert c["no_ack"]["seconds"] == 38.0


def test_majority_side() -> None:
    assert nemesis.majority_side(NODES, ["ejabberd2"]) is None
    assert nemesis.majority_side(("a", "b", "c"), ["c"]) == ["a", "b"]
    assert nemesis.majority_side(("a", "b", "c"), ["b", "c"]) == ["b", "c"]
    assert nemesis.majority_side(("a", "b", "c", "d"), ["d", "c"]) is None


def snap(t: float, **nodes: list[str]) -> dict[str, Any]:
    return {"t": t, "nodes": nodes}


BOTH = ["ejabberd1", "ejabberd2"]


def test_time_to_whole_from_the_heal() -> None:
    snaps = [
        snap(5, ejabberd1=BOTH, ejabberd2=BOTH),  # before the fault
        snap(20, ejabberd1=["ejabberd1"], ejabberd2=["ejabberd2"]),
        snap(42, ejabberd1=["ejabberd1"], ejabberd2=[]),  # not answering
        snap(57, ejabberd1=BOTH, ejabberd2=BOTH),
        snap(60, ejabberd1=BOTH, ejabberd2=BOTH),
    ]
    assert nemesis.time_to_whole(snaps, 30.0, NODES) == 27.0


def test_time_to_whole_never_when_still_split_at_the_end() -> None:
    snaps = [
        snap(35, ejabberd1=BOTH, ejabberd2=BOTH),  # the split not seen yet
        snap(40, ejabberd1=["ejabberd1"], ejabberd2=["ejabberd2"]),
    ]
    assert nemesis.time_to_whole(snaps, 30.0, NODES) is None
    assert nemesis.time_to_whole([], 30.0, NODES) is None


def test_time_to_whole_is_the_last_time_it_became_whole() -> None:
    snaps = [
        snap(31, ejabberd1=BOTH, ejabberd2=BOTH),
        snap(40, ejabberd1=["ejabberd1"], ejabberd2=BOTH),
        snap(50, ejabberd1=BOTH, ejabberd2=BOTH),
    ]
    assert nemesis.time_to_whole(snaps, 30.0, NODES) == 20.0
    assert nemesis.time_to_whole(snaps[:1], 30.0, NODES) == 1.0


@pytest.mark.parametrize(
    ("words", "want"),
    [
        (["cut-members", "10"], ("cut-members", 10.0)),
        (["isolate", "90"], ("isolate", 90.0)),
        (["flap"], ("flap", 120.0)),
        (["flap", "60"], ("flap", 60.0)),
        (["kill-recipients"], ("kill-recipients", 0.0)),
        (["restart-lb"], ("restart-lb", 0.0)),
    ],
)
def test_fault_words(words: list[str], want: tuple[str, float]) -> None:
    assert nemesis.parse_fault(words) == want


@pytest.mark.parametrize(
    "words",
    [
        [],
        ["nuke"],
        ["cut-members"],
        ["pause", "x"],
        ["pause", "-1"],
        ["kill-senders", "3"],
        ["isolate", "1", "2"],
    ],
)
def test_bad_fault_words(words: list[str]) -> None:
    with pytest.raises(ValueError, match="--fault"):
        nemesis.parse_fault(words)


def test_options_are_checked() -> None:
    assert nemesis.check_options(nemesis.Options(node=NODES[-1]), NODES) == []
    assert nemesis.check_options(nemesis.Options(rate=50), NODES)
    assert nemesis.check_options(nemesis.Options(online=9, recipients=3), NODES)
    assert nemesis.check_options(nemesis.Options(node="lb"), NODES)
    flap = nemesis.Options(fault="flap", seconds=120, flap_period=200)
    assert nemesis.check_options(flap, NODES)


def test_nft_rules_own_table_replaced_atomically() -> None:
    cut = nemesis.nft_rules("cut-members", ["10.0.0.11"])
    assert cut.startswith("table inet nemesis\ndelete table inet nemesis\n")
    assert "ip saddr { 10.0.0.11 } drop" in cut and "ip daddr { 10.0.0.11 } drop" in cut
    iso = nemesis.nft_rules("isolate", ["10.0.0.11"])
    assert 'iifname != "lo" drop' in iso and 'oifname != "lo" drop' in iso


def test_placement_and_busiest_node() -> None:
    rows = [
        {"jid": "nem0@d/load-r", "node": "ejabberd@ejabberd2"},
        {"jid": "nem1@d", "resource": "load-r", "node": "ejabberd@ejabberd1"},
        {"jid": "nemrcpt0@d/nemesis-r", "node": "ejabberd@ejabberd2"},
        {"jid": "someone@d/x", "node": "ejabberd@ejabberd1"},
    ]
    names = {
        "nem0@d/load-r": "sender0",
        "nem1@d/load-r": "sender1",
        "nem2@d/load-r": "sender2",
        "nemrcpt0@d/nemesis-r": "online0",
    }
    where = nemesis.placement(rows, names)
    assert where == {
        "sender0": "ejabberd2",
        "sender1": "ejabberd1",
        "sender2": None,
        "online0": "ejabberd2",
    }
    assert nemesis.busiest(where, "online", NODES) == "ejabberd2"
    assert nemesis.busiest(where, "sender", NODES) == "ejabberd2"  # a tie: the last node


def report(**kw: Any) -> dict[str, Any]:
    c = nemesis.check(hist([op("a")], {"a": 1}))
    return {"check": c, "cluster_whole": True, "cluster_at_end": {}, **kw}


def test_verdict() -> None:
    assert nemesis.verdict(report()) == []
    assert nemesis.verdict(report(cluster_whole=False))
    lost = report(check=nemesis.check(hist([op("a")], {})))
    assert any("lost" in b for b in nemesis.verdict(lost))
    assert nemesis.verdict({"check": None})


def test_verdict_bounds_the_time_to_heal() -> None:
    assert nemesis.verdict(report(time_to_whole_s=60.0)) == []
    assert any("61 s" in b for b in nemesis.verdict(report(time_to_whole_s=61.0)))
    assert any("never" in b for b in nemesis.verdict(report(time_to_whole_s=None)))


def test_verdict_bounds_the_majoritys_wait_for_an_ack() -> None:
    c = nemesis.check(hist([op("a", acked=1.0), op("b", acked=12.5)], {"a": 1, "b": 1}))
    c["no_ack"]["scope"] = "majority"
    assert c["no_ack"]["seconds"] > nemesis.MAJORITY_NO_ACK_S
    slow = report(check=c, options={"fault": "cut-members"})
    assert any("without an ack" in b for b in nemesis.verdict(slow))
    # haproxy's restart cuts every client: no majority to keep serving
    assert nemesis.verdict(report(check=c, options={"fault": "restart-lb"})) == []


def test_lost_by_recipient_and_by_the_senders_node() -> None:
    ops = [op("a"), op("b", node="ejabberd2"), op("c", node="ejabberd2")]
    ops[2]["recipient"] = "s@x"
    r = nemesis.check(hist(ops, {"a": 1}))["reads"][0]
    assert r["lost_by_recipient"] == {"r@x": 1, "s@x": 1}
    assert r["lost_by_sender_node"] == {"ejabberd2": 2}


def test_lost_everywhere_is_missing_from_every_node_copy() -> None:
    h = hist([op("a"), op("b"), op("c"), op("u", acked=None), op("r", refused=True)])
    per_node = [{"t": 1.0, "counts": {"a": 1}}, {"t": 2.0, "counts": {"b": 1, "a": 0}}]
    assert nemesis.lost_everywhere(h, per_node) == 1  # c; u was never acked, r refused
    assert nemesis.lost_everywhere(h, []) == 3
    # a copy that could not be read may hold them: no answer
    assert nemesis.lost_everywhere(h, [*per_node, {"t": 3.0, "error": "login failed"}]) is None


def test_soak_rows_judge_each_fault_before_the_next() -> None:
    whole = {"ejabberd1": list(NODES), "ejabberd2": list(NODES)}
    split = {"ejabberd1": ["ejabberd1"], "ejabberd2": list(NODES)}
    snaps = [{"t": 12.0, "nodes": split}, {"t": 20.0, "nodes": whole},
             {"t": 130.0, "nodes": split}, {"t": 200.0, "nodes": split}]
    faults = [{"fault": "cut-members", "node": "ejabberd1", "start_t": 0.0, "healed_t": 10.0},
              {"fault": "pause", "node": "ejabberd2", "start_t": 120.0, "healed_t": 150.0}]
    rows = nemesis.soak_rows(faults, snaps, NODES)
    assert [r["whole_s"] for r in rows] == [10.0, None]
    bad = nemesis.verdict(report(soak_faults=rows))
    assert len(bad) == 1 and "pause on ejabberd2" in bad[0]


def test_a_soak_and_its_peer_take_seconds() -> None:
    assert nemesis.parse_fault(["soak"]) == ("soak", 1800.0)
    assert nemesis.parse_fault(["soak", "600"]) == ("soak", 600.0)
    assert nemesis.parse_fault(["none", "600"]) == ("none", 600.0)
    with pytest.raises(ValueError, match="needs SECONDS"):
        nemesis.parse_fault(["none"])


def test_a_soak_needs_room_for_each_fault() -> None:
    ok = nemesis.Options(fault="soak", seconds=1800.0, every=120.0, node=NODES[-1])
    assert nemesis.check_options(ok, NODES) == []
    tight = nemesis.Options(fault="soak", seconds=1800.0, every=30.0, node=NODES[-1])
    assert any("--every" in b for b in nemesis.check_options(tight, NODES))


def test_the_load_alone_and_a_soak_need_no_node_of_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rel = iter(float(t) for t in range(100)).__next__
    r = nemesis.inject({}, nemesis.Options(fault="none", seconds=0.0), "none", "lb", NODES, rel)
    assert (r["fault"], r["start_t"], r["healed_t"]) == ("none", 0.0, 1.0)
    done: list[tuple[str, str]] = []

    def fake(machines: Any, o: nemesis.Options, node: str, *rest: Any) -> dict[str, Any]:
        done.append((o.fault, node))
        return {"fault": o.fault, "node": node, "start_t": 0.0, "healed_t": 0.0}

    monkeypatch.setattr(nemesis, "inject", fake)
    monkeypatch.setattr("bench.nemesis.time.sleep", lambda s: None)
    o = nemesis.Options(fault="soak", seconds=300.0, every=100.0)
    nemesis.soak_faults({}, o, "lb", NODES, rel)
    # every 100 s the next fault on the next node; a fault that would outlast the soak
    # (pause 30 at 300 s) is not started
    assert done == [("cut-members", NODES[0]), ("kill-senders", NODES[1]),
                    ("isolate", NODES[0])]
