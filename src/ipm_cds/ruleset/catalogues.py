"""The catalogues of a ruleset merged across their files and checked: duplicate keys, the messages the code
needs and their placeholders, the vocabularies the patient model needs, and every reference between them.

:func:`~ipm_cds.ruleset.loader.load_ruleset` reads the files; this module checks what they say together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from ..errors import Problem, SourceLocation
from ..model.facts.schema import VOCABULARY_NAMES
from ..model.patient import SUBSCORE_FIELDS
from .messages import CRITERION, SLOTS, Template, parse_template
from .model import (
    Criterion,
    InterventionCatalogue,
    Manifest,
    MedicationCatalogue,
    MessageCatalogue,
    ParameterCatalogue,
    Vocabulary,
    VocabularyCatalogue,
)
from .problems import did_you_mean
from .yamlsrc import Path_, Positions


def _index(files: list[tuple[Any, Positions]], list_key: str, key: str, problems: list[Problem]) -> dict[str, Any]:
    """Merge the items of one catalogue's files by key; a key defined twice is an error (across files too)."""
    out: dict[str, Any] = {}
    where: dict[str, SourceLocation] = {}
    for model, pos in files:
        for i, item in enumerate(getattr(model, list_key)):
            k = getattr(item, key)
            if k in out:
                problems.append(Problem(f"duplicate {key} {k!r} (first at {where[k]})", pos.at((list_key, i, key))))
                continue
            out[k] = item
            where[k] = pos.at((list_key, i, key))
    return out


def _items(files: list[tuple[Any, Positions]], list_key: str) -> list[tuple[Any, Positions, int]]:
    return [(item, pos, i) for model, pos in files for i, item in enumerate(getattr(model, list_key))]


def _messages(
    files: list[tuple[MessageCatalogue, Positions]],
    criteria: Mapping[str, Criterion],
    declared: SourceLocation,
    problems: list[Problem],
) -> dict[str, Template]:
    """Parse the message templates and check them against what the code needs (:data:`messages.SLOTS`)."""
    out: dict[str, Template] = {}
    for message, pos, i in _items(files, "messages"):
        if message.id not in SLOTS:
            problems.append(
                Problem(
                    f"unknown message {message.id!r}: the code uses no such message",
                    pos.at(("messages", i, "id")),
                    hint=did_you_mean(message.id, SLOTS),
                )
            )
            continue
        for j, crit in enumerate(message.criteria):
            if crit not in criteria:
                problems.append(
                    Problem(
                        f"unknown criterion {crit!r}",
                        pos.at(("messages", i, "criteria", j)),
                        hint=did_you_mean(crit, criteria),
                    )
                )
        template, errors = parse_template(message)
        at = pos.at(("messages", i, "text"))
        problems.extend(Problem(e, at) for e in errors)
        if template is None:
            continue
        slots = SLOTS[message.id]
        for name in sorted(template.names - slots):
            hint = did_you_mean(name, slots) or (
                f"{message.id} fills {', '.join('{' + s + '}' for s in sorted(slots))}" if slots else None
            )
            problems.append(Problem(f"message {message.id}: unknown placeholder {{{name}}}", at, hint=hint))
        if CRITERION in template.names and not message.criteria:
            problems.append(
                Problem(
                    f"message {message.id} uses {{{CRITERION}}} but names no criteria",
                    pos.at(("messages", i)),
                    hint="list them under criteria:",
                )
            )
        if message.id in out:
            problems.append(Problem(f"duplicate message id {message.id!r}", pos.at(("messages", i, "id"))))
            continue
        out[message.id] = template
    for key in sorted(set(SLOTS) - set(out)):
        if not any(p.message.startswith(f"message {key}:") for p in problems):
            problems.append(
                Problem(
                    f"the message catalogue has no message {key!r}, which the code needs",
                    declared,
                    hint="add it to the message catalogue; its placeholders: "
                    + (", ".join("{" + s + "}" for s in sorted(SLOTS[key])) or "none"),
                )
            )
    return out


def _vocabularies(
    files: list[tuple[VocabularyCatalogue, Positions]], declared: SourceLocation, problems: list[Problem]
) -> dict[str, Vocabulary]:
    """Index the vocabularies and check what the patient model and the fact schema need of them."""
    out: dict[str, Vocabulary] = {}
    for vocabulary, pos, i in _items(files, "vocabularies"):
        if vocabulary.name in out:
            problems.append(Problem(f"duplicate vocabulary {vocabulary.name!r}", pos.at(("vocabularies", i, "name"))))
            continue
        out[vocabulary.name] = vocabulary
        seen: set[str] = set()
        for j, code in enumerate(vocabulary.codes):
            at = ("vocabularies", i, "codes", j)
            if code.code in seen:
                problems.append(Problem(f"duplicate {vocabulary.name} code {code.code!r}", pos.at((*at, "code"))))
            seen.add(code.code)
            if vocabulary.name in VALUED_VOCABULARIES and (code.min is None or code.max is None):
                problems.append(
                    Problem(
                        f"{vocabulary.name} code {code.code!r} needs min and max (the plausible range of its values)",
                        pos.at(at),
                        hint="values outside them are refused as data errors",
                    )
                )
            if vocabulary.name == "lab_test" and code.unit is None:
                problems.append(Problem(f"lab_test code {code.code!r} needs a unit (its canonical unit)", pos.at(at)))
            for k, sub in enumerate(code.subscores):
                if sub not in SUBSCORE_FIELDS:
                    problems.append(
                        Problem(
                            f"unknown subscore {sub!r}",
                            pos.at((*at, "subscores", k)),
                            hint=did_you_mean(sub, SUBSCORE_FIELDS) or f"one of: {', '.join(SUBSCORE_FIELDS)}",
                        )
                    )
    for name in sorted(VOCABULARY_NAMES - set(out)):
        problems.append(
            Problem(
                f"the vocabularies catalogue has no vocabulary {name!r}, which the patient model uses",
                declared,
                hint=f"add a vocabulary named {name} with its codes",
            )
        )
    return out


