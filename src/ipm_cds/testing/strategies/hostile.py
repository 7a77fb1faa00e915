"""Hostile input: :func:`raw_patient_documents`, malformed and hostile patient documents."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from hypothesis import strategies as st

from .draws import DEFAULT_AS_OF
from .patients import patients

_HUGE = 200_000


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    doc[head] = _set(doc[head], tuple(rest), value)
    return doc


@st.composite
def raw_patient_documents(draw: st.DrawFn, *, as_of: date = DEFAULT_AS_OF) -> Any:
    """Malformed and hostile patient documents (mappings, JSON text, or anything else).

    Wrong types, missing and unknown fields, out-of-range numbers, NaN and infinities, huge strings,
    deep nesting, huge lists, unknown codes, impossible dates. A library must reject each with a
    :class:`~ipm_cds.PatientDataError` (or evaluate it, when the mutation happened to be harmless),
    never crash, hang or answer wrongly.
    """
    base = draw(patients(as_of=as_of)).model_dump(mode="json", exclude_none=True)
    kind = draw(
        st.sampled_from(
            [
                "wrong_type",
                "out_of_range",
                "non_finite",
                "huge_string",
                "deep_nesting",
                "huge_list",
                "unknown_code",
                "unknown_field",
                "drop_required",
                "future_date",
                "bad_date",
                "not_a_mapping",
                "json_text",
            ]
        )
    )
    paths = [p for p in _paths(base) if not isinstance(p[-1], int) or len(p) > 1]
    target = draw(st.sampled_from(paths)) if paths else None
    if kind == "not_a_mapping":
        return draw(st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3)))
    if kind == "deep_nesting":
        depth = draw(st.integers(50, 3000))
        nested: Any = "x"
        for _ in range(depth):
            nested = {"a": nested} if draw(st.booleans()) else [nested]
        base[draw(st.sampled_from(["pain", "demographics", "extra"]))] = nested
        return base
    if kind == "huge_list":
        base["procedures"] = [{"kind": "facet_mbb", "region": "lumbar", "date": "2025-01-01"}] * draw(
            st.integers(101, 5000)
        )
        return base
    if kind == "unknown_field":
        base[draw(st.text(min_size=1, max_size=12))] = draw(st.integers())
        return base
    if kind == "json_text":
        import json

        text = json.dumps(base)
        cut = draw(st.integers(0, max(0, len(text) - 1)))
        return draw(st.sampled_from([text[:cut], text.replace("1", "NaN", 1), text + "}", "\ufeff" + text]))
    if target is None:
        return base
    replacement: Any
    if kind == "wrong_type":
        replacement = draw(
            st.one_of(
                st.text(max_size=5),
                st.lists(st.integers(), max_size=2),
                st.booleans(),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                st.none(),
            )
        )
    elif kind == "out_of_range":
        replacement = draw(st.one_of(st.integers(-(10**12), -1), st.integers(101, 10**12), st.floats(1e6, 1e300)))
    elif kind == "non_finite":
        replacement = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    elif kind == "huge_string":
        replacement = "x" * draw(st.integers(1000, _HUGE))
    elif kind == "unknown_code":
        replacement = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20))
    elif kind == "future_date":
        replacement = (as_of + timedelta(days=draw(st.integers(1, 4000)))).isoformat()
    elif kind == "bad_date":
        replacement = draw(
            st.sampled_from(
                ["2025-02-30", "2025-13-01", "01/02/2025", "2025-1-1", "yesterday", "2025-06-01T10:00:00", 20250601]
            )
        )
    else:  # drop_required
        parent = target[:-1]
        container = base
        for key in parent:
            container = container[key]
        if isinstance(container, dict):
            container.pop(target[-1], None)
        return base
    return _set(base, target, replacement)
