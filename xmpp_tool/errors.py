"""Exit codes (sysexits.h values) and the one exception type the CLI reports.

Every failure becomes one line on standard error and one of these codes; the
table is repeated in ``--help`` and in docs/cli.md.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Exit(IntEnum):
    OK = 0  # also "no unread messages"
    USAGE = 64  # EX_USAGE: bad command line
    DATAERR = 65  # EX_DATAERR: invalid JID, body not UTF-8, empty body
    UNAVAILABLE = 69  # EX_UNAVAILABLE: server unreachable
    TEMPFAIL = 75  # EX_TEMPFAIL: timeout, stanza not acknowledged
    PROTOCOL = 76  # EX_PROTOCOL: server refused (error stanza, missing feature)
    NOPERM = 77  # EX_NOPERM: authentication or certificate failure
    CONFIG = 78  # EX_CONFIG: configuration error
    SOFTWARE = 70  # EX_SOFTWARE: a bug in xmpp-tool, still reported in one line
    INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C


#: The documented outcomes with their meaning, in the order of the table (70 and
#: 130 are not outcomes a script plans for: a bug, or the user pressing Ctrl-C).
EXIT_CODES: dict[int, str] = {
    Exit.OK: "success (also: no unread messages)",
    Exit.USAGE: "usage error (bad option, missing operand)",
    Exit.DATAERR: "bad data (invalid JID, body not UTF-8, empty body, unusable -F file)",
    Exit.UNAVAILABLE: "server unreachable",
    Exit.TEMPFAIL: "timeout, message not acknowledged by the server",
    Exit.PROTOCOL: "server refused (error stanza, any one recipient or room refused, "
    "file over the upload limit, missing feature, no OMEMO device to encrypt for)",
    Exit.NOPERM: "authentication or certificate failure",
    Exit.CONFIG: "configuration error (config file, password source, OMEMO state file)",
}


class ToolError(Exception):
    """A failure with its exit code and a one-line, secret-free message."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = one_line(message)

    def __str__(self) -> str:
        return self.message


class Refused(ToolError):
    """The server answered a request with an error stanza (76).  Its condition is
    kept for the callers that tell conditions apart (a room that does not exist)."""

    def __init__(self, what: str, error: Any) -> None:
        self.condition = str(error["condition"] or "")
        self.reason = describe(error)
        super().__init__(Exit.PROTOCOL, f"{what}: server answered {self.reason}")


def describe(error: Any, default: str = "undefined-condition") -> str:
    """``condition (text)`` of an XMPP error (stanza, stream or SASL failure)."""
    cond = error["condition"] or default
    text = error["text"]
    return f"{cond} ({text})" if text else str(cond)


def one_line(text: str) -> str:
    """Collapse any message to a single line (errors are one line, always)."""
    return " ".join(str(text).split())


def usage(message: str) -> ToolError:
    return ToolError(Exit.USAGE, message)


def dataerr(message: str) -> ToolError:
    return ToolError(Exit.DATAERR, message)


def unavailable(message: str) -> ToolError:
    return ToolError(Exit.UNAVAILABLE, message)


def tempfail(message: str) -> ToolError:
    return ToolError(Exit.TEMPFAIL, message)


def protocol(message: str) -> ToolError:
    return ToolError(Exit.PROTOCOL, message)


def noperm(message: str) -> ToolError:
    return ToolError(Exit.NOPERM, message)


def config(message: str) -> ToolError:
    return ToolError(Exit.CONFIG, message)
