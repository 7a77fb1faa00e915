"""The FastAPI application: the CDS services, the feedback endpoint, and the operations endpoints.

:func:`create_app` wires the parts together: :mod:`.auth` (who may call), :mod:`.protocol` (what a
request must be), :mod:`.feedback` (the feedback log) and :mod:`.observability` (metrics and request logs).
The state the handlers share is a :class:`_Service`: the configuration, and once loaded, the ruleset,
the engine and the discovery document.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..errors import EvaluationError, IpmCdsError, PatientDataError
from ..interop.cds_hooks import CDS_HOOKS_VERSION, order_answer, order_case, patient_view_cards
from ..interop.fhir import (
    COMBINED_PREFETCH_KEYS,
    FhirInputError,
    draft_order_bundle,
    prefetch_provided,
    prefetch_templates,
    read_prefetch,
)
from .auth import HostRule, JwtVerifier, LocalRequestsOnly
from .config import SERVICES, ServiceConfig, ServiceSpec
from .feedback import CardLog, FeedbackLog
from .observability import ContainErrors, Metrics, ObserveRequests
from .protocol import (
    CONTEXTS,
    CdsHttpError,
    FeedbackRequest,
    HookContext,
    HookRequest,
    OrderSelectContext,
    OrderSignContext,
    data_error,
    read_json,
    validation_issues,
)

if TYPE_CHECKING:
    from ..decision_log import DecisionLog
    from ..engine.facade import Engine
    from ..ruleset.loader import Ruleset

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Loaded:
    """What loading produces: the handlers answer hooks only once it exists."""

    ruleset: Ruleset
    engine: Engine
    templates: Mapping[str, str]
    discovery: dict[str, Any]
    decisions: DecisionLog | None


def _discovery(templates: Mapping[str, str], ruleset_label: str) -> dict[str, Any]:
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


class _Service:
    """The handlers' shared state and the work behind each endpoint."""

    def __init__(self, config: ServiceConfig, metrics: Metrics | None) -> None:
        self.config = config
        self.metrics = metrics
        self.verifier = JwtVerifier(config.issuers, config.jwt_leeway_seconds, config.jwt_max_lifetime_seconds)
        self.cards = CardLog()
        self.feedback_log = FeedbackLog(config.feedback_log, self.cards, log_patient_data=config.log_patient_data)
        self.loaded: _Loaded | None = None
        self.load_error: str | None = None
        self.stopping = False
        self.app_state: Any = None  # the app's state: gets the ruleset, engine and templates once loaded
        self._background: asyncio.Future[None] | None = None

    # -- loading and readiness

    def load(self) -> _Loaded:
        """Load the ruleset and build the engine (raises :class:`~ipm_cds.IpmCdsError` when they cannot be)."""
        from ..decision_log import DecisionLog
        from ..engine.facade import Engine
        from ..ruleset.loader import load_ruleset

        config = self.config
        started = time.perf_counter()
        ruleset = load_ruleset(config.ruleset, with_tests=False)
        engine = Engine(ruleset, profile=config.profile, backend=config.backend, parameters=dict(config.parameters))
        decisions = (
            DecisionLog(config.decision_log, include_patient_id=config.log_patient_data)
            if config.decision_log is not None
            else None
        )
        templates = prefetch_templates(ruleset)
        label = f"{ruleset.id} {ruleset.version} ({engine.profile})"
        self.loaded = _Loaded(ruleset, engine, templates, _discovery(templates, label), decisions)
        if self.app_state is not None:
            self.app_state.engine, self.app_state.ruleset, self.app_state.templates = engine, ruleset, templates
        if self.metrics is not None:
            self.metrics.ruleset.info(
                {
                    "id": ruleset.id,
                    "version": ruleset.version,
                    "sha256": ruleset.sha256,
                    "profile": engine.profile,
                    "backend": engine.backend_name,
                }
            )
            self.metrics.ready.set(1)
        logger.info(
            "loaded %s with %d rules in %.0f ms; ready",
            label,
            len(ruleset.rules),
            (time.perf_counter() - started) * 1000,
        )
        return self.loaded

    def load_in_background(self) -> None:
        """Start loading in a worker thread (``create_app(load="background")``); errors are kept for /readyz."""

        def load() -> None:
            try:
                self.load()
            except IpmCdsError as exc:  # a ruleset's problems name files and rules, never a patient
                self.load_error = str(exc)
                logger.error("the service cannot load its ruleset: %s", exc)
            except Exception as exc:
                self.load_error = type(exc).__name__
                logger.error("the service cannot load its ruleset: %s", type(exc).__name__)

        self._background = asyncio.get_running_loop().run_in_executor(None, load)

    def readiness(self) -> tuple[int, dict[str, Any]]:
        if self.stopping:
            return 503, {"status": "stopping"}
        if self.load_error is not None:
            return 503, {"status": "failed", "detail": self.load_error}
        if self.loaded is None:
            return 503, {"status": "loading"}
        ruleset = self.loaded.ruleset
        return 200, {
            "status": "ready",
            "ruleset": {"id": ruleset.id, "version": ruleset.version, "sha256": ruleset.sha256},
            "profile": self.loaded.engine.profile,
            "backend": self.loaded.engine.backend_name,  # the backend in use (what an "auto" choice chose)
        }

    def require(self) -> _Loaded:
        """The loaded state, or a 503 (with ``Retry-After`` while loading)."""
        if self.loaded is not None:
            return self.loaded
        if self.load_error is not None:
            raise CdsHttpError(503, "transient", "the service could not load its ruleset; see its log")
        raise CdsHttpError(503, "transient", "the service is loading its ruleset", headers={"Retry-After": "1"})

    # -- the CDS Hooks endpoints

    def authenticate(self, request: Request) -> None:
        if self.config.issuers:  # with issuers, the JWT (its aud names this service's URL) guards every call
            audience = self.config.public_url.rstrip("/") + request.url.path
            self.verifier.verify(request.headers.get("authorization"), audience)

    async def hook(self, service_id: str, request: Request) -> JSONResponse:
        spec = SERVICES.get(service_id)
        if spec is None:
            raise CdsHttpError(404, "not-found", f"no CDS service {service_id!r}")
        state = request.state
        state.route, state.service, state.hook = f"/cds-services/{spec.id}", spec.id, spec.hook
        self.authenticate(request)
        loaded = self.require()
        body = await read_json(request, self.config.max_request_bytes)
        try:
            hook_request = HookRequest.model_validate(body)
        except ValidationError as exc:
            raise CdsHttpError(400, "invalid", "invalid CDS Hooks request", issues=validation_issues(exc, "")) from None
        if hook_request.hook != spec.hook:
            raise CdsHttpError(400, "invalid", f"this service answers {spec.hook}, not {hook_request.hook}")
        state.hookInstance = hook_request.hookInstance
        try:
            context = CONTEXTS[spec.hook].model_validate(hook_request.context)
        except ValidationError as exc:
            raise CdsHttpError(
                400, "invalid", f"invalid {spec.hook} context", issues=validation_issues(exc, "context")
            ) from None
        if self.config.log_patient_data:
            state.patient = context.patientId
        prefetch = hook_request.prefetch or {}
        templates = loaded.templates
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
        cards, decision_id = await run_in_threadpool(self.cards_for, loaded, spec, hook_request, context, prefetch)
        self.cards.add(spec.id, hook_request.hookInstance, cards, decision_id)
        state.cards = len(cards)
        if self.metrics is not None:
            for card in cards:
                self.metrics.cards.labels(spec.id, card["indicator"]).inc()
        return JSONResponse({"cards": cards})

    def cards_for(
        self,
        loaded: _Loaded,
        spec: ServiceSpec,
        req: HookRequest,
        context: HookContext,
        prefetch: Mapping[str, Any],
    ) -> tuple[list[Any], str | None]:
        """The cards, and the decision log's id for the assessment behind them (None without a log).

        One evaluation per request: for the order hooks, the draft orders become the patient's requested
        procedures and every order's card comes from its verdict (which carries its why-not).
        """
        ruleset, engine, as_of = loaded.ruleset, loaded.engine, self.config.as_of
        # the keys this service asks for, and the combined lab and screening keys of earlier discoveries
        wanted = {k: v for k, v in prefetch.items() if k in loaded.templates or k in COMBINED_PREFETCH_KEYS}
        try:
            mapping = read_prefetch(wanted, ruleset=ruleset, patient_id=context.patientId)
        except FhirInputError as exc:
            raise data_error(
                "the prefetch data is not valid FHIR R4 for this patient", exc, None, "fhir_input"
            ) from None
        patient = mapping.patient
        orders: list[str] = []
        unread: list[tuple[str, str]] = []
        if isinstance(context, OrderSignContext):
            selections = context.selections if isinstance(context, OrderSelectContext) else None
            try:
                bundle, selections = draft_order_bundle(context.draftOrders, ruleset, selections)
            except FhirInputError as exc:
                raise data_error("context.draftOrders is not a valid FHIR R4 Bundle", exc, None, "fhir_input") from None
            try:
                patient, orders, unread = order_case(patient, bundle, ruleset, selections)
            except PatientDataError as exc:
                raise data_error(
                    "context.draftOrders cannot be read as requested procedures", exc, None, "fhir_input"
                ) from None
        evaluated = time.perf_counter()
        try:
            assessment = engine.evaluate(patient, as_of=as_of)
        except PatientDataError as exc:
            raise data_error(
                "the patient data in the prefetch is not valid for evaluation", exc, mapping, "patient_data"
            ) from None
        except EvaluationError as exc:
            logger.error("evaluation failed: %s", exc if self.config.log_patient_data else type(exc).__name__)
            raise CdsHttpError(
                500, "exception", "evaluation failed; no partial assessment is returned", kind="evaluation"
            ) from None
        elapsed = time.perf_counter() - evaluated
        if self.metrics is not None:
            self.metrics.evaluation.labels(spec.hook).observe(elapsed)
        decision_id = None
        if loaded.decisions is not None:
            decision_id = loaded.decisions.record(
                assessment, patient, elapsed_seconds=elapsed, backend=engine.backend_name
            )
        common: dict[str, Any] = {
            "ruleset": ruleset,
            "hook_instance": req.hookInstance,
            "unmapped": mapping.unmapped,
            "patient_reference": mapping.patient_reference,
        }
        if spec.hook == "patient-view":
            return patient_view_cards(assessment, **common), decision_id
        return order_answer(assessment, orders, unread, **common), decision_id

    async def feedback(self, service_id: str, request: Request) -> JSONResponse:
        if service_id not in SERVICES:
            raise CdsHttpError(404, "not-found", f"no CDS service {service_id!r}")
        request.state.route, request.state.service = f"/cds-services/{service_id}/feedback", service_id
        self.authenticate(request)
        body = await read_json(request, self.config.max_request_bytes)
        try:
            items = FeedbackRequest.model_validate(body).feedback
        except ValidationError as exc:
            raise CdsHttpError(400, "invalid", "invalid feedback", issues=validation_issues(exc, "")) from None
        records = self.feedback_log.record(service_id, items)
        logger.info("feedback service=%s items=%d", service_id, len(records))
        return JSONResponse({})


