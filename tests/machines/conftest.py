"""Fixtures for the lab tests: one booted, Salt-applied lab per Debian release.

Both releases' rootfs are built (or found in .cache/machines) in parallel as
soon as the first machine test runs, so the second build overlaps the first
release's tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab import harness

CHECKOUT = harness.CHECKOUT
XMPP_TOOL = CHECKOUT / ".venv" / "bin" / "xmpp-tool"

TOOLS = ("mmdebstrap", "systemd-nspawn", "nsenter", "ip", "mount")


def _missing_requirements() -> str | None:
    if os.geteuid() != 0:
        return "machine tests need root"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing host tools: {', '.join(missing)} (bash tests/setup.sh)"
    return None


@pytest.fixture(scope="session")
def rootfs_builds(request: pytest.FixtureRequest) -> Iterator[dict[str, Future[Path]]]:
    """Start building the rootfs of every release this session's tests use."""
    why = _missing_requirements()
    if why:
        pytest.skip(why)
    harness.install_cleanup_handlers()
    harness.down()  # leftovers of an interrupted earlier run
    releases: set[str] = set()
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        for key in ("lab", "release"):  # the lab fixture's, test_bootstrap's
            if key in params:
                releases.add(params[key])
    with ThreadPoolExecutor(max_workers=len(harness.RELEASES)) as pool:
        yield {r: pool.submit(harness.build_rootfs, r)
               for r in harness.RELEASES if r in releases}


@dataclass
class LabRun:
    """A booted lab of one release with the results of its first apply."""

    lab: harness.Lab
    state_dir: Path
    first: dict[str, harness.ApplyResult]
    accounts: dict[str, dict[str, Any]] = field(repr=False)  # passwords: never in a failure report

    @property
    def release(self) -> str:
        return self.lab.release


def fresh_state(release: str, rootfs_builds: dict[str, Future[Path]],
                tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Once the release's rootfs is built: a new state dir (secrets, CA) for a lab of
    that release, and its client accounts."""
    if release in rootfs_builds:
        rootfs_builds[release].result()
    state_dir = harness.make_state_dir(tmp_path_factory.mktemp(f"state-{release}"))
    return state_dir, tomllib.loads((state_dir / "client.toml").read_text())["accounts"]


@pytest.fixture(scope="module", params=harness.RELEASES)
def lab(request: pytest.FixtureRequest, rootfs_builds: dict[str, Future[Path]],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    release: str = request.param
    state_dir, accounts = fresh_state(release, rootfs_builds, tmp_path_factory)
    with harness.lab(release, state_dir) as the_lab:
        first = the_lab.apply_all()
        yield LabRun(the_lab, state_dir, first, accounts)


def xmpp_tool(lab: LabRun, account: str, server: str, *args: str, timeout: float = 60,
              state: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The checkout's xmpp-tool from the host as ``account`` (a lab.accounts key) at
    ``server`` (host:port), TLS verified against the lab CA, password in the environment;
    ``unread``'s index kept with the lab (a lab built anew has the same JIDs); ``state``:
    another state directory (another machine: another OMEMO device)."""
    acct = lab.accounts[account]
    env = {**os.environ, "XMPP_TOOL_PASSWORD": acct["password"],
           "XDG_STATE_HOME": str(state or lab.state_dir / "xmpp-tool-state")}
    cmd = [str(XMPP_TOOL), "-C", str(lab.state_dir / "ca.crt"), "-s", server,
           "-u", acct["jid"], *args]
    return subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=timeout,
                          check=False)
