"""Read a FHIR Bundle or CDS Hooks prefetch and show what mapped, what did not, and why.

``ipm-cds fhir FILE`` prints the patient document the record maps to; ``--coverage`` lists every resource of
the input instead: the patient-model entries it became, the context it gave (a Medication, a
DiagnosticReport), or why it was not read (unknown code, a type ipm-cds does not read, a dose that could not
be computed ...). Needs ``fhir.resources`` (the ``service`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fhir.resources  # noqa: F401  (the reader needs it; a missing extra is reported by the cli)

from .common import FhirMapping, Unmapped
from .reader import read_fhir

__all__ = ["Coverage", "ResourceCoverage", "coverage", "register"]

# Unmapped kinds that leave out clinical content (the others are bookkeeping: a resource type ipm-cds does
# not read, an older value superseded by a newer one, a duplicate, an item beyond a list's cap).
CLINICAL_KINDS = frozenset({"unknown_code", "ambiguous_code", "incomplete", "unknown_unit", "partial", "not_read"})


@dataclass(frozen=True)
class ResourceCoverage:
    """One resource of the input: what it became, or why not."""

    resource: str
    status: str  # "mapped", "partial", "not mapped", "context"
    paths: tuple[str, ...]
    items: tuple[Unmapped, ...]


@dataclass(frozen=True)
class Coverage:
    mapping: FhirMapping
    resources: tuple[ResourceCoverage, ...]

    @property
    def clinical_gaps(self) -> tuple[Unmapped, ...]:
        """Unmapped items that leave out clinical content."""
        return tuple(u for u in self.mapping.unmapped if u.kind in CLINICAL_KINDS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": dict(Counter(r.status for r in self.resources)),
            "clinical_gaps": len(self.clinical_gaps),
            "resources": [
                {
                    "resource": r.resource,
                    "status": r.status,
                    "paths": list(r.paths),
                    "unmapped": [u.as_dict() for u in r.items],
                }
                for r in self.resources
            ],
        }

    def report(self) -> str:
        lines = []
        for r in self.resources:
            lines.append(f"{r.resource}: {r.status}" + (f" -> {', '.join(r.paths)}" if r.paths else ""))
            for u in r.items:
                code = f" [{u.code}]" if u.code else ""
                lines.append(f"    {u.kind}{code}: {u.reason}")
        counts = Counter(r.status for r in self.resources)
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        lines.append(f"{len(self.resources)} resources: {summary}; {len(self.clinical_gaps)} clinical item(s) not read")
        return "\n".join(lines) + "\n"


def _labels(data: Mapping[str, Any], where: str) -> Iterator[str]:
    """The reference of every resource of the input, as the reader names them (Type/id, else its place)."""
    rtype = data.get("resourceType")
    if rtype == "Bundle":
        for i, entry in enumerate(data.get("entry") or []):
            resource = entry.get("resource") if isinstance(entry, Mapping) else None
            if isinstance(resource, Mapping):
                yield from _labels(resource, f"{where}.entry[{i}]")
        return
    if isinstance(rtype, str):
        rid = data.get("id")
        yield f"{rtype}/{rid}" if isinstance(rid, str) else where


def coverage(data: Mapping[str, Any], *, ruleset: Any = None, patient_id: str | None = None) -> Coverage:
    """Read ``data`` (a Bundle, a resource or a prefetch dictionary) and account for every resource."""
    mapping = read_fhir(data, ruleset=ruleset, patient_id=patient_id)
    if "resourceType" in data:
        labels = list(_labels(data, "bundle"))
    else:
        labels = [
            label
            for key in sorted(data)
            if isinstance(data[key], Mapping)
            for label in _labels(data[key], f"prefetch.{key}")
        ]
    paths: dict[str, list[str]] = defaultdict(list)
    for path, ref in mapping.sources.items():
        paths[ref].append(path)
    items: dict[str, list[Unmapped]] = defaultdict(list)
    for u in mapping.unmapped:
        items[u.resource].append(u)
    out = []
    for label in dict.fromkeys(labels):
        mapped, missing = sorted(paths.get(label, [])), tuple(items.get(label, []))
        if mapped and any(u.kind in CLINICAL_KINDS for u in missing):
            status = "partial"
        elif mapped:
            status = "mapped"
        elif missing:
            status = "not mapped"
        else:
            status = "context"  # read through another resource (a Medication, a DiagnosticReport ...)
        out.append(ResourceCoverage(label, status, tuple(mapped), missing))
    return Coverage(mapping, tuple(out))


def register(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Add the ``ipm-cds fhir`` arguments to ``parser``; return the command's handler."""
    parser.description = __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None
    parser.add_argument("input", type=Path, help="a FHIR R4 Bundle or resource, or a CDS Hooks prefetch (JSON)")
    parser.add_argument("--coverage", action="store_true", help="list every resource: what it mapped to, or why not")
    parser.add_argument(
        "--format", choices=["text", "json"], default="text", help="text for people (default), json for programs"
    )
    parser.add_argument("--ruleset", type=Path, default=None, help="ruleset folder (default: bundled ipm-core)")
    parser.add_argument("--patient-id", default=None, help="the Patient's id (a CDS Hooks context.patientId)")
    return _run


def _run(args: argparse.Namespace) -> int:
    from ...errors import ConfigurationError, InputFileError
    from ...ruleset.loader import load_ruleset

    try:
        text = args.input.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFileError(str(args.input), exc.strerror or "cannot be read") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"{args.input}: not JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{args.input}: expected a JSON object")
    ruleset = load_ruleset(args.ruleset, with_tests=False)
    result = coverage(data, ruleset=ruleset, patient_id=args.patient_id)
    if args.coverage:
        text = json.dumps(result.as_dict(), indent=2) + "\n" if args.format == "json" else result.report()
    else:
        document = result.mapping.patient.model_dump(mode="json", exclude_defaults=True)
        text = json.dumps(document, indent=2) + "\n"
        if args.format == "text" and result.mapping.unmapped:
            text += "".join(f"# not mapped: {u}\n" for u in result.mapping.unmapped)
    sys.stdout.write(text)
    return 0
