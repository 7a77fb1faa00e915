"""Interoperability: FHIR R4 in, CDS Hooks out, as a library and as a service.

- :mod:`ipm_cds.interop.fhir`: a FHIR R4 Bundle (or a CDS Hooks prefetch dictionary) to a
  :class:`~ipm_cds.PatientCase`, with a report of what could not be mapped. Needs ``fhir.resources`` (the
  ``fhir`` extra).
- :mod:`ipm_cds.interop.cds_hooks`: an :class:`~ipm_cds.Assessment` to CDS Hooks cards. No dependencies.

The CDS Hooks service (``ipm-cds serve``, FastAPI on uvicorn) sits one layer up, in :mod:`ipm_cds.serving`.

The code maps are data files in ``maps/`` (see :mod:`ipm_cds.interop.maps`). Install the optional
dependencies with ``pip install "ipm-cds[fhir]"`` (the reader) or ``"ipm-cds[service]"`` (the service);
``import ipm_cds`` never needs them.
"""
