"""The README's Python example runs as written, and its set-up commands are the ones CI uses."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = _blocks("python")
    assert len(blocks) == 1 and len(blocks[0].strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "tensor(" in out and (tmp_path / "outputs" / "readme-model" / "head.safetensors").is_file()


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    setup = _blocks("bash")[0].strip().splitlines()
    commands = [line.split("#")[0].strip() for line in setup]
    assert commands == ["bash benchmarks/run.sh", "bash tests/run.sh"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))] == [commands[1]]
