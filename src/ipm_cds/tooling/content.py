"""The clinical content of a ruleset, as a table: for every rule, what it concludes, the criteria and
their verification tags, the sources, the evidence grade, the parameters it reads (with their tags and
values per profile), and under which profiles it runs. ``ipm-cds content`` prints it; the docs include
it, generated from the rule files themselves.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ..engine.program import build_program
from ..ruleset import ir
from ..ruleset.loader import Ruleset


class ParameterUse(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    verification: str
    values: dict[str, int | float | None]  # profile -> value in force (None: no value, rule inactive)
    unit: str


class RuleContent(BaseModel):
    model_config = ConfigDict(frozen=True)
    rule: str
    title: str
    file: str
    concludes: list[str]
    criteria: list[str]  # "ID [tag]"
    sources: list[str]
    evidence: str
    parameters: list[ParameterUse]
    profiles: dict[str, str]  # profile -> "runs" or why not


def _concludes(rule: ir.Rule) -> list[str]:
    out = []
    for c in rule.conclusions:
        if isinstance(c, ir.Recommend):
            out.append(f"recommend {c.intervention}")
        elif isinstance(c, ir.Exclude):
            codes = [x if isinstance(x, str) else "the matched candidate" for x in c.interventions]
            out.append(f"exclude ({c.severity}) {', '.join(codes) or 'elective interventions'}")
        elif isinstance(c, ir.Precaution):
            codes = [x if isinstance(x, str) else "the matched candidate" for x in c.interventions]
            out.append(f"precaution on {', '.join(codes) or 'elective interventions'}")
        elif isinstance(c, ir.Alert):
            out.append(f"alert {c.code} ({c.severity})")
        elif isinstance(c, ir.Refer):
            out.append(f"refer {c.to} ({c.urgency})")
        elif isinstance(c, ir.RedFlag):
            out.append(f"red flag {c.code}")
        elif isinstance(c, ir.Derive):
            out.append(f"derive {c.fact}")
        else:
            out.append("antithrombotic hold advice")
    return out


def content(ruleset: Ruleset) -> list[RuleContent]:
    profiles = list(ruleset.manifest.profiles)
    programs = {p: build_program(ruleset, p) for p in profiles}
    rows = []
    for rule in sorted(ruleset.rules, key=lambda r: r.id):
        params = []
        for name in sorted(rule.params()):
            param = ruleset.parameters[name]
            params.append(
                ParameterUse(
                    name=name,
                    verification=param.verification,
                    unit=param.unit,
                    values={p: param.value(p) for p in profiles},
                )
            )
        runs = {}
        for p, program in programs.items():
            runs[p] = program.disabled.get(rule.ref, "runs")
        location = rule.location.file if rule.location else ""
        rows.append(
            RuleContent(
                rule=rule.ref,
                title=rule.title,
                file=location,
                concludes=_concludes(rule),
                criteria=[f"{c} [{ruleset.criteria[c].verification or '-'}]" for c in rule.criteria],
                sources=list(rule.sources),
                evidence=f"{rule.evidence_strength} / {rule.evidence_quality}",
                parameters=params,
                profiles=runs,
            )
        )
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(ruleset: Ruleset, rows: list[RuleContent]) -> str:
    profiles = list(ruleset.manifest.profiles)
    lines = [
        f"{len(rows)} rules of `{ruleset.id}` {ruleset.version}. Verification tags (criteria §0.1): V verified, "
        "V2 secondary source, K stated from knowledge of the primary source, UNVERIFIED a local parameter. "
        "Parameter values are shown per profile (" + ", ".join(profiles) + "); '-' means no value: the rule does "
        "not run until a deployment sets one.",
        "",
        "| Rule | Concludes | Criteria | Sources | Evidence | Parameters | Profiles |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        params = (
            "; ".join(
                f"{p.name} [{p.verification}] = "
                + "/".join("-" if p.values[x] is None else f"{p.values[x]:g}" for x in profiles)
                for p in row.parameters
            )
            or "none"
        )
        runs = [p for p, why in row.profiles.items() if why == "runs"]
        where = "all" if len(runs) == len(profiles) else (", ".join(runs) if runs else "none by default")
        lines.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    f"`{row.rule}` {row.title}",
                    "; ".join(row.concludes),
                    ", ".join(row.criteria),
                    ", ".join(row.sources),
                    row.evidence,
                    params,
                    where,
                )
            )
            + " |"
        )
    return "\n".join(lines) + "\n"
