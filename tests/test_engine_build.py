"""The check that durable-rules was compiled with optimisation (benchmarks/engine_build.py, run by .ci/run)."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest
from benchmarks import engine_build

# A little C in the style of the engine: structs, loops, helper functions, locals.
SOURCE = r"""
#include <string.h>
typedef struct { unsigned int hash; unsigned int next; char name[32]; } node;
static unsigned int fnv(const char *s, unsigned int n) {
    unsigned int h = 2166136261u;
    for (unsigned int i = 0; i < n; ++i) { h ^= (unsigned char)s[i]; h *= 16777619u; }
    return h;
}
static int find(node *pool, unsigned int count, const char *name) {
    unsigned int h = fnv(name, (unsigned int)strlen(name));
    for (unsigned int i = 0; i < count; ++i) {
        if (pool[i].hash == h && strcmp(pool[i].name, name) == 0) { return (int)i; }
    }
    return -1;
}
int add(node *pool, unsigned int *count, const char *name) {
    int at = find(pool, *count, name);
    if (at >= 0) { return at; }
    node *n = &pool[*count];
    strncpy(n->name, name, sizeof(n->name) - 1);
    n->name[sizeof(n->name) - 1] = 0;
    n->hash = fnv(name, (unsigned int)strlen(name));
    n->next = *count + 1;
    return (int)(*count)++;
}
int count_matches(node *pool, unsigned int count, const char **names, unsigned int n) {
    int matches = 0;
    for (unsigned int i = 0; i < n; ++i) {
        int at = find(pool, count, names[i]);
        if (at >= 0 && pool[at].next > (unsigned int)at) { matches += 1; }
    }
    return matches;
}
unsigned int chain(node *pool, unsigned int start, unsigned int limit) {
    unsigned int steps = 0, at = start;
    while (at < limit && steps < limit) { at = pool[at].next; steps += 1; }
    return steps;
}
"""


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or not (shutil.which("gcc") and shutil.which("objdump")),
    reason="needs gcc, objdump and x86-64",
)
@pytest.mark.parametrize(
    ("flags", "optimised"),
    [([], False), (["-O0"], False), (["-O2"], True), (["-O3"], True), (["-O2", "-fno-omit-frame-pointer"], True)],
)
def test_tells_an_unoptimised_build(tmp_path: Path, flags: list[str], optimised: bool) -> None:
    source = tmp_path / "sample.c"
    source.write_text(SOURCE)
    library = tmp_path / "sample.so"
    subprocess.run(["gcc", "-std=c99", *flags, "-fPIC", "-shared", str(source), "-o", str(library)], check=True)
    build = engine_build.classify(str(library))
    assert build.optimised is optimised, build.note


def test_cannot_tell_without_an_x86_64_elf(tmp_path: Path) -> None:
    text = tmp_path / "not-elf.so"
    text.write_text("not a shared object")
    assert engine_build.classify(str(text)).optimised is None
    assert engine_build.classify(None).optimised is None
