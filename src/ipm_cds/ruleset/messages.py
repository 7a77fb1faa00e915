"""The message catalogue: clinician-facing sentences that the code composes, kept in the ruleset.

A template is text with placeholders ``{name}`` that the code fills in, and optional segments
``[[ ... ]]`` that drop out when a placeholder inside them has no value (None or empty)::

    {agent}: hold {duration} before this {risk}-bleeding-risk procedure[[ ({condition})]].

:data:`SLOTS` lists every message the code needs and the placeholders it supplies to each: the loader
refuses a catalogue that lacks one of them, names an unknown one, or uses a placeholder the code never
supplies (with file:line:col). ``{criterion}`` is filled from the message's own ``criteria`` list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .model import Message

CRITERION = "criterion"

SLOTS: Mapping[str, frozenset[str]] = {
    # Antithrombotic precautions (resolve): one action sentence, then the table, approval and upgrade notes.
    "hold.hold": frozenset({"agent", "duration", "risk", "condition", "restart"}),
    "hold.shared": frozenset({"agent", "risk", "condition", "restart"}),
    "hold.continue": frozenset({"agent", "risk", "condition"}),
    "hold.continue_no_condition": frozenset({"agent", "risk"}),
    "hold.table": frozenset({"verification"}),
    "hold.approval": frozenset(),
    "hold.upgrade": frozenset({"from_risk", "to_risk", CRITERION}),
    # Red flags: the reason given for each suppressed candidate and each deferred referral.
    "red_flag.exclusion": frozenset({"flag"}),
    "red_flag.deferral": frozenset({"flags"}),
    # An exclusion that names no candidate of this patient.
    "exclusion.all_elective": frozenset(),
    # A candidate's evidence line.
    "candidate.evidence": frozenset({"strength", "quality"}),
    # A safety check that missing data left undecided.
    "candidate.unresolved_check": frozenset({"rule", "field"}),
    # Why a rule is inactive (provenance.rules_inactive): outside its effective period (resolve), not active,
    # not part of the profile, or reading a parameter that has no value (engine.program).
    "rule.not_in_effect": frozenset({"date"}),
    "rule.status": frozenset({"status"}),
    "rule.not_in_profile": frozenset({"profile"}),
    "rule.parameter_unset": frozenset({"parameters"}),
    # Verdicts on requested procedures, and why an intervention in scope is not a candidate (engine.verdicts).
    "verdict.appropriate": frozenset({"rule"}),
    "verdict.conditional": frozenset({"rule", "conditions"}),
    "verdict.blocked": frozenset({"rule"}),
    "verdict.unmet": frozenset({"rule"}),
    "verdict.not_indicated": frozenset({"name"}),
    "verdict.no_rule": frozenset({"name"}),
    "verdict.cannot_tell": frozenset({"fields"}),
    "reason.condition": frozenset({"rule", "condition", "actual"}),
    "reason.inactive": frozenset({"rule", "why"}),
    "reason.blocked": frozenset({"rule", "detail"}),
    "reason.not_met": frozenset({"rule", "criteria"}),
    "reason.other_target": frozenset({"rule", "region"}),
    # Values filled into rule texts.
    "value.not_recorded": frozenset(),
    "value.yes": frozenset(),
    "value.no": frozenset(),
}

_TOKEN = re.compile(r"\[\[|\]\]|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Placeholder:
    name: str


Part = str | Placeholder


@dataclass(frozen=True)
class Segment:
    parts: tuple[Part, ...]
    optional: bool

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts if isinstance(p, Placeholder))


@dataclass(frozen=True)
class Template:
    """A parsed message: its segments and the criteria it names."""

    id: str
    segments: tuple[Segment, ...]
    criteria: tuple[str, ...] = ()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(n for s in self.segments for n in s.names)

    def render(self, **values: str | None) -> str:
        """The sentence; an optional segment drops out when one of its placeholders has no value.

        A required placeholder without a value, or a value this message has no slot for, is a programming
        error (ValueError): the loader has checked every template against :data:`SLOTS`.
        """
        if self.criteria and CRITERION in self.names:
            values.setdefault(CRITERION, ", ".join(self.criteria))
        unknown = set(values) - SLOTS.get(self.id, frozenset(values))
        if unknown:
            raise ValueError(f"message {self.id} has no placeholder slot {sorted(unknown)}")
        out: list[str] = []
        for segment in self.segments:
            texts: list[str] = []
            for part in segment.parts:
                if isinstance(part, str):
                    texts.append(part)
                    continue
                value = values.get(part.name)
                if value is None or value == "":
                    if segment.optional:
                        texts = []
                        break
                    raise ValueError(f"message {self.id}: no value for the required placeholder {{{part.name}}}")
                texts.append(value)
            out.extend(texts)
        return "".join(out)


def parse_template(message: Message) -> tuple[Template | None, list[str]]:
    """Parse one message's text; (template, []) or (None, [problem, ...])."""
    text = message.text
    problems: list[str] = []
    segments: list[Segment] = []
    parts: list[Part] = []
    optional = False
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        pos = m.end()
        mark = m.group(0)
        if mark == "[[":
            if optional:
                problems.append(f"message {message.id}: optional segments do not nest ('[[' inside '[[ ... ]]')")
                continue
            if parts:
                segments.append(Segment(tuple(parts), False))
            parts, optional = [], True
        elif mark == "]]":
            if not optional:
                problems.append(f"message {message.id}: ']]' closes no optional segment")
                continue
            segment = Segment(tuple(parts), True)
            if not segment.names:
                problems.append(
                    f"message {message.id}: the optional segment {''.join(map(str, parts))!r} has no placeholder, "
                    "so it never drops out"
                )
            segments.append(segment)
            parts, optional = [], False
        elif m.group(1) is not None:
            name = m.group(1)
            if not _NAME.match(name):
                problems.append(f"message {message.id}: {mark!r} is not a placeholder (lower-case name in braces)")
                continue
            parts.append(Placeholder(name))
        else:
            problems.append(f"message {message.id}: unmatched {mark!r}")
    if pos < len(text):
        parts.append(text[pos:])
    if optional:
        problems.append(f"message {message.id}: '[[' is never closed by ']]'")
    elif parts:
        segments.append(Segment(tuple(parts), False))
    if problems:
        return None, problems
    return Template(message.id, tuple(segments), tuple(message.criteria)), []
