"""Who may call the service: the CDS client's signed JWT (CDS Hooks 2.0, "Trusting CDS Clients") when
trusted issuers are configured; without them, only requests that a web page of another site can neither
make nor read (the ``Host`` names this service, a POST says ``Content-Type: application/json``)."""

from __future__ import annotations

import ipaddress
import math
import re
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt.utils import base64url_decode
from starlette.types import ASGIApp, Receive, Scope, Send

from ..jsonsrc import parse_json
from .config import TrustedIssuer
from .protocol import CdsHttpError

__all__ = ["ALLOWED_ALGORITHMS", "HostRule", "JwtVerifier", "LocalRequestsOnly", "is_loopback"]

ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class JwtVerifier:
    """Verify a CDS client's JWT (CDS Hooks 2.0, "Trusting CDS Clients") against locally configured issuers."""

    def __init__(self, issuers: Sequence[TrustedIssuer], leeway: int, max_lifetime: int) -> None:
        self.issuers = {i.iss: i for i in issuers}
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        if not authorization or not authorization.startswith("Bearer "):
            raise self._reject("missing bearer token (Authorization: Bearer <JWT>)")
        token = authorization.removeprefix("Bearer ").strip()
        header, unverified = self._parts(token)
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALLOWED_ALGORITHMS:
            raise self._reject(f"algorithm {alg!r} is not accepted (asymmetric signatures only, never none or HMAC)")
        if str(header.get("typ", "")).upper() != "JWT":
            raise self._reject("the JWT header's typ must be JWT")
        if not isinstance(kid, str):
            raise self._reject("the JWT header needs a kid")
        issuer = self.issuers.get(str(unverified.get("iss")))
        if issuer is None:
            raise self._reject("issuer not trusted")
        jku = header.get("jku")
        if jku is not None and jku not in issuer.jku:
            raise self._reject("jku not on this issuer's allow-list")
        jwk = next((k for k in issuer.jwks.get("keys", []) if k.get("kid") == kid), None)
        if jwk is None:
            raise self._reject("no key with this kid for the issuer")
        if jwk.get("alg") not in (None, alg):
            raise self._reject("the key's alg does not match the token's")
        for name in ("exp", "iat", "nbf"):
            if name in unverified and not _numeric_date(unverified[name]):
                raise self._reject(f"{name} is not a NumericDate (seconds since 1970 up to the year 9999)")
        try:
            key = jwt.PyJWK(dict(jwk), algorithm=alg)
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=audience,
                issuer=issuer.iss,
                leeway=self.leeway,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
            raise self._reject(f"invalid token: {exc}") from None
        if float(claims["exp"]) - float(claims["iat"]) > self.max_lifetime + self.leeway:
            raise self._reject(f"token lifetime over {self.max_lifetime} s")
        if issuer.tenants is not None and claims.get("tenant") not in issuer.tenants:
            raise self._reject("tenant not accepted")
        self._not_replayed(issuer.iss, str(claims["jti"]), float(claims["exp"]))
        return claims

    def _parts(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The header and the claims, unverified, read with the service's JSON parser (bounded nesting and
        numbers, errors about the token rather than about Python)."""
        parts = token.split(".")
        if len(parts) != 3:
            raise self._reject("malformed JWT: not three base64url parts separated by dots")
        decoded: list[Any] = []
        for name, part in (("header", parts[0]), ("claims", parts[1])):
            try:
                value = parse_json(base64url_decode(part))
            except ValueError as exc:  # binascii.Error and UnicodeError too
                raise self._reject(f"malformed JWT: its {name} is not base64url JSON: {exc}") from None
            if not isinstance(value, dict):
                raise self._reject(f"malformed JWT: its {name} is not a JSON object")
            decoded.append(value)
        return decoded[0], decoded[1]

    def _not_replayed(self, iss: str, jti: str, exp: float) -> None:
        now = time.time()
        with self._lock:
            for key in [k for k, until in self._seen.items() if until + self.leeway < now]:
                del self._seen[key]
            if (iss, jti) in self._seen:
                raise self._reject("jti already used (replay)")
            self._seen[(iss, jti)] = exp

    @staticmethod
    def _reject(reason: str) -> CdsHttpError:
        return CdsHttpError(
            401,
            "security",
            f"authentication failed: {reason}",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


_LATEST_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z


def _numeric_date(value: Any) -> bool:
    """A JWT NumericDate this service can compute with: a finite number of seconds, 0 to the year 9999.

    Checked before any arithmetic: ``exp = 10**400`` is a valid JSON integer that ``float()`` cannot hold.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return (math.isfinite(value) if isinstance(value, float) else True) and 0 <= value <= _LATEST_NUMERIC_DATE


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _parse_host(value: str) -> tuple[str, int | None] | None:
    """A Host header as (host, port or None): lower case, IPv6 without brackets; None when malformed."""
    match = _HOST.fullmatch(value)
    if match is None:
        return None
    host = match["name"] or match["ipv6"]
    if match["ipv6"]:
        try:
            host = ipaddress.IPv6Address(host).compressed
        except ValueError:
            return None
    return host.lower(), int(match["port"]) if match["port"] else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_unspecified(host: str) -> bool:
    """0.0.0.0, :: (or an empty host): every address of the machine."""
    try:
        return not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


