"""What the user asked for, as parsed from the command line (by the fast parser
or by Typer): the global options and one request per command.

Plain data: every layer above reads it, and it imports nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: the values of ``send -T`` (a room's messages are ``groupchat``, with ``-g``)
MESSAGE_TYPES = ("chat", "normal", "headline")


@dataclass(frozen=True)
class CliOptions:
    """The global options as given on the command line (None: not given)."""

    server: str | None = None
    user: str | None = None
    config: Path | None = None
    account: str | None = None
    cafile: Path | None = None
    direct_tls: bool = False
    json: bool = False
    verbose: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class SendRequest:
    opts: CliOptions
    recipients: tuple[str, ...]
    message: str | None  # None or "-": standard input (unused with a file)
    mtype: str = "chat"  # chat, normal, headline; groupchat with -g
    subject: str | None = None
    groupchat: bool = False  # the recipients are rooms (XEP-0045)
    nick: str | None = None  # nickname in the rooms (default: the account's localpart)
    file: str | None = None  # upload (XEP-0363) and send its URL
    encrypt: bool | None = None  # OMEMO: -e True, -E False, None the account's ``omemo``

    @property
    def recipient(self) -> str:
        return self.recipients[0]


#: what ``unread`` reads: one-to-one chats and the bookmarked rooms, or one kind
SCOPES = ("all", "chats", "rooms")


@dataclass(frozen=True)
class UnreadRequest:
    opts: CliOptions
    count: bool
    mark: bool
    limit: int | None
    scope: str = "all"  # one of SCOPES
    rooms: tuple[str, ...] = ()  # only these rooms (scope "rooms"), bookmarked or not


#: what ``trust`` sets: -t, -d (None: list the devices)
TRUST_LEVELS = ("trusted", "distrusted")


@dataclass(frozen=True)
class TrustRequest:
    opts: CliOptions
    jid: str | None  # whose devices (None: the account's own)
    devices: tuple[str, ...] = ()  # device ids or fingerprints to set
    level: str | None = None  # one of TRUST_LEVELS, with devices


Request = SendRequest | UnreadRequest | TrustRequest
