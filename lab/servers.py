"""Real prosody and ejabberd (Debian packages) on loopback, for tests and benchmarks.

Everything a server needs lives in one temporary directory: config, data, logs, the
server certificate.  Nothing under /etc or /var/lib is read or written, no daemon of
the host is touched, and two test sessions can run side by side (free ports, a
unique Erlang node name, a private cookie, no epmd).

Used by ``tests/integration/conftest.py`` (pytest fixtures) and by the scripts in
``bench/`` (``python -m lab.servers --help`` starts servers by hand).
This module needs only the standard library and the ``openssl`` command.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The integration tests' server configs (placeholders filled in per run).
SALT = Path(__file__).resolve().parent.parent / "salt"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0  # seconds; normal start-up is 1-5 s, the CI machine may be busy

PROSODY_BINARIES = ("prosody", "prosodyctl")
EJABBERD_BINARIES = ("ejabberdctl", "erl")
APT_HINT = (
    "install them with: apt-get install -y --no-install-recommends "
    "prosody lua-dbi-sqlite3 ejabberd openssl  (or: bash tests/setup.sh)"
)


class ServerError(RuntimeError):
    """A test server could not be prepared, started or asked something."""


# --------------------------------------------------------------------------- helpers


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _which(names: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        # /usr/sbin is not always on a non-root PATH.
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
        if path:
            found[name] = path
        else:
            missing.append(name)
    if missing:
        raise ServerError(f"missing program(s) {', '.join(missing)}; {APT_HINT}")
    return found


def _run(
    argv: list[str],
    *,
    input_text: str | None = None,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        user=user,
        cwd=cwd,
        check=False,
    )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no {path.name})"
    return "\n".join(text.splitlines()[-lines:])


def _stream_features(
    host: str,
    port: int,
    domain: str,
    *,
    direct_tls: bool,
    cafile: Path,
    timeout: float = 3.0,
) -> str:
    """Open a client stream and return the stream features the server offers.

    With ``direct_tls`` the TLS handshake (verifying ``cafile`` and the domain) comes
    first, as in XEP-0368.  Raises OSError/ssl.SSLError when the server is not ready.
    """
    raw = socket.create_connection((host, port), timeout=timeout)
    sock: socket.socket = raw
    try:
        if direct_tls:
            ctx = ssl.create_default_context(cafile=str(cafile))
            sock = ctx.wrap_socket(raw, server_hostname=domain)
        sock.sendall(
            (
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                "xmlns:stream='http://etherx.jabber.org/streams' "
                f"to='{domain}' version='1.0'>"
            ).encode()
        )
        data = b""
        deadline = time.monotonic() + timeout
        while b"</stream:features>" not in data and b"</stream:stream>" not in data:
            if time.monotonic() > deadline:
                raise TimeoutError("no stream features")
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace")
    finally:
        sock.close()


def _wait_ready(
    proc: subprocess.Popen[bytes],
    host: str,
    domain: str,
    port: int,
    tls_port: int,
    cafile: Path,
    log: Path,
    what: str,
) -> None:
    """Wait until both listeners offer stream features for ``domain``."""
    deadline = time.monotonic() + START_TIMEOUT
    last: BaseException | str = "not tried"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(
                f"{what} exited with status {proc.returncode} during start-up; "
                f"last lines of {log}:\n{_tail(log)}"
            )
        try:
            plain = _stream_features(host, port, domain, direct_tls=False, cafile=cafile)
            if "starttls" not in plain:
                last = f"no <starttls/> in stream features on port {port}: {plain[-300:]}"
            else:
                tls = _stream_features(host, tls_port, domain, direct_tls=True, cafile=cafile)
                if "mechanisms" in tls:
                    return
                last = f"no SASL mechanisms on direct TLS port {tls_port}: {tls[-300:]}"
        except (OSError, ssl.SSLError) as exc:
            last = exc
        time.sleep(0.1)
    raise ServerError(
        f"{what} did not answer on {host}:{port}/{tls_port} within {START_TIMEOUT:.0f} s "
        f"(last: {last}); last lines of {log}:\n{_tail(log)}"
    )


def _make_workdir(prefix: str) -> Path:
    """A private temporary directory, on tmpfs (/dev/shm) when there is one: the
    servers fsync every archived message, which on a disk costs ~10-30 ms each."""
    shm = Path("/dev/shm")  # noqa: S108 - a private mkdtemp directory inside it
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


class _Watchdog:
    """Kills a server's process group and removes its directory if we die first.

    A ``sh`` in its own session blocks reading a pipe whose only writer is this
    process; when this process ends in any way (even SIGKILL) the read returns and
    the shell cleans up.  A normal stop kills the watchdog first.
    """

    def __init__(self, pgid: int, workdir: Path) -> None:
        script = (
            'read _ignored; kill -s TERM -- "-$1" 2>/dev/null; sleep 5; '
            'kill -s KILL -- "-$1" 2>/dev/null; rm -rf -- "$2"'
        )
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", script, "xt-watchdog", str(pgid), str(workdir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def disarm(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


def _stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group (it was started in a new session), then SIGKILL."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


# --------------------------------------------------------------------- certificates


@dataclass
class TestCA:
    """A throwaway CA (made with the openssl CLI) plus a second CA that signs nothing."""

    __test__ = False  # not a pytest test class

    directory: Path
    cafile: Path
    cakey: Path
    wrong_cafile: Path

    @classmethod
    def create(cls, directory: Path) -> TestCA:
        directory.mkdir(parents=True, exist_ok=True)
        ca = cls(
            directory=directory,
            cafile=directory / "ca.crt",
            cakey=directory / "ca.key",
            wrong_cafile=directory / "wrong-ca.crt",
        )
        ca._self_signed(ca.cafile, ca.cakey, "xmpp-tool test CA")
        wrong_key = directory / "wrong-ca.key"
        ca._self_signed(ca.wrong_cafile, wrong_key, "xmpp-tool WRONG test CA")
        wrong_key.unlink()
        return ca

    def _openssl(self, *args: str) -> None:
        openssl = _which(("openssl",))["openssl"]
        res = _run([openssl, *args], cwd=self.directory)
        if res.returncode != 0:
            raise ServerError(f"openssl {args[0]} failed: {res.stderr.strip()}")

    def _self_signed(self, crt: Path, key: Path, cn: str) -> None:
        self._openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "7",
            "-subj", f"/CN={cn}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-addext", "subjectKeyIdentifier=hash",
        )  # fmt: skip
        key.chmod(0o600)

    def issue(
        self, domain: str, crt: Path, key: Path, *, names: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
    ) -> None:
        """A server certificate for ``domain`` (as subjectAltName, plus ``names`` and the
        addresses ``ips``), signed by this CA.

        Has the extensions Python 3.13's strict verification requires (AKI, SKI, EKU).
        """
        csr = crt.with_suffix(".csr")
        ext = crt.with_suffix(".ext")
        sans = [f"DNS:{n}" for n in (domain, *names)] + [f"IP:{a}" for a in ips]
        ext.write_text(
            f"subjectAltName={','.join(sans)}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid:always\n"
        )
        self._openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={domain}",
        )  # fmt: skip
        key.chmod(0o600)
        self._openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cafile), "-CAkey", str(self.cakey),
            "-set_serial", str(secrets.randbits(63)), "-days", "7", "-out", str(crt),
            "-extfile", str(ext),
        )  # fmt: skip
        csr.unlink()
        ext.unlink()


# -------------------------------------------------------------------------- servers


@dataclass
class XmppServer:
    """A running XMPP server on loopback (the interface the CLI tests rely on)."""

    kind: str  # "prosody" | "ejabberd"
    domain: str  # XMPP domain served; the certificate has it as subjectAltName
    host: str  # "127.0.0.1"
    port: int  # c2s STARTTLS
    tls_port: int  # c2s direct TLS (XEP-0368)
    cafile: Path  # throwaway CA that signed the server certificate
    wrong_cafile: Path  # another CA that did NOT sign it
    workdir: Path = field(repr=False)  # config, data, logs (removed at stop)
    log: Path = field(repr=False)  # main log file, for diagnostics
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    startup_seconds: float = field(default=0.0, compare=False)
    watchdog: _Watchdog | None = field(default=None, repr=False, compare=False)
    # Group chats (XEP-0045) and HTTP File Upload (XEP-0363), as the lab serves them:
    # the MUC service, the upload service and its HTTPS port on ``host`` (the upload
    # URLs name ``host``, which the certificate has as IP subjectAltName).
    muc_domain: str = ""
    upload_domain: str = ""
    upload_port: int = 0

    def jid(self, user: str) -> str:
        return f"{user}@{self.domain}"

    def room(self, name: str) -> str:
        """The bare JID of room ``name`` on this server's MUC service."""
        return f"{name}@{self.muc_domain}"

    @property
    def server(self) -> str:
        """``host:port`` of the STARTTLS listener (the CLI's ``-s``)."""
        return f"{self.host}:{self.port}"

    @property
    def tls_server(self) -> str:
        """``host:port`` of the direct TLS listener (the CLI's ``-s`` with ``-t``)."""
        return f"{self.host}:{self.tls_port}"

    def register(self, user: str, password: str) -> str:
        """Create the account; returns its bare JID."""
        raise NotImplementedError

    def register_many(self, accounts: dict[str, str]) -> list[str]:
        """Create several accounts (user -> password); returns their bare JIDs."""
        return [self.register(user, password) for user, password in accounts.items()]

    def offline_count(self, user: str) -> int:
        """Messages in the user's offline storage (ejabberd only)."""
        raise NotImplementedError(f"offline_count is not available on {self.kind}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL to its process group) and remove
        its directory.  Idempotent."""
        if self.watchdog is not None:
            self.watchdog.disarm()
            self.watchdog = None
        if self.proc is not None:
            _stop_process(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class ProsodyServer(XmppServer):
    config: Path = field(default=Path(), repr=False)
    prosodyctl: str = field(default="prosodyctl", repr=False)

    def register(self, user: str, password: str) -> str:
        jid = self.jid(user)
        # `adduser` reads the password twice from standard input (no tty: no echo
        # games), so it never appears on a command line.
        res = _run(
            [self.prosodyctl, "--config", str(self.config), "adduser", jid],
            input_text=f"{password}\n{password}\n",
        )
        out = (res.stdout + res.stderr).replace(password, "***")
        if res.returncode != 0:
            raise ServerError(f"prosodyctl adduser {jid} failed ({res.returncode}): {out.strip()}")
        return jid


@dataclass
class EjabberdServer(XmppServer):
    node: str = field(default="", repr=False)
    dist_port: int = field(default=0, repr=False)
    erl: str = field(default="erl", repr=False)
    ctl_args: list[str] = field(default_factory=list, repr=False)
    run_user: str | None = field(default=None, repr=False)
    ctl_env: dict[str, str] = field(default_factory=dict, repr=False)

    def ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``ejabberdctl <our node options> ARGS`` (never pass secrets here)."""
        return _run(
            [*self.ctl_args, *args],
            timeout=timeout,
            env=self.ctl_env,
            user=self.run_user,
            cwd=self.workdir,
        )

    def rpc(self, expr: str, timeout: float = 60.0) -> str:
        """Evaluate an Erlang expression on the server node (bound: ``Node``) from a
        hidden node, the way ejabberdctl connects (same cookie, port, no epmd);
        returns the result printed with ~p."""
        code = f"Node = '{self.node}', R = ({expr}), io:format(\"~p~n\", [R]), halt()."
        res = _run(
            [
                self.erl, "-sname", f"xt-rpc-{secrets.token_hex(4)}@localhost", "-hidden",
                "-noshell", "-noinput", "-erl_epmd_port", str(self.dist_port),
                "-start_epmd", "false", "-dist_listen", "false", "-eval", code,
            ],
            timeout=timeout, env=self.ctl_env, user=self.run_user, cwd=self.workdir,
        )  # fmt: skip
        if res.returncode != 0:
            raise ServerError(f"erl rpc {expr!r} failed: {res.stdout} {res.stderr}".strip())
        return res.stdout.strip()

    def register(self, user: str, password: str) -> str:
        return self.register_many({user: password})[0]

    def register_many(self, accounts: dict[str, str]) -> list[str]:
        # `ejabberdctl register USER HOST PASSWORD` would put the password on the
        # command line of an erl process.  Instead the accounts go in a XEP-0227
        # (PIEFXIS) file readable only by the server's user, imported with
        # `ejabberdctl import_piefxis FILE` (one erl start, ~1 s, for all of them).
        # It fails (exit 1, "import_failed") if an account exists already.
        jids = [self.jid(user) for user in accounts]
        xml = self.workdir / f"register-{secrets.token_hex(8)}.xml"
        fd = os.open(xml, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(_piefxis(self.domain, accounts))
        try:
            if self.run_user:
                pw = pwd.getpwnam(self.run_user)
                os.chown(xml, pw.pw_uid, pw.pw_gid)
            res = self.ctl("import_piefxis", str(xml), timeout=300)  # bench: thousands
        finally:
            xml.unlink(missing_ok=True)
        if res.returncode != 0 or "error" in res.stdout.lower():
            out = res.stdout + res.stderr
            for password in accounts.values():
                out = out.replace(password, "***")
            raise ServerError(
                f"ejabberdctl import_piefxis ({', '.join(jids)}) failed "
                f"({res.returncode}): {out.strip()}"
            )
        return jids

    def offline_count(self, user: str) -> int:
        res = self.ctl("get_offline_count", user, self.domain)
        text = res.stdout.strip()
        if res.returncode != 0 or not text.isdigit():
            raise ServerError(
                f"ejabberdctl get_offline_count {user} {self.domain} failed "
                f"({res.returncode}): {(text + ' ' + res.stderr).strip()}"
            )
        return int(text)


def _xml_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&apos;")
    )


def _piefxis(domain: str, accounts: dict[str, str]) -> str:
    users = "".join(
        f"    <user name='{_xml_escape(user)}' password='{_xml_escape(password)}'/>\n"
        for user, password in accounts.items()
    )
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        "<server-data xmlns='urn:xmpp:pie:0'>\n"
        f"  <host jid='{_xml_escape(domain)}'>\n{users}  </host>\n"
        "</server-data>\n"
    )


