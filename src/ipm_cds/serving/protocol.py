"""The CDS Hooks 2.0 wire format as the service reads it: request models, bounded request bodies, and
errors answered as FHIR OperationOutcomes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import PatientDataError
from ..interop.cds_hooks import operation_outcome
from ..interop.fhir import FhirMapping
from ..jsonsrc import JsonInputError, parse_json

__all__ = [
    "CONTEXTS",
    "CdsHttpError",
    "FeedbackItem",
    "FeedbackRequest",
    "HookContext",
    "HookRequest",
    "OrderSelectContext",
    "OrderSignContext",
    "data_error",
    "read_json",
    "validation_issues",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FhirAuthorization(_Strict):
    """The ``fhirAuthorization`` of a hook request (accepted, never used: the service does not query FHIR)."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str
    subject: str
    patient: str | None = None


class HookRequest(_Strict):
    """A CDS Hooks 2.0 request: the hook, its instance, the context and the prefetch."""

    hook: str = Field(description="The hook that fired: patient-view, order-select or order-sign.")
    hookInstance: str = Field(description="A UUID for this firing of the hook.")
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any] = Field(description="The hook's context (userId, patientId, draftOrders, ...).")
    prefetch: dict[str, Any] | None = Field(
        None, description="Every prefetch key of the discovery document, as FHIR R4 resources or Bundles."
    )
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


class HookContext(BaseModel):
    """The patient-view context; the order hooks' contexts extend it."""

    model_config = ConfigDict(extra="allow")
    userId: str = Field(min_length=1)
    patientId: str = Field(min_length=1, max_length=64)
    encounterId: str | None = None


class OrderSignContext(HookContext):
    draftOrders: dict[str, Any]


class OrderSelectContext(OrderSignContext):
    selections: list[str] = Field(min_length=1)


CONTEXTS: dict[str, type[HookContext]] = {
    "patient-view": HookContext,
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
    """One card's outcome: accepted (with the suggestions taken) or overridden (with a reason)."""

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
    """The body of ``POST /cds-services/{id}/feedback``."""

    feedback: list[FeedbackItem] = Field(min_length=1, max_length=1000)


# -- errors ------------------------------------------------------------------------------------------

_Issue = tuple[str, str | None, list[str] | None]  # text, diagnostics, expression

# The ``kind`` of an error, as the errors metric counts it, when the raiser names none.
_KIND_BY_STATUS = {
    400: "invalid_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    412: "prefetch_missing",
    413: "body_too_large",
    415: "unsupported_media_type",
    421: "misdirected_request",
    500: "internal",
    503: "not_ready",
}


class CdsHttpError(Exception):
    """An error answered with an OperationOutcome; ``kind`` is its label in the errors metric."""

    def __init__(
        self,
        status: int,
        code: str,
        text: str,
        *,
        issues: Sequence[_Issue] = (),
        headers: Mapping[str, str] | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(text)
        self.status, self.code, self.text = status, code, text
        self.issues = issues  # (text, diagnostics, expression)
        self.headers = dict(headers or {})
        self.kind = kind or _KIND_BY_STATUS.get(status, f"http_{status}")

    def response(self) -> JSONResponse:
        rows: list[Any] = [("error", self.code, self.text)]
        rows += [("error", self.code, text, diagnostics, expression) for text, diagnostics, expression in self.issues]
        return JSONResponse(operation_outcome(rows), status_code=self.status, headers=self.headers)


def validation_issues(exc: ValidationError, prefix: str) -> list[_Issue]:
    """pydantic's errors as OperationOutcome issues (at most 50), each naming the field's path."""
    issues: list[_Issue] = []
    for err in exc.errors(include_url=False)[:50]:
        loc = ".".join(str(p) for p in err["loc"])
        where = ".".join(x for x in (prefix, loc) if x) or "(request)"
        issues.append((f"{where}: {str(err['msg']).removeprefix('Value error, ')}", None, [where]))
    return issues


def data_error(text: str, exc: PatientDataError, mapping: FhirMapping | None, kind: str) -> CdsHttpError:
    """A 400 for patient data the service cannot use: each problem names the FHIR resource it came from."""
    issues: list[_Issue] = []
    for p in exc.problems[:50]:
        where = p.field or ""
        if mapping is not None and p.field:
            resource = mapping.resource_of(p.field)
            where = f"{resource}: {p.field}" if resource else p.field
        issues.append((f"{where}: {p.message}" if where else p.message, p.hint, None))
    return CdsHttpError(400, "invalid", text, issues=issues, kind=kind)


async def read_json(request: Request, max_bytes: int) -> Any:
    """The request's body as JSON: 413 past ``max_bytes`` (read no further), 400 when it is not JSON or is
    past the reader's limits of nesting and number size."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise CdsHttpError(413, "too-costly", f"request body over {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise CdsHttpError(413, "too-costly", f"request body over {max_bytes} bytes")
        chunks.append(chunk)
    try:
        return parse_json(b"".join(chunks))
    except JsonInputError as exc:
        if exc.limit:
            raise CdsHttpError(
                400, "too-costly", f"the body's JSON is past this service's limits: {exc}", kind="json_limits"
            ) from None
        raise CdsHttpError(400, "structure", f"the body is not JSON: {exc}", kind="malformed_json") from None
