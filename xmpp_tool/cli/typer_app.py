"""The command line as Typer declares it: options, operands, help texts.

Imported only when Typer has to parse (``--help``, ``unread``, any ``send`` the
fast parser leaves, completion): ``import typer`` and building the command cost
about 20 ms of CPU, a third of a whole ``send``.  POSIX Utility Argument Syntax:
option parsing stops at the first operand, both for the global options and for
the command's options (``allow_interspersed_args=False``); ``--`` ends options;
``-`` is standard input.  Typer only parses: each command stores its request.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer._click import exceptions as click_exc  # Typer >= 0.29 vendors Click

try:  # Typer's internals, for _skip_pydantic
    from typer import core as typer_core
    from typer._coercion import PassThroughRuntimeParam
except ImportError:  # pragma: no cover - other Typer versions
    typer_core = None  # type: ignore[assignment]

from .. import PROG, __version__, errors
from ..errors import EXIT_CODES, Exit
from ..request import Request, SendRequest, TrustRequest, UnreadRequest
from . import completion
from .arguments import cli_options, send_request, trust_request, unread_request

POSIX = {"allow_interspersed_args": False, "help_option_names": ["-h", "--help"]}

EPILOG = (
    "\b\nExit status:\n"
    + "\n".join(f"  {code:<3} {text}" for code, text in EXIT_CODES.items())
    + "\n\n\b\nPassword (never on the command line), the first of: environment\n"
    "XMPP_TOOL_PASSWORD; the account's password_command, password_file, or\n"
    "password (only if the config file is not readable by group/others);\n"
    "else a prompt on the terminal.\n"
    "\n\b\nConfig: $XDG_CONFIG_HOME/xmpp-tool/config.toml (default\n"
    "~/.config/xmpp-tool/config.toml), named accounts; options override it."
)

app = typer.Typer(
    name=PROG,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings=POSIX,
    help="Send XMPP messages and list unread ones, safely, from scripts.",
    epilog=EPILOG,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit(0)


@app.callback()
def global_options(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option("-s", "--server", metavar="HOST[:PORT]",
                     help="Server to connect to (default: DNS SRV of the JID's domain, "
                          "then the domain itself)."),
    ] = None,
    user: Annotated[
        str | None, typer.Option("-u", "--user", metavar="JID", help="The account's JID.")
    ] = None,
    config: Annotated[
        str | None,
        typer.Option("-f", "--config", metavar="FILE",
                     help="Config file (default: $XDG_CONFIG_HOME/xmpp-tool/config.toml)."),
    ] = None,
    account: Annotated[
        str | None,
        typer.Option("-a", "--account", metavar="NAME", help="Named account in the config file."),
    ] = None,
    cafile: Annotated[
        str | None,
        typer.Option("-C", "--cafile", metavar="FILE",
                     help="CA certificates to trust (instead of the system store)."),
    ] = None,
    direct_tls: Annotated[
        bool, typer.Option("-t", "--direct-tls", help="Direct TLS (XEP-0368) instead of STARTTLS.")
    ] = False,
    json: Annotated[
        bool, typer.Option("-J", "--json", help="JSON lines on standard output.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="More detail on standard error (never secrets).")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="Only errors on standard error.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Send XMPP messages and list unread ones, safely, from scripts."""
    ctx.ensure_object(dict)
    ctx.obj["opts"] = cli_options(
        server=server, user=user, config=config, account=account, cafile=cafile,
        direct_tls=direct_tls, json=json, verbose=verbose, quiet=quiet,
    )  # fmt: skip


