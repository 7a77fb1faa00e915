"""Was the installed durable-rules extension compiled with optimisation?

durable-rules' ``setup.py`` replaces ``CFLAGS``, so a plain ``pip install`` compiles the engine with no
``-O`` flag at all; ``CPPFLAGS=-O2`` at install time passes one (the README's set-up does; see
docs/engine.md). The flags are not recorded in the built extension, so this reads its machine code: code
compiled without optimisation keeps every local variable in the stack frame and addresses it through
``%rbp`` (measured on durable-rules 2.0.28 with gcc 12: 35 % of all instructions without ``-O``; 2 % at
``-O2`` and ``-O3``; 12 % at ``-O2 -fno-omit-frame-pointer``). Needs ``objdump`` (binutils, installed
with the C compiler that durable-rules needs) and an x86-64 ELF extension; elsewhere it cannot tell.

``python -m benchmarks.engine_build`` prints the verdict and exits 1 when the extension is unoptimised
(``.ci/run`` runs it after the set-up); the benchmark runner records it with every run.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

UNOPTIMISED_SHARE = 0.2  # share of instructions addressing the frame through %rbp above which: no -O
_EM_X86_64 = 62


@dataclass(frozen=True)
class Build:
    path: str | None
    optimised: bool | None  # None: cannot tell here
    frame_share: float | None  # share of instructions with a (%rbp) operand
    note: str

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "optimised": self.optimised, "frame_share": self.frame_share, "note": self.note}


def extension_path() -> str | None:
    """The file of ``durable_rules_engine`` that ``import`` would load, without importing it."""
    spec = importlib.util.find_spec("durable_rules_engine")
    return spec.origin if spec is not None else None


def frame_share(path: str) -> float | None:
    """Share of the instructions of ``path`` that address memory through ``%rbp``; None if not measurable."""
    with open(path, "rb") as binary:
        header = binary.read(20)
    if header[:4] != b"\x7fELF" or header[4] != 2 or int.from_bytes(header[18:20], "little") != _EM_X86_64:
        return None
    objdump = shutil.which("objdump")
    if objdump is None:
        return None
    listing = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", path], capture_output=True, text=True, check=True
    ).stdout
    instructions = [ln for ln in listing.splitlines() if ln.startswith(" ") and ":\t" in ln]
    if not instructions:
        return None
    return sum("(%rbp)" in ln for ln in instructions) / len(instructions)


def classify(path: str | None) -> Build:
    if path is None:
        return Build(None, None, None, "durable_rules_engine is not installed")
    share = frame_share(path)
    if share is None:
        return Build(path, None, None, "cannot tell: needs objdump and an x86-64 ELF extension")
    optimised = share <= UNOPTIMISED_SHARE
    note = (
        f"{share:.0%} of its instructions address the stack frame through %rbp "
        f"({'optimised' if optimised else 'compiled without -O'}; the bound is {UNOPTIMISED_SHARE:.0%})"
    )
    return Build(path, optimised, round(share, 4), note)


def installed() -> Build:
    return classify(extension_path())


def main(argv: list[str] | None = None) -> int:
    paths = argv if argv is not None else sys.argv[1:]
    builds = [classify(str(Path(p))) for p in paths] if paths else [installed()]
    for build in builds:
        print(f"{build.path}: {build.note}")
    if any(b.optimised is False for b in builds):
        print(
            "durable-rules was compiled without optimisation: reinstall it with CPPFLAGS=-O2 "
            '(CPPFLAGS=-O2 python -m pip install --no-cache-dir --force-reinstall --no-deps "durable-rules==2.0.28")',
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
