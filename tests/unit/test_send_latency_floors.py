"""bench/send_latency --floors: what any slixmpp client pays, run by the very
interpreter of the xmpp-tool being timed (its console script's #! line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import send_latency


def test_floors_run_on_the_console_scripts_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "xmpp-tool"
    script.write_text(f"#!{sys.executable}\nimport sys\n")
    floors = send_latency.floors(script)
    assert [f.name for f in floors] == list(send_latency.FLOORS)
    assert all(f.argv[0] == sys.executable and f.argv[1] == "-c" for f in floors)


def test_every_floor_runs_and_exits_0() -> None:
    """Each floor imports what it names (slixmpp as xmpp-tool prepares it) and exits."""
    for floor in send_latency.floors(Path(sys.executable).parent / "xmpp-tool"):
        res = subprocess.run(floor.argv, capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 0, (floor.name, res.stderr[-500:])
