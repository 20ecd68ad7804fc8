"""bench/tsung_report.py: a tsung run's light traffic log reduced to loadgen's figures.

Fixtures (tests/unit/fixtures/tsung/) are small hand-written logs in tsung 1.7's
formats: ``Send:EPOCH:PID:first 44 characters`` per write, ``NewClient:EPOCH:N``,
``stats: NAME ...`` windows in tsung.log.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import tsung_report

FIXTURES = Path(__file__).parent / "fixtures" / "tsung"


def test_a_run_is_reduced_to_counts_percentiles_window_and_errors() -> None:
    rep = tsung_report.reduce_dir(FIXTURES / "ok")
    assert (rep.clients_started, rep.clients_enabled, rep.clients_ended) == (2, 2, 2)
    # 4 messages sent; the last was never acknowledged (its stream timed out)
    assert (rep.sent, rep.acked, rep.unacked) == (4, 3, 1)
    assert rep.acked_ids == ["run1-000000", "run1-000001", "run1-000002"]
    # latencies 10, 20, 30 ms: nearest-rank percentiles, as loadgen computes them
    assert rep.latencies_ms == [10.0, 20.0, 30.0]
    assert (rep.p50_ms, rep.p90_ms, rep.p99_ms, rep.max_ms) == (20.0, 30.0, 30.0, 30.0)
    # window: first message sent (1000.100) -> last ack (1000.150): 3 acked in 50 ms
    assert rep.send_seconds == 0.05
    assert rep.msgs_per_s == 60.0
    assert rep.login_seconds == 0.1
    # tsung.log: transactions summed over the windows, error counters' cumulative totals
    assert rep.transactions == 3
    assert rep.errors == {"error_timeout": 1, "error_connect_econnrefused": 2}


def test_an_ack_covers_every_message_up_to_h() -> None:
    """Several messages in flight: <a h='N'/> acknowledges the first N of the client's
    messages; a repeated h acknowledges nothing more; an h beyond what was sent
    acknowledges only what was sent."""
    dump = [
        "Send:10.0:<0.1.0>:<message id='r-000000' to='x@y' type='chat'>",
        "Send:10.1:<0.1.0>:<message id='r-000002' to='x@y' type='chat'>",
        "Recv:10.5:<0.1.0>:<a xmlns='urn:xmpp:sm:3' h='2'/>",
        "Recv:10.6:<0.1.0>:<a xmlns='urn:xmpp:sm:3' h='2'/>",
        "Send:11.0:<0.1.0>:<message id='r-000004' to='x@y' type='chat'>",
        "Recv:11.2:<0.1.0>:<r xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3' h='9'/>",
    ]
    rep = tsung_report.reduce_run(dump)
    assert rep.acked_ids == ["r-000000", "r-000002", "r-000004"]
    assert rep.latencies_ms == [500.0, 400.0, 200.0]
    assert rep.unacked == 0
    assert rep.msgs_per_s == round(3 / 1.2, 1)


def test_acks_are_counted_per_client() -> None:
    dump = [
        "Send:1.0:<0.1.0>:<message id='a-000000' to='x@y'>",
        "Send:1.0:<0.2.0>:<message id='a-000001' to='x@y'>",
        "Recv:1.1:<0.2.0>:<a h='1' xmlns='urn:xmpp:sm:3'/>",
    ]
    rep = tsung_report.reduce_run(dump)
    assert rep.acked_ids == ["a-000001"]
    assert (rep.sent, rep.acked, rep.unacked) == (2, 1, 1)


def test_an_aborted_run_is_a_clear_error() -> None:
    with pytest.raises(tsung_report.ReportError) as err:
        tsung_report.reduce_dir(FIXTURES / "aborted")
    assert err.value.code == tsung_report.EX_DATAERR == 65
    text = str(err.value)
    assert "\n" not in text
    assert "sent no message" in text and "1 clients started" in text
    assert "error_timeout" in text


def test_messages_sent_and_none_acked_is_a_clear_error() -> None:
    dump = ["Send:1.0:<0.1.0>:<message id='a-000000' to='x@y'>"]
    with pytest.raises(tsung_report.ReportError, match="none was acknowledged") as err:
        tsung_report.reduce_run(dump)
    assert err.value.code == 65


def test_a_directory_without_a_dump_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(tsung_report.ReportError, match=r"no tsung\.dump") as err:
        tsung_report.reduce_dir(tmp_path)
    assert err.value.code == 65


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rep.json"
    assert tsung_report.main([str(FIXTURES / "ok"), "--json", str(out)]) == 0
    assert "acked 3" in capsys.readouterr().out
    assert '"p99_ms": 30.0' in out.read_text()
    assert tsung_report.main([str(FIXTURES / "aborted")]) == 65
    err = capsys.readouterr().err.strip()
    assert err.startswith("tsung_report: ") and "\n" not in err
    assert tsung_report.main(["--no-such-option"]) == 64


def test_a_traffic_log_that_misses_part_of_the_run_is_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tsung's controller can stop before writing its whole traffic log: its own
    transaction count (tsung.log) then exceeds the acks in tsung.dump."""
    run = tmp_path / "20261128-1610"
    run.mkdir()
    (run / "tsung.dump").write_text((FIXTURES / "ok" / "tsung.dump").read_text())
    (run / "tsung.log").write_text("stats: tr_msg 5 1 1 1 1 1 5\n")
    rep = tsung_report.reduce_dir(tmp_path)
    assert rep.incomplete == "tsung.dump incomplete: 3 acks of 5 transactions, 2 of 2 client ends"
    assert rep.acked == 3  # the figures of the logged part are still given
    assert tsung_report.main([str(tmp_path)]) == 65
    captured = capsys.readouterr()
    assert "INCOMPLETE" in captured.out
    assert captured.err.strip().startswith("tsung_report: tsung.dump incomplete")
    complete = tsung_report.reduce_dir(FIXTURES / "ok")
    assert complete.incomplete is None
