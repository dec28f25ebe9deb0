"""Every Python code block of README.md and docs/ runs, so the documentation cannot rot.

The blocks of one file run in order in one namespace (a later block may use what an earlier one
defined), in a separate Python process (so that what an example registers does not leak into
other tests), in a fresh working directory, on CPU, with ``BAYESHEAD_DATA`` pointing at the
benchmark data. A block is a fence that opens with exactly ```` ```python ```` at the start of a line;
other spellings (```` ```py ````, indented fences) are refused so that no example escapes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """``(line number of the opening fence, code)`` of every ```` ```python ```` block."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in FENCE.finditer(text)]


def _with_blocks() -> list[Path]:
    return [p for p in doc_files() if python_blocks(p)]


def test_the_harness_finds_the_examples():
    files = _with_blocks()
    assert ROOT / "README.md" in files
    assert len(files) >= 3, [p.name for p in files]


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_python_example_hides_behind_another_fence(path):
    text = path.read_text(encoding="utf-8")
    bad = []
    for match in re.finditer(r"^([ \t]*)```[ \t]*([\w+-]*)", text, re.M):
        indent, language = match.groups()
        if language in {"py", "python3", "pycon", "ipython"} or (indent and language == "python"):
            bad.append(text.count("\n", 0, match.start()) + 1)
    assert not bad, f"{path}: Python fences the test cannot run at lines {bad}; open them with ```python at column 0"


# Runs the blocks given as JSON [[where, code], ...] on stdin in one namespace; a failing block
# prints its location and traceback and exits with status 1.
_DRIVER = """
import json, sys, traceback
namespace = {"__name__": "__docs__"}
for where, code in json.load(sys.stdin):
    try:
        exec(compile(code, where, "exec"), namespace)
    except BaseException:
        print(f"the Python block at {where} failed:", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


@pytest.mark.parametrize("path", _with_blocks(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_blocks_run(path, tmp_path):
    blocks = [[f"{path.relative_to(ROOT)}:{line}", code] for line, code in python_blocks(path)]
    env = {**os.environ, "BAYESHEAD_DATA": str(DATA), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER], input=json.dumps(blocks), capture_output=True, text=True,
        cwd=tmp_path, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-6000:]
