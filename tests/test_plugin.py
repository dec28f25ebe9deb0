"""A separate package adds a head through the ``bayeshead.heads`` entry point (docs/extending.md).

The example package in tests/plugin_pkg is really installed (into a temporary directory) and
exercised in fresh interpreters that see it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parent / "plugin_pkg"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> str:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(PLUGIN)],
        check=True, capture_output=True, text=True,
    )
    return str(target)


def _run(plugin_path: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": plugin_path}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)


def test_plugin_head_appears_in_bayeshead_list(plugin_path):
    result = _run(plugin_path, "-m", "bayeshead.cli.main", "list", "heads")
    assert result.returncode == 0, result.stderr
    assert "label_smoothing" in result.stdout
    assert "Softmax head trained with label smoothing (example plugin)" in result.stdout


def test_plugin_head_validates_in_an_experiment_config_and_trains(plugin_path):
    code = """
import torch
from pydantic import ValidationError
from bayeshead.config import ExperimentConfig
from bayeshead.registry import HEADS
config = ExperimentConfig.model_validate({"head": {"kind": "label_smoothing", "smoothing": 0.2}})
assert type(config.head).__name__ == "LabelSmoothingConfig" and config.head.smoothing == 0.2
for bad in ({"kind": "label_smoothing", "smoothing": 1.5}, {"kind": "label_smoothing", "colour": 1}):
    try:
        ExperimentConfig.model_validate({"head": bad})
    except ValidationError as err:
        print("rejected", ".".join(map(str, err.errors()[0]["loc"])))
head = HEADS.get("label_smoothing").from_config(config.head, 4, 3)
x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
opt = torch.optim.SGD(head.parameters(), lr=0.5)
first = head.loss(x, y).total.item()
for _ in range(20):
    opt.zero_grad(); head.loss(x, y).total.backward(); opt.step()
print("loss down", head.loss(x, y).total.item() < first, head.predict(x).probs.sum(-1).allclose(torch.ones(16)))
"""
    result = _run(plugin_path, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["rejected head.smoothing", "rejected head.colour", "loss down True True"]


def test_without_the_plugin_the_kind_is_unknown():
    from pydantic import ValidationError

    from bayeshead.config import ExperimentConfig

    with pytest.raises(ValidationError, match="unknown head 'label_smoothing'. Known heads: .*deterministic"):
        ExperimentConfig.model_validate({"head": {"kind": "label_smoothing"}})
