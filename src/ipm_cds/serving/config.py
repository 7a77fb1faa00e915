"""The service's configuration: the services it offers, its settings, and the CDS clients it trusts.

Nothing here needs the service extra's dependencies (FastAPI, uvicorn, PyJWT): a deployment tool can
build a :class:`ServiceConfig` and read an issuers file without them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigurationError

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_PORT",
    "SERVICES",
    "HookName",
    "ServiceConfig",
    "ServiceSpec",
    "TrustedIssuer",
    "load_issuers",
]

DEFAULT_PORT = 8765
DEFAULT_MAX_REQUEST_BYTES = 5 * 1024 * 1024

HookName = Literal["patient-view", "order-select", "order-sign"]


@dataclass(frozen=True)
class ServiceSpec:
    """One CDS service of the discovery document."""

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
            "For a selected ServiceRequest for one of the ruleset's interventions (local intervention code, CPT "
            "or HCPCS): one card with its verdict (appropriate now, not appropriate with the criterion and rule, "
            "or cannot tell yet with the missing data) and every safety judgement on it.",
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
    """Everything :func:`ipm_cds.serving.service.create_app` needs; ``ipm-cds serve`` builds it from its options."""

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
    openapi: bool = False  # serve /docs and /openapi.json
    metrics: bool = True  # serve Prometheus metrics at /metrics


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
