"""Which checks a machine of each role must pass, read from the suite's source.

Every test in tests/infra carries exactly one ``@pytest.mark.role(NAME)`` and is not
parametrized, so counting test functions counts checks. Both sides use this: the
suite's conftest fails a run that did not pass all of its machine's checks (deselected,
skipped, missing from a module that did not import), and the callers (tests/machines,
tests/vagrant) require that many passes in the run's summary. Standard library only:
it runs inside the lab machines too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

SUITE = Path(__file__).resolve().parent
#: the pillar roles the suite has checks for; "any" is checked on every machine
KNOWN = ("any", "prosody", "ejabberd", "haproxy")


class SuiteError(Exception):
    """A test in tests/infra that cannot be counted (no role, unknown role, parameters)."""


def _role_of(func: ast.FunctionDef, where: str) -> str:
    roles: list[str] = []
    for dec in func.decorator_list:
        call = dec if isinstance(dec, ast.Call) else None
        name = ast.unparse(call.func if call else dec)
        if name.endswith("mark.parametrize"):
            raise SuiteError(f"{where}: a parametrized check cannot be counted per role")
        if name.endswith("mark.role") and call is not None:
            arg = call.args[0] if call.args else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise SuiteError(f"{where}: role(...) takes one literal role name")
            roles.append(arg.value)
    if len(roles) != 1 or roles[0] not in KNOWN:
        raise SuiteError(f"{where}: needs exactly one role mark out of {KNOWN}, has {roles}")
    return roles[0]


def checks(suite: Path = SUITE) -> dict[str, list[str]]:
    """role -> names of its test functions, from every test module of the suite."""
    out: dict[str, list[str]] = {role: [] for role in KNOWN}
    for module in sorted(suite.glob("test_*.py")):
        for node in ast.parse(module.read_text(), str(module)).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) \
                    and node.name.startswith("test_"):
                if isinstance(node, ast.AsyncFunctionDef):
                    raise SuiteError(f"{module.name}::{node.name}: async test")
                out[_role_of(node, f"{module.name}::{node.name}")].append(node.name)
    return out


def expected(roles: Iterable[str], suite: Path = SUITE) -> list[str]:
    """The checks a machine with these pillar roles must pass: its roles' and "any"."""
    by_role = checks(suite)
    wanted = {"any", *roles}
    unknown = sorted(wanted - set(KNOWN))
    if unknown:
        raise SuiteError(f"no checks for role(s) {unknown}; the suite knows {KNOWN}")
    return [name for role in KNOWN if role in wanted for name in by_role[role]]
