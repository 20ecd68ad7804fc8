"""bench/tsung_lab.py's scenario: loadgen's distribution, bounded, no secret in it."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench import loadgen, tsung_lab


def scenario(**kw: int) -> tsung_lab.Scenario:
    return tsung_lab.Scenario(
        host="10.213.64.13", port=5222, domain="ej.lab.test", cafile=Path("/s/ca.crt"),
        users_csv=Path("/run/xt/users.csv"), run_id="abcd1234", **kw,
    )


def test_shares_follow_loadgen_message_n_to_sender_n_mod_senders() -> None:
    assert tsung_lab.shares(3, 10) == [4, 3, 3]
    assert tsung_lab.shares(100, 10_000) == [100] * 100
    assert sum(tsung_lab.shares(7, 50)) == 50


def test_users_csv_lines() -> None:
    text = tsung_lab.users_csv(3, 10, "s3cret")
    assert text.splitlines() == ["load0;0;4;s3cret", "load1;1;3;s3cret", "load2;2;3;s3cret"]


def test_scenario_is_bounded_starts_every_sender_and_holds_no_password() -> None:
    xml = tsung_lab.build_scenario(scenario(senders=5, recipients=2, messages=20, duration=60))
    root = ET.fromstring(xml.split("\n", 2)[2])  # noqa: S314 (our own output)
    load = root.find("load")
    assert load is not None and load.get("duration") == "60"
    assert len(load.findall("user")) == 5
    assert root.get("dumptraffic") == "light"  # what tsung_report reduces
    client = root.find("clients/client")
    assert client is not None and client.get("maxusers") == "5"
    server = root.find("servers/server")
    assert server is not None and server.get("host") == "10.213.64.13"
    options = {o.get("name"): o.get("value") for o in root.iter("option")}
    assert options["global_ack_timeout"] == "30000"
    assert options["file_server"] == "/run/xt/users.csv"
    types = [j.get("type") for j in root.iter("jabber")]
    assert types == [
        "connect", "starttls", "connect", "auth_sasl", "connect", "auth_sasl_bind",
        "raw", "raw", "close",
    ]
    starttls = next(j for j in root.iter("jabber") if j.get("type") == "starttls")
    assert starttls.get("cacertfile") == "/s/ca.crt"
    linger = root.find("sessions/session/thinktime")  # the traffic log drains meanwhile
    assert linger is not None and linger.get("value") == "15"
    loop = root.find("sessions/session/for")
    assert loop is not None and loop.get("to") == "%%_count%%"
    auth = root.find(".//xmpp_authenticate")
    assert auth is not None and auth.get("passwd") == "%%_pw%%"


#: tsung's lookup as the scenario's fun calls it ({ok, Value} for a variable that is set)
TS_DYNVARS = """-module(ts_dynvars).
-export([lookup/2]).
lookup(Name, Vars) ->
    case lists:keyfind(Name, 1, Vars) of {Name, Value} -> {ok, Value}; false -> false end.
"""
#: reads the eval fun and the users file as tsung does, and prints each stanza the fun
#: makes: for each line of the file (idx and count as the binaries tsung reads), k = 1..count
RUN = """#!/usr/bin/env escript
main([Dir]) ->
    {ok, ts_dynvars} = compile:file(filename:join(Dir, "ts_dynvars"), [{outdir, Dir}]),
    true = code:add_patha(Dir),
    {ok, Code} = file:read_file(filename:join(Dir, "fun.erl")),
    {ok, Tokens, _} = erl_scan:string(binary_to_list(Code)),
    {ok, [Expr]} = erl_parse:parse_exprs(Tokens),
    {value, Fun, _} = erl_eval:expr(Expr, erl_eval:new_bindings()),
    {ok, Users} = file:read_file(filename:join(Dir, "users.csv")),
    [begin
         [_User, Idx, Count, _Pw] = binary:split(Line, <<";">>, [global]),
         [io:format("~s~n", [Fun({session, [{idx, Idx}, {k, K}]})])
          || K <- lists:seq(1, binary_to_integer(Count))]
     end || Line <- binary:split(string:trim(Users), <<"\\n">>, [global])],
    ok.
"""


def test_message_fun_evaluated_by_erlang_sends_loadgen_messages(tmp_path: Path) -> None:
    """The eval code as tsung reads it from the XML, run by Erlang for every (idx, k)
    the users file and the loop give: exactly loadgen's messages, each sender's in
    loadgen's order, each followed by an ack request.  (escript: Erlang comes with
    ejabberd, tests/apt/base.txt.)"""
    sc = scenario(senders=7, recipients=3, messages=50)
    root = ET.fromstring(tsung_lab.build_scenario(sc).split("\n", 2)[2])  # noqa: S314
    code = root.find(".//setdynvars[@sourcetype='eval']")
    assert code is not None
    (tmp_path / "fun.erl").write_text(code.get("code", ""))
    (tmp_path / "users.csv").write_text(tsung_lab.users_csv(7, 50, "pw"))
    (tmp_path / "ts_dynvars.erl").write_text(TS_DYNVARS)
    (tmp_path / "run.escript").write_text(RUN)
    res = subprocess.run(["escript", str(tmp_path / "run.escript"), str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    sent = []
    for line in res.stdout.splitlines():
        stanzas = list(ET.fromstring(f"<s>{line}</s>"))  # noqa: S314 (our own output)
        assert [e.tag for e in stanzas] == ["message", "{urn:xmpp:sm:3}r"], line
        msg = stanzas[0]
        assert msg.get("type") == "chat"
        sent.append((msg.get("id"), msg.get("to"), msg.findtext("body")))
    recipients = [a.jid for a in loadgen.accounts("loadrcpt", 3, "ej.lab.test", "pw")]
    expected = [(f"abcd1234-{n:06d}", recipients[n % 3], f"{loadgen.BODY_PREFIX} abcd1234-{n:06d}")
                for sender in range(7) for n in range(sender, 50, 7)]  # fmt: skip
    assert sent == expected


def test_cli_usage_errors_exit_64_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert tsung_lab.main(["--senders", "0"]) == 64
    err = capsys.readouterr().err.strip()
    assert err.startswith("tsung_lab: ") and "\n" not in err
    assert tsung_lab.main(["--deadline", "5"]) == 64
    assert tsung_lab.main(["--no-such-option"]) == 64
