"""TLS probe run ON the target by the testinfra suite (python3 stdlib only).

Connects to 127.0.0.1:PORT, optionally sends a PROXY protocol v1 header (what
haproxy's send-proxy sends), negotiates TLS either directly (XEP-0368) or by
XMPP STARTTLS, verifies the server certificate against the given CA and the XMPP
domain (or an address), and prints one JSON line: {"ok", "error", "subject", "san",
"ips", "tls"}. Mode "https": direct TLS, then `GET path` (the answer's "status").
The test appends `main('<JSON params>')` and pipes the text to `python3 -` on the
target; it holds no secrets (the CA certificate is public).
"""

from __future__ import annotations

import json
import socket
import ssl
from typing import Any


def run(p: dict[str, Any]) -> dict[str, Any]:
    sock = socket.create_connection((p.get("address", "127.0.0.1"), p["port"]), timeout=15)
    if p.get("proxy"):
        sock.sendall(f"PROXY TCP4 192.0.2.1 127.0.0.1 40000 {p['port']}\r\n".encode())
    if p["mode"] == "starttls":
        sock.sendall(
            (f"<?xml version='1.0'?><stream:stream to='{p['domain']}' version='1.0' "
             "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>").encode())
        buf = b""
        while b"</stream:features>" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed before stream features: {buf[-200:]!r}")
            buf += chunk
        if b"urn:ietf:params:xml:ns:xmpp-tls" not in buf:
            raise ConnectionError("no STARTTLS offered")
        sock.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        buf = b""
        while b"proceed" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed before <proceed/>")
            buf += chunk
    ctx = ssl.create_default_context(cadata=p["ca"])
    tls = ctx.wrap_socket(sock, server_hostname=p["domain"])
    cert: Any = tls.getpeercert() or {}
    out = {
        "ok": True, "error": "", "tls": tls.version(),
        "subject": dict(x[0] for x in cert.get("subject", ())),
        "san": [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"],
        "ips": [v for k, v in cert.get("subjectAltName", ()) if k == "IP Address"],
    }
    if p["mode"] == "https":
        tls.sendall(f"GET {p.get('path', '/')} HTTP/1.1\r\nHost: {p['domain']}\r\n"
                    "Connection: close\r\n\r\n".encode())
        head = tls.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
        out["status"] = int(head.split()[1]) if head.startswith("HTTP/") else 0
    tls.close()
    return out


def main(params_json: str) -> None:
    try:
        result = run(json.loads(params_json))
    except (OSError, ssl.SSLError, ConnectionError) as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