def _osfinger() -> str:
    """Salt's ``osfinger`` grain for this Debian host, e.g. ``Debian-12``."""
    try:
        fields = dict(line.split("=", 1) for line in
                      Path("/etc/os-release").read_text().splitlines() if "=" in line)
    except OSError:
        return ""
    return f"Debian-{fields.get('VERSION_ID', '').strip(chr(34)).split('.')[0]}"


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    """Salt's ``defaults.merge``: nested dicts merged, everything else replaced."""
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def formula_config(formula: str, template: str, overrides: dict[str, Any]) -> str:
    """``salt/<formula>/files/<template>`` rendered as the formula's map.jinja would
    (defaults < os_family < osfinger of this host < ``overrides`` in place of pillar),
    so the test servers run the lab's configuration: same modules, same options;
    only ports, paths, the domain and storage differ (the overrides say which)."""
    import jinja2
    import yaml

    params = SALT / formula / "parameters"

    def load(name: str) -> dict[str, Any]:
        data = yaml.safe_load((params / name).read_text()) or {}
        return data if isinstance(data, dict) else {}

    values: dict[str, Any] = load("defaults.yaml")["values"]
    _merge(values, load("os_family.yaml").get("Debian") or {})
    _merge(values, load("osfinger.yaml").get(_osfinger()) or {})
    _merge(values, overrides)
    env = jinja2.Environment(  # noqa: S701 - configuration files, not HTML
        loader=jinja2.FileSystemLoader(SALT / formula / "files"),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        extensions=["jinja2.ext.do"])
    return env.get_template(template).render({formula: values})


