"""bench/loadgen.py's pacing (``rate``): message n is due n / rate seconds after the
first sender asks; unpaced runs send whenever the in-flight window allows."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from bench import loadgen


def config(**kw: Any) -> loadgen.LoadConfig:
    return loadgen.LoadConfig(
        host="127.0.0.1",
        port=5222,
        cafile=Path("/dev/null"),
        senders=[loadgen.Account(f"s{i}@x.test", "pw") for i in range(3)],
        recipients=[loadgen.Account("r@x.test", "pw")],
        messages=12,
        **kw,
    )


class FakeSender:
    def __init__(self) -> None:
        self.todo: list[loadgen.Message] = []


def assigned(gen: loadgen.LoadGen) -> list[FakeSender]:
    senders = [FakeSender() for _ in gen.cfg.senders]
    gen._assign(senders)  # type: ignore[arg-type]
    return senders


def test_paced_messages_are_due_in_id_order_at_the_rate() -> None:
    gen = loadgen.LoadGen(config(rate=4.0))
    assigned(gen)
    dues = [m.due for m in gen.messages.values()]
    assert dues == [n / 4.0 for n in range(12)]


def test_each_sender_sends_its_share_in_due_order() -> None:
    gen = loadgen.LoadGen(config(rate=4.0))
    senders = assigned(gen)
    for s in senders:
        nxt = [m.due for m in reversed(s.todo)]  # pop() from the end
        assert nxt == sorted(nxt) and len(nxt) == 4


def test_is_due_counts_from_the_first_ask() -> None:
    gen = loadgen.LoadGen(config(rate=2.0))
    assigned(gen)
    msgs = list(gen.messages.values())
    assert gen.is_due(msgs[0], 100.0)  # starts the pace
    assert not gen.is_due(msgs[1], 100.4)
    assert gen.is_due(msgs[1], 100.5)
    assert not gen.is_due(msgs[5], 102.0)
    assert gen.is_due(msgs[5], 102.5)
    assert gen.wait_for(msgs[5], 101.0, 0.5) == 0.5  # capped
    assert gen.wait_for(msgs[5], 102.3, 0.5) == pytest.approx(0.2)
    assert gen.wait_for(msgs[5], 103.0, 0.5) == 0.001  # overdue: at once


def test_unpaced_runs_never_wait() -> None:
    gen = loadgen.LoadGen(config())
    assigned(gen)
    last = list(gen.messages.values())[-1]
    assert last.due == 0.0
    assert gen.is_due(last, 0.0)
    assert gen.wait_for(last, 0.0, 0.5) == 0.5


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_a_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(loadgen.LoadError) as exc:
        loadgen.LoadGen(config(rate=rate))
    assert exc.value.code == loadgen.EX_USAGE


@pytest.mark.parametrize("argv", [
    ["--rate", "many"],
    ["--local-ejabberd", "--rate", "0"],
    ["--server", "127.0.0.1:5222", "--domain", "x.test", "--cafile", "ca.crt", "--rate", "-1"],
], ids=["not-a-number", "zero-local-ejabberd", "negative-server"])
def test_cli_rate_is_checked_before_anything_is_contacted(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    contacted: list[str] = []

    def reached(what: str) -> Any:
        def record(*_a: Any, **_k: Any) -> Any:
            contacted.append(what)
            raise AssertionError(f"{what} reached with a bad --rate")

        return record

    # what comes after the checks: a server started, a password read, a connection
    for name in ("local_ejabberd", "read_password", "check_target", "run_load"):
        monkeypatch.setattr(loadgen, name, reached(name))
    monkeypatch.setattr(socket.socket, "connect", reached("socket.connect"))
    assert loadgen.main(argv) == loadgen.EX_USAGE
    assert contacted == []
    assert "--rate" in capsys.readouterr().err
