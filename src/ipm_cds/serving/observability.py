"""What an operator sees of the service: Prometheus metrics, one structured log line per request (with a
request id, echoed in ``X-Request-ID``), and a JSON log formatter for ``ipm-cds serve --log-format json``.

Metrics (each app has its own registry, so several apps in one process do not mix their counts):

- ``ipm_cds_http_requests_total{route, method, status}``: requests answered;
- ``ipm_cds_http_request_duration_seconds{route}``: a histogram of the time to answer;
- ``ipm_cds_errors_total{kind}``: requests answered with an error, by kind (``invalid_request``,
  ``unauthenticated``, ``prefetch_missing``, ``patient_data``, ``fhir_input``, ``evaluation``, ``internal``...);
- ``ipm_cds_evaluation_duration_seconds{hook}``: the engine's share of a hook call;
- ``ipm_cds_cards_total{service, indicator}``: cards returned;
- ``ipm_cds_ready``: 1 once the ruleset and engine are loaded; ``ipm_cds_ruleset_info``: what is served.

The route of a hook call is its service's path (``/cds-services/ipm-cds-patient-view``); a path no route
matches is counted as ``unmatched``, so that the label's values stay few. Neither the metrics nor the log
carry patient data: the patient id is logged only with ``--log-patient-data``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .protocol import CdsHttpError

__all__ = [
    "FIELDS",
    "REQUEST_ID_HEADER",
    "ContainErrors",
    "JsonFormatter",
    "Metrics",
    "ObserveRequests",
    "TextFormatter",
]

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ipm_cds_http_requests", "HTTP requests answered", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "ipm_cds_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("ipm_cds_errors", "Requests answered with an error, by kind", ["kind"], registry=r)
        self.evaluation = Histogram(
            "ipm_cds_evaluation_duration_seconds",
            "Engine time per hook call (the assessment, and for order hooks the explanation)",
            ["hook"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cards = Counter("ipm_cds_cards", "Cards returned", ["service", "indicator"], registry=r)
        self.ready = Gauge("ipm_cds_ready", "1 when the ruleset and engine are loaded", registry=r)
        self.ruleset = Info("ipm_cds_ruleset", "The ruleset, profile and backend served", registry=r)

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _request_id(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` when it is a short token, else a new one."""
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            text = bytes(value).decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex


class ObserveRequests:
    """The outermost middleware: a request id for every request, then its metrics and one log line.

    Handlers add what they know to ``request.state`` (``route``, ``hook``, ``service``, ``hookInstance``,
    ``cards``, ``patient``, ``error_kind``); this middleware logs it once the answer is sent.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics | None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        finally:
            self._done(scope, state, status, time.perf_counter() - started)

    def _done(self, scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
        route = state.get("route")
        if route is None:
            matched = getattr(scope.get("route"), "path", None)
            # routes outside FastAPI's router (/docs, /openapi.json) leave no route in the scope: answered, their
            # path is the label; any other request no route saw (404, or refused before routing) is "unmatched",
            # so that a caller cannot add label values at will
            route = matched or (scope.get("path", "") if status < 400 else "unmatched")
        kind = state.get("error_kind")
        if status >= 400 and kind is None:
            kind = CdsHttpError(status, "", "").kind
        if self.metrics is not None:
            self.metrics.requests.labels(route, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            if kind is not None:
                self.metrics.errors.labels(kind).inc()
        fields: dict[str, Any] = {
            "request_id": state["request_id"],
            "method": scope.get("method"),
            "route": route,
            "status": status,
            "latency_ms": round(seconds * 1000, 1),
        }
        for name in ("hook", "service", "hookInstance", "cards", "patient"):
            if state.get(name) is not None:
                fields[name] = state[name]
        if kind is not None:
            fields["error_kind"] = kind
        level = logging.WARNING if status >= 500 else logging.INFO
        logger.log(level, "%s %s %d", fields["method"], route, status, extra=fields)


class ContainErrors:
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
            scope.setdefault("state", {})["error_kind"] = "internal"
            response = CdsHttpError(500, "exception", "internal error; the evaluation was abandoned").response()
            await response(scope, receive, send)


# The fields a request's log record carries (as ``extra``), in the order the formatters write them.
FIELDS = (
    "request_id",
    "method",
    "route",
    "status",
    "latency_ms",
    "hook",
    "service",
    "hookInstance",
    "cards",
    "patient",
    "error_kind",
)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {name: record.__dict__[name] for name in FIELDS if record.__dict__.get(name) is not None}


class TextFormatter(logging.Formatter):
    """``time level logger: message``, then the request's fields as ``key=value`` when the record has them."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        return text + "".join(f" {k}={v}" for k, v in fields.items()) if fields else text


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: time, level, logger, message, and the request's fields when the
    record carries them (``request_id``, ``route``, ``status``, ``latency_ms``, ``hook``...)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(_fields(record))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)
