"""bench/loadgen.py's audit: how acknowledged messages are classified (no server needed).

lost = acknowledged, not in the archive, and never refused with an error stanza; a
message the server acked and then refused was a visible failure (the sender was told).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bench import loadgen


def test_audit_tells_lost_from_refused_and_found(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = loadgen.LoadConfig(
        host="127.0.0.1", port=5222, cafile=Path("/dev/null"),
        senders=[loadgen.Account("s@x.test", "pw")],
        recipients=[loadgen.Account("r@x.test", "pw")], messages=4,
    )
    gen = loadgen.LoadGen(cfg)
    msgs = [loadgen.Message(mid=f"{gen.run_id}-{i:06d}", sender=0, recipient="r@x.test")
            for i in range(4)]
    for m in msgs:
        gen.messages[m.mid] = m
    msgs[0].acked_at = msgs[1].acked_at = msgs[2].acked_at = time.monotonic()
    msgs[1].bounced = "service-unavailable"  # acked, then refused: visible
    # msgs[2]: acked, never refused, not archived: lost; msgs[3]: never acked, archived
    archived = [(msgs[0].mid, "1"), (msgs[3].mid, "2")]

    class Reader:
        def __init__(self, *_args: Any) -> None:
            pass

        async def archive_ids(self, *_args: Any) -> list[tuple[str, str]]:
            return archived

    monkeypatch.setattr(loadgen, "Reader", Reader)
    audit = asyncio.run(gen.audit())
    assert (audit.found, audit.lost, audit.bounced_unarchived, audit.found_unacked) == (1, 1, 1, 1)
    assert audit.lost_ids == [msgs[2].mid]
    assert audit.lost_detail[0]["mid"] == msgs[2].mid
    assert audit.lost_detail[0]["bounced"] is None
