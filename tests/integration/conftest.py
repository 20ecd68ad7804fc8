"""Fixtures: real prosody and ejabberd (Debian packages) on loopback, one of each per session.

- ``prosody_server`` / ``ejabberd_server`` (session scope): started on first use only.
- ``xmpp_server``: parametrized over both (ids ``prosody`` / ``ejabberd``).
- ``free_port``: a loopback port nothing listens on.

Tests using a server fixture get the ``servers`` marker automatically.  Missing
packages or a server that does not start make the test fail (never skip) with a
one-paragraph reason: CI must not go green without having talked to both servers.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from lab.servers import (
    EjabberdServer,
    ProsodyServer,
    ServerError,
    TestCA,
    XmppServer,
    start_ejabberd,
    start_prosody,
)
from lab.servers import free_port as _free_port

SERVER_FIXTURES = frozenset({"prosody_server", "ejabberd_server", "xmpp_server"})
STARTED: list[XmppServer] = []  # for the start-up times in the terminal summary


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for server in STARTED:
        terminalreporter.write_line(
            f"test server {server.kind} ({server.domain}, STARTTLS {server.server}, "
            f"direct TLS {server.tls_server}) started in {server.startup_seconds:.1f} s"
        )


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    # A SIGTERM'd pytest would leave the servers (own sessions) running; turn it into
    # KeyboardInterrupt so pytest tears the session fixtures down.
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def test_ca() -> Iterator[TestCA]:
    """The session's throwaway CA (and a second, wrong one)."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    directory = Path(tempfile.mkdtemp(prefix="xt-ca-"))
    try:
        try:
            ca = TestCA.create(directory)
        except ServerError as exc:
            pytest.fail(f"cannot make the test CA: {exc}", pytrace=False)
        yield ca
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def prosody_server(test_ca: TestCA) -> Iterator[ProsodyServer]:
    """prosody on loopback (domain prosody.test), started once per session."""
    try:
        server = start_prosody(test_ca)
    except ServerError as exc:
        pytest.fail(f"prosody test server did not start: {exc}", pytrace=False)
    STARTED.append(server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ejabberd_server(test_ca: TestCA) -> Iterator[EjabberdServer]:
    """ejabberd on loopback (domain ejabberd.test), started once per session."""
    try:
        server = start_ejabberd(test_ca)
    except ServerError as exc:
        pytest.fail(f"ejabberd test server did not start: {exc}", pytrace=False)
    STARTED.append(server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["prosody", "ejabberd"])
def xmpp_server(request: pytest.FixtureRequest) -> XmppServer:
    """Each of the two servers in turn."""
    server: XmppServer = request.getfixturevalue(f"{request.param}_server")
    return server


@pytest.fixture
def free_port() -> int:
    """A loopback TCP port nothing listens on (for 'unreachable' tests)."""
    return int(_free_port())
