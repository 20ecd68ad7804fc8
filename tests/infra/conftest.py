"""pytest-testinfra suite for a lab machine, driven by that machine's own pillar.

The machine's pillar is read ON the target through the testinfra host:
`salt-call --local --config-dir=<dir> --id=<minion id> pillar.items unmask=True --out=json`
(Salt 3008 masks pillar values in CLI output without `unmask`). Tests carry a
`role(...)` mark; tests of roles the machine does not have are deselected at
collection (not skipped), so a run on `lb` reports only haproxy and lab checks.

Options (see tests/infra/README.md):
  --hosts=local://  or  --hosts=ssh://vagrant@ejabberd1 --ssh-config=FILE --sudo
  --minion-id=ID          default: $XMPP_TOOL_MINION_ID, else the target's `hostname -s`
  --salt-config-dir=DIR   default: /srv/xmpp-tool/lab (holds lab/minion)
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

import pytest
import testinfra
import testinfra.host


class Pillar(dict[str, Any]):
    """The machine's pillar; its repr hides the values (passwords, keys) so they never
    reach a traceback or a test report."""

    def __repr__(self) -> str:
        return f"<pillar of {self.get('_minion_id')}: {sorted(self)} (values hidden)>"


_PILLARS: dict[str, Pillar] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xmpp-tool lab")
    group.addoption("--minion-id", default=os.environ.get("XMPP_TOOL_MINION_ID"),
                    help="the machine's minion id (default: $XMPP_TOOL_MINION_ID or hostname)")
    group.addoption("--salt-config-dir", default="/srv/xmpp-tool/lab",
                    help="directory with the masterless minion config on the target")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "role(name): needs the pillar role `name` (or 'any')")


def minion_id(host: testinfra.host.Host, config: pytest.Config) -> str:
    given = config.getoption("--minion-id")
    hosts = (config.getoption("hosts") or "").split(",")
    if given and len(hosts) <= 1:  # one id cannot name several machines
        return str(given)
    return str(host.check_output("hostname -s")).strip()


def load_pillar(host: testinfra.host.Host, config: pytest.Config) -> Pillar:
    key = host.backend.get_pytest_id()
    if key not in _PILLARS:
        mid = minion_id(host, config)
        confdir = config.getoption("--salt-config-dir")
        salt_call = ("$(command -v salt-call || echo /opt/salt/bin/salt-call)")
        cmd = (f"{salt_call} --local --config-dir={shlex.quote(confdir)} "
               f"--id={shlex.quote(mid)} --log-level=quiet --out=json "
               "pillar.items unmask=True")
        out = host.run(cmd)
        if out.rc != 0:
            pytest.fail(f"pillar of {mid} on {key}: rc={out.rc} {out.stderr[-2000:]}")
        data = json.loads(out.stdout)["local"]
        if not (isinstance(data, dict) and data.get("roles")):
            pytest.fail(f"no roles in the pillar of {mid}")
        data["_minion_id"] = mid
        _PILLARS[key] = Pillar(data)
    return _PILLARS[key]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect tests whose role the target machine does not have."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        mark = item.get_closest_marker("role")
        callspec = getattr(item, "callspec", None)
        host = callspec.params.get("_testinfra_host") if callspec else None
        if mark is None or host is None or mark.args[0] == "any":
            keep.append(item)
            continue
        roles = load_pillar(host, config).get("roles", [])
        (keep if mark.args[0] in roles else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="module")
def pillar(host: testinfra.host.Host, request: pytest.FixtureRequest) -> Pillar:
    return load_pillar(host, request.config)


@pytest.fixture(scope="module")
def listening(host: testinfra.host.Host) -> list[tuple[str, int, str]]:
    """Listening TCP sockets: (address, port, process name)."""
    out = host.check_output("ss -ltnpH")
    socks = []
    for line in out.splitlines():
        fields = line.split()
        local = fields[3]
        addr, _, port = local.rpartition(":")
        proc = ""
        if "users:((" in line:
            proc = line.split('users:(("', 1)[1].split('"', 1)[0]
        socks.append((addr.strip("[]"), int(port), proc))
    return socks