@app.command("send", context_settings=POSIX, epilog=EPILOG)
def send_command(
    ctx: typer.Context,
    message: Annotated[
        str | None,
        typer.Option("-m", "--message", metavar="MESSAGE|-",
                     help="The body (- for standard input); then every operand is a "
                          "recipient."),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option("-F", "--file", metavar="FILE",
                     help="Upload FILE (XEP-0363) and send its URL; every operand is a "
                          "recipient."),
    ] = None,
    mtype: Annotated[
        str | None,
        typer.Option("-T", "--type", metavar="TYPE", autocompletion=completion.complete_type,
                     help="Message type: chat (default), normal or headline."),
    ] = None,
    subject: Annotated[
        str | None, typer.Option("-S", "--subject", metavar="SUBJECT", help="Subject line.")
    ] = None,
    groupchat: Annotated[
        bool,
        typer.Option("-g", "--groupchat",
                     help="The recipients are group chats (XEP-0045 rooms): join, send, "
                          "wait for the room's echo, leave."),
    ] = False,
    nick: Annotated[
        str | None,
        typer.Option("-N", "--nick", metavar="NICK",
                     help="Nickname in the rooms (default: the account's localpart)."),
    ] = None,
    encrypt: Annotated[
        bool,
        typer.Option("-e", "--encrypt",
                     help="Encrypt with OMEMO (XEP-0384) for every trusted device of each "
                          "recipient and of your account; a recipient without one is "
                          "refused, never sent in clear."),
    ] = False,
    plain: Annotated[
        bool,
        typer.Option("-E", "--no-encrypt",
                     help="Send in clear even if the account's omemo setting is true."),
    ] = False,
    operands: Annotated[
        list[str] | None,
        typer.Argument(metavar="RECIPIENT [MESSAGE|-] | RECIPIENT", show_default=False,
                       help="Without -m and -F: one recipient and the message (- or "
                            "absent: standard input); with -m or -F: the recipients."),
    ] = None,
) -> None:
    """Send a message to each RECIPIENT's bare JID (or room with -g) over one login;
    exit 0 only once the server has acknowledged every one (a room: once it has
    reflected the message).  Without -m or -F: one RECIPIENT, and the body is
    MESSAGE, or standard input if MESSAGE is absent or -.  A room's password comes
    from the environment variable XMPP_TOOL_ROOM_PASSWORD or the account's
    room_password_command/room_password_file, never the command line."""
    ctx.obj["request"] = send_request(
        ctx.obj["opts"], list(operands or ()), message=message, file=file, mtype=mtype,
        subject=subject, groupchat=groupchat, nick=nick, encrypt=encrypt, plain=plain,
    )  # fmt: skip


@app.command("unread", context_settings=POSIX, epilog=EPILOG)
def unread_command(
    ctx: typer.Context,
    count: Annotated[
        bool, typer.Option("-c", "--count",
                           help="Print only the count (with -J: per contact, per room, "
                                "and the rooms' mentions).")
    ] = False,
    mark: Annotated[
        bool, typer.Option("-m", "--mark-read",
                           help="Mark the shown messages as read (XEP-0490 pointers).")
    ] = False,
    limit_text: Annotated[
        str | None,
        typer.Option("-n", "--max", metavar="MAX", help="Show at most MAX messages."),
    ] = None,
    rooms_only: Annotated[
        bool, typer.Option("-g", "--groupchats", help="Only the bookmarked rooms (group chats).")
    ] = False,
    chats_only: Annotated[
        bool, typer.Option("-G", "--no-groupchats", help="Only one-to-one chats, no rooms.")
    ] = False,
    rooms: Annotated[
        list[str] | None,
        typer.Option("-r", "--room", metavar="ROOM",
                     help="Only this room, bookmarked or not (repeat for several)."),
    ] = None,
) -> None:
    """List unread messages without consuming anything: one-to-one chats (oldest
    first), then each room of the account's bookmarks (XEP-0402, else XEP-0048),
    read from the room's own archive; a room's message that mentions you is flagged.
    Unread = after the XEP-0490 displayed pointer, else after your own last message,
    else (a room) its newest 50.  XEP-0013 view where the server has no MAM.  A room
    that cannot be read is one line on standard error, the rest is still listed,
    and the exit status is 76.  OMEMO messages are decrypted by this machine's
    device of the account (see trust); one it cannot decrypt is listed with the
    reason, never dropped."""
    ctx.obj["request"] = unread_request(ctx.obj["opts"], count=count, mark=mark,
                                        limit_text=limit_text, rooms_only=rooms_only,
                                        chats_only=chats_only, rooms=rooms)


