#!/usr/bin/python3
"""Managed by Salt (salt/ejabberd): call ejabberd's local ReST API (mod_http_api).

Usage: ejabberd-api COMMAND < ARGS.json  -- prints the JSON answer; exit 0 on HTTP 200,
1 on any other answer, 2 when the API is unreachable. Arguments (and so passwords) go on
stdin, never on a command line. The API listens on loopback only (ejabberd.yml).
Salt's states use this instead of ejabberdctl (each ejabberdctl call boots an Erlang
node, ~1 s) and instead of curl (one package less on the machines).
"""

import sys
import urllib.error
import urllib.request

API = "{{ ejabberd.api }}"


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: ejabberd-api COMMAND < ARGS.json", file=sys.stderr)
        return 64
    body = sys.stdin.buffer.read() or b"{}"
    # API is the fixed http://127.0.0.1 URL Salt rendered above, never user input.
    req = urllib.request.Request(f"{API}/{sys.argv[1]}", data=body, method="POST",  # noqa: S310
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            sys.stdout.write(resp.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(f"ejabberd-api: HTTP {exc.code}: {exc.read().decode()[:300]}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ejabberd-api: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
