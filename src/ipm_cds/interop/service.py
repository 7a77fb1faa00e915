"""Serve CDS Hooks: patient-view, order-select and order-sign over HTTP (FastAPI on uvicorn).

``ipm-cds serve`` listens on 127.0.0.1 by default. Endpoints (CDS Hooks 2.0):

- ``GET  /cds-services``: discovery, with prefetch templates derived from the data the rules read.
- ``POST /cds-services/ipm-cds-patient-view``: the full assessment as cards.
- ``POST /cds-services/ipm-cds-order-select`` and ``.../ipm-cds-order-sign``: for draft ServiceRequests
  of the ruleset's interventions, whether each is appropriate now, its precautions, what is missing.
- ``POST /cds-services/{id}/feedback``: accepted and overridden cards, appended to a JSON Lines log.

Requests are validated: malformed JSON (or JSON nested too deeply, or a number too large to read) or a
request that breaks the specification is answered 400 with a FHIR OperationOutcome, a missing required
prefetch key 412 (the service does not query ``fhirServer``), a body over the size limit 413, an unknown
service 404. With trusted issuers configured, every call must carry a signed JWT (``Authorization:
Bearer``) as the CDS Hooks security model describes: an asymmetric algorithm, ``kid``, an allow-listed
issuer and ``jku``, the endpoint's URL as ``aud``, ``exp``/``iat``/``jti`` with a short lifetime and no
replay; keys come only from local configuration. Without them, a call must name the service in its
``Host`` header (the address listened on, or the host of ``--public-url``; 421 otherwise) and a POST must
say ``Content-Type: application/json`` (415 otherwise), so that no web page of another site can post
to the service or, through DNS rebinding, read its answers. Patient data is never logged unless
``--log-patient-data`` is given.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import logging
import math
import re
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

# The service extra's dependencies are imported here, at module level, on purpose: when one is missing,
# `ipm-cds serve` says which, and what to install (cli.EXTENSIONS).
import fhir.resources  # noqa: F401  (used by ipm_cds.interop.fhir, imported lazily there)
import jwt
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from jwt.utils import base64url_decode
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..argtypes import add_backend_option, date_arg, parameter_arg
from ..errors import ConfigurationError, EvaluationError, IpmCdsError, PatientDataError
from ..jsonsrc import JsonInputError, parse_json
from .cds_hooks import CARD_EXTENSION, CDS_HOOKS_VERSION, operation_outcome, order_cards, patient_view_cards
from .fhir import (
    COMBINED_PREFETCH_KEYS,
    FhirInputError,
    FhirMapping,
    ordered_interventions,
    prefetch_provided,
    prefetch_templates,
    read_prefetch,
)

__all__ = ["SERVICES", "ServiceConfig", "TrustedIssuer", "create_app", "load_issuers", "register"]

logger = logging.getLogger("ipm_cds.service")

DEFAULT_PORT = 8765
DEFAULT_MAX_REQUEST_BYTES = 5 * 1024 * 1024
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")

HookName = Literal["patient-view", "order-select", "order-sign"]


@dataclass(frozen=True)
class ServiceSpec:
    id: str
    hook: HookName
    title: str
    description: str


SERVICES: dict[str, ServiceSpec] = {
    s.id: s
    for s in (
        ServiceSpec(
            "ipm-cds-patient-view",
            "patient-view",
            "Interventional pain management assessment",
            "Candidate interventions with their rationale and criteria, exclusions, red flags, antithrombotic "
            "and other precautions, referrals and missing data, from the versioned ipm-cds ruleset. "
            "Decision support for a clinician, never an order.",
        ),
        ServiceSpec(
            "ipm-cds-order-select",
            "order-select",
            "Interventional pain procedure: appropriate now?",
            "For a selected ServiceRequest for one of the ruleset's interventions (local intervention code or "
            "CPT): whether the criteria are met now, the precautions that apply and the data that is missing.",
        ),
        ServiceSpec(
            "ipm-cds-order-sign",
            "order-sign",
            "Interventional pain procedure: check before signing",
            "The order-select check for every draft ServiceRequest for one of the ruleset's interventions, "
            "when the orders are signed.",
        ),
    )
}


# -- configuration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedIssuer:
    """A CDS client allowed to call the service: its ``iss``, its public keys (a JWK Set), and optionally
    the ``jku`` URLs its tokens may name (never fetched: the keys are local) and the accepted tenants."""

    iss: str
    jwks: Mapping[str, Any]
    jku: tuple[str, ...] = ()
    tenants: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ServiceConfig:
    ruleset: Path | None = None
    profile: str | None = None
    backend: Literal["auto", "durable", "python"] = "auto"
    parameters: Mapping[str, int | float] = field(default_factory=dict)
    as_of: date | None = None  # pin the evaluation date (tests, docs); None: today
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    feedback_log: Path | None = None
    decision_log: Path | None = None  # one JSON line per assessment (ipm_cds.decision_log); feedback names it
    log_patient_data: bool = False
    public_url: str = f"http://127.0.0.1:{DEFAULT_PORT}"  # the ``aud`` a token must name is this + path
    bind: tuple[str, int] | None = None  # the address listened on; without issuers, the Host may name it
    issuers: tuple[TrustedIssuer, ...] = ()
    jwt_leeway_seconds: int = 30
    jwt_max_lifetime_seconds: int = 300


def load_issuers(path: Path) -> tuple[TrustedIssuer, ...]:
    """Read trusted issuers from a JSON or YAML file: ``{issuers: [{iss, jwks | jwks_file, jku?, tenants?}]}``."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read trusted issuers from {path}: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("issuers"), list):
        raise ConfigurationError(f"{path}: expected a mapping with an `issuers` list")
    issuers = []
    for i, item in enumerate(data["issuers"]):
        if not isinstance(item, Mapping) or not isinstance(item.get("iss"), str):
            raise ConfigurationError(f"{path}: issuers[{i}] needs `iss`")
        jwks = item.get("jwks")
        if "jwks_file" in item:
            try:
                jwks = json.loads((path.parent / str(item["jwks_file"])).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigurationError(f"{path}: issuers[{i}].jwks_file: {exc}") from None
        if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
            raise ConfigurationError(f"{path}: issuers[{i}] needs a JWK Set (`jwks` or `jwks_file`) with keys")
        for key in jwks["keys"]:
            if not isinstance(key, Mapping) or "kid" not in key or "d" in key or key.get("kty") == "oct":
                raise ConfigurationError(f"{path}: issuers[{i}]: every key needs a kid; public asymmetric keys only")
        tenants = item.get("tenants")
        issuers.append(
            TrustedIssuer(
                iss=item["iss"],
                jwks=jwks,
                jku=tuple(str(u) for u in item.get("jku", ())),
                tenants=tuple(str(t) for t in tenants) if tenants is not None else None,
            )
        )
    return tuple(issuers)


# -- request models ----------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FhirAuthorization(_Strict):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str
    subject: str
    patient: str | None = None


class HookRequest(_Strict):
    hook: str
    hookInstance: str
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None

    @field_validator("hookInstance")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValueError("hookInstance must be a UUID") from None
        return value

    @model_validator(mode="after")
    def _server(self) -> HookRequest:
        if self.fhirAuthorization is not None and not self.fhirServer:
            raise ValueError("fhirServer is required when fhirAuthorization is given")
        return self


class _Context(BaseModel):
    model_config = ConfigDict(extra="allow")
    userId: str = Field(min_length=1)
    patientId: str = Field(min_length=1, max_length=64)
    encounterId: str | None = None


class OrderSignContext(_Context):
    draftOrders: dict[str, Any]


class OrderSelectContext(OrderSignContext):
    selections: list[str] = Field(min_length=1)


_CONTEXTS: dict[str, type[_Context]] = {
    "patient-view": _Context,
    "order-select": OrderSelectContext,
    "order-sign": OrderSignContext,
}


class OverrideReasonCoding(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    system: str
    display: str | None = None


class OverrideReason(_Strict):
    reason: OverrideReasonCoding | None = None
    userComment: str | None = Field(None, max_length=10000)

    @model_validator(mode="after")
    def _something(self) -> OverrideReason:  # cds-fb-3
        if self.reason is None and self.userComment is None:
            raise ValueError("an overrideReason needs a reason, a userComment, or both")
        return self


class AcceptedSuggestion(_Strict):
    id: str


class FeedbackItem(_Strict):
    card: str
    outcome: Literal["accepted", "overridden"]  # cds-fb-1
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: datetime

    @model_validator(mode="after")
    def _accepted(self) -> FeedbackItem:  # cds-fb-2
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("an accepted outcome needs acceptedSuggestions")
        return self


class FeedbackRequest(_Strict):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=1000)


# -- errors ------------------------------------------------------------------------------------------


class CdsHttpError(Exception):
    """An error answered with an OperationOutcome."""

    def __init__(
        self,
        status: int,
        code: str,
        text: str,
        *,
        issues: Sequence[tuple[str, str | None, list[str] | None]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(text)
        self.status, self.code, self.text = status, code, text
        self.issues = issues  # (text, diagnostics, expression)
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        rows: list[Any] = [("error", self.code, self.text)]
        rows += [("error", self.code, text, diagnostics, expression) for text, diagnostics, expression in self.issues]
        return JSONResponse(operation_outcome(rows), status_code=self.status, headers=self.headers)


_Issue = tuple[str, str | None, list[str] | None]  # text, diagnostics, expression


def _validation_issues(exc: ValidationError, prefix: str) -> list[_Issue]:
    issues: list[_Issue] = []
    for err in exc.errors(include_url=False)[:50]:
        loc = ".".join(str(p) for p in err["loc"])
        where = ".".join(x for x in (prefix, loc) if x) or "(request)"
        issues.append((f"{where}: {str(err['msg']).removeprefix('Value error, ')}", None, [where]))
    return issues


# -- JWT ---------------------------------------------------------------------------------------------


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


# -- the application ---------------------------------------------------------------------------------


class _CardLog:
    """Recent cards by uuid (bounded), so that feedback can name the rule and kind of the card."""

    def __init__(self, capacity: int = 50_000) -> None:
        self._cards: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def add(
        self, service: str, hook_instance: str, cards: Sequence[Mapping[str, Any]], decision_id: str | None = None
    ) -> None:
        with self._lock:
            for card in cards:
                facts = dict(card.get("extension", {}).get(CARD_EXTENSION, {}))
                facts.update(service=service, hookInstance=hook_instance, indicator=card["indicator"])
                if decision_id is not None:
                    facts["decision_id"] = decision_id  # the decision log's entry for the assessment
                facts["suggestions"] = [s.get("uuid") for s in card.get("suggestions", [])]
                self._cards[card["uuid"]] = facts
                self._cards.move_to_end(card["uuid"])
            while len(self._cards) > self._capacity:
                self._cards.popitem(last=False)

    def get(self, card_uuid: str) -> dict[str, Any] | None:
        with self._lock:
            return self._cards.get(card_uuid)


class _ContainErrors:
    """Answer an unexpected exception with a 500 OperationOutcome and log only its type.

    Without it Starlette's outermost middleware would answer, then re-raise, and the server would log the
    traceback with the exception's message, which may quote patient data.
    """

    def __init__(self, app: ASGIApp, log_patient_data: bool) -> None:
        self.app = app
        self.log_patient_data = log_patient_data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:
                raise
            detail = f"{type(exc).__name__}: {exc}" if self.log_patient_data else type(exc).__name__
            logger.error("internal error on %s %s: %s", scope.get("method"), scope.get("path"), detail)
            response = CdsHttpError(500, "exception", "internal error; the evaluation was abandoned").response()
            await response(scope, receive, send)


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


class _HostRule:
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
            elif _is_loopback(host):
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


class _LocalRequestsOnly:
    """Without JWT verification, answer only requests that a web page of another site cannot make or read.

    - ``Host`` must name this service (see :class:`_HostRule`): a page whose domain was re-pointed at this
      address (DNS rebinding) sends its own domain and is answered 421, so it cannot read the answer;
    - a ``POST`` must say ``Content-Type: application/json``, which a cross-site form or ``fetch`` cannot
      send without a CORS preflight that this service never grants: anything else is answered 415, before
      the body is read, so nothing of it reaches the feedback log.
    """

    def __init__(self, app: ASGIApp, hosts: _HostRule) -> None:
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
            await error.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _discovery(templates: Mapping[str, str], config: ServiceConfig, ruleset_label: str) -> dict[str, Any]:
    requirements = (
        "Every prefetch key is required (the service does not query fhirServer): a missing key is answered "
        "412. Code the record as docs/fhir.md describes; what cannot be mapped is shown on a card."
    )
    return {
        "services": [
            {
                "hook": s.hook,
                "title": s.title,
                "description": s.description,
                "id": s.id,
                "prefetch": dict(templates),
                "usageRequirements": requirements,
                "extension": {"invalid.ipm-cds.service": {"ruleset": ruleset_label, "cdsHooks": CDS_HOOKS_VERSION}},
            }
            for s in SERVICES.values()
        ]
    }


def create_app(config: ServiceConfig) -> FastAPI:
    """The FastAPI application. Loads the ruleset and builds the engine once, at creation."""
    from ..decision_log import DecisionLog
    from ..engine.facade import Engine
    from ..ruleset.loader import load_ruleset

    ruleset = load_ruleset(config.ruleset, with_tests=False)
    engine = Engine(ruleset, profile=config.profile, backend=config.backend, parameters=dict(config.parameters))
    decisions = (
        DecisionLog(config.decision_log, include_patient_id=config.log_patient_data)
        if config.decision_log is not None
        else None
    )
    templates = prefetch_templates(ruleset)
    label = f"{ruleset.id} {ruleset.version} ({engine.profile})"
    discovery = _discovery(templates, config, label)
    verifier = JwtVerifier(config.issuers, config.jwt_leeway_seconds, config.jwt_max_lifetime_seconds)
    card_log = _CardLog()
    feedback_lock = threading.Lock()

    app = FastAPI(title="ipm-cds CDS Hooks service", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.ruleset, app.state.templates = engine, ruleset, templates

    @app.exception_handler(CdsHttpError)
    async def _cds_error(request: Request, exc: CdsHttpError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not-found" if exc.status_code == 404 else "not-supported" if exc.status_code == 405 else "processing"
        return CdsHttpError(exc.status_code, code, str(exc.detail)).response()

    if not config.issuers:  # with issuers, the JWT (its aud names this service's URL) guards every call
        app.add_middleware(_LocalRequestsOnly, hosts=_HostRule(config.public_url, config.bind))
    app.add_middleware(_ContainErrors, log_patient_data=config.log_patient_data)

    def authenticate(request: Request) -> None:
        if config.issuers:
            audience = config.public_url.rstrip("/") + request.url.path
            verifier.verify(request.headers.get("authorization"), audience)

    async def read_json(request: Request) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > config.max_request_bytes:
            raise CdsHttpError(413, "too-costly", f"request body over {config.max_request_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_request_bytes:
                raise CdsHttpError(413, "too-costly", f"request body over {config.max_request_bytes} bytes")
            chunks.append(chunk)
        try:
            return parse_json(b"".join(chunks))
        except JsonInputError as exc:
            if exc.limit:
                raise CdsHttpError(400, "too-costly", f"the body's JSON is past this service's limits: {exc}") from None
            raise CdsHttpError(400, "structure", f"the body is not JSON: {exc}") from None

    @app.get("/cds-services")
    async def discover(request: Request) -> JSONResponse:
        authenticate(request)
        return JSONResponse(discovery)

    @app.post("/cds-services/{service_id}")
    async def call(service_id: str, request: Request) -> JSONResponse:
        started = time.perf_counter()
        spec = SERVICES.get(service_id)
        if spec is None:
            raise CdsHttpError(404, "not-found", f"no CDS service {service_id!r}")
        authenticate(request)
        body = await read_json(request)
        try:
            hook_request = HookRequest.model_validate(body)
        except ValidationError as exc:
            raise CdsHttpError(
                400, "invalid", "invalid CDS Hooks request", issues=_validation_issues(exc, "")
            ) from None
        if hook_request.hook != spec.hook:
            raise CdsHttpError(400, "invalid", f"this service answers {spec.hook}, not {hook_request.hook}")
        try:
            context = _CONTEXTS[spec.hook].model_validate(hook_request.context)
        except ValidationError as exc:
            raise CdsHttpError(
                400, "invalid", f"invalid {spec.hook} context", issues=_validation_issues(exc, "context")
            ) from None
        prefetch = hook_request.prefetch or {}
        missing = sorted(k for k in templates if not prefetch_provided(k, prefetch))
        if missing:
            raise CdsHttpError(
                412,
                "processing",
                "required prefetch data is missing; this service does not query fhirServer",
                issues=[
                    (f"prefetch key {k!r} ({templates[k]}) is absent or null", None, [f"prefetch.{k}"]) for k in missing
                ],
            )
        cards, decision_id = await run_in_threadpool(_cards_for, spec, hook_request, context, prefetch)
        card_log.add(spec.id, hook_request.hookInstance, cards, decision_id)
        patient = f" patient={context.patientId}" if config.log_patient_data else ""
        logger.info(
            "%s service=%s hookInstance=%s cards=%d ms=%.1f%s",
            spec.hook,
            spec.id,
            hook_request.hookInstance,
            len(cards),
            (time.perf_counter() - started) * 1000,
            patient,
        )
        return JSONResponse({"cards": cards})

    def _cards_for(
        spec: ServiceSpec, req: HookRequest, context: _Context, prefetch: Mapping[str, Any]
    ) -> tuple[list[Any], str | None]:
        """The cards, and the decision log's id for the assessment behind them (None without a log)."""
        # the keys this service asks for, and the combined lab and screening keys of earlier discoveries
        wanted = {k: v for k, v in prefetch.items() if k in templates or k in COMBINED_PREFETCH_KEYS}
        try:
            mapping = read_prefetch(wanted, ruleset=ruleset, patient_id=context.patientId)
        except FhirInputError as exc:
            raise _data_error("the prefetch data is not valid FHIR R4 for this patient", exc, None) from None
        try:
            evaluated = time.perf_counter()
            assessment = engine.evaluate(mapping.patient, as_of=config.as_of)
        except PatientDataError as exc:
            raise _data_error("the patient data in the prefetch is not valid for evaluation", exc, mapping) from None
        except EvaluationError as exc:
            logger.error("evaluation failed: %s", exc if config.log_patient_data else type(exc).__name__)
            raise CdsHttpError(500, "exception", "evaluation failed; no partial assessment is returned") from None
        decision_id = None
        if decisions is not None:
            elapsed = time.perf_counter() - evaluated
            decision_id = decisions.record(
                assessment, mapping.patient, elapsed_seconds=elapsed, backend=engine.backend_name
            )
        if spec.hook == "patient-view":
            cards = patient_view_cards(
                assessment,
                ruleset=ruleset,
                hook_instance=req.hookInstance,
                unmapped=mapping.unmapped,
                patient_reference=mapping.patient_reference,
            )
            return cards, decision_id
        assert isinstance(context, OrderSignContext)
        selections = context.selections if isinstance(context, OrderSelectContext) else None
        try:
            orders, _ = ordered_interventions(context.draftOrders, ruleset, selections)
        except FhirInputError as exc:
            raise _data_error("context.draftOrders is not a valid FHIR R4 Bundle", exc, None) from None
        if not orders:
            return [], decision_id
        why_not = engine.explain(mapping.patient, as_of=config.as_of).why_not
        by_uuid: dict[str, Any] = {}
        for order in orders:
            for card in order_cards(
                assessment,
                order,
                why_not=why_not,
                ruleset=ruleset,
                hook_instance=req.hookInstance,
                unmapped=mapping.unmapped,
                patient_reference=mapping.patient_reference,
            ):
                by_uuid.setdefault(card["uuid"], card)
        return list(by_uuid.values()), decision_id

    @app.post("/cds-services/{service_id}/feedback")
    async def feedback(service_id: str, request: Request) -> JSONResponse:
        if service_id not in SERVICES:
            raise CdsHttpError(404, "not-found", f"no CDS service {service_id!r}")
        authenticate(request)
        body = await read_json(request)
        try:
            items = FeedbackRequest.model_validate(body).feedback
        except ValidationError as exc:
            raise CdsHttpError(400, "invalid", "invalid feedback", issues=_validation_issues(exc, "")) from None
        received = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        records = [_feedback_record(service_id, item, card_log.get(item.card), received) for item in items]
        if config.feedback_log is not None:
            lines = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)
            with feedback_lock, config.feedback_log.open("a", encoding="utf-8") as fh:
                fh.write(lines)
                fh.flush()
        logger.info("feedback service=%s items=%d", service_id, len(records))
        return JSONResponse({})

    def _feedback_record(
        service_id: str, item: FeedbackItem, known: Mapping[str, Any] | None, received: str
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "received": received,
            "service": service_id,
            "card": item.card,
            "outcome": item.outcome,
            "outcomeTimestamp": item.outcomeTimestamp.isoformat().replace("+00:00", "Z"),
            "known_card": known is not None,
        }
        if item.acceptedSuggestions:
            record["acceptedSuggestions"] = [s.id for s in item.acceptedSuggestions]
        if item.overrideReason is not None:
            reason: dict[str, Any] = {}
            if item.overrideReason.reason is not None:
                reason["reason"] = item.overrideReason.reason.model_dump(exclude_none=True)
            if item.overrideReason.userComment is not None:
                # free text may name the patient: kept only when patient data may be logged
                if config.log_patient_data:
                    reason["userComment"] = item.overrideReason.userComment
                else:
                    reason["userComment_present"] = True
            record["overrideReason"] = reason
        if known is not None:
            record["card_facts"] = {k: v for k, v in known.items() if k != "suggestions"}
            if item.acceptedSuggestions:
                record["suggestions_known"] = all(s.id in known["suggestions"] for s in item.acceptedSuggestions)
        return record

    return app


def _data_error(text: str, exc: PatientDataError, mapping: FhirMapping | None) -> CdsHttpError:
    issues = []
    for p in exc.problems[:50]:
        where = p.field or ""
        if mapping is not None and p.field:
            resource = mapping.resource_of(p.field)
            where = f"{resource}: {p.field}" if resource else p.field
        issues.append((f"{where}: {p.message}" if where else p.message, p.hint, None))
    return CdsHttpError(400, "invalid", text, issues=issues)


# -- command line ------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Add ``ipm-cds serve``'s arguments to its sub-parser; return the handler."""
    parser.description = (__doc__ or "").split("\n\n")[0]
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)")
    parser.add_argument("--port-file", type=Path, default=None, help="write the bound port here once listening")
    parser.add_argument(
        "--public-url", default=None, help="the URL clients call (the JWT aud); default http://HOST:PORT"
    )
    parser.add_argument("--ruleset", type=Path, default=None, help="ruleset folder (default: bundled ipm-core)")
    parser.add_argument("--profile", default=None)
    add_backend_option(parser)
    parser.add_argument("--param", type=parameter_arg, action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--as-of", type=date_arg, default=None, help="pin the evaluation date (default: today)")
    parser.add_argument("--issuers", type=Path, default=None, help="trusted CDS clients (YAML/JSON); enables JWT")
    parser.add_argument("--feedback-log", type=Path, default=Path("ipm-cds-feedback.jsonl"), help="JSON Lines log")
    parser.add_argument(
        "--decision-log",
        type=Path,
        default=None,
        help="JSON Lines decision log (one entry per assessment; feedback records name its decision_id)",
    )
    parser.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES)
    parser.add_argument("--log-patient-data", action="store_true", help="allow patient identifiers in the logs")
    parser.add_argument(
        "--allow-unauthenticated", action="store_true", help="listen on a non-loopback address without --issuers"
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return _serve


def _serve(args: argparse.Namespace) -> int:
    issuers = load_issuers(args.issuers) if args.issuers else ()
    if not issuers and not _is_loopback(args.host) and not args.allow_unauthenticated:
        raise ConfigurationError(
            f"refusing to listen on {args.host} without JWT verification",
            hint="give --issuers, or --allow-unauthenticated behind an authenticating proxy",
        )
    if args.max_request_bytes < 1024:
        raise ConfigurationError("--max-request-bytes must be at least 1024")
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP; without it a
    # response written as headers then body waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    sock.listen(2048)  # connections queue from now on, so the port file can be written before uvicorn runs
    port = sock.getsockname()[1]
    config = ServiceConfig(
        ruleset=args.ruleset,
        profile=args.profile,
        backend=args.backend,
        parameters=dict(args.param),
        as_of=args.as_of,
        max_request_bytes=args.max_request_bytes,
        feedback_log=args.feedback_log,
        decision_log=args.decision_log,
        log_patient_data=args.log_patient_data,
        public_url=args.public_url or f"http://{args.host}:{port}",
        bind=(args.host, port),
        issuers=issuers,
    )
    try:
        app = create_app(config)
    except IpmCdsError:
        sock.close()
        raise
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    # The serving process is ours and what it holds now (ruleset, engine, app) lives as long as it does: the
    # collector need not walk it on every full collection (docs/performance.md: a p99 of GC pauses).
    gc.freeze()
    if args.port_file is not None:
        args.port_file.write_text(f"{port}\n", encoding="utf-8")
    server = uvicorn.Server(
        uvicorn.Config(app, log_level=args.log_level, access_log=True, server_header=False, timeout_graceful_shutdown=5)
    )
    server.run(sockets=[sock])
    return 0