@app.command("trust", context_settings=POSIX, epilog=EPILOG)
def trust_command(
    ctx: typer.Context,
    trust: Annotated[
        bool, typer.Option("-t", "--trust", help="Trust the given DEVICEs (you verified them).")
    ] = False,
    distrust: Annotated[
        bool, typer.Option("-d", "--distrust",
                           help="Distrust the given DEVICEs: they never get a key again.")
    ] = False,
    operands: Annotated[
        list[str] | None,
        typer.Argument(metavar="[JID [DEVICE...]]", show_default=False,
                       help="Whose OMEMO devices (default: your account's); with -t or -d, "
                            "the devices, each by id or by fingerprint."),
    ] = None,
) -> None:
    """List the OMEMO devices of JID (default: your own account) with their
    fingerprints and trust, or set the trust of some.  Until you verify a device of
    a contact, every device of theirs is trusted blindly (as the apps do); once you
    have, a new one gets no key until you decide."""
    ctx.obj["request"] = trust_request(ctx.obj["opts"], list(operands or ()), trust=trust,
                                       distrust=distrust)  # fmt: skip


#: parameter types Typer's pass-through coercion handles exactly (send's operands
#: arrive as Click's tuple of str, a repeated option such as unread's -r as a list;
#: the request builders take either)
_PASS_THROUGH: dict[Any, type] = {str: str, bool: bool, list[str]: Sequence}


def _skip_pydantic() -> None:
    """Typer >= 0.2x coerces every non-flag value through a Pydantic TypeAdapter,
    importing pydantic (0.2-0.8 s here) on each run, even for plain ``str``
    options and its own ``--help`` flag.  Ours are all ``str``, ``bool`` (``-n``
    is converted by hand) or send's operands (Click's tuple of ``str``), for which
    Typer's own pass-through coercion is exact, so use that for those types.  Best
    effort: if Typer's internals change, nothing is replaced and parsing is merely
    slower."""
    if typer_core is None:  # pragma: no cover - other Typer versions
        return
    original: Any = getattr(typer_core, "build_runtime_param", None)
    if original is None or getattr(original, "_xmpp_tool", False):  # pragma: no cover
        return

    def build_runtime_param(descriptor: Any) -> Any:
        kind = _PASS_THROUGH.get(getattr(descriptor, "annotation", None))
        if kind is not None:
            return PassThroughRuntimeParam(
                annotation=kind, parameter_info=descriptor.parameter_info
            )
        return original(descriptor)

    build_runtime_param._xmpp_tool = True  # type: ignore[attr-defined]
    typer_core.build_runtime_param = build_runtime_param  # type: ignore[attr-defined]


@functools.cache
def click_command() -> Any:
    """The Click command Typer makes of :data:`app`, built once."""
    _skip_pydantic()
    command = typer.main.get_command(app)
    if completion.requested():
        completion.enable(command)
    return command


def parse_with_typer(argv: list[str]) -> Request | int:
    """Typer parses the whole command line (every one the fast parser leaves).

    Returns the request, or an exit status when Typer already handled everything
    (``--help``, ``--version``).  Raises :class:`ToolError` (64) on usage errors.
    """
    state: dict[str, object] = {}
    try:
        rv = click_command().main(
            args=list(argv), prog_name=PROG, standalone_mode=False, obj=state
        )
    except click_exc.NoArgsIsHelpError:
        raise errors.usage(
            "missing command (send, unread or trust); see xmpp-tool --help") from None
    except click_exc.ClickException as exc:
        raise errors.usage(f"{exc.format_message()} (see {PROG} --help)") from None
    except typer.Abort:
        raise errors.usage("aborted") from None
    request = state.get("request")
    if isinstance(request, SendRequest | UnreadRequest | TrustRequest):
        return request
    if isinstance(rv, int):
        return rv
    return int(Exit.OK)
