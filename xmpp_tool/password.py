"""Where the password comes from — never from argv, never echoed or logged.

Sources, first match wins:

1. environment ``XMPP_TOOL_PASSWORD``;
2. the account's ``password_command`` (run by ``/bin/sh -c``, first line of stdout);
3. the account's ``password_file`` (first line);
4. the account's inline ``password``, only if the config file is not readable by
   group or others (otherwise refuse, naming the file and its mode);
5. a prompt on the terminal (``/dev/tty``), without echo.

A room's password (``send -g``) comes from the environment
``XMPP_TOOL_ROOM_PASSWORD`` or the account's ``room_password_command`` /
``room_password_file``, read the same way: :func:`room_password`.

``getpass`` is imported inside :func:`_prompt_tty`, for start-up speed: only a
prompt needs it.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable
from dataclasses import replace

from . import errors
from .config import Settings, file_mode

ENV_VAR = "XMPP_TOOL_PASSWORD"
ROOM_ENV_VAR = "XMPP_TOOL_ROOM_PASSWORD"

log = logging.getLogger("xmpp_tool")


def _first_line(data: str) -> str:
    return data.splitlines()[0] if data else ""


def _have_tty() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _prompt_tty(prompt: str) -> str:
    # getpass reads /dev/tty with echo off; it falls back to stdin (and echo!)
    # when there is no terminal, which is why _have_tty() is checked first.
    import getpass

    return getpass.getpass(prompt)


def get_password(
    settings: Settings,
    env: dict[str, str] | None = None,
    *,
    prompt: Callable[[str], str] | None = None,
    have_tty: Callable[[], bool] = _have_tty,
) -> tuple[str, str]:
    """Return ``(password, source)``; ``source`` names where it came from (for -v)."""
    env = dict(os.environ) if env is None else env

    value = env.get(ENV_VAR)
    if value:
        return value, f"environment {ENV_VAR}"

    if settings.password_command:
        try:
            proc = subprocess.run(
                ["/bin/sh", "-c", settings.password_command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                check=False,
                timeout=120,
            )
        except subprocess.TimeoutExpired:
            raise errors.config("password_command timed out") from None
        except OSError as exc:
            raise errors.config(f"password_command could not run: {exc.strerror}") from None
        if proc.returncode != 0:
            raise errors.config(f"password_command failed (exit status {proc.returncode})")
        try:
            line = _first_line(proc.stdout.decode("utf-8"))
        except UnicodeDecodeError:
            raise errors.config("password_command printed something that is not UTF-8") from None
        if not line:
            raise errors.config("password_command printed no password")
        return line, "password_command"

    if settings.password_file is not None:
        path = settings.password_file
        try:
            line = _first_line(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise errors.config(f"password_file {path} not found") from None
        except UnicodeDecodeError:
            raise errors.config(f"password_file {path} is not UTF-8") from None
        except OSError as exc:
            raise errors.config(f"password_file {path}: {exc.strerror or exc}") from None
        if not line:
            raise errors.config(f"password_file {path} is empty")
        return line, f"password_file {path}"

    if settings.inline_password is not None:
        cfg = settings.config_path
        if cfg is None:  # pragma: no cover - an inline password comes from a file
            raise errors.config("inline password without a config file")
        mode = file_mode(cfg)
        if mode & 0o044:
            raise errors.config(
                f"{cfg} has mode {mode:04o} (readable by group or others): refusing its "
                f"inline password; chmod 600 {cfg} or use password_command/password_file"
            )
        if not settings.inline_password:
            raise errors.config(f"{cfg}: inline password is empty")
        return settings.inline_password, f"inline password in {cfg}"

    if prompt is None:
        if not have_tty():
            raise errors.config(
                f"no password: set {ENV_VAR}, or password_command/password_file/password "
                "in the config file, or run on a terminal to be prompted"
            )
        prompt = _prompt_tty
    try:
        value = prompt(f"Password for {settings.jid}: ")
    except (EOFError, KeyboardInterrupt):
        raise errors.config("no password entered") from None
    if not value:
        raise errors.config("no password entered")
    return value, "terminal prompt"


def obtain(settings: Settings) -> str:
    """The account's password (its source, never the password, goes to -v)."""
    secret, source = get_password(settings)
    log.info("password from %s", source)
    return secret


def room_password(settings: Settings, env: dict[str, str] | None = None) -> str | None:
    """The rooms' password, never from argv: environment ``XMPP_TOOL_ROOM_PASSWORD``,
    else the account's ``room_password_command`` or ``room_password_file`` (read
    like ``password_command``/``password_file``); None if there is none."""
    env = dict(os.environ) if env is None else env
    value = env.get(ROOM_ENV_VAR)
    if value:
        return value
    if settings.room_password_command is None and settings.room_password_file is None:
        return None
    only_room = replace(settings, password_command=settings.room_password_command,
                        password_file=settings.room_password_file, inline_password=None)
    try:
        secret, source = get_password(only_room, {}, have_tty=lambda: False)
    except errors.ToolError as exc:
        raise errors.config(f"room password: {exc.message}") from None
    log.info("room password from room_%s", source)
    return secret