# -- wiring --------------------------------------------------------------------------------------------


def _body(model: str) -> dict[str, Any]:
    """An OpenAPI requestBody naming one of :func:`_schemas`' components (the handlers read the raw body)."""
    ref = {"$ref": f"#/components/schemas/{model}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def _schemas() -> dict[str, Any]:
    """The request models' JSON Schemas, as OpenAPI components."""
    out: dict[str, Any] = {}
    for model in (HookRequest, FeedbackRequest):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CdsHttpError)
    async def _cds_error(request: Request, exc: CdsHttpError) -> JSONResponse:
        request.state.error_kind = exc.kind
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not-found" if exc.status_code == 404 else "not-supported" if exc.status_code == 405 else "processing"
        return CdsHttpError(exc.status_code, code, str(exc.detail)).response()


def _add_cds_routes(app: FastAPI, service: _Service) -> None:
    tags: list[str | Any] = ["CDS Hooks"]

    @app.get("/cds-services", tags=tags, summary="Discovery: the services and their prefetch templates")
    async def discover(request: Request) -> JSONResponse:
        service.authenticate(request)
        return JSONResponse(service.require().discovery)

    @app.post(
        "/cds-services/{service_id}",
        tags=tags,
        summary="Call a CDS service; answers cards",
        openapi_extra=_body("HookRequest"),
    )
    async def call(service_id: str, request: Request) -> JSONResponse:
        return await service.hook(service_id, request)

    @app.post(
        "/cds-services/{service_id}/feedback",
        tags=tags,
        summary="Accepted and overridden cards",
        openapi_extra=_body("FeedbackRequest"),
    )
    async def feedback(service_id: str, request: Request) -> JSONResponse:
        return await service.feedback(service_id, request)


