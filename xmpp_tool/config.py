"""Configuration: TOML file with named accounts, merged under the command line.

Precedence, highest first: command-line options, then the selected account of
the config file, then built-in defaults.  Which account is used:

1. ``-a NAME`` if given (it must exist);
2. else, if ``-u JID`` is given, the account whose ``jid`` is that JID (or none:
   then nothing from the file applies, so another account's password is never
   sent for a different JID);
3. else the account named by the top-level ``default`` key;
4. else the only account, if there is exactly one.

The TOML parser is imported inside :func:`load_file`, for start-up speed: a run
given everything on the command line reads no config file.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import errors
from .request import CliOptions

ACCOUNT_KEYS = {
    "jid",
    "server",
    "cafile",
    "fingerprint",
    "direct_tls",
    "password_command",
    "password_file",
    "room_password_command",
    "room_password_file",
    "password",
    "timeout",
    "omemo",  # send -e by default (OMEMO, XEP-0384)
    "omemo_blind_trust",  # trust a contact's new devices until one is verified (default)
}
TOP_KEYS = {"default", "accounts"}
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Settings:
    """Everything a session needs, after merging command line and config."""

    jid: str
    host: str | None = None  # None: DNS SRV of the JID's domain, then the domain
    port: int | None = None
    cafile: Path | None = None
    fingerprint: str | None = None  # lowercase hex SHA-256 of the server certificate
    direct_tls: bool = False
    timeout: float = DEFAULT_TIMEOUT
    password_command: str | None = None
    password_file: Path | None = None
    room_password_command: str | None = None  # send -g: the rooms' password
    room_password_file: Path | None = None
    inline_password: str | None = field(default=None, repr=False)
    config_path: Path | None = None
    account: str | None = None
    omemo: bool = False  # send encrypts (OMEMO) unless -E
    omemo_blind_trust: bool = True  # BTBV: new devices trusted until one is verified


def default_config_path(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CONFIG_HOME", "")
    if not base or not os.path.isabs(base):
        home = env.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".config")
    return Path(base) / "xmpp-tool" / "config.toml"


def parse_server(value: str, *, source: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 as ``[addr]:port`` or a bare address)."""
    err = errors.usage if source == "-s" else errors.config
    text = value.strip()
    if not text:
        raise err(f"{source}: empty server address")
    port_text: str | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise err(f"{source}: unbalanced '[' in server address {value!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise err(f"{source}: bad server address {value!r}")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host = text  # a host name, or a bare IPv6 address
    if not host or any(c.isspace() or c in "/@" for c in host):
        raise err(f"{source}: bad server host in {value!r}")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise err(f"{source}: bad port in server address {value!r}")
    return host, int(port_text)


def normalize_fingerprint(value: str, *, source: str) -> str:
    """``sha256:AB:CD:...`` / ``AB:CD...`` / ``abcd...`` -> 64 lowercase hex digits."""
    text = value.strip()
    if text.lower().startswith("sha256:"):
        text = text[len("sha256:") :]
    text = text.replace(":", "").replace(" ", "").lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise errors.config(f"{source}: fingerprint must be a SHA-256 digest (64 hex digits)")
    return text


def load_file(path: Path) -> dict[str, Any]:
    # tomllib (with datetime) is ~2 ms of the CPU a send given -u and -s takes
    import tomllib

    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise errors.config(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise errors.config(f"{path}: is a directory, not a config file") from None
    except PermissionError:
        raise errors.config(f"{path}: permission denied") from None
    except OSError as exc:
        raise errors.config(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise errors.config(f"{path}: invalid TOML: {exc}") from None
    except ValueError:  # open() of a name with a NUL byte (possible in-process only)
        raise errors.config(f"{str(path)!r}: not a valid file name") from None
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise errors.config(
            f"{path}: unknown key {sorted(unknown)[0]!r} (allowed: default, accounts)"
        )
    if "default" in data and not isinstance(data["default"], str):
        raise errors.config(f"{path}: 'default' must be a string (an account name)")
    accounts = data.get("accounts", {})
    if not isinstance(accounts, dict):
        raise errors.config(f"{path}: 'accounts' must be a table of named accounts")
    for name, acct in accounts.items():
        where = f"{path}: account {name!r}"
        if not isinstance(acct, dict):
            raise errors.config(f"{where} must be a table")
        extra = set(acct) - ACCOUNT_KEYS
        if extra:
            raise errors.config(f"{where}: unknown key {sorted(extra)[0]!r}")
        for key in ("jid", "server", "cafile", "fingerprint", "password_command",
                    "password_file", "password", "room_password_command",
                    "room_password_file"):
            if key in acct and not isinstance(acct[key], str):
                raise errors.config(f"{where}: {key!r} must be a string")
        for key in ("direct_tls", "omemo", "omemo_blind_trust"):
            if key in acct and not isinstance(acct[key], bool):
                raise errors.config(f"{where}: {key!r} must be true or false")
        if "timeout" in acct:
            t = acct["timeout"]
            if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= 3600:
                raise errors.config(f"{where}: 'timeout' must be a number of seconds (0-3600]")
    return data


def select_account(
    data: dict[str, Any], opts: CliOptions, path: Path
) -> tuple[str | None, dict[str, Any]]:
    accounts: dict[str, Any] = data.get("accounts", {})
    if opts.account is not None:
        if opts.account not in accounts:
            raise errors.config(f"{path}: no account named {opts.account!r}")
        return opts.account, accounts[opts.account]
    if opts.user is not None:
        want = opts.user.strip().lower()
        for name, acct in accounts.items():
            if str(acct.get("jid", "")).strip().lower() == want:
                return name, acct
        return None, {}
    default = data.get("default")
    if default is not None:
        if default not in accounts:
            raise errors.config(f"{path}: default account {default!r} is not defined")
        return default, accounts[default]
    if len(accounts) == 1:
        name = next(iter(accounts))
        return name, accounts[name]
    if len(accounts) > 1:
        raise errors.config(f"{path}: several accounts and no 'default': choose one with -a")
    return None, {}


def _path_in(base: Path, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base.parent / p


def resolve(opts: CliOptions, env: dict[str, str] | None = None) -> Settings:
    """Merge the command line over the config file into :class:`Settings`."""
    env = dict(os.environ) if env is None else env
    path = opts.config if opts.config is not None else default_config_path(env)
    data: dict[str, Any] = {}
    if opts.config is not None or path.exists():
        data = load_file(path)
    elif opts.account is not None:
        raise errors.config(f"-a {opts.account}: no config file ({path} does not exist)")
    name, acct = select_account(data, opts, path)
    where = f"{path}: account {name!r}" if name is not None else str(path)

    jid = opts.user if opts.user is not None else acct.get("jid")
    if not jid:
        raise errors.config(
            f"no account JID: give -u JID or set 'jid' in an account of {path}"
        )

    host: str | None = None
    port: int | None = None
    if opts.server is not None:
        host, port = parse_server(opts.server, source="-s")
    elif acct.get("server"):
        host, port = parse_server(acct["server"], source=f"{where}: server")

    cafile: Path | None = None
    if opts.cafile is not None:
        cafile = opts.cafile
    elif acct.get("cafile"):
        cafile = _path_in(path, acct["cafile"])
    if cafile is not None and not cafile.is_file():
        src = "-C" if opts.cafile is not None else f"{where}: cafile"
        raise errors.config(f"{src}: CA file {cafile} not found")

    fingerprint = None
    if acct.get("fingerprint"):
        fingerprint = normalize_fingerprint(acct["fingerprint"], source=where)

    return Settings(
        jid=jid,
        host=host,
        port=port,
        cafile=cafile,
        fingerprint=fingerprint,
        direct_tls=opts.direct_tls or bool(acct.get("direct_tls", False)),
        timeout=float(acct.get("timeout", DEFAULT_TIMEOUT)),
        password_command=acct.get("password_command") or None,
        password_file=_path_in(path, acct["password_file"]) if acct.get("password_file") else None,
        room_password_command=acct.get("room_password_command") or None,
        room_password_file=(_path_in(path, acct["room_password_file"])
                            if acct.get("room_password_file") else None),
        inline_password=acct.get("password"),
        config_path=path if data else None,
        account=name,
        omemo=bool(acct.get("omemo", False)),
        omemo_blind_trust=bool(acct.get("omemo_blind_trust", True)),
    )


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)
