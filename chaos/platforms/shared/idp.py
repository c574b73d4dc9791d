"""The identity provider of a local topology: bearer JWTs and the key set that checks them.

Tokens are signed with **ES256** (ECDSA on P-256, SHA-256). Envoy's ``jwt_authn``
accepts ES256 as well as RS256; ES256 is chosen because a P-256 key is generated in
well under a millisecond (an RSA-2048 key takes tens to hundreds), so a key rotation
during a fault costs nothing measurable, and tokens stay short. The ``kid`` of a key
is its RFC 7638 JWK thumbprint, so the same key always has the same ``kid``.

The key set holds **only the active key**. :meth:`IdentityProvider.rotate_key`
replaces it: the old key stops signing and leaves the key set, so a validator that
kept the old key set rejects every token issued afterwards (the *policy-desync*
fault). :meth:`IdentityProvider.restore_key` / :meth:`IdentityProvider.revert`
make an earlier key active again (every key is kept in a history), which is the
fault's revert. Listeners registered with :meth:`IdentityProvider.on_rotate` get the
new key set on every change: the mesh's control plane pushes it to its proxies, the
sidecar setup does not listen and keeps its stale file.

:class:`IdpServer` publishes the provider over HTTP on a loopback address:
``GET /.well-known/jwks.json``, ``GET|POST /token`` and ``GET /healthz``.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TypedDict
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chaos.errors import AddressInUseError, InputError, PlatformError
from chaos.outpaths import replace_file
from chaos.platforms.shared.keyfiles import private_dir, write_private

_log = logging.getLogger(__name__)

ALGORITHM = "ES256"
JWKS_PATH = "/.well-known/jwks.json"
TOKEN_PATH = "/token"
HEALTH_PATH = "/healthz"
JWKS_FILE = "jwks.json"
#: Longest token lifetime the HTTP endpoint hands out when a client asks for one.
MAX_TOKEN_TTL_S = 86_400


class Jwk(TypedDict):
    """One public key as RFC 7517/7518 write an EC key."""

    kty: str
    crv: str
    x: str
    y: str
    kid: str
    alg: str
    use: str


class JwkSet(TypedDict):
    """An RFC 7517 key set."""

    keys: list[Jwk]


RotateCallback = Callable[[str], object]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class _SigningKey:
    kid: str
    key: ec.EllipticCurvePrivateKey
    jwk: Jwk

    def __repr__(self) -> str:  # the private key must never reach a log line
        return f"_SigningKey(kid={self.kid!r})"

    @classmethod
    def generate(cls) -> _SigningKey:
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        x = _b64url(numbers.x.to_bytes(32, "big"))
        y = _b64url(numbers.y.to_bytes(32, "big"))
        # RFC 7638: the required members only, sorted, no whitespace.
        canonical = json.dumps(
            {"crv": "P-256", "kty": "EC", "x": x, "y": y}, separators=(",", ":"), sort_keys=True
        )
        kid = _b64url(hashlib.sha256(canonical.encode()).digest())
        jwk = Jwk(kty="EC", crv="P-256", x=x, y=y, kid=kid, alg=ALGORITHM, use="sig")
        return cls(kid, key, jwk)


@dataclass(frozen=True)
class TokenCheck:
    """The outcome of checking a token against a key set."""

    valid: bool
    reason: str = ""
    subject: str | None = None
    kid: str | None = None


def check_token(token: str, jwks_json: str, *, issuer: str, audience: str) -> TokenCheck:
    """Check ``token`` against the key set ``jwks_json`` as a validating proxy would."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        keys = [jwt.PyJWK(k) for k in json.loads(jwks_json).get("keys", [])]
        match = [k for k in keys if k.key_id == kid]
        if not match:
            return TokenCheck(False, f"no key with kid {kid!r} in the key set", kid=kid)
        claims = jwt.decode(
            token, match[0].key, algorithms=[ALGORITHM], issuer=issuer, audience=audience
        )
    except (jwt.PyJWTError, ValueError) as exc:
        return TokenCheck(False, str(exc))
    return TokenCheck(True, subject=str(claims.get("sub")), kid=kid)


