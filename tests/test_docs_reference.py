"""docs/reference/ is generated from the code (docs/gen_reference.py) and must not go stale.

When this fails, regenerate the pages and commit them: ``python docs/gen_reference.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "gen_reference.py"


def _generate(*args: str) -> subprocess.CompletedProcess:
    # a narrow terminal must not change the output
    env = {**os.environ, "COLUMNS": "40", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=ROOT / "tests")


def test_reference_pages_match_the_code():
    done = _generate("--check")
    assert done.returncode == 0, (
        f"{done.stdout[-6000:]}{done.stderr[-3000:]}\n"
        "docs/reference/ is stale: regenerate it with `python docs/gen_reference.py` and commit the result"
    )


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_reference_pages_cover_every_config_field_and_command():
    from bayeshead._builtins import BUILTINS
    from bayeshead.bench.suite import MethodSpec, SuiteConfig
    from bayeshead.cli.main import build_parser
    from bayeshead.config import BackboneConfig, EvaluationConfig, TrainingConfig
    from bayeshead.registry import REGISTRIES

    configuration = (ROOT / "docs" / "reference" / "configuration.md").read_text(encoding="utf-8")
    for section, model in (("backbone", BackboneConfig), ("training", TrainingConfig), ("evaluation", EvaluationConfig)):
        for name in model.model_fields:
            assert f"| `{section}.{name}` |" in configuration, f"{section}.{name}"
    for name in [*SuiteConfig.model_fields, *MethodSpec.model_fields]:
        assert f"| `{name}` |" in configuration, name
    section = {"adapters": "adapter", "heads": "head", "methods": "method", "optimizers": "optimizer", "tasks": "task"}
    for family, builtins in BUILTINS.items():
        for name in builtins:
            assert f"| `{name}` |" in configuration, f"{family} {name}"
            if family == "backbones":  # packaged models: names for backbone.name_or_path, no config
                continue
            for field in REGISTRIES[family].config_class(name).model_fields:
                if field != "kind":
                    assert f"| `{section[family]}.{field}` |" in configuration, f"{name}: {field}"

    cli = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    for parser in _parsers(build_parser()):
        assert f"## `{parser.prog}`" in cli and f"usage: {parser.prog} " in cli, parser.prog
        for action in parser._actions:
            for option in action.option_strings:
                assert option in ("-h", "--help") or f"`{option}" in cli, f"{parser.prog} {option}"
