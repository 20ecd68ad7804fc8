"""lab/harness.ApplyResult: a failed command state's own stderr is in the failure report
(Salt's comment leaves it out), so a flaky step says why in the run's log."""

from __future__ import annotations

import json
import subprocess

from lab import harness


def test_failure_report_carries_the_commands_stderr() -> None:
    state = {
        "__id__": "storage",
        "result": False,
        "duration": 10700.0,
        "comment": 'Command "tool" run',
        "changes": {"retcode": 2, "stdout": "", "stderr": "tool: cannot reach node@host\n"},
    }
    out = json.dumps({"local": {"cmd_|-storage_|-tool_|-run": state}})
    res = subprocess.CompletedProcess(["salt-call"], 2, out, "")
    report = harness.ApplyResult.parse("ejabberd1", res, 12.0).describe_failures()
    assert 'FAILED cmd_|-storage_|-tool_|-run: Command "tool" run' in report
    assert report.endswith("  stderr: tool: cannot reach node@host")
