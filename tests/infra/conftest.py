"""pytest-testinfra suite for a lab machine, driven by that machine's own pillar.

The machine's pillar is read ON the target through the testinfra host:
`salt-call --local --config-dir=<dir> --id=<minion id> pillar.items unmask=True --out=json`
(Salt 3008 masks pillar values in CLI output without `unmask`). Tests carry a
`role(...)` mark; tests of roles the machine does not have are deselected at
collection (not skipped), so a run on `lb` reports only haproxy and lab checks.

A run passes only when every check of its machine's roles ran and passed
(tests/infra/roles.py counts them from the source): a deselected (`-k`, `-m`),
skipped or uncollected check fails the run, and so does a pillar whose roles differ
from `--role` or include a role the suite has no checks for.

Options (see tests/infra/README.md):
  --hosts=local://  or  --hosts=ssh://vagrant@ejabberd1 --ssh-config=FILE --sudo
  --minion-id=ID          default: $XMPP_TOOL_MINION_ID, else the target's `hostname -s`
  --salt-config-dir=DIR   default: /srv/xmpp-tool/lab (holds lab/minion)
  --role=ROLE             the role the machine must have (its pillar's roles must be
                          exactly this); without it, the pillar's roles are checked
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

import pytest
import testinfra
import testinfra.host

from tests.infra import roles


class Pillar(dict[str, Any]):
    """The machine's pillar; its repr hides the values (passwords, keys) so they never
    reach a traceback or a test report."""

    def __repr__(self) -> str:
        return f"<pillar of {self.get('_minion_id')}: {sorted(self)} (values hidden)>"


_PILLARS: dict[str, Pillar] = {}
#: host id -> (machine, checks it must pass, checks that passed)
_DUE: dict[str, tuple[str, set[str], set[str]]] = {}
#: test node id -> (host id, check)
_NODES: dict[str, tuple[str, str]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xmpp-tool lab")
    group.addoption("--minion-id", default=os.environ.get("XMPP_TOOL_MINION_ID"),
                    help="the machine's minion id (default: $XMPP_TOOL_MINION_ID or hostname)")
    group.addoption("--salt-config-dir", default="/srv/xmpp-tool/lab",
                    help="directory with the masterless minion config on the target")
    group.addoption("--role", default=None, choices=[r for r in roles.KNOWN if r != "any"],
                    help="the role the machine must have (its pillar's roles must be exactly this)")


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


def machine_roles(host: testinfra.host.Host, config: pytest.Config) -> list[str]:
    """The pillar's roles, which must be --role's (when given) and known to the suite."""
    pillar = load_pillar(host, config)
    have = sorted(pillar.get("roles", []))
    want = config.getoption("--role")
    if want is not None and have != [want]:
        raise pytest.UsageError(
            f"{pillar['_minion_id']}: its pillar gives it the roles {have}, expected [{want!r}]")
    try:
        roles.expected(have)
    except roles.SuiteError as exc:
        raise pytest.UsageError(f"{pillar['_minion_id']}: {exc}") from None
    return have


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect tests whose role the target machine does not have; note what each
    machine must pass."""
    try:
        by_role = roles.checks()
    except roles.SuiteError as exc:
        raise pytest.UsageError(str(exc)) from None
    counted = {name: role for role, names in by_role.items() for name in names}
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        host = callspec.params.get("_testinfra_host") if callspec else None
        name = getattr(item, "originalname", item.name)
        if host is None or name not in counted:
            raise pytest.UsageError(f"{item.nodeid}: not a role-marked check of a testinfra host")
        key = host.backend.get_pytest_id()
        if key not in _DUE:
            have = machine_roles(host, config)
            _DUE[key] = (load_pillar(host, config)["_minion_id"],
                         set(roles.expected(have)), set())
        _NODES[item.nodeid] = (key, name)
        (keep if name in _DUE[key][1] else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and report.nodeid in _NODES:
        key, name = _NODES[report.nodeid]
        _DUE[key][2].add(name)


def verdicts() -> list[tuple[bool, str]]:
    """Per machine: did it pass every check of its roles, and the line that says so."""
    out = []
    for _key, (machine, due, passed) in sorted(_DUE.items()):
        missing = sorted(due - passed)
        line = f"tests/infra: {machine}: {len(due & passed)} of {len(due)} checks passed"
        out.append((not missing, line + (f"; not passed: {', '.join(missing)}" if missing else "")))
    return out


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run unless every machine passed every check of its roles."""
    if not all(ok for ok, _ in verdicts()) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for _ok, line in verdicts():
        terminalreporter.write_line(line)


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
