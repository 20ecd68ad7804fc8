"""xmpp-tool send against real prosody and ejabberd (loopback, throwaway CA).

The CLI runs as a subprocess (the installed console script), the password
always comes from XMPP_TOOL_PASSWORD, never from argv.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

XMPP_TOOL = Path(sys.executable).parent / "xmpp-tool"


def new_user(server: Any, prefix: str) -> tuple[str, str]:
    """A fresh account (the servers are shared by the whole session)."""
    user = f"{prefix}{uuid.uuid4().hex[:10]}"
    password = f"pw-{uuid.uuid4().hex}"
    return server.register(user, password), password


def xt(
    server: Any,
    jid: str,
    password: str,
    *args: str,
    stdin: bytes = b"",
    cafile: Path | None = None,
    address: str | None = None,
    home: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``xmpp-tool -C CA -s HOST:PORT -u JID ARGS`` with the password in the env
    (``env``: more variables)."""
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMPP_TOOL")}
    env["XMPP_TOOL_PASSWORD"] = password
    env.update(extra)
    if home is not None:
        env["HOME"] = str(home)
        env["XDG_CONFIG_HOME"] = str(home / ".config")
    argv = [str(XMPP_TOOL), "-C", str(cafile or server.cafile),
            "-s", address or server.server, "-u", jid, *args]  # fmt: skip
    res = subprocess.run(
        argv,
        input=stdin.decode("utf-8", "surrogateescape").encode("utf-8", "surrogateescape"),
        capture_output=True,
        timeout=120,
        check=False,
        env=env,
    )
    return subprocess.CompletedProcess(
        res.args,
        res.returncode,
        res.stdout.decode("utf-8", "replace"),
        res.stderr.decode("utf-8", "replace"),
    )


def unread_json(server: Any, jid: str, password: str, *args: str) -> list[dict[str, str]]:
    res = xt(server, jid, password, "-J", "unread", *args)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def pair(xmpp_server: Any) -> tuple[Any, str, str, str, str]:
    alice, apw = new_user(xmpp_server, "alice")
    bob, bpw = new_user(xmpp_server, "bob")
    return xmpp_server, alice, apw, bob, bpw


def test_send_then_unread_shows_it(pair: tuple[Any, str, str, str, str]) -> None:
    server, alice, apw, bob, bpw = pair
    res = xt(server, alice, apw, "send", bob, "hello from the CLI ✓")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and res.stderr == ""
    msgs = unread_json(server, bob, bpw)
    assert [(m["from"], m["body"]) for m in msgs] == [(alice, "hello from the CLI ✓")]
    assert msgs[0]["id"]
    assert msgs[0]["timestamp"].endswith("Z") and "T" in msgs[0]["timestamp"]
    text = xt(server, bob, bpw, "unread")
    assert text.returncode == 0
    assert text.stdout.rstrip("\n").endswith(f" {alice}: hello from the CLI ✓")


def test_send_to_full_jid_goes_to_bare_jid(pair: tuple[Any, str, str, str, str]) -> None:
    server, alice, apw, bob, bpw = pair
    assert xt(server, alice, apw, "send", f"{bob}/some-resource", "to bare").returncode == 0
    assert [m["body"] for m in unread_json(server, bob, bpw)] == ["to bare"]


def test_body_from_stdin_and_from_hyphen(pair: tuple[Any, str, str, str, str]) -> None:
    server, alice, apw, bob, bpw = pair
    assert xt(server, alice, apw, "send", bob, stdin=b"first, no operand\n").returncode == 0
    assert xt(server, alice, apw, "send", bob, "-", stdin=b"second, -\n").returncode == 0
    multi = "third\nwith two lines"
    assert xt(server, alice, apw, "send", "--", bob, "-", stdin=multi.encode()).returncode == 0
    bodies = [m["body"] for m in unread_json(server, bob, bpw)]
    assert bodies == ["first, no operand", "second, -", multi]


