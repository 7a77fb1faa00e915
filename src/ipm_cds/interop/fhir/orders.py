"""Draft orders (CDS Hooks order-select / order-sign): the interventions ServiceRequests order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..maps import load_maps
from .base import _ReaderBase
from .common import Unmapped, _code_text, _codings

if TYPE_CHECKING:
    from ...ruleset.loader import Ruleset


@dataclass(frozen=True)
class OrderedIntervention:
    """A draft ServiceRequest for one of the ruleset's interventions."""

    reference: str  # "ServiceRequest/sr-1"
    interventions: tuple[str, ...]  # one, or several when the code is ambiguous (CPT 64493)
    region: str | None
    side: str | None
    codes: str | None
    note: str | None = None  # why more than one intervention


def ordered_interventions(
    draft_orders: Mapping[str, Any], ruleset: Ruleset, selections: Sequence[str] | None = None
) -> tuple[list[OrderedIntervention], list[Unmapped]]:
    """The interventions that draft ServiceRequests order (all of them, or only ``selections``).

    A ServiceRequest names an intervention with the local intervention code or a CPT code of the
    catalogue; a CPT code shared by several interventions yields all of them (with a note). Orders for
    anything else (a lab test, a medication) are not ipm-cds's business and are returned as unmapped.
    """
    reader = _ReaderBase(load_maps(), ruleset, None)
    reader.collect(draft_orders, "draftOrders")
    wanted = {reader.resolve(s) or s for s in selections} if selections is not None else None
    found: list[OrderedIntervention] = []
    other: list[Unmapped] = []
    for ref, model in reader.resources:
        if wanted is not None and ref not in wanted:
            continue
        if model.get_resource_type() != "ServiceRequest":
            other.append(Unmapped(ref, "unsupported_resource", "not a ServiceRequest"))
            continue
        codings = _codings(model.code)
        code_text = _code_text(codings)
        local = [c for c in reader._local(codings, "intervention") if c in ruleset.interventions]
        procedure_systems = {reader.maps.uri("cpt"), reader.maps.uri("hcpcs")}  # CPT and HCPCS Level II
        from_cpt = sorted(
            {
                i
                for system, code in codings
                if system in procedure_systems and code in reader.maps.cpt
                for i in reader.maps.cpt[code].interventions
                if i in ruleset.interventions
            }
        )
        note = None
        if len(local) == 1:
            interventions = tuple(local)
        elif from_cpt:
            interventions = tuple(from_cpt)
            if len(from_cpt) > 1:
                note = f"the code ({code_text}) is used for {' and '.join(from_cpt)}: each is assessed"
        else:
            other.append(Unmapped(ref, "unknown_code", "not one of the ruleset's interventions", code_text))
            continue
        found.append(
            OrderedIntervention(
                ref,
                interventions,
                reader._region(model.bodySite),
                reader._laterality(model, model.bodySite),
                code_text,
                note,
            )
        )
    for ref, _ in reader.not_read:
        if wanted is None or ref in wanted:
            other.append(Unmapped(ref, "unsupported_resource", "not a ServiceRequest"))
    return found, other


def draft_order_bundle(
    draft_orders: Mapping[str, Any], ruleset: Ruleset, selections: Sequence[str] | None = None
) -> tuple[dict[str, Any], list[str] | None]:
    """The ``draftOrders`` Bundle validated as FHIR R4 (raises :class:`FhirInputError` when it is not), as plain
    JSON resources for :func:`ipm_cds.interop.cds_hooks.order_case`; and the ``selections`` as
    ``ResourceType/id`` references (a selection may name an entry by its fullUrl)."""
    reader = _ReaderBase(load_maps(), ruleset, None)
    reader.collect(draft_orders, "draftOrders")
    entries = [{"resource": model.model_dump(mode="json", exclude_none=True)} for _, model in reader.resources]
    wanted = [reader.resolve(s) or s for s in selections] if selections is not None else None
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}, wanted
