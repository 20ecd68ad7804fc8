"""``send -F``: HTTP File Upload (XEP-0363), then the URL goes out as the message.

Order, so that a refusal sends nothing: the file is opened and measured before
login; after login the upload service is found by disco (slixmpp's xep_0363
``find_upload_service``) and its ``max-file-size`` is checked; then a slot is
requested and the file PUT over HTTPS; only then is any message sent.

The HTTPS connection is verified exactly like the XMPP one: the CA file (``-C``,
``cafile``) or the system store with the host name checked, or the account's
SHA-256 fingerprint pin (then the upload host must present that same
certificate).  Only ``https`` slot URLs are accepted.  The HTTP client is aiohttp,
the one slixmpp's own ``upload_file`` uses; that helper is not used because it
opens its session without our TLS settings.  aiohttp, mimetypes and the AES-GCM of
``send -e -F`` are imported inside the functions that use them, for start-up speed:
only ``send -F`` needs them.

With ``send -e`` the file is encrypted on the way up (XEP-0454, what the apps do):
AES-256-GCM with a fresh key and IV, the tag appended; the message, itself
encrypted, carries ``aesgcm://host/path#<IV hex><key hex>``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import errors
from .config import Settings
from .session import Session, tls_context

log = logging.getLogger("xmpp_tool")

CHUNK = 256 * 1024
FORM_TYPE = "urn:xmpp:http:upload:0"
#: the only slot headers XEP-0363 allows a client to send on
SLOT_HEADERS = {"authorization", "cookie", "expires"}


def human(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


def max_file_size(info: Any) -> int | None:
    """The service's ``max-file-size`` from its disco#info form, if it has one."""
    for form in info["disco_info"].iterables:
        values = form["values"]
        if values.get("FORM_TYPE") in ([FORM_TYPE], FORM_TYPE):
            raw = values.get("max-file-size")
            raw = raw[0] if isinstance(raw, list) and raw else raw
            try:
                return int(str(raw))
            except (TypeError, ValueError):
                return None
    return None


#: XEP-0454 (OMEMO media sharing): AES-256-GCM, a 12-byte IV, the 16-byte tag appended
KEY_BYTES, IV_BYTES, TAG_BYTES = 32, 12, 16


