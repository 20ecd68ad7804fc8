"""The command line's values, as either parser found them, made into a request;
anything the parsers cannot check themselves is a usage error (64) here."""

from __future__ import annotations

from pathlib import Path

from .. import errors
from ..request import MESSAGE_TYPES, CliOptions, SendRequest, TrustRequest, UnreadRequest


def cli_options(
    *,
    server: str | None = None,
    user: str | None = None,
    config: str | None = None,
    account: str | None = None,
    cafile: str | None = None,
    direct_tls: bool = False,
    json: bool = False,
    verbose: bool = False,
    quiet: bool = False,
) -> CliOptions:
    """The global options as parsed (by Typer or by :mod:`.fastargs`)."""
    if verbose and quiet:
        raise errors.usage("-v and -q are mutually exclusive")
    return CliOptions(
        server=server,
        user=user,
        config=Path(config) if config is not None else None,
        account=account,
        cafile=Path(cafile) if cafile is not None else None,
        direct_tls=direct_tls,
        json=json,
        verbose=verbose,
        quiet=quiet,
    )


def send_request(
    opts: CliOptions,
    operands: list[str],
    *,
    message: str | None = None,
    file: str | None = None,
    mtype: str | None = None,
    subject: str | None = None,
    groupchat: bool = False,
    nick: str | None = None,
    encrypt: bool = False,
    plain: bool = False,
) -> SendRequest:
    """The ``send`` request from its options and operands (usage errors: 64)."""
    if message is not None and file is not None:
        raise errors.usage("-m and -F are mutually exclusive (the body of a file is its URL)")
    if mtype is not None and mtype not in MESSAGE_TYPES:
        raise errors.usage(f"-T: {mtype!r} is not one of {', '.join(MESSAGE_TYPES)}")
    if groupchat and mtype is not None:
        raise errors.usage("-T cannot be combined with -g (group chat messages are groupchat)")
    if groupchat and subject is not None:
        raise errors.usage("-S cannot be combined with -g (it would change the room's topic)")
    if nick is not None and not groupchat:
        raise errors.usage("-N needs -g")
    if nick is not None and not nick.strip():
        raise errors.usage("-N: empty nickname")
    if encrypt and plain:
        raise errors.usage("-e and -E are mutually exclusive")
    if encrypt and subject is not None:
        raise errors.usage("-S cannot be combined with -e (OMEMO does not encrypt a subject)")
    if message is not None or file is not None:
        if not operands:
            raise errors.usage("missing RECIPIENT")
        recipients, body = tuple(operands), message
    else:
        if not operands:
            raise errors.usage("missing RECIPIENT")
        if len(operands) > 2:
            raise errors.usage(
                f"{len(operands)} operands: to send to several recipients give the message "
                "with -m (-m - for standard input)"
            )
        recipients, body = (operands[0],), operands[1] if len(operands) == 2 else None
    return SendRequest(opts, recipients, body, "groupchat" if groupchat else (mtype or "chat"),
                       subject, groupchat, nick, file,
                       True if encrypt else False if plain else None)  # fmt: skip


def unread_request(
    opts: CliOptions, *, count: bool, mark: bool, limit_text: str | None,
    rooms_only: bool = False, chats_only: bool = False, rooms: list[str] | None = None,
) -> UnreadRequest:
    """The ``unread`` request from its options (usage errors: 64)."""
    limit: int | None = None
    if limit_text is not None:
        text = limit_text.strip()
        if not text.isdigit() or int(text) < 1:
            raise errors.usage(f"-n: {limit_text!r} is not a positive integer")
        limit = int(text)
    if count and (mark or limit is not None):
        raise errors.usage("-c cannot be combined with -m or -n")
    if chats_only and (rooms_only or rooms):
        raise errors.usage("-G (chats only) cannot be combined with -g or -r")
    scope = "rooms" if rooms_only or rooms else "chats" if chats_only else "all"
    return UnreadRequest(opts, count, mark, limit, scope, tuple(rooms or ()))


def trust_request(opts: CliOptions, operands: list[str], *, trust: bool = False,
                  distrust: bool = False) -> TrustRequest:
    """The ``trust`` request: list a JID's devices, or set the trust of some (64)."""
    if trust and distrust:
        raise errors.usage("-t and -d are mutually exclusive")
    if trust or distrust:
        if len(operands) < 2:
            raise errors.usage(f"{'-t' if trust else '-d'} needs a JID and at least one DEVICE")
        return TrustRequest(opts, operands[0], tuple(operands[1:]),
                            "trusted" if trust else "distrusted")
    if len(operands) > 1:
        raise errors.usage("DEVICE operands need -t (trust) or -d (distrust)")
    return TrustRequest(opts, operands[0] if operands else None)
