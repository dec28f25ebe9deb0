"""The bayeshead console script: list, --help everywhere, exit 2 without traceback on bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bayeshead.cli.main import build_parser, main
from bayeshead.registry import REGISTRIES


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bayeshead.cli.main", *args], capture_output=True, text=True)


def test_list_prints_every_registry_entry_with_a_description(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for family, registry in REGISTRIES.items():
        assert f"{family}:" in out
        for name, description in registry.describe():
            assert description
            assert any(line.split(None, 1) == [name, description] for line in out.splitlines())


@pytest.mark.parametrize("command", [[], ["list"], ["validate"], ["demo"]])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*command, "--help"])
    assert info.value.code == 0
    assert "usage: bayeshead" in capsys.readouterr().out


def test_invalid_config_prints_the_problem_and_exits_2(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("adapter:\n  kind: lora\n  rank: -3\nhead:\n  kind: deterministic\n  wieght_decay: 0.1\n")
    result = _run("validate", str(config))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "adapter.rank: Input should be greater than 0" in result.stderr
    assert "head.wieght_decay: Extra inputs are not permitted" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "missing.yaml"], "does not exist"),
        (["validate", "{cfg}", "--set", "head.kind=nope"], "unknown head 'nope'"),
        (["validate", "{cfg}", "--set", "training.epochs"], "key.path=value"),
        (["frobnicate"], "invalid choice"),
        (["list", "gadgets"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_without_traceback(tmp_path, args, message):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("training:\n  epochs: 1\n")
    result = _run(*[a.replace("{cfg}", str(cfg)) for a in args])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and message in result.stderr


def test_validate_prints_the_resolved_config(tmp_path, capsys):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("training:\n  epochs: 4\n")
    assert main(["validate", str(cfg), "--set", "optimizer.lr=0.01"]) == 0
    out = capsys.readouterr().out
    assert '"epochs": 4' in out and '"lr": 0.01' in out and '"kind": "deterministic"' in out