@dataclass
class Upload:
    path: Path
    size: int
    name: str
    content_type: str
    settings: Settings
    progress: bool = False
    #: with ``send -e``: (key, iv); the file goes up encrypted, the URL becomes aesgcm://
    sealed: tuple[bytes, bytes] | None = None

    def seal(self) -> None:
        """Encrypt what is uploaded (XEP-0454, as the apps do): the server stores only
        ciphertext, under a random name with the file's extension (which the apps
        use to show it), and the key travels in the URL's fragment, inside the
        OMEMO message."""
        import secrets

        self.sealed = (secrets.token_bytes(KEY_BYTES), secrets.token_bytes(IV_BYTES))
        self.name = secrets.token_hex(16) + "".join(self.path.suffixes[-1:])
        self.content_type = "application/octet-stream"

    @property
    def wire_size(self) -> int:
        """What is PUT: the file, plus the GCM tag when it is encrypted."""
        return self.size + (TAG_BYTES if self.sealed else 0)

    @classmethod
    def open(cls, file: str, settings: Settings, *, progress: bool = False) -> Upload:
        """Check the file before anything else happens (65 if it is unusable)."""
        path = Path(file)
        try:
            st = path.stat()
            if not path.is_file():
                raise errors.dataerr(f"-F {file}: not a regular file")
            with path.open("rb"):
                pass
        except FileNotFoundError:
            raise errors.dataerr(f"-F {file}: no such file") from None
        except PermissionError:
            raise errors.dataerr(f"-F {file}: permission denied") from None
        except (OSError, ValueError) as exc:
            raise errors.dataerr(f"-F {file}: cannot read: {exc}") from None
        if st.st_size == 0:
            raise errors.dataerr(f"-F {file}: the file is empty")
        import mimetypes

        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return cls(path, st.st_size, path.name, ctype, settings, progress)

    async def transfer(self, session: Session) -> str:
        """Slot, PUT, and the GET URL to send."""
        xep = session.client.plugin["xep_0363"]
        domain = session.jid.domain
        info = await session.guard(
            xep.find_upload_service(timeout=session.settings.timeout),
            "looking for the HTTP upload service",
        )
        if info is None:
            raise errors.protocol(f"no HTTP file upload service (XEP-0363) on {domain}")
        service = info["from"]
        limit = max_file_size(info)
        if limit is not None and self.wire_size > limit:
            raise errors.protocol(
                f"-F {self.path}: {human(self.wire_size)} ({self.wire_size} bytes) is more "
                f"than the {human(limit)} ({limit} bytes) {service} accepts; nothing sent"
            )
        slot_iq = await session.guard(
            xep.request_slot(service, self.name, self.wire_size, self.content_type,
                             timeout=session.settings.timeout),
            f"requesting an upload slot from {service}",
        )  # fmt: skip
        slot = slot_iq["http_upload_slot"]
        put_url, get_url = str(slot["put"]["url"]), str(slot["get"]["url"])
        for url in (put_url, get_url):
            if not url.lower().startswith("https://"):
                raise errors.protocol(f"upload slot URL is not https: {url}")
        headers = {h["name"]: h["value"] for h in slot["put"]["headers"]
                   if str(h["name"]).lower() in SLOT_HEADERS}  # fmt: skip
        await self.put(put_url, headers)
        log.info("uploaded %s (%d bytes)", self.name, self.wire_size)
        return get_url

    def message_url(self, get_url: str) -> str:
        """What the message carries: the URL, or for an encrypted file its aesgcm://
        form with the IV and the key as the fragment (XEP-0454)."""
        if self.sealed is None:
            return get_url
        key, iv = self.sealed
        where = get_url.split("://", 1)[1].split("#", 1)[0]
        return f"aesgcm://{where}#{iv.hex()}{key.hex()}"

    def _ssl(self) -> Any:
        import aiohttp

        if self.settings.fingerprint:
            return aiohttp.Fingerprint(bytes.fromhex(self.settings.fingerprint))
        return tls_context(self.settings)

    async def _chunks(self) -> AsyncIterator[bytes]:
        sent = 0
        encryptor = None
        if self.sealed is not None:
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

            key, iv = self.sealed
            encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
        with self.path.open("rb") as fh:
            while sent < self.size:
                chunk = fh.read(min(CHUNK, self.size - sent))
                if not chunk:
                    raise errors.dataerr(f"-F {self.path}: the file shrank while uploading")
                sent += len(chunk)
                if encryptor is not None:
                    chunk = encryptor.update(chunk)
                    if sent == self.size:
                        chunk += encryptor.finalize() + encryptor.tag
                if self.progress:
                    pct = 100 * sent // self.size
                    sys.stderr.write(f"\rxmpp-tool: uploading {self.name}: {pct:3d}% "
                                     f"({human(sent)} of {human(self.size)})")  # fmt: skip
                    sys.stderr.flush()
                yield chunk
        if self.progress:
            sys.stderr.write("\n")
            sys.stderr.flush()

    async def put(self, url: str, slot_headers: dict[str, str]) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.settings.timeout, sock_read=self.settings.timeout
        )
        headers = {
            **slot_headers,
            "Content-Length": str(self.wire_size),
            "Content-Type": self.content_type,
            "User-Agent": "xmpp-tool",
        }
        host = url.split("/", 3)[2] if url.count("/") >= 2 else url
        log.info("uploading %s (%d bytes%s) to %s", self.name, self.wire_size,
                 ", encrypted" if self.sealed else "", host)  # fmt: skip
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, trust_env=False) as http,
                http.put(url, data=self._chunks(), headers=headers, ssl=self._ssl(),
                         allow_redirects=False) as resp,
            ):  # fmt: skip
                if resp.status >= 300:
                    raise errors.protocol(
                        f"upload to {host} failed: HTTP {resp.status} {resp.reason or ''}; "
                        "nothing sent"
                    )
        except aiohttp.ServerFingerprintMismatch as exc:
            raise errors.noperm(
                f"upload host {host}: TLS certificate does not match the configured "
                f"fingerprint (its is sha256:{exc.got.hex()}); nothing sent"
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            reason = getattr(exc.certificate_error, "verify_message", None) or str(
                exc.certificate_error
            )
            raise errors.noperm(
                f"upload host {host}: TLS certificate verification failed: {reason}; "
                "nothing sent"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise errors.unavailable(
                f"cannot connect to upload host {host}: {exc.os_error.strerror or exc}; "
                "nothing sent"
            ) from None
        except TimeoutError:
            raise errors.tempfail(f"upload to {host} timed out; nothing sent") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise errors.unavailable(f"upload to {host} failed: {exc}; nothing sent") from None


def progress_wanted(quiet: bool) -> bool:
    """Progress only for a person watching: stderr is a terminal and not -q."""
    try:
        return not quiet and os.isatty(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
