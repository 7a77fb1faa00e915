"""Serving: the CDS Hooks service behind ``ipm-cds serve`` (FastAPI on uvicorn).

- :mod:`ipm_cds.serving.service`: the entry point, :func:`~ipm_cds.serving.service.create_app` and the
  ``ipm-cds serve`` command;
- :mod:`ipm_cds.serving.app`: the application (CDS Hooks routes, feedback, ``/healthz``, ``/readyz``,
  ``/metrics``, optional OpenAPI);
- :mod:`ipm_cds.serving.config`: :class:`~ipm_cds.serving.config.ServiceConfig`, trusted issuers;
- :mod:`ipm_cds.serving.protocol`: the CDS Hooks request models, bounded bodies, OperationOutcome errors;
- :mod:`ipm_cds.serving.auth`: JWT verification and the local-requests rule;
- :mod:`ipm_cds.serving.feedback`: the card log and the feedback log;
- :mod:`ipm_cds.serving.observability`: Prometheus metrics, the request log, a JSON log formatter.

The layer above :mod:`ipm_cds.interop` (whose converters it serves) and below the CLI. Importing this
package needs nothing beyond ipm-cds; its modules need ``pip install "ipm-cds[service]"``.
"""
