"""benchmarks/perf_methods.py runs end to end on a tiny random Llama and prints one table row per
method, ratios to LoRA + MLE (1.00 for itself) and the issue's target checks."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "perf_methods.py"


def load_script():
    spec = importlib.util.spec_from_file_location("perf_methods", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_random_run_prints_one_row_per_method(capsys) -> None:
    script = load_script()
    threads = torch.get_num_threads()
    report = script.main([
        "--backbone", "random", "--shape", "tiny", "--rounds", "1", "--batch", "4", "--tokens", "12",
        "--dtype", "float32", "--methods", "lora+mle", "polar+vbll",
    ])
    assert torch.get_num_threads() == threads
    assert report in capsys.readouterr().out
    rows = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [row.split("|")[1].strip() for row in rows] == ["lora+mle", "polar+vbll"]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert all(len(c) == 9 for c in cells)
    assert cells[0][2] == "1.00" and cells[0][4] == "1.00"  # the baseline against itself
    for c in cells:
        assert re.fullmatch(r"[\d.]+ \([\d.]+–[\d.]+\)", c[1]) and re.fullmatch(r"[\d.]+ \([\d.]+–[\d.]+\)", c[3])
        assert float(c[2]) > 0 and float(c[4]) > 0 and float(c[5]) > 0
    assert "random Llama, shape tiny" in report and "B=4, L=12" in report
    assert "PoLAR + VBLL predict / LoRA + MLE" in report
    assert "lora+blob predict" not in report  # checks only for methods that were measured


def test_shared_copy_shares_weights_but_not_modules() -> None:
    script = load_script()
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    twin = script.shared_copy(net)
    assert twin is not net and twin[0] is not net[0]
    assert twin[0].weight is net[0].weight and twin[1].running_mean is net[1].running_mean
    twin[0] = torch.nn.Identity()  # replacing a module in the copy leaves the original alone
    assert isinstance(net[0], torch.nn.Linear)
