"""Random argv and stdin: never a traceback, always one line and a documented code.

No network: the server is always a closed loopback port.  Random text never
appears where it could name another server (only as option-arguments of the
other options, as operands, or after the command), and the config directory is
an empty temporary one.
"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from xmpp_tool import cli, send
from xmpp_tool.errors import EXIT_CODES

DOCUMENTED = set(EXIT_CODES)

odd_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from([
        "", "-", "--", "@", "a@", "@b", "a@b@c", "a@b/", "a@b/r/s", "ä@ö.example",
        "a" * 1100 + "@example.org", "user@[::1]", "x@127.0.0.1", "\u200b@example.org",
        "\x00", "\ud800", "bob@example.org", "-bob@example.org", "alice@example.org/res",
    ]),
)
jids = st.one_of(
    st.sampled_from(["alice@example.org", "a@b", "user@xn--bcher-kva.example"]),
    odd_text,
)
# option tokens that cannot set the server (no -s/--server, not even in a group)
safe_flags = st.sampled_from(["-J", "-v", "-q", "-t", "-Jv", "-tJ", "-Jq", "--json", "-h",
                              "--version", "-x", "--bogus", "+J"])
global_with_arg = st.tuples(
    st.sampled_from(["-u", "-a", "-f", "-C", "--user", "--account"]), odd_text
).map(list)
global_part = st.lists(st.one_of(safe_flags.map(lambda f: [f]), global_with_arg), max_size=4)


good_flags = st.sampled_from(["-J", "-v", "-q", "-t", "-Jt", "--json", "--direct-tls"])
stdins = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"\xff\xfe\xfd", b"ok\n", "\u00fcn\u00efc\u00f6d\u00e9".encode(),
                     b"\x00\x01", b"x" * (send.MAX_BODY + 10), b"\xed\xa0\x80"]),
)


@st.composite
def chaotic(draw: st.DrawFn) -> tuple[list[str], bytes]:
    """Anything goes in structure (mostly usage errors)."""
    before = [tok for part in draw(global_part) for tok in part]
    after = [tok for part in draw(global_part) for tok in part]
    command = draw(st.sampled_from(["send", "unread", "bogus", ""]))
    tail: list[str] = []
    if command == "send":
        tail = draw(st.lists(st.one_of(jids, odd_text, st.sampled_from(
            ["-m", "-F", "-T", "-S", "-g", "-N", "-gm", "-Theadline"])), max_size=4))
    elif command == "unread":
        tail = draw(st.lists(st.sampled_from(["-c", "-m", "-n", "5", "-n0", "-cm", "-n", "x",
                                              "extra", "-J"]), max_size=4))
    user = ["-u", draw(jids)] if draw(st.booleans()) else []
    argv = [*before, "-s", "127.0.0.1:0", *user, *after]
    if command:
        argv += [command, *tail]
    return argv, draw(stdins)


@st.composite
def plausible(draw: st.DrawFn) -> tuple[list[str], bytes]:
    """Well-formed command lines with odd JIDs, bodies and stdin (reach the network
    layer: 65, 69, 78...)."""
    flags = draw(st.lists(good_flags, max_size=2))
    argv = [*flags, "-s", "127.0.0.1:0", "-u", draw(jids)]
    kind = draw(st.integers(0, 2))
    if kind == 0:
        argv += ["send", draw(jids)]
        body = draw(st.one_of(st.none(), st.just("-"), odd_text))
        if body is not None:
            argv.append(body)
    elif kind == 1:  # send's own options, several recipients
        opts = draw(st.lists(st.sampled_from([["-T", "headline"], ["-T", "normal"], ["-Tx"],
                                              ["-S", "subj"], ["-g"], ["-N", "nick"],
                                              ["-m", "-"], ["-m", "hi"], ["-F", "nofile"]]),
                             max_size=3))  # fmt: skip
        argv += ["send", *[t for o in opts for t in o],
                 *draw(st.lists(jids, min_size=0, max_size=3))]  # fmt: skip
    else:
        argv += ["unread", *draw(st.sampled_from([[], ["-c"], ["-m"], ["-n", "3"], ["-mn1"]]))]
    return argv, draw(stdins)


def argv_and_stdin() -> st.SearchStrategy[tuple[list[str], bytes]]:
    return st.one_of(plausible(), chaotic())


@pytest.fixture(scope="module")
def closed_loopback_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    yield port


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=argv_and_stdin())
def test_random_argv_and_stdin(
    case: tuple[list[str], bytes],
    closed_loopback_port: int,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv, stdin = case
    port = f"127.0.0.1:{closed_loopback_port}"
    argv = [port if a == "127.0.0.1:0" else a for a in argv]
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XMPP_TOOL_PASSWORD", "pw")
    cwd = os.getcwd()
    os.chdir(home)  # relative -f/-C paths resolve in an empty directory
    out, err = io.BytesIO(), io.StringIO()
    try:
        code = cli.run(argv, stdin=io.BytesIO(stdin), stdout=out, stderr=err)
    finally:
        os.chdir(cwd)
    text = err.getvalue()
    event(f"exit {code}")
    assert code in DOCUMENTED, (argv, code, text)
    assert "Traceback" not in text
    verbose = any(a in ("-v", "-Jv") for a in argv)
    if code != 0:
        lines = text.splitlines()
        assert lines, argv
        assert len(lines) == 1 or verbose, (argv, text)
        assert out.getvalue() == b""
    # the closed port is the only server: nothing can succeed but help/version
    assert code != 0 or any(a in ("-h", "--help", "--version") for a in argv), (argv, text)