def test_direct_tls(pair: tuple[Any, str, str, str, str]) -> None:
    server, alice, apw, bob, bpw = pair
    res = xt(server, alice, apw, "-t", "send", bob, "over direct TLS", address=server.tls_server)
    assert res.returncode == 0, res.stderr
    assert [m["body"] for m in unread_json(server, bob, bpw)] == ["over direct TLS"]
    # STARTTLS against the direct TLS port, and the reverse: a clean failure
    for args, address in ((["send"], server.tls_server), (["-t", "send"], server.server)):
        res = xt(server, alice, apw, *args, bob, "never sent", address=address)
        assert res.returncode == 69, res.stderr
        one_line(res.stderr)


def test_wrong_password_is_77(pair: tuple[Any, str, str, str, str]) -> None:
    server, alice, apw, bob, _ = pair
    res = xt(server, alice, apw + "-wrong", "send", bob, "never sent")
    assert res.returncode == 77
    line = one_line(res.stderr)
    assert "authentication failed" in line
    assert apw not in res.stderr


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
def test_wrong_ca_is_77(pair: tuple[Any, str, str, str, str], direct_tls: bool) -> None:
    server, alice, apw, bob, bpw = pair
    args = ["-t"] if direct_tls else []
    address = server.tls_server if direct_tls else server.server
    res = xt(
        server,
        alice,
        apw,
        *args,
        "send",
        bob,
        "never sent",
        cafile=server.wrong_cafile,
        address=address,
    )
    assert res.returncode == 77
    assert "certificate" in one_line(res.stderr)
    assert unread_json(server, bob, bpw) == []


def test_nothing_listening_is_69(pair: tuple[Any, str, str, str, str], free_port: int) -> None:
    server, alice, apw, bob, _ = pair
    res = xt(server, alice, apw, "send", bob, "x", address=f"127.0.0.1:{free_port}")
    assert res.returncode == 69
    assert f"127.0.0.1:{free_port}" in one_line(res.stderr)


def test_unknown_recipient_is_76(pair: tuple[Any, str, str, str, str]) -> None:
    server, alice, apw, _, _ = pair
    nobody = f"nobody{uuid.uuid4().hex[:8]}@{server.domain}"
    res = xt(server, alice, apw, "send", nobody, "anyone there?")
    assert res.returncode == 76
    line = one_line(res.stderr)
    assert nobody in line
    assert any(c in line for c in ("service-unavailable", "item-not-found"))


def test_bad_body_never_reaches_the_server(pair: tuple[Any, str, str, str, str]) -> None:
    server, alice, apw, bob, bpw = pair
    assert xt(server, alice, apw, "send", bob, "-", stdin=b"\xff\xfe bad").returncode == 65
    assert xt(server, alice, apw, "send", bob, stdin=b"").returncode == 65
    assert unread_json(server, bob, bpw) == []


def test_send_keeps_the_senders_offline_messages(ejabberd_server: Any) -> None:
    # Logging in with presence would flush (and delete) alice's offline messages;
    # send never sends presence, so they stay.
    server = ejabberd_server
    alice, apw = new_user(server, "alice")
    bob, bpw = new_user(server, "bob")
    assert xt(server, bob, bpw, "send", alice, "waiting for alice").returncode == 0
    user = alice.split("@")[0]
    before = server.offline_count(user)
    assert before == 1
    assert xt(server, alice, apw, "send", bob, "alice writes").returncode == 0
    assert server.offline_count(user) == before


def server_fingerprint(server: Any) -> str:
    pem = ssl.get_server_certificate((server.host, server.tls_port))
    return "sha256:" + hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()


def test_config_file_account_with_pinned_certificate(
    pair: tuple[Any, str, str, str, str], tmp_path: Path
) -> None:
    server, alice, apw, bob, bpw = pair
    home = tmp_path / "home"
    cfgdir = home / ".config" / "xmpp-tool"
    cfgdir.mkdir(parents=True)
    cfg = cfgdir / "config.toml"
    pin = server_fingerprint(server)
    cfg.write_text(
        f'default = "me"\n[accounts.me]\njid = "{alice}"\nserver = "{server.server}"\n'
        f'fingerprint = "{pin}"\npassword = "{apw}"\n'
    )
    cfg.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMPP_TOOL")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(XMPP_TOOL), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )

    ok = run("send", bob, "via config, pinned")
    assert ok.returncode == 0, ok.stderr
    cfg.chmod(0o644)  # inline password in a world-readable file: refused
    refused = run("send", bob, "never sent")
    assert refused.returncode == 78
    assert str(cfg) in one_line(refused.stderr) and "0644" in refused.stderr
    cfg.write_text(cfg.read_text().replace(pin[-4:], "0000" if pin[-4:] != "0000" else "1111"))
    cfg.chmod(0o600)
    wrong_pin = run("send", bob, "never sent")
    assert wrong_pin.returncode == 77
    assert "fingerprint" in one_line(wrong_pin.stderr)
    assert [m["body"] for m in unread_json(server, bob, bpw)] == ["via config, pinned"]


