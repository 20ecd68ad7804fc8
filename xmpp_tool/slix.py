"""slixmpp, imported and prepared here and nowhere else.

Every other module reaches slixmpp through this one, as attributes: ``slix.JID``,
``slix.IqError``, ``slix.ClientXMPP``...  Each name is bound on first use, after
:func:`prepare` has put its speed fixes in place, so no module can import slixmpp
too early, and a run that never talks XMPP (``--help``, a usage error) never
imports it.  (So never ``from .slix import JID``: that would import slixmpp at
import time.)  The imports inside functions here are for start-up speed: slixmpp,
and each of the modules a name comes from, load only when first needed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import types
from typing import TYPE_CHECKING, Any

from . import errors

#: name here -> (slixmpp module, name there); bound by :func:`__getattr__`
_NAMES = {
    "ClientXMPP": ("slixmpp", "ClientXMPP"),
    "JID": ("slixmpp.jid", "JID"),
    "InvalidJID": ("slixmpp.jid", "InvalidJID"),
    "IqError": ("slixmpp.exceptions", "IqError"),
    "IqTimeout": ("slixmpp.exceptions", "IqTimeout"),
    "PresenceError": ("slixmpp.exceptions", "PresenceError"),
    "Message": ("slixmpp.stanza", "Message"),
    "register_plugin": ("slixmpp.plugins.base", "register_plugin"),
    "DataForm": ("slixmpp.plugins.xep_0004", "Form"),  # XEP-0004 data form
    "Displayed": ("slixmpp.plugins.xep_0490.stanza", "Displayed"),  # XEP-0490 payload
    "parse_timestamp": ("slixmpp.plugins.xep_0082", "parse"),  # XEP-0082 date-time
}

# slixmpp is untyped where we use it: its names are Any here, as they always were.
ClientXMPP: Any
JID: Any
InvalidJID: Any
IqError: Any
IqTimeout: Any
PresenceError: Any
Message: Any
register_plugin: Any
DataForm: Any
Displayed: Any
parse_timestamp: Any

_prepared = False


def prepare(need_dns: bool = True) -> None:
    """Import slixmpp once, with speed fixes for a short-lived client.

    - slixmpp.xmlstream.tostring imports pygments at import time when it is
      installed (Typer pulls it in via rich) only to colour debug dumps we never
      show: hide it for that import (~30 ms).
    - Likewise aiodns (~30 ms), which slixmpp only uses for DNS SRV lookups, when
      the server address is given (-s or ``server``): no SRV lookup happens then.
    - slixmpp's SCRAM ``Hi()`` is a pure-Python PBKDF2 loop (0.1-0.3 s for
      prosody's 10000 iterations on this machine); ``hashlib.pbkdf2_hmac`` computes
      exactly Hi() (RFC 5802 defines Hi as PBKDF2 with HMAC) in C.
    - slixmpp.version asks importlib.metadata for its own version, and importing
      that (email, zipfile, csv, ...) costs ~12 ms of CPU: see
      :func:`_preseed_version`.
    """
    global _prepared
    if _prepared:
        return
    _preseed_version()
    hide = ["pygments"] if need_dns else ["pygments", "aiodns"]

    blocked = [name for name in hide if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import slixmpp  # noqa: F401
        from slixmpp.util.sasl import mechanisms
    finally:
        for name in blocked:
            del sys.modules[name]

    def hi(self: Any, text: Any, salt: bytes, iterations: int) -> bytes:
        return hashlib.pbkdf2_hmac(self.hash().name, bytes(text), salt, iterations)

    if hasattr(mechanisms, "SCRAM") and hasattr(mechanisms.SCRAM, "Hi"):
        mechanisms.SCRAM.Hi = hi  # type: ignore[method-assign]
    _prepared = True


def _preseed_version() -> None:
    """Give slixmpp its ``slixmpp.version`` module without importlib.metadata.

    The version is the one importlib.metadata would report: the name of the
    ``slixmpp-X.Y.Z.dist-info`` directory installed beside the package that is
    imported.  When there is no such directory (a source checkout, an egg, a zip),
    nothing is pre-seeded and slixmpp's own module does the lookup.
    """
    if "slixmpp" in sys.modules or "slixmpp.version" in sys.modules:
        return
    try:
        spec = importlib.util.find_spec("slixmpp")
        locations = list(spec.submodule_search_locations or []) if spec else []
        if len(locations) != 1:
            return
        site = os.path.dirname(locations[0])
        found = [name[len("slixmpp-") : -len(".dist-info")] for name in os.listdir(site)
                 if name.startswith("slixmpp-") and name.endswith(".dist-info")]  # fmt: skip
    except (ImportError, ValueError, OSError):
        return
    if len(found) != 1:
        return  # none, or several (a broken install): let slixmpp decide
    version = found[0]
    parts = version.split(".")[:3]
    module = types.ModuleType("slixmpp.version")
    module.__version__ = version  # type: ignore[attr-defined]
    module.__version_info__ = (  # type: ignore[attr-defined]
        tuple(int(p) for p in parts) if len(parts) == 3 and all(p.isdigit() for p in parts)
        else (0, 0, 0)
    )
    sys.modules["slixmpp.version"] = module


def _bind(name: str) -> Any:
    """One of slixmpp's names, bound here on first use, slixmpp prepared first."""
    if name not in globals():
        prepare()
        module, attr = _NAMES[name]
        globals()[name] = getattr(importlib.import_module(module), attr)
    return globals()[name]


if not TYPE_CHECKING:  # (mypy: only the names declared above exist)

    def __getattr__(name: str) -> Any:
        if name not in _NAMES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return _bind(name)


def jid_or_error(value: str, what: str) -> Any:
    """Parse a JID with slixmpp's parser; invalid -> exit 65 naming ``what``."""
    parse, invalid = _bind("JID"), _bind("InvalidJID")
    try:
        jid = parse(value)
    except invalid as exc:
        raise errors.dataerr(f"invalid {what} {value!r}: {exc}") from None
    except Exception as exc:  # the Rust JID parser raises other types on odd input
        raise errors.dataerr(f"invalid {what} {value!r}: {exc}") from None
    if not jid.domain:
        raise errors.dataerr(f"invalid {what} {value!r}: no domain")
    return jid
