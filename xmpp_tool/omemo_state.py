"""Where xmpp-tool keeps its OMEMO device, and how the file is written (no network code).

``$XDG_STATE_HOME/xmpp-tool/omemo/<account>.json`` (``~/.local/state`` when the
variable is unset or not absolute), one file per account and machine: the OMEMO
library's data under ``library`` (this device's identity and pre-keys, the sessions
with other devices, their trust), and under ``read`` the text of the encrypted
messages this device has decrypted and that may still be shown as unread (a
message's keys are single-use: once decrypted it cannot be decrypted again, so the
text is kept here, and only here; the unread index never holds a body).

The directory is 0700, the file 0600, replaced atomically (a temporary file in the
same directory, fsync'd, then renamed), so a crash leaves the old file or the new
one.  A file that exists but cannot be read as ours is an error (78): losing it
would lose the device, so it is never overwritten.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from . import errors, statefile

log = logging.getLogger("xmpp_tool")

VERSION = 1
#: decrypted texts kept at most (oldest dropped first): a bound for accounts nobody reads
READ_LIMIT = 5000


def state_path(account: str) -> Path:
    return statefile.account_file("omemo", account)


class OmemoState:
    """The account's OMEMO file in memory; :meth:`save` writes it when it changed."""

    def __init__(self, account: str, path: Path | None = None) -> None:
        self.account = account.lower()
        self.path = path or state_path(account)
        self.library: dict[str, Any] = {}
        self.read: dict[str, dict[str, str]] = {}
        self.dirty = False
        self.existed = False

    @classmethod
    def load(cls, account: str, path: Path | None = None) -> OmemoState:
        """The state as saved; a new, empty one if there is no file (a new device)."""
        state = cls(account, path)
        try:
            raw = state.path.read_bytes()
        except FileNotFoundError:
            return state
        except OSError as exc:
            raise state.corrupt(exc.strerror or str(exc)) from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as exc:  # also UnicodeDecodeError
            raise state.corrupt(f"not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise state.corrupt("not an xmpp-tool OMEMO state file")
        if data.get("account") != state.account:
            raise state.corrupt(f"it belongs to {data.get('account')!r}")
        library, read = data.get("library"), data.get("read")
        if not isinstance(library, dict) or not isinstance(read, dict):
            raise state.corrupt("not an xmpp-tool OMEMO state file")
        state.library = library
        state.read = {str(k): v for k, v in read.items() if isinstance(v, dict)}
        state.existed = True
        return state

    def corrupt(self, why: str) -> errors.ToolError:
        return errors.config(
            f"OMEMO state file {self.path} is unusable ({why}); it is left as it is: "
            "restore it, or move it away to start a new device (messages encrypted for "
            "the old one can then no longer be read)"
        )

    # ------------------------------------------------------------------ library keys

    def get(self, key: str) -> Any:
        return self.library.get(key)

    def has(self, key: str) -> bool:
        return key in self.library

    def put(self, key: str, value: Any) -> None:
        self.library[key] = value
        self.dirty = True

    def delete(self, key: str) -> None:
        if self.library.pop(key, None) is not None:
            self.dirty = True

    # ------------------------------------------------------------------ decrypted texts

    def remember(self, archive_id: str, body: str, sender_device: int) -> None:
        self.read[archive_id] = {"body": body, "device": str(sender_device)}
        while len(self.read) > READ_LIMIT:
            del self.read[next(iter(self.read))]
        self.dirty = True

    def forget_except(self, keep: set[str], scopes: set[str]) -> None:
        """Drop the texts of messages no longer unread, among those of the ``scopes``
        just read ("" the account's archive, else a room's JID: a key is
        ``room/id`` for a room's message, the archive id for a chat's)."""
        gone = [key for key in self.read
                if key not in keep and (key.split("/", 1)[0] if "/" in key else "") in scopes]
        for aid in gone:
            del self.read[aid]
        if gone:
            self.dirty = True

    # ------------------------------------------------------------------ file

    def save(self) -> None:
        """Write the file if anything changed (atomically, 0600).  A failure is an error
        (78), not a note: a device whose used keys are not kept breaks its sessions."""
        if not self.dirty:
            return
        data = {"version": VERSION, "account": self.account, "library": self.library,
                "read": self.read}  # fmt: skip
        try:
            statefile.write_atomically(self.path, data, sync=True)
        except OSError as exc:
            raise errors.config(
                f"cannot write the OMEMO state file {self.path}: {exc.strerror or exc}"
            ) from None
        self.dirty = False
        self.existed = True
