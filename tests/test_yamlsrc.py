"""The YAML reader: positions, and every hostile construct refused quickly with a position."""

from __future__ import annotations

import time

import pytest

from ipm_cds.errors import RulesetError
from ipm_cds.ruleset.yamlsrc import MAX_DOCUMENT_BYTES, load_yaml


def error(text: str) -> str:
    with pytest.raises(RulesetError) as info:
        load_yaml(text, "f.yaml")
    return str(info.value.problems[0])


def test_positions_of_values_and_keys() -> None:
    data, pos = load_yaml("a: 1\nb:\n  - x\n  - {c: 2}\n", "f.yaml")
    assert data == {"a": 1, "b": ["x", {"c": 2}]}
    assert str(pos.at(("b", 1, "c"))) == "f.yaml:4:9"
    assert str(pos.at(("b", 1, "c"), key=True)) == "f.yaml:4:6"
    assert str(pos.at(("b", 1, "missing"))) == "f.yaml:4:5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\na: 2\n", "f.yaml:2:1: duplicate key 'a' (first at line 1, column 1) (remove one of them)"),
        (
            "a: !!python/object/apply:os.system [ls]\n",
            "f.yaml:1:4: tag 'tag:yaml.org,2002:python/object/apply:os.system' "
            "is not allowed in rule files (rule files hold plain data: remove the tag)",
        ),
        (
            "a: !custom x\n",
            "f.yaml:1:4: tag '!custom' is not allowed in rule files (rule files hold plain data: remove the tag)",
        ),
        (
            "a: [1,\n",
            "f.yaml:2:1: YAML syntax error: the file ends before a value is complete (close every '[', '{' and quote)",
        ),
        (
            "a:\n  b: 1\n c: 2\n",
            "f.yaml:3:2: YAML syntax error: a mapping key is indented differently from its siblings "
            "(align it with the keys of its mapping, using the same number of spaces)",
        ),
        (
            "a:\n  b 1\n  c: 2\n",
            "f.yaml:3:4: YAML syntax error: a mapping key is indented differently from its siblings, or the line "
            "above is missing its ':' (align the key with the keys above it; every key is followed by ':')",
        ),
        (
            "a:\n  b: {>=: 12}\n",
            "f.yaml:2:7: YAML syntax error: '>=' is not an operator (operators are words: write gte, e.g. {gte: 12})",
        ),
        (
            "a:\n  b: > 12\n",
            "f.yaml:2:6: YAML syntax error: '>' is not an operator (operators are words: write gt, e.g. {gt: 12})",
        ),
        (
            "a:\n  b: {gte: 12\n  c: 1\n",
            "f.yaml:3:4: YAML syntax error: a {...} mapping is not closed, or two of its entries have no ',' between "
            "them (opened at line 2, column 6) (close it with '}' and separate entries with ', ')",
        ),
        (
            'a:\n  b: "foo\n  c: 1\n',
            "f.yaml:4:1: YAML syntax error: a quoted value is not closed (opened at line 2, column 6) "
            "(close the quote on the same value)",
        ),
        (
            "a:\n  b: 1\n  - 2\n",
            "f.yaml:3:3: YAML syntax error: a list item ('- ') where a mapping key is expected "
            "(indent the list under its key, or write the key before it)",
        ),
        (
            "a:\n  b: {x} is here\n",
            "f.yaml:2:10: YAML syntax error: text follows a value on the same line "
            "(quote a value that starts with '{' or '[' or '\"', or remove the text after it)",
        ),
        ("a: *x\n", "f.yaml:1:4: YAML syntax error: *x refers to no anchor &x (quote a value that starts with '*')"),
        ("base: &b {x: 1}\nother:\n  <<: *b\n", "f.yaml:3:3: merge keys ('<<') are not allowed (write the keys out)"),
        ("x: 2025-01-01T10:00:00\n", "f.yaml:1:4: timestamps are not allowed; write a date as YYYY-MM-DD"),
        ("x: .nan\n", "f.yaml:1:4: NaN and infinities are not allowed"),
        ("a: 1\n---\nb: 2\n", "f.yaml:3:1: more than one YAML document in the file (keep one document per file)"),
        ("? [a]\n: 1\n", "f.yaml:1:3: mapping keys must be plain strings (quote the key)"),
    ],
)
def test_hostile_or_malformed_yaml_is_refused(text: str, expected: str) -> None:
    assert error(text) == expected


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    started = time.perf_counter()
    message = error("\n".join(lines) + "\n")
    assert "expands to more than" in message
    assert time.perf_counter() - started < 5  # refused while counting, not after expanding 10^9 nodes


def test_deep_nesting_is_refused() -> None:
    assert "nesting deeper than" in error("a: " + "[" * 100 + "]" * 100 + "\n")


def test_oversized_document_is_refused() -> None:
    assert "byte limit" in error("a: '" + "x" * MAX_DOCUMENT_BYTES + "'\n")
