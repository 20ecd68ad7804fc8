"""Where ``unread`` keeps its per-account archive index, and how it is written.

``$XDG_STATE_HOME/xmpp-tool/unread/<account>.json`` (``~/.local/state`` when the
variable is unset or not absolute): the index of the account's archive and one per
room (``rooms``); no message bodies, only archive ids, contact and room JIDs and
counts; the directory 0700, the file 0600, replaced atomically so that
two runs for the same account never leave a torn file (the last one wins, and
either is a valid index).  A missing, unreadable or foreign file is an empty index
(one full scan); a failure to write only costs the next run a full scan.

The state directory and the atomic write are also those of the OMEMO device's file
(:mod:`xmpp_tool.omemo_state`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from .unread_walk import Index

log = logging.getLogger("xmpp_tool")


def state_root() -> Path:
    """``$XDG_STATE_HOME/xmpp-tool`` (``~/.local/state`` when unset or not absolute)."""
    base = os.environ.get("XDG_STATE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / "xmpp-tool"


def account_file(kind: str, account: str) -> Path:
    """The account's file of ``kind`` (``unread``, ``omemo``) under :func:`state_root`."""
    return state_root() / kind / (quote(account.lower(), safe="@.-_") + ".json")


def write_atomically(path: Path, data: object, *, sync: bool = False) -> None:
    """Replace ``path`` with ``data`` as JSON: a temporary file in the same directory
    (mode 0600, the directory 0700), fsync'd if ``sync``, then renamed; raises OSError."""
    tmp = None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.parent.name}-",
                                   suffix=".tmp")  # fmt: skip
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp: mode 0600
            json.dump(data, f, separators=(",", ":"))
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def state_dir() -> Path:
    return state_root() / "unread"


def index_path(account: str) -> Path:
    return account_file("unread", account)


def load(account: str) -> Index:
    """The index of the account's own archive."""
    return load_all(account)[0]


def load_all(account: str) -> tuple[Index, dict[str, Index]]:
    """The index of the account's archive and those of its rooms (room JID -> index)."""
    path = index_path(account)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Index(), {}
    except (OSError, ValueError) as exc:
        log.info("archive index %s unreadable (%s): reading the whole archive", path, exc)
        return Index(), {}
    if not isinstance(data, dict) or data.get("account") != account.lower():
        return Index(), {}
    rooms = data.get("rooms")
    return Index.from_json(data), {
        str(room): Index.from_json(value)
        for room, value in (rooms.items() if isinstance(rooms, dict) else ())
    }


def save(account: str, index: Index, rooms: Mapping[str, Index] | None = None) -> None:
    """Replace the account's file with ``index`` and the rooms' indexes (none: no rooms)."""
    path = index_path(account)
    rooms = rooms or {}
    data = {"account": account.lower(), **index.to_json(),
            "rooms": {room: rooms[room].to_json() for room in sorted(rooms)}}
    try:
        write_atomically(path, data)
    except OSError as exc:
        log.info("archive index not saved (%s): the next run reads the whole archive", exc)
