"""Serve CDS Hooks: patient-view, order-select and order-sign over HTTP (FastAPI on uvicorn).

``ipm-cds serve`` listens on 127.0.0.1 by default. Endpoints (CDS Hooks 2.0):

- ``GET  /cds-services``: discovery, with prefetch templates derived from the data the rules read.
- ``POST /cds-services/ipm-cds-patient-view``: the full assessment as cards.
- ``POST /cds-services/ipm-cds-order-select`` and ``.../ipm-cds-order-sign``: the draft ServiceRequests of
  the ruleset's interventions become requested procedures, evaluated once: one card per order with its verdict
  and every safety judgement on it (:func:`ipm_cds.interop.cds_hooks.order_case` / ``order_answer``).
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

Operations: ``GET /healthz`` (liveness), ``GET /readyz`` (readiness: 200 once the ruleset and engine are
loaded, 503 before and while stopping), ``GET /metrics`` (Prometheus; ``--no-metrics`` turns it off),
``GET /docs`` and ``/openapi.json`` with ``--openapi`` (off by default). These carry no patient data and
need no JWT. Every request is logged once through :mod:`logging` (request id, route, hook, status,
latency); ``--log-format json`` writes those lines as JSON objects.

The service lives in :mod:`ipm_cds.serving`: :mod:`.config` (settings, trusted issuers), :mod:`.protocol`
(the wire format and its errors), :mod:`.auth` (JWT and local-request rules), :mod:`.feedback`,
:mod:`.observability` (metrics, request log) and :mod:`.app` (the FastAPI application). This module is
the entry point: :func:`create_app` and the ``ipm-cds serve`` command.
"""

from __future__ import annotations

import argparse
import gc
import logging
import socket
from collections.abc import Callable
from pathlib import Path

# The service extra's dependencies are imported here, at module level, on purpose: when one is missing,
# `ipm-cds serve` says which, and what to install (cli.EXTENSIONS).
import fhir.resources  # noqa: F401  (used by ipm_cds.interop.fhir, imported lazily there)
import jwt  # noqa: F401  (used by .auth)
import prometheus_client  # noqa: F401  (used by .observability)
import uvicorn

from ..argtypes import add_engine_options, date_arg
from ..errors import ConfigurationError, IpmCdsError
from .app import create_app
from .auth import is_loopback
from .config import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_PORT, SERVICES, ServiceConfig, TrustedIssuer, load_issuers
from .observability import JsonFormatter, TextFormatter

__all__ = ["SERVICES", "ServiceConfig", "TrustedIssuer", "create_app", "load_issuers", "register"]

logger = logging.getLogger(__name__)


def register(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Add ``ipm-cds serve``'s arguments to its sub-parser; return the handler."""
    parser.description = (__doc__ or "").split("\n\n")[0]
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)")
    parser.add_argument("--port-file", type=Path, default=None, help="write the bound port here once listening")
    parser.add_argument(
        "--public-url", default=None, help="the URL clients call (the JWT aud); default http://HOST:PORT"
    )
    add_engine_options(parser, ruleset_help="ruleset folder (default: bundled ipm-core)")
    parser.add_argument("--as-of", type=date_arg, default=None, help="pin the evaluation date (default: today)")
    parser.add_argument("--issuers", type=Path, default=None, help="trusted CDS clients (YAML/JSON); enables JWT")
    parser.add_argument(
        "--feedback-log",
        type=Path,
        default=Path("ipm-cds-feedback.jsonl"),
        help="JSON Lines log of card feedback (default: ./ipm-cds-feedback.jsonl)",
    )
    parser.add_argument(
        "--decision-log",
        type=Path,
        default=None,
        help="JSON Lines decision log (one entry per assessment; feedback records name its decision_id)",
    )
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help=f"largest request body accepted, else 413 (default {DEFAULT_MAX_REQUEST_BYTES}; at least 1024)",
    )
    parser.add_argument("--log-patient-data", action="store_true", help="allow patient identifiers in the logs")
    parser.add_argument(
        "--allow-unauthenticated", action="store_true", help="listen on a non-loopback address without --issuers"
    )
    parser.add_argument("--openapi", action="store_true", help="serve the API's description at /docs and /openapi.json")
    parser.add_argument("--no-metrics", action="store_true", help="do not serve Prometheus metrics at /metrics")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="least severe log level written (default: info)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="log lines as text or as one JSON object each (default: text)",
    )
    return _serve


def _serve(args: argparse.Namespace) -> int:
    issuers = load_issuers(args.issuers) if args.issuers else ()
    if not issuers and not is_loopback(args.host) and not args.allow_unauthenticated:
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
        openapi=args.openapi,
        metrics=not args.no_metrics,
    )
    _configure_logging(args.log_level, args.log_format)
    try:
        app = create_app(config)
    except IpmCdsError:
        sock.close()
        raise
    # The serving process is ours and what it holds now (ruleset, engine, app) lives as long as it does: the
    # collector need not walk it on every full collection (docs/performance.md: a p99 of GC pauses).
    gc.freeze()
    if args.port_file is not None:
        args.port_file.write_text(f"{port}\n", encoding="utf-8")
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=args.log_level,
            log_config=None,  # uvicorn's loggers go through the handler set up above
            access_log=False,  # ipm_cds.serving.observability logs every request, with its id
            server_header=False,
            timeout_graceful_shutdown=5,
        )
    )
    logger.info("listening on %s:%d (public URL %s)", args.host, port, config.public_url)
    server.run(sockets=[sock])
    return 0


def _configure_logging(level: str, form: str) -> None:
    """The serving process's log handler (the library itself configures none): stderr, text or JSON."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