def _add_operations_routes(app: FastAPI, service: _Service) -> None:
    tags: list[str | Any] = ["operations"]

    @app.get("/healthz", tags=tags, summary="Liveness: the process answers")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", tags=tags, summary="Readiness: 200 once the ruleset and engine are loaded, else 503")
    async def readyz() -> JSONResponse:
        status, body = service.readiness()
        return JSONResponse(body, status_code=status)

    metrics = service.metrics
    if metrics is not None:

        @app.get("/metrics", tags=tags, summary="Prometheus metrics (text exposition format)")
        async def metrics_endpoint() -> Response:
            body, content_type = metrics.exposition()
            return Response(body, media_type=content_type)


def create_app(config: ServiceConfig, *, load: Literal["now", "background"] = "now") -> FastAPI:
    """The FastAPI application of ``config``.

    With ``load="now"`` (the default, and what ``ipm-cds serve`` does) the ruleset is loaded and the engine
    built here, and a problem raises :class:`~ipm_cds.IpmCdsError`. With ``load="background"`` they are
    loaded in a worker thread once the server starts the app: ``/healthz`` answers at once, ``/readyz`` and
    the hooks answer 503 until the load is done (and keep answering 503 if it failed), which suits an ASGI
    server whose readiness probe must answer while a large ruleset compiles.
    """
    metrics = Metrics() if config.metrics else None
    service = _Service(config, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service.loaded is None and service.load_error is None:
            service.load_in_background()
        yield
        service.stopping = True  # readiness fails while the server drains its connections
        if metrics is not None:
            metrics.ready.set(0)

    app = FastAPI(
        title="ipm-cds CDS Hooks service",
        version=__version__,
        description="Clinical decision support for interventional pain management. Decision support, never an order.",
        docs_url="/docs" if config.openapi else None,
        redoc_url=None,
        openapi_url="/openapi.json" if config.openapi else None,
        lifespan=lifespan,
    )
    app.state.service = service
    service.app_state = app.state
    if load == "now":
        service.load()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(_schemas())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _add_error_handlers(app)
    _add_cds_routes(app, service)
    _add_operations_routes(app, service)
    if not config.issuers:  # with issuers, the JWT (its aud names this service's URL) guards every call
        app.add_middleware(LocalRequestsOnly, hosts=HostRule(config.public_url, config.bind))
    app.add_middleware(ContainErrors, log_patient_data=config.log_patient_data)
    app.add_middleware(ObserveRequests, metrics=metrics)
    return app