class IdentityProvider:
    """Issues JWTs for ``audience`` as ``issuer`` and publishes the key set that checks them.

    With ``key_dir``, each private key is written there as ``<kid>.key.pem`` (mode
    0600, directory 0700) and the current public key set as ``jwks.json``.
    Thread-safe: the HTTP server and a fault may use it at the same time.
    """

    def __init__(self, issuer: str, audience: str, *, key_dir: Path | None = None) -> None:
        self.issuer = issuer
        self.audience = audience
        self.key_dir = key_dir
        self._lock = threading.RLock()
        self._history: list[_SigningKey] = []
        self._active: _SigningKey = self._add_key()
        self._before_rotation: str | None = None
        self._listeners: list[RotateCallback] = []
        self._write_jwks_file()

    def __repr__(self) -> str:
        return f"IdentityProvider(issuer={self.issuer!r}, kid={self.kid!r})"

    @property
    def kid(self) -> str:
        """The ``kid`` of the key that signs now."""
        with self._lock:
            return self._active.kid

    @property
    def kids(self) -> list[str]:
        """Every key ever used, oldest first."""
        with self._lock:
            return [k.kid for k in self._history]

    def token(self, subject: str = "locust", ttl_s: int = 3600) -> str:
        """A JWT for ``subject`` valid for ``ttl_s`` seconds, signed with the active key."""
        if ttl_s <= 0:
            raise ValueError("token TTL must be positive")
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + ttl_s,
        }
        with self._lock:
            active = self._active
        return jwt.encode(claims, active.key, algorithm=ALGORITHM, headers={"kid": active.kid})

    def jwks(self) -> JwkSet:
        """The public key set (RFC 7517): the active key only."""
        with self._lock:
            return JwkSet(keys=[Jwk(**self._active.jwk)])

    def jwks_json(self) -> str:
        """:meth:`jwks` as JSON, as Envoy's ``local_jwks`` and ``remote_jwks`` read it."""
        return json.dumps(self.jwks(), sort_keys=True)

    def write_jwks(self, path: Path) -> None:
        """Write the current key set to ``path`` atomically (a sidecar's static key file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        text = self.jwks_json()
        replace_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def rotate_key(self) -> str:
        """Sign with a new key from now on and drop the old one from the key set; the new kid."""
        with self._lock:
            self._before_rotation = self._active.kid
            self._active = self._add_key()
            kid = self._active.kid
            self._write_jwks_file()
        _log.info("identity provider %s rotated its signing key to kid %s", self.issuer, kid)
        self._notify()
        return kid

    def restore_key(self, kid: str) -> None:
        """Make the earlier key ``kid`` the active (and only published) key again.

        Idempotent: restoring the key that is already active changes nothing and
        notifies no one.
        """
        with self._lock:
            found = [k for k in self._history if k.kid == kid]
            if not found:
                raise ValueError(f"unknown signing key {kid!r}")
            if self._active.kid == kid:
                return
            self._active = found[0]
            self._write_jwks_file()
        _log.info("identity provider %s restored signing key kid %s", self.issuer, kid)
        self._notify()

    def revert(self) -> str:
        """Restore the key that was active before the last :meth:`rotate_key`; its kid.

        Idempotent; without any rotation it keeps the current key.
        """
        with self._lock:
            kid = self._before_rotation or self._active.kid
        self.restore_key(kid)
        return kid

    def on_rotate(self, callback: RotateCallback) -> Callable[[], None]:
        """Call ``callback(jwks_json)`` after every key change; returns an unsubscribe function.

        Callbacks run on the thread that changed the key, after the change; one that
        raises is logged and does not stop the others.
        """
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def _add_key(self) -> _SigningKey:
        key = _SigningKey.generate()
        self._history.append(key)
        if self.key_dir is not None:
            private_dir(self.key_dir)
            pem = key.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_private(self.key_dir / f"{key.kid}.key.pem", pem)
        return key

    def _write_jwks_file(self) -> None:
        if self.key_dir is not None:
            self.write_jwks(self.key_dir / JWKS_FILE)

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        payload = self.jwks_json()
        for callback in listeners:
            try:
                callback(payload)
            except Exception:
                _log.exception("key-set listener %r failed", callback)


def _handler_for(
    idp: IdentityProvider, jwks_served: list[JwksServed]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 framing, but one request per connection: close() must not leave
        # idle keep-alive connections answering after the server is gone.
        protocol_version = "HTTP/1.1"
        server_version = "sidecar-chaos-idp"
        # Headers and body go out in two writes; without this, Nagle plus the
        # client's delayed ACK adds ~40 ms to every response.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            _log.debug("idp %s: " + format, self.client_address[0], *args)

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def _route(self, method: str) -> None:
            self.close_connection = True
            url = urlsplit(self.path)
            if method == "POST":
                # Drain the body: the token request's form is read for sub/ttl too.
                try:
                    length = max(0, int(self.headers.get("Content-Length") or 0))
                except ValueError:
                    self._send(400, "text/plain", "bad Content-Length\n")
                    return
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            else:
                body = ""
            if url.path == JWKS_PATH and method == "GET":
                payload = idp.jwks_json()
                kids = tuple(key["kid"] for key in json.loads(payload)["keys"])
                # Recorded before it is sent: a reader that saw the answer sees the record.
                jwks_served.append(JwksServed(time.monotonic(), kids))
                self._send(200, "application/json", payload)
            elif url.path == HEALTH_PATH and method == "GET":
                self._send(200, "text/plain", "ok\n")
            elif url.path == TOKEN_PATH:
                self._token(parse_qs(url.query) | parse_qs(body))
            elif url.path in (JWKS_PATH, HEALTH_PATH):
                self._send(405, "text/plain", "method not allowed\n")
            else:
                self._send(404, "text/plain", "not found\n")

        def _token(self, params: dict[str, list[str]]) -> None:
            subject = params.get("sub", ["locust"])[0]
            try:
                ttl_s = int(params.get("ttl", ["3600"])[0])
            except ValueError:
                ttl_s = 0
            if not 0 < ttl_s <= MAX_TOKEN_TTL_S:
                self._send(400, "text/plain", f"ttl must be within 1..{MAX_TOKEN_TTL_S}\n")
                return
            token = idp.token(subject, ttl_s)
            if "application/json" in (self.headers.get("Accept") or ""):
                payload = {"access_token": token, "token_type": "Bearer", "expires_in": ttl_s}
                self._send(200, "application/json", json.dumps(payload))
            else:
                self._send(200, "text/plain", token + "\n")

        def _send(self, status: int, content_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

    return Handler


@dataclass(frozen=True)
class JwksServed:
    """One key-set answer of the server: when (monotonic, just before it was sent), which keys."""

    t: float
    kids: tuple[str, ...]


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class IdpServer:
    """Serves an :class:`IdentityProvider` over HTTP on a loopback address.

    Binds on :meth:`start` (or entering the context); ``port=0`` picks a free port,
    read it from :attr:`port`. The server runs on a daemon thread; :meth:`close`
    stops it and joins the thread.
    """

    def __init__(self, idp: IdentityProvider, host: str, port: int) -> None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise InputError(f"identity provider: {host!r} is not a loopback IP address")
        self.idp = idp
        self.host = host
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        #: Every key set served, in order: who fetched it when (the record a validator's
        #: cache refresh is judged from).
        self.jwks_served: list[JwksServed] = []

    def start(self) -> IdpServer:
        """Bind and start serving; raises :class:`AddressInUseError` if the port is taken."""
        if self._server is not None:
            return self
        where = f"{self.host}:{self._requested_port}"
        try:
            server = _Server(
                (self.host, self._requested_port), _handler_for(self.idp, self.jwks_served)
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUseError(f"identity provider: {where} is already in use") from exc
            raise PlatformError(f"identity provider: cannot listen on {where}: {exc}") from exc
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="idp", daemon=True
        )
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("identity provider server is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    def close(self) -> None:
        """Stop serving, close the socket and join the thread. Idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)

    def __enter__(self) -> IdpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
