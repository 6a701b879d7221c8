"""A local SMTP server for the email channel's tests: it records what it accepts, as scripted.

A real SMTP server (aiosmtpd's threaded ``Controller`` on ``127.0.0.1``, a free port) standing in
for a mail relay. Every DATA it gets is logged as a :class:`SmtpTransaction` with the reply it
got: the next of the script (:meth:`SmtpServer.reply_to_data`), else ``250 OK``; the accepted
ones (a 2xx reply) are :attr:`SmtpServer.messages`. A recipient can be refused at RCPT
(:meth:`SmtpServer.refuse_recipient`). With ``login=(user, password)`` the server offers AUTH
PLAIN and LOGIN, accepts that pair only and refuses MAIL until a client logged in. With a
:class:`Certificate` it offers STARTTLS (and then requires it, AUTH included) or, with
``implicit_tls=True``, speaks TLS from the first byte. :func:`self_signed_certificate` makes a
certificate at runtime (``cryptography``, else the ``openssl`` command).

:class:`SilentServer` accepts TCP connections and never says a word: an SMTP server that never
greets, for timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.fakes.lifecycle import Served

__all__ = [
    "Certificate",
    "NoCertificateError",
    "SilentServer",
    "SmtpServer",
    "SmtpTransaction",
    "self_signed_certificate",
]

ACCEPTED = "250 OK"
SERVER_HOSTNAME = "smtp.alchemiser.test"  # the greeting's name (no getfqdn() DNS lookup)
_REPLY = re.compile(r"[2-5]\d\d( .*)?")


# --- certificates ----------------------------------------------------------------------------


class NoCertificateError(RuntimeError):
    """No way to make a certificate here (neither ``cryptography`` nor ``openssl``)."""


@dataclass(frozen=True, slots=True)
class Certificate:
    """A self-signed certificate for ``127.0.0.1`` and ``localhost``, and its key (PEM files)."""

    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate only (host names still checked)."""
        return ssl.create_default_context(cafile=str(self.cert_path))


def self_signed_certificate(directory: Path, host: str = "127.0.0.1") -> Certificate:
    """A fresh self-signed certificate for ``host`` (an IP) and ``localhost`` in
    ``directory``; :class:`NoCertificateError` when neither tool is available."""
    certificate = Certificate(directory / "smtp-cert.pem", directory / "smtp-key.pem")
    try:
        _with_cryptography(certificate, host)
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise NoCertificateError(
                "no certificate: the cryptography package is not installed and there is no"
                " openssl command on PATH"
            ) from None
        _with_openssl(openssl, certificate, host)
    return certificate


