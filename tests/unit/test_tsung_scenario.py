"""bench/tsung_lab.py's scenario: loadgen's distribution, bounded, no secret in it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench import tsung_lab


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


def test_message_fun_builds_loadgen_ids_bodies_and_recipients() -> None:
    code = tsung_lab.message_fun(scenario(senders=100, recipients=20))
    assert "N = ToInt(Idx) + (ToInt(K) - 1) * 100" in code
    assert "N rem 20" in code
    assert '"abcd1234-~6..0B"' in code
    # the id first (the traffic log keeps 44 characters), an ack request after it
    assert "<message id='~s' to='loadrcpt~B@ej.lab.test' type='chat'>" in code
    assert "<body>xt-load ~s</body></message><r xmlns='urn:xmpp:sm:3'/>" in code
    assert code.endswith("end.")


def test_cli_usage_errors_exit_64_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert tsung_lab.main(["--senders", "0"]) == 64
    err = capsys.readouterr().err.strip()
    assert err.startswith("tsung_lab: ") and "\n" not in err
    assert tsung_lab.main(["--deadline", "5"]) == 64
    assert tsung_lab.main(["--no-such-option"]) == 64