def start_prosody(
    ca: TestCA, domain: str = "prosody.test", attempts: int = 3, extra_config: str = ""
) -> ProsodyServer:
    """Start ``prosody -F`` with a throwaway config under a new temporary directory.

    ``extra_config``: Lua lines added to the global section (tests use none).
    """
    bins = _which(PROSODY_BINARIES)
    last: ServerError | None = None
    for _ in range(attempts):  # a free port may be taken between choosing and binding
        t0 = time.monotonic()
        workdir = _make_workdir("xt-prosody-")
        try:
            data = workdir / "data"
            certs = workdir / "certs"
            data.mkdir()
            certs.mkdir()
            muc_domain, upload_domain = f"conference.{domain}", f"upload.{domain}"
            ca.issue(domain, certs / f"{domain}.crt", certs / f"{domain}.key",
                     names=(muc_domain, upload_domain), ips=(LOOPBACK,))  # fmt: skip
            port, tls_port, https_port = free_port(), free_port(), free_port()
            if len({port, tls_port, https_port}) < 3:
                continue
            log = workdir / "prosody.log"
            config = workdir / "prosody.cfg.lua"
            config.write_text(formula_config("prosody", "prosody.cfg.lua.jinja", {
                "domain": domain,
                "interfaces": [LOOPBACK],
                "c2s_ports": [port],
                "c2s_direct_tls_ports": [tls_port],
                "run_as_root": os.geteuid() == 0,  # Debian's prosody refuses root otherwise
                "pidfile": str(workdir / "prosody.pid"),
                "data_path": str(data),
                "log": {"info": str(log), "error": str(workdir / "prosody.err")},
                # SQLite in the work directory instead of the lab's MariaDB
                "sql": {"driver": "SQLite3", "database": str(data / "prosody.sqlite"),
                        "username": "", "password": "", "host": ""},
                "certificate": str(certs / f"{domain}.crt"),
                "key": str(certs / f"{domain}.key"),
                "extra_config": extra_config,
                "upload": {"https_ports": [https_port], "https_interfaces": [LOOPBACK],
                           "external_url": f"https://{LOOPBACK}:{https_port}/"},
            }))
            with open(workdir / "stdout.log", "wb") as out:
                proc = subprocess.Popen(
                    [bins["prosody"], "--config", str(config), "-F"],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                    start_new_session=True,
                )
            server = ProsodyServer(
                kind="prosody",
                domain=domain,
                host=LOOPBACK,
                port=port,
                tls_port=tls_port,
                cafile=ca.cafile,
                wrong_cafile=ca.wrong_cafile,
                workdir=workdir,
                log=log,
                proc=proc,
                config=config,
                prosodyctl=bins["prosodyctl"],
                watchdog=_Watchdog(proc.pid, workdir),
                muc_domain=muc_domain,
                upload_domain=upload_domain,
                upload_port=https_port,
            )
            try:
                _wait_ready(proc, LOOPBACK, domain, port, tls_port, ca.cafile, log, "prosody")
            except ServerError as exc:
                server.stop()
                last = exc
                continue
            server.startup_seconds = time.monotonic() - t0
            return server
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
    assert last is not None
    raise last