VALUED_VOCABULARIES = frozenset({"lab_test", "instrument"})
"""Vocabularies whose codes carry a value that must fall in a plausible range (a result, a score)."""


def _catalogue_entries(
    catalogues: Mapping[str, tuple[list[tuple[Any, Positions]], str, str]],
) -> dict[tuple[str, str], tuple[BaseModel, SourceLocation]]:
    """Every catalogue entry with the place it is written, keyed by (catalogue, its key), for the lock."""
    out: dict[tuple[str, str], tuple[BaseModel, SourceLocation]] = {}
    for catalogue, (files, list_key, key) in catalogues.items():
        for item, pos, i in _items(files, list_key):
            out.setdefault((catalogue, getattr(item, key)), (item, pos.at((list_key, i, key))))
    return out


def _check_references(
    manifest: Manifest,
    mpos: Positions,
    codes: Mapping[str, tuple[str, ...]],
    sources: Mapping[str, Any],
    criteria: Mapping[str, Any],
    interventions_c: list[tuple[InterventionCatalogue, Positions]],
    parameters_c: list[tuple[ParameterCatalogue, Positions]],
    medications_c: list[tuple[MedicationCatalogue, Positions]],
    problems: list[Problem],
) -> None:
    """The codes and references the manifest's settings and the catalogues name: each must exist (a code of
    its vocabulary, a source, a criterion, a profile)."""

    def check_code(value: str, vocabulary: str, pos: Positions, path: Path_, *, key: bool = False) -> None:
        known = codes.get(vocabulary)
        if known is not None and value not in known:
            problems.append(
                Problem(
                    f"unknown {vocabulary} code {value!r}",
                    pos.at(path, key=key),
                    hint=did_you_mean(value, known) or f"add it to the {vocabulary} vocabulary",
                )
            )

    settings = manifest.settings
    for group, members in settings.procedure_groups.items():
        for j, kind in enumerate(members):
            check_code(kind, "procedure_kind", mpos, ("settings", "procedure_groups", group, j))
    for group, members in settings.exam_groups.items():
        for j, test in enumerate(members):
            check_code(test, "exam_test", mpos, ("settings", "exam_groups", group, j))

    def check_ref(value: str | None, table: Mapping[str, Any], what: str, pos: Positions, path: Path_) -> None:
        if value is not None and value not in table:
            problems.append(Problem(f"unknown {what} {value!r}", pos.at(path), hint=did_you_mean(value, table)))

    check_ref(manifest.settings.rolling_window_source, sources, "source", mpos, ("settings", "rolling_window_source"))
    for item, ipos, i in _items(interventions_c, "interventions"):
        for j, src in enumerate(item.sources):
            check_ref(src, sources, "source", ipos, ("interventions", i, "sources", j))
        check_ref(item.bleeding_risk.source, sources, "source", ipos, ("interventions", i, "bleeding_risk", "source"))
        for j, crit in enumerate(item.guidance_criteria):
            check_ref(crit, criteria, "criterion", ipos, ("interventions", i, "guidance_criteria", j))
        for region in item.bleeding_risk.by_region:
            check_code(
                region, "body_region", ipos, ("interventions", i, "bleeding_risk", "by_region", region), key=True
            )
    for param, ppos, i in _items(parameters_c, "parameters"):
        check_ref(param.source, sources, "source", ppos, ("parameters", i, "source"))
        if param.default_basis is not None:
            check_ref(param.default_basis.source, sources, "source", ppos, ("parameters", i, "default_basis", "source"))
        for j, crit in enumerate(param.criteria):
            check_ref(crit, criteria, "criterion", ppos, ("parameters", i, "criteria", j))
        for prof in param.profiles:
            check_ref(prof, manifest.profiles, "profile", ppos, ("parameters", i, "profiles", prof))
    for med, medpos, i in _items(medications_c, "medications"):
        check_ref(med.source, sources, "source", medpos, ("medications", i, "source"))
        check_ref(med.mme_source, sources, "source", medpos, ("medications", i, "mme_source"))