def _with_cryptography(certificate: Certificate, host: str) -> None:
    from cryptography import x509  # noqa: PLC0415 (optional: openssl is the fallback)
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Alchemiser test SMTP")])
    now = datetime.now(UTC)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    names = [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    certificate.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certificate.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _with_openssl(openssl: str, certificate: Certificate, host: str) -> None:
    command = [
        openssl,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=Alchemiser test SMTP",
        "-addext",
        f"subjectAltName=IP:{host},DNS:localhost",
        "-keyout",
        str(certificate.key_path),
        "-out",
        str(certificate.cert_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise NoCertificateError(f"no certificate: openssl req failed: {done.stderr.strip()}")


# --- the SMTP server -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmtpTransaction:
    """One DATA as the server saw it, and the reply it got.

    ``message`` is the content parsed with ``email.policy.default`` (lines ending in ``\n``,
    as a mail client reads them; ``raw`` is as it arrived); ``login`` is the user the
    client logged in as (None without AUTH); ``tls`` whether the session was encrypted.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    reply: str
    login: str | None
    tls: bool
    received_at_s: float = 0.0  # wall time the DATA ended (Unix seconds)

    @property
    def accepted(self) -> bool:
        """Whether the reply accepted the message (2xx)."""
        return self.reply.startswith("2")


class SmtpServer(Served):
    """An SMTP server on loopback that records and answers as scripted; see the module."""

    def __init__(
        self,
        *,
        login: tuple[str, str] | None = None,
        certificate: Certificate | None = None,
        implicit_tls: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        if implicit_tls and certificate is None:
            raise ValueError("implicit_tls needs a certificate")
        self._host = host
        self._login = login
        self._certificate = certificate
        self._implicit_tls = implicit_tls
        self._lock = threading.Lock()  # script, refusals, log (the loop thread writes them)
        self._script: deque[str] = deque()
        self._refusals: dict[str, str] = {}
        self._log: list[SmtpTransaction] = []
        self._controller: _Controller | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a free port and serve from a background thread (its own event loop)."""
        if self._controller is not None:
            raise RuntimeError("SmtpServer is already started")
        options: dict[str, Any] = {"server_hostname": SERVER_HOSTNAME}
        if self._login is not None:
            options["authenticator"] = self._authenticate
        if self._certificate is not None and self._implicit_tls:
            options["ssl_context"] = self._certificate.server_context()
            options["auth_require_tls"] = False  # aiosmtpd counts STARTTLS only as TLS
        elif self._certificate is not None:
            options["tls_context"] = self._certificate.server_context()
            options["require_starttls"] = True
        else:
            options["auth_require_tls"] = False
        controller = _Controller(_Handler(self), hostname=self._host, port=0, **options)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop serving: cancel the sessions, close the port, join the thread."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def host(self) -> str:
        """The address it listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port it was given."""
        if self._controller is None:
            raise RuntimeError("SmtpServer is not started")
        return int(self._controller.port)

    # --- script ------------------------------------------------------------------------------

    def reply_to_data(self, *replies: str) -> None:
        """Queue ``replies`` (``"421 4.3.2 Service not available"``) for the next DATA
        commands, one each, in order; then ``250 OK`` again."""
        for reply in replies:
            if not _REPLY.fullmatch(reply):
                raise ValueError(f"not an SMTP reply: {reply!r}")
        with self._lock:
            self._script.extend(replies)

    def refuse_recipient(self, address: str, reply: str = "550 5.1.1 Mailbox unavailable") -> None:
        """Answer ``RCPT TO:<address>`` with ``reply`` from now on."""
        if not _REPLY.fullmatch(reply) or reply.startswith("2"):
            raise ValueError(f"not an SMTP refusal: {reply!r}")
        with self._lock:
            self._refusals[address] = reply

    def pending_replies(self) -> int:
        """How many scripted DATA replies no DATA has consumed yet."""
        with self._lock:
            return len(self._script)

    # --- log ---------------------------------------------------------------------------------

    @property
    def transactions(self) -> list[SmtpTransaction]:
        """Every DATA so far, accepted or not, in order (a copy)."""
        with self._lock:
            return list(self._log)

    @property
    def messages(self) -> list[SmtpTransaction]:
        """The accepted DATA so far, in order."""
        return [t for t in self.transactions if t.accepted]

    # --- serving (on the controller's loop thread) -------------------------------------------

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self._login is not None
        user, password = self._login
        if isinstance(data, LoginPassword) and data == (user.encode(), password.encode()):
            return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    def _mail_reply(self, session: Session) -> str | None:
        if self._login is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        return None

    def _rcpt_reply(self, address: str) -> str | None:
        with self._lock:
            return self._refusals.get(address)

    def _data_reply(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        # CRLF ends lines on the wire; a mail client reads the message with its own line ends.
        message = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        with self._lock:
            reply = self._script.popleft() if self._script else ACCEPTED
            self._log.append(
                SmtpTransaction(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    message=message,
                    raw=raw,
                    reply=reply,
                    login=session.auth_data if session.authenticated else None,
                    tls=tls,
                    received_at_s=time.time(),
                )
            )
        return reply


class _Handler:
    """aiosmtpd's hooks, answered by the :class:`SmtpServer`."""

    def __init__(self, owner: SmtpServer) -> None:
        self._owner = owner

    async def handle_MAIL(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        refusal = self._owner._mail_reply(session)
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return ACCEPTED

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._owner._rcpt_reply(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return ACCEPTED

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        return self._owner._data_reply(server, session, envelope)


class _Controller(Controller):
    """aiosmtpd's controller on a port the OS picks: ``port=0`` binds one; this reads which
    before the controller connects to it to finish starting."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]  # unannotated in aiosmtpd


# --- a server that never greets --------------------------------------------------------------


class SilentServer(Served):
    """Accepts TCP connections on loopback, reads nothing and never writes (no greeting)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> Self:
        """Listen on a free port; accept from a background thread."""
        if self._listener is not None:
            raise RuntimeError("SilentServer is already started")
        self._stopping.clear()
        self._listener = socket.create_server((self._host, 0))
        self._listener.settimeout(0.02)  # how often the accept loop looks at _stopping
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection, join the thread."""
        if self._listener is None or self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._listener.close()
        self._listener = self._thread = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._listener is None:
            raise RuntimeError("SilentServer is not started")
        port: int = self._listener.getsockname()[1]
        return port

    @property
    def accepted(self) -> int:
        """How many connections it accepted."""
        with self._lock:
            return len(self._connections)

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                connection, _ = listener.accept()
                with self._lock:
                    self._connections.append(connection)
