#!/usr/bin/env python3
"""Build docs/*.md from docs/tools/templates/*.md, running every example for real.

Run it with the project's environment (the README's ``.venv``), from any directory::

    .venv/bin/python docs/tools/build.py               # rewrite docs/*.md
    .venv/bin/python docs/tools/build.py --check       # exit 1, listing the stale pages, if any differ
    .venv/bin/python docs/tools/build.py quickstart    # only docs/quickstart.md

A template is markdown with these directives, each on its own line:

``@@sh [head=N] [tail=N] [filter=NAME] [norc] [expect=RC] [lang=LANG]`` … ``@@end``
    One shell command per line, each run with bash in the workspace (see ``workspace.py``) and shown
    as ``$ command`` followed by its output (stdout, then stderr) and, unless ``norc``, its exit code.
    ``head``/``tail`` trim long output (marked as trimmed), ``filter`` post-processes it (``FILTERS``),
    ``expect`` fails the build unless the exit code is RC.

``@@py [head=N]`` … ``@@end``
    A Python program, run with this interpreter in the workspace and shown with its output. It must
    exit with 0.

``@@gen NAME``
    A table generated in-process from the code (``gen.GENERATORS``).

Exit codes: 0 done (or, with ``--check``, every page up to date); 1 ``--check`` found stale pages;
2 the build failed (an example broke, a fixture could not be made, a page would show a machine path).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from workspace import ROOT, TOOLS, FixtureError, Workspace, open_workspace

TEMPLATES = TOOLS / "templates"
DOCS = ROOT / "docs"
TIMEOUT_SECONDS = 300


class BuildError(RuntimeError):
    """An example failed, or a page would not be reproducible."""


# -- output normalisation and filters ----------------------------------------------------------------

# provenance.evaluated_at is wall-clock time: the one field of an assessment that changes between runs.
_EVALUATED_AT = re.compile(
    r'("evaluated_at":\s*")\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})(")'
)
EVALUATED_AT_SHOWN = "YYYY-MM-DDTHH:MM:SS.ffffffZ"


def normalise(out: str) -> str:
    """Mask what depends on the moment of the run."""
    return _EVALUATED_AT.sub(rf"\g<1>{EVALUATED_AT_SHOWN}\g<2>", out)


def f_json_head(out: str) -> str:
    """Shorten a JSON assessment: one trace entry, one source per candidate, three parameters."""
    data = json.loads(out)
    data["trace"] = [*data["trace"][:1], "… (trimmed: one entry per rule firing)"] if data["trace"] else []
    for candidate in data["candidates"]:
        for precaution in candidate["precautions"]:
            precaution["basis"]["sources"] = ["… (trimmed)"]
        candidate["basis"]["sources"] = [*candidate["basis"]["sources"][:1], "… (trimmed)"]
    parameters = dict(list(data["provenance"]["parameters"].items())[:3])
    parameters["…"] = "(trimmed)"
    data["provenance"]["parameters"] = parameters
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


_QUOTED = re.compile(r"'[^']*'")


def f_fold(out: str) -> str:
    """Fold each run of four or more lines that differ only in a quoted name: its first two, then a count."""
    lines = out.splitlines()
    shapes = [_QUOTED.sub("'…'", line) for line in lines]
    kept: list[str] = []
    i = 0
    while i < len(lines):
        j = i + 1
        while j < len(lines) and shapes[j] == shapes[i] != lines[i]:
            j += 1
        if j - i >= 4:
            kept += [*lines[i : i + 2], f"… ({j - i - 2} more lines like these trimmed)"]
        else:
            kept += lines[i:j]
        i = j
    return "\n".join(kept) + ("\n" if kept else "")


FILTERS: dict[str, Callable[[str], str]] = {"json_head": f_json_head, "fold": f_fold}


def trim(out: str, head: int | None, tail: int | None) -> str:
    lines = out.splitlines()
    if head is not None and len(lines) > head:
        lines = [*lines[:head], f"… ({len(lines) - head} more lines trimmed)"]
    if tail is not None and len(lines) > tail:
        lines = [f"… ({len(lines) - tail} lines trimmed)", *lines[-tail:]]
    return "\n".join(lines) + ("\n" if lines else "")


def _int_option(opts: dict[str, str], name: str) -> int | None:
    return int(opts[name]) if name in opts else None


# -- templates ---------------------------------------------------------------------------------------

_BLOCK = re.compile(r"^@@(sh|py)\b(.*)$")
_GEN = re.compile(r"^@@gen\s+(\w+)\s*$")


@dataclass
class Block:
    """One ``@@sh`` or ``@@py`` directive; ``text`` is filled in when it has run."""

    kind: str
    body: str
    opts: dict[str, str]
    where: str  # template:line, for error messages
    text: str = ""


@dataclass
class Page:
    name: str
    parts: list[str | Block] = field(default_factory=list)

    def blocks(self) -> list[Block]:
        return [p for p in self.parts if isinstance(p, Block)]

    def text(self) -> str:
        return "".join(p.text if isinstance(p, Block) else p for p in self.parts)


def parse_options(spec: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for item in spec.split():
        key, _, value = item.partition("=")
        opts[key] = value
    return opts


def parse(template: Path) -> Page:
    """Split a template into literal text, generated tables (expanded here) and blocks to run."""
    import gen

    page = Page(template.stem)
    lines = template.read_text(encoding="utf-8").splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\n")
        if g := _GEN.match(line):
            if g.group(1) not in gen.GENERATORS:
                raise BuildError(f"{template.name}:{i + 1}: unknown generator {g.group(1)!r}")
            page.parts.append(gen.GENERATORS[g.group(1)]())
            i += 1
            continue
        m = _BLOCK.match(line)
        if not m:
            page.parts.append(lines[i])
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip("\n") != "@@end":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise BuildError(f"{template.name}:{start + 1}: @@{m.group(1)} without @@end")
        where = f"{template.name}:{start + 1}"
        page.parts.append(Block(m.group(1), "".join(body), parse_options(m.group(2)), where))
        i += 1
    return page


# -- running examples --------------------------------------------------------------------------------


def _run(argv: list[str], ws: Workspace) -> subprocess.CompletedProcess[str]:
    # S603: the commands are the templates' own examples; their exit codes are part of the output.
    return subprocess.run(  # noqa: S603
        argv,
        check=False,
        cwd=ws.cwd,
        env=ws.env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT_SECONDS,
    )


def _session(command: str, opts: dict[str, str], ws: Workspace, where: str) -> str:
    """``$ command``, its output and, unless norc, its exit code."""
    proc = _run(["bash", "-c", command + "\n"], ws)
    out = proc.stdout
    if proc.stderr:
        out = out + proc.stderr if not out or out.endswith("\n") else out + "\n" + proc.stderr
    out = normalise(out)
    if "filter" in opts:
        out = FILTERS[opts["filter"]](out)
    out = trim(out, _int_option(opts, "head"), _int_option(opts, "tail"))
    if "expect" in opts and proc.returncode != int(opts["expect"]):
        raise BuildError(f"{where}: `{command}` exited with {proc.returncode}, expected {opts['expect']}:\n{out}")
    text = f"$ {command}\n{out}"
    if "norc" not in opts:
        text += f"$ echo $?\n{proc.returncode}\n"
    return text


def render_sh(block: Block, ws: Workspace) -> str:
    commands = [c.strip() for c in block.body.strip().splitlines() if c.strip()]
    fence = block.opts.get("lang", "console")
    return f"```{fence}\n" + "".join(_session(c, block.opts, ws, block.where) for c in commands) + "```\n"


def render_py(block: Block, ws: Workspace) -> str:
    proc = _run([sys.executable, "-c", block.body], ws)
    out = normalise(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise BuildError(f"{block.where}: the program exited with {proc.returncode}:\n{out}")
    out = trim(out, _int_option(block.opts, "head"), None)
    return f"```python\n{block.body.strip()}\n```\n\nOutput:\n\n```text\n{out}```\n"


def render_block(block: Block, ws: Workspace) -> None:
    if "filter" in block.opts and block.opts["filter"] not in FILTERS:
        raise BuildError(f"{block.where}: unknown filter {block.opts['filter']!r}")
    block.text = render_sh(block, ws) if block.kind == "sh" else render_py(block, ws)


def build_pages(names: Sequence[str], jobs: int) -> dict[str, str]:
    """Render the named pages; return ``{name: markdown}``. Blocks run in parallel, in isolation."""
    pages = [parse(TEMPLATES / f"{name}.md") for name in names]
    blocks = [b for page in pages for b in page.blocks()]
    with open_workspace() as ws, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(render_block, b, ws) for b in blocks]:
            future.result()
        texts = {page.name: page.text() for page in pages}
        machine_paths = ws.machine_paths()
    for name, text in texts.items():
        for path in machine_paths:
            if path in text:
                at = text.index(path)
                number = text[:at].count("\n") + 1
                line = text.splitlines()[number - 1]
                raise BuildError(
                    f"docs/{name}.md:{number}: shows the machine path {path} (see Paths in docs/tools/README.md): "
                    + line
                )
    return texts


# -- command line ------------------------------------------------------------------------------------


def _check(texts: dict[str, str], diff_lines: int) -> int:
    stale = []
    for name, text in texts.items():
        path = DOCS / f"{name}.md"
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            stale.append(path)
            diff = list(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    f"docs/{name}.md",
                    f"docs/{name}.md (regenerated)",
                )
            )
            sys.stdout.writelines(diff[:diff_lines])
            if len(diff) > diff_lines:
                print(f"… ({len(diff) - diff_lines} more diff lines)")
    if stale:
        print("stale docs (regenerate with docs/tools/build.py and commit):")
        for path in stale:
            print(f"  {path.relative_to(ROOT)}")
        return 1
    return 0


def _warn_about_environment() -> None:
    import ipm_cds

    package = Path(ipm_cds.__file__).resolve()
    if not package.is_relative_to((ROOT / "src").resolve()):
        print(
            f"build.py: warning: ipm_cds is imported from {package.parent}, not from this checkout's src/; "
            "the pages will describe that installation",
            file=sys.stderr,
        )
    if sys.version_info[:2] != (3, 11):
        print(
            "build.py: warning: the committed pages are made with Python 3.11; "
            f"under {sys.version_info.major}.{sys.version_info.minor} messages that name the Python version differ",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    available = sorted(p.stem for p in TEMPLATES.glob("*.md"))
    parser = argparse.ArgumentParser(prog="docs/tools/build.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="PAGE", help=f"pages to build (default: all of {available})")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page differs from docs/")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="examples run in parallel")
    parser.add_argument("--diff-lines", type=int, default=60, help="with --check, diff lines shown per page")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        parser.error(f"no template for {unknown}; available: {available}")
    try:
        import ipm_cds  # noqa: F401
    except ImportError:
        parser.error(f"ipm_cds is not importable by {sys.executable}; run .venv/bin/python docs/tools/build.py")
    _warn_about_environment()

    started = time.monotonic()
    try:
        texts = build_pages(args.names or available, args.jobs)
    except (BuildError, FixtureError, subprocess.TimeoutExpired) as error:
        print(f"build.py: error: {error}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - started
    if args.check:
        status = _check(texts, args.diff_lines)
        if status == 0:
            print(f"docs up to date ({len(texts)} pages checked in {elapsed:.1f} s)")
        return status
    for name, text in texts.items():
        path = DOCS / f"{name}.md"
        changed = not path.exists() or path.read_text(encoding="utf-8") != text
        if changed:
            path.write_text(text, encoding="utf-8", newline="\n")
        print(f"{'wrote' if changed else 'unchanged'} docs/{name}.md ({len(text.splitlines())} lines)")
    print(f"built {len(texts)} pages in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
