"""Shell completion (bash, zsh, fish) through Typer's own completion classes.

The shell calls ``xmpp-tool`` with ``_XMPP_TOOL_COMPLETE`` set (see docs/cli.md for
the one line each shell needs); Typer/Click resolve the words typed so far with the
same parser as a real run, so what is offered follows the POSIX syntax: global
options before the command, a command's options before its operands.  Click would
still offer ``send``'s options after an operand (where they are operands, the
message or more recipients): :func:`enable` stops that.

Typer's completion classes are imported inside :func:`enable`, for start-up
speed: the run loop asks :func:`requested` on every run, Typer or not.
"""

from __future__ import annotations

import os
from typing import Any

from ..request import MESSAGE_TYPES

COMPLETE_VAR = "_XMPP_TOOL_COMPLETE"


def requested(env: dict[str, str] | None = None) -> bool:
    return bool((os.environ if env is None else env).get(COMPLETE_VAR))


def enable(group: Any) -> None:
    """Register the shells and make ``send`` offer no options after an operand."""
    from typer._completion_classes import completion_init

    completion_init()
    send = group.commands["send"]
    original = send.shell_complete

    def shell_complete(ctx: Any, incomplete: str) -> list[Any]:
        if ctx.params.get("operands") and incomplete.startswith("-"):
            return []  # guideline 9: after the first operand, "-x" is an operand
        result: list[Any] = original(ctx, incomplete)
        return result

    send.shell_complete = shell_complete


def complete_type(incomplete: str) -> list[str]:
    """Values of ``send -T``."""
    return [t for t in MESSAGE_TYPES if t.startswith(incomplete)]
