"""The README's Python example is short (tests/test_docs_examples.py runs it), and its set-up
commands are the ones CI uses."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_has_one_short_python_example():
    """The README shows one example of at most 12 lines; tests/test_docs_examples.py runs it
    (in a subprocess, with the examples of docs/)."""
    blocks = _blocks("python")
    assert len(blocks) == 1 and len(blocks[0].strip().splitlines()) <= 12
    assert "save_pretrained" in blocks[0] and "from_pretrained" in blocks[0]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    setup = _blocks("bash")[0].strip().splitlines()
    commands = [line.split("#")[0].strip() for line in setup]
    assert commands == ["bash benchmarks/run.sh", "bash tests/run.sh"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))] == [commands[1]]