@pytest.mark.parametrize("recipient_kind", ["known", "unknown"])
def test_without_stream_management_a_ping_confirms(
    pair: tuple[Any, str, str, str, str], recipient_kind: str
) -> None:
    """The fallback for servers without XEP-0198, against the real server with
    stream management switched off on our side (the code path, not a mock)."""
    from xmpp_tool import send as xt_send
    from xmpp_tool import session as xt_session
    from xmpp_tool import slix
    from xmpp_tool.config import Settings
    from xmpp_tool.errors import Exit, ToolError
    from xmpp_tool.outgoing import OutgoingMessage

    server, alice, apw, bob, bpw = pair
    to = bob if recipient_kind == "known" else f"nobody{uuid.uuid4().hex[:8]}@{server.domain}"
    settings = Settings(jid=alice, host=server.host, port=server.port, cafile=server.cafile)

    async def main() -> bool:
        sess = xt_session.Session(settings, apw, xt_send.PLUGINS)
        sm: Any = sess.client.plugin["xep_0198"]
        sm.plugin_end()  # never negotiate SM
        async with sess:
            outcomes = await xt_send.send_direct(sess, [slix.jid_or_error(to, "recipient")],
                                                 OutgoingMessage("via ping"))
            xt_send.report(outcomes, None)
            return bool(sess.client.plugin["xep_0198"].enabled_out)

    if recipient_kind == "known":
        assert xt_session.in_fresh_loop(main) is False  # really without SM
        assert [m["body"] for m in unread_json(server, bob, bpw)] == ["via ping"]
    else:
        with pytest.raises(ToolError) as info:
            xt_session.in_fresh_loop(main)
        assert info.value.code == Exit.PROTOCOL
        assert to in info.value.message


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
def test_tls_socket_leaves_delayed_ack_mode(
    pair: tuple[Any, str, str, str, str], monkeypatch: pytest.MonkeyPatch, direct_tls: bool
) -> None:
    """Once TLS is up, the socket is switched to quick ACKs (Linux), so a server
    with Nagle on does not wait 40 ms for the ACK of its TLS 1.3 session tickets."""
    import socket
    from asyncio import trsock

    from xmpp_tool import send as xt_send
    from xmpp_tool import session as xt_session
    from xmpp_tool import slix
    from xmpp_tool.config import Settings
    from xmpp_tool.outgoing import OutgoingMessage

    if not hasattr(socket, "TCP_QUICKACK"):
        pytest.skip("TCP_QUICKACK is Linux-only")
    server, alice, apw, bob, bpw = pair
    calls: list[tuple[int, int, int]] = []
    real = trsock.TransportSocket.setsockopt

    def spy(self: Any, *args: Any) -> None:
        calls.append(args[:3])
        real(self, *args)

    monkeypatch.setattr(trsock.TransportSocket, "setsockopt", spy)
    port = server.tls_port if direct_tls else server.port
    settings = Settings(jid=alice, host=server.host, port=port, cafile=server.cafile,
                        direct_tls=direct_tls)  # fmt: skip

    async def main(sess: Any) -> None:
        outcomes = await xt_send.send_direct(sess, [slix.jid_or_error(bob, "recipient")],
                                             OutgoingMessage("quick"))
        xt_send.report(outcomes, None)

    xt_session.run_session(settings, apw, xt_send.PLUGINS, main)
    assert calls.count((socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)) == 1
    assert [m["body"] for m in unread_json(server, bob, bpw)] == ["quick"]
