"""Masterless ``salt-call`` on this host against a checkout's Salt tree and pillar.

lab/minion with its /srv/xmpp-tool paths pointed at a checkout (or a copy of one) and
a state dir, and Salt's own directories in a work dir: no root needed and nothing
written outside the work dir. Used by the cheap gates (tests/test_salt_gates.py,
tests/vagrant/test_structure.py, tests/test_manifest.py); Salt comes from
.cache/salt-venv (tests/setup.d/20-salt.sh).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parent.parent
SALT_CALL = CHECKOUT / ".cache" / "salt-venv" / "bin" / "salt-call"
IN_MACHINE = "/srv/xmpp-tool"


def config_dir(conf: Path, state_dir: Path, checkout: Path = CHECKOUT,
               grains: Mapping[str, Any] | None = None,
               extra_file_roots: Sequence[Path] = ()) -> Path:
    """Write ``conf``/minion; one per concurrent salt-call (they must not share caches)."""
    conf.mkdir(parents=True)
    text = (checkout / "lab" / "minion").read_text()
    text = text.replace(f"{IN_MACHINE}/lab/state", str(state_dir))
    text = text.replace(IN_MACHINE, str(checkout))
    lines = []
    for line in text.splitlines():
        if line.split(":", 1)[0] in {"root_dir", "cachedir", "pki_dir", "log_file"}:
            continue
        lines.append(line)
        if line.strip() == f"- {checkout}/salt":
            lines += [f"    - {root}" for root in extra_file_roots]
    run = conf / "run"
    lines += [f"root_dir: {run}", f"cachedir: {run / 'cache'}", f"pki_dir: {run / 'pki'}",
              f"log_file: {run / 'minion.log'}", f"sock_dir: {run / 'sock'}"]
    if grains:
        lines += ["grains:", *(f"  {k}: {json.dumps(v)}" for k, v in grains.items())]
    (conf / "minion").write_text("\n".join(lines) + "\n")
    return conf


def salt_call(conf: Path, minion_id: str, *args: str,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``salt-call --local`` with JSON output and the state's exit code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALT")}
    return subprocess.run(
        [str(SALT_CALL), "--local", f"--config-dir={conf}", f"--id={minion_id}",
         "--out=json", "--log-level=quiet", "--retcode-passthrough", *args],
        capture_output=True, text=True, check=False, timeout=timeout, env=env,
    )