def _ejabberd_user() -> str | None:
    """The user to run ejabberdctl as: Debian's script switches root to `ejabberd`
    with su (and a HOME we don't control); running it as that user ourselves keeps
    the environment ours.  Returns None when we already are that user."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    if me == "ejabberd":
        return None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("ejabberd")
        except KeyError as exc:
            raise ServerError(f"no 'ejabberd' user: is the package installed? {APT_HINT}") from exc
        return "ejabberd"
    raise ServerError(
        "the ejabberd fixture must run as root or as the 'ejabberd' user "
        f"(Debian's ejabberdctl refuses other users); running as {me!r}"
    )


def start_ejabberd(ca: TestCA, domain: str = "ejabberd.test", attempts: int = 3) -> EjabberdServer:
    """Start ``ejabberdctl foreground`` with a throwaway config, spool and node name."""
    bins = _which(EJABBERD_BINARIES)
    run_user = _ejabberd_user()
    last: ServerError | None = None
    for attempt in range(attempts):
        t0 = time.monotonic()
        workdir = _make_workdir("xt-ejabberd-")
        try:
            spool, logs = workdir / "spool", workdir / "logs"
            spool.mkdir()
            logs.mkdir()
            muc_domain, upload_domain = f"conference.{domain}", f"upload.{domain}"
            ca.issue(domain, workdir / "server.crt", workdir / "server.key",
                     names=(muc_domain, upload_domain), ips=(LOOPBACK,))  # fmt: skip
            port, tls_port, dist_port = free_port(), free_port(), free_port()
            admin_port, https_port = free_port(), free_port()
            if len({port, tls_port, dist_port, admin_port, https_port}) < 5:
                continue
            node = f"xt-test-{os.getpid()}-{attempt}@localhost"
            cookie = secrets.token_hex(16)
            (workdir / "ejabberd.yml").write_text(formula_config(
                "ejabberd", "ejabberd.yml.jinja", {
                    "domain": domain,
                    "c2s_ip": LOOPBACK,
                    "c2s_port": port,
                    "c2s_direct_tls_port": tls_port,
                    "admin_port": admin_port,
                    "certificate": str(workdir / "server.crt"),
                    "key": str(workdir / "server.key"),
                    # Tests push 10,000 messages through one connection quickly, and
                    # a numeric cap makes mod_offline count the queue on every store.
                    "c2s_shaper": "none",
                    "max_user_offline_messages": "infinity",
                    "upload": {"port": https_port,
                               "put_url": f"https://{LOOPBACK}:{https_port}/upload",
                               "docroot": str(workdir / "upload")},
                    # One node, no cluster: the formula's cluster-safety modules (built
                    # by Salt on its machines) have nothing to guard here.
                    "durable_ack": False,
                    "quorum": {"enabled": False},
                }))
            # ejabberdctl sources this file; ERL_DIST_PORT makes every node (server
            # and ctl clients) use a fixed distribution port without epmd, so we
            # never start (or have to kill) a host-wide epmd.
            (workdir / "ejabberdctl.cfg").write_text(
                f"ERL_DIST_PORT={dist_port}\n"
                'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\n'
                "EJABBERD_BYPASS_WARNINGS=true\n"
            )
            # ejabberdctl points ERL_INETRC at the config dir; without the file every
            # erl prints an error report.
            (workdir / "inetrc").write_text("{lookup, [file, native]}.\n")
            # A private cookie in $HOME/.erlang.cookie (HOME is the workdir for the
            # server and for every ejabberdctl call): -setcookie, even in vm.args,
            # would end up on beam's command line.
            cookie_file = workdir / ".erlang.cookie"
            fd = os.open(cookie_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as f:
                f.write(cookie)
            # vm.args goes to every erl ejabberdctl starts: distribution on loopback only.
            (workdir / "vm.args").write_text("-kernel inet_dist_use_interface {127,0,0,1}\n")
            if run_user:
                pw = pwd.getpwnam(run_user)
                for p in [workdir, *workdir.rglob("*")]:
                    os.chown(p, pw.pw_uid, pw.pw_gid)
            ctl_args = [
                bins["ejabberdctl"],
                "--config-dir", str(workdir),
                "--config", str(workdir / "ejabberd.yml"),
                "--ctl-config", str(workdir / "ejabberdctl.cfg"),
                "--spool", str(spool),
                "--logs", str(logs),
                "--node", node,
            ]  # fmt: skip
            env = {
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME": str(workdir),
                "LANG": "C.UTF-8",
                "ERL_EPMD_ADDRESS": LOOPBACK,
            }
            log = logs / "ejabberd.log"
            with open(logs / "stdout.log", "wb") as out:
                proc = subprocess.Popen(
                    [*ctl_args, "foreground"],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                    env=env,
                    user=run_user,
                    start_new_session=True,
                )
            server = EjabberdServer(
                kind="ejabberd",
                domain=domain,
                host=LOOPBACK,
                port=port,
                tls_port=tls_port,
                cafile=ca.cafile,
                wrong_cafile=ca.wrong_cafile,
                workdir=workdir,
                log=log,
                proc=proc,
                node=node,
                dist_port=dist_port,
                erl=bins["erl"],
                ctl_args=ctl_args,
                run_user=run_user,
                ctl_env=env,
                watchdog=_Watchdog(proc.pid, workdir),
                muc_domain=muc_domain,
                upload_domain=upload_domain,
                upload_port=https_port,
            )
            try:
                _wait_ready(proc, LOOPBACK, domain, port, tls_port, ca.cafile, log, "ejabberd")
                # Two independent erl starts (~1 s each on a busy machine): in parallel.
                with ThreadPoolExecutor(2) as pool:
                    status_job = pool.submit(server.ctl, "status")
                    tables_job = pool.submit(_ejabberd_tables_in_ram, server)
                    status = status_job.result()
                    tables_job.result()
                if status.returncode != 0 or "is started" not in status.stdout:
                    raise ServerError(
                        f"ejabberdctl status: {status.returncode} {status.stdout.strip()} "
                        f"{status.stderr.strip()}"
                    )
            except ServerError as exc:
                server.stop()
                last = exc
                continue
            server.startup_seconds = time.monotonic() - t0
            return server
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
    if last is None:
        last = ServerError("could not pick distinct free ports")
    raise last


# Tables that hold one entry per message under the user's key (Mnesia bags).  As
# ejabberd creates them, disc_only_copies (dets), every insert rewrites the user's
# whole bucket: 1,000 messages to one user took 14 s, 4,000 took 300 s (quadratic).
# disc_copies keeps them in RAM (plus Mnesia's disk log): linear.  ejabberd 23.01's
# documented knob (an ejabberd.schema file in the spool) is ignored when a table is
# first created (ejabberd_mnesia:do_create/4 passes the default definition), so the
# fresh, still empty tables are converted once the node runs.
EJABBERD_RAM_TABLES = ("archive_msg", "offline_msg")


def _ejabberd_tables_in_ram(server: EjabberdServer) -> None:
    tables = ", ".join(EJABBERD_RAM_TABLES)
    out = server.rpc(
        "[rpc:call(Node, mnesia, change_table_copy_type, [T, Node, disc_copies])"
        f" || T <- [{tables}]]"
    )
    results = re.findall(r"\{atomic,ok\}|already_exists", out)
    if len(results) != len(EJABBERD_RAM_TABLES):
        raise ServerError(f"ejabberd: cannot move Mnesia tables {tables} to RAM: {out}")


def start(kind: str, ca: TestCA, prosody_config: str = "") -> XmppServer:
    if kind == "prosody":
        return start_prosody(ca, extra_config=prosody_config)
    if kind == "ejabberd":
        return start_ejabberd(ca)
    raise ValueError(f"unknown server kind {kind!r}")


@contextlib.contextmanager
def running_servers(*kinds: str, prosody_config: str = "") -> Iterator[dict[str, XmppServer]]:
    """Start the given servers with a fresh CA; stop and remove everything on exit."""
    cadir = Path(tempfile.mkdtemp(prefix="xt-ca-"))
    started: dict[str, XmppServer] = {}
    try:
        ca = TestCA.create(cadir)
        for kind in kinds:
            started[kind] = start(kind, ca, prosody_config)
        yield started
    finally:
        for server in started.values():
            server.stop()
        shutil.rmtree(cadir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description="Start throwaway prosody/ejabberd servers on loopback (as the "
        "integration tests do), print how to reach them, and stop them on Ctrl-C "
        "or after --seconds."
    )
    parser.add_argument("kinds", nargs="*", metavar="KIND",
                        help="prosody and/or ejabberd (default: both)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=None,
                        help="stop after this many seconds (default: wait for Ctrl-C)")  # fmt: skip
    args = parser.parse_args(argv)
    kinds = args.kinds or ["prosody", "ejabberd"]
    for kind in kinds:
        if kind not in ("prosody", "ejabberd"):
            parser.error(f"unknown server kind {kind!r} (prosody, ejabberd)")

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Also when started in the background (where SIGINT is ignored) or by `timeout`.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        return _serve(kinds, args.seconds)
    except ServerError as exc:
        print(f"servers.py: {exc}", file=sys.stderr)
        return 1


def _serve(kinds: list[str], seconds: float | None) -> int:
    with running_servers(*kinds) as servers:
        for s in servers.values():
            print(
                f"{s.kind}: domain={s.domain} starttls={s.server} direct_tls={s.tls_server} "
                f"muc={s.muc_domain} upload={s.upload_domain} https={s.host}:{s.upload_port} "
                f"cafile={s.cafile} started in {s.startup_seconds:.2f}s",
                flush=True,
            )
        try:
            if seconds is None:
                signal.pause()
            else:
                time.sleep(seconds)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