class HostRule:
    """Which ``Host`` headers name this service: the address it listens on (any loopback name for a loopback
    address; any IP address at its port for a wildcard address) or the host of ``public_url``."""

    def __init__(self, public_url: str, bind: tuple[str, int] | None) -> None:
        self.allowed: set[tuple[str, int | None]] = set()
        self.any_ip_port: int | None = None
        url = urlsplit(public_url)
        try:
            port = url.port
        except ValueError:  # a port that is not one: public_url names no host a client could send
            url, port = urlsplit(""), None
        if url.hostname:
            default = _DEFAULT_PORTS.get(url.scheme)
            self._allow(url.hostname, port or default, default)
        if bind is not None:
            host, port = bind[0].strip("[]").lower(), bind[1]
            if _is_unspecified(host):
                self.any_ip_port = port
                names: tuple[str, ...] = ("localhost",)
            elif is_loopback(host):
                names = (host, "localhost", "127.0.0.1", "::1")
            else:
                names = (host,)
            for name in names:
                self._allow(name, port, 80)  # uvicorn serves plain HTTP here; TLS is a proxy's, with public_url

    def _allow(self, host: str, port: int | None, default: int | None) -> None:
        parsed = _parse_host(f"[{host}]" if ":" in host else host)
        if parsed is not None:
            self.allowed.add((parsed[0], port))
            if port == default:
                self.allowed.add((parsed[0], None))  # the port may be left out when it is the scheme's

    def accepts(self, value: str) -> bool:
        parsed = _parse_host(value)
        if parsed is None:
            return False
        if parsed in self.allowed:
            return True
        host, port = parsed
        if self.any_ip_port is None or not _is_ip(host):
            return False  # a name other than ours: a page of another site re-pointed at this address
        return port == self.any_ip_port or (port is None and self.any_ip_port == 80)


class LocalRequestsOnly:
    """Without JWT verification, answer only requests that a web page of another site cannot make or read.

    - ``Host`` must name this service (see :class:`HostRule`): a page whose domain was re-pointed at this
      address (DNS rebinding) sends its own domain and is answered 421, so it cannot read the answer;
    - a ``POST`` must say ``Content-Type: application/json``, which a cross-site form or ``fetch`` cannot
      send without a CORS preflight that this service never grants: anything else is answered 415, before
      the body is read, so nothing of it reaches the feedback log.
    """

    def __init__(self, app: ASGIApp, hosts: HostRule) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hosts = [v.decode("latin-1") for k, v in scope["headers"] if k == b"host"]
        types = [v.decode("latin-1") for k, v in scope["headers"] if k == b"content-type"]
        error = None
        if len(hosts) != 1:
            error = CdsHttpError(400, "security", "the request needs one Host header naming this service")
        elif not self.hosts.accepts(hosts[0]):
            error = CdsHttpError(
                421,
                "security",
                f"Host {hosts[0][:100]!r} does not name this service; call it by its address or its public URL",
            )
        elif scope["method"] == "POST" and (
            len(types) != 1 or types[0].split(";")[0].strip().lower() != "application/json"
        ):
            error = CdsHttpError(415, "not-supported", "a POST must have Content-Type: application/json")
        if error is not None:
            scope.setdefault("state", {})["error_kind"] = error.kind  # for the errors metric
            await error.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)
